/**
 * PostgreSQL restarts under two running gateways (issue 12): the gateways stay up, reconnect
 * by themselves and deliver every message they accepted exactly once; while the database is
 * down, the HTTP API answers `503 store_unavailable` (with Retry-After), not `500`.
 *
 * The PostgreSQL server is this file's own (src/devtools/postgres-server.ts), so restarting it
 * disturbs no other test file; both gateways (Hekou sending, Lao Cai receiving) have a database
 * on it, and run on the shared nats-server of the global setup.
 *
 * Before the postgres.js patch (patches/postgres+3.4.9.patch), a fast restart mid-flow threw
 * `TypeError: Cannot read properties of null (reading 'write')` from the driver's `nextWrite`
 * inside a setImmediate callback: an uncaught exception, which kills a gateway process. Here the
 * test process records every uncaught exception and unhandled rejection and asserts there were
 * none (vitest would also fail the run on them).
 */
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  type PostgresServerHandle,
  startPostgresServer,
} from "../../src/devtools/postgres-server.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/databases.ts";
import { type Pair, startPair, type TestNode, waitFor } from "../helpers/network.ts";
import { CASE_NOTICE_BODY } from "../helpers/protocol-fixtures.ts";

const RATE_PER_S = 40;
const MESSAGES = 320;
/** The restart begins once this many submits have been started (mid-flow). */
const RESTART_AFTER = 120;

let server: PostgresServerHandle | undefined;
let databases: { hekou: TestDatabase; laocai: TestDatabase } | undefined;
let pair: Pair | undefined;
let hekou: TestNode;
let laocai: TestNode;

// Anything thrown where no caller can catch it (a driver's timer callback) lands here.
const uncaught: unknown[] = [];
const recordUncaught = (err: unknown): void => {
  uncaught.push(err);
};
const unhandled: unknown[] = [];
const recordUnhandled = (reason: unknown): void => {
  unhandled.push(reason);
};

beforeAll(async () => {
  process.on("uncaughtException", recordUncaught);
  process.on("unhandledRejection", recordUnhandled);
  server = await startPostgresServer();
  databases = {
    hekou: await createTestDatabase(server.url),
    laocai: await createTestDatabase(server.url),
  };
  pair = await startPair(inject("natsUrl"), {
    hekou: { databaseUrl: databases.hekou.url },
    laocai: { databaseUrl: databases.laocai.url },
  });
  ({ hekou, laocai } = pair);
});

afterAll(async () => {
  try {
    await pair?.stop();
    await databases?.hekou.drop();
    await databases?.laocai.drop();
    await server?.stop();
  } finally {
    process.off("uncaughtException", recordUncaught);
    process.off("unhandledRejection", recordUnhandled);
  }
});

interface Answer {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

/** Over real HTTP, as a local user's system calls the gateway. */
async function request(node: TestNode, path: string, init: RequestInit = {}): Promise<Answer> {
  const res = await fetch(`${node.gateway.url}${path}`, {
    ...init,
    headers: {
      authorization: `Bearer ${node.token}`,
      "content-type": "application/json",
      ...(init.headers ?? {}),
    },
  });
  return {
    status: res.status,
    headers: res.headers,
    body: (await res.json()) as Record<string, unknown>,
  };
}

function submit(caseRef = "CN-HEKOU-2026-0042"): Promise<Answer> {
  return request(hekou, "/v1/messages", {
    method: "POST",
    body: JSON.stringify({
      type: "case.notice",
      to: "VN-BGC-LAOCAI",
      caseRef,
      body: CASE_NOTICE_BODY,
    }),
  });
}

/** Runs `fn` against one of the test's databases, on a connection of its own. */
async function withSql<T>(url: string, fn: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

async function postmasterStartedAt(): Promise<string> {
  const url = server?.url as string;
  return withSql(url, async (sql) => {
    const [row] = await sql<{ at: string }[]>`SELECT pg_postmaster_start_time()::text AS at`;
    return row?.at as string;
  });
}

/** Message ids logged inbound at Lao Cai, with how often each was logged. */
async function loggedAtLaocai(): Promise<Map<string, number>> {
  const url = databases?.laocai.url as string;
  return withSql(url, async (sql) => {
    const rows = await sql<{ id: string; n: number }[]>`
      SELECT id::text AS id, count(*)::int AS n FROM messages
      WHERE direction = 'inbound' GROUP BY id`;
    return new Map(rows.map((r) => [r.id, r.n]));
  });
}

/** Hekou's deliveries of the given messages, by status. */
async function deliveryStatuses(ids: string[]): Promise<Record<string, number>> {
  const url = databases?.hekou.url as string;
  return withSql(url, async (sql) => {
    const rows = await sql<{ status: string; n: number }[]>`
      SELECT status, count(*)::int AS n FROM deliveries
      WHERE message_id = ANY(${ids}::uuid[]) GROUP BY status`;
    return Object.fromEntries(rows.map((r) => [r.status, r.n]));
  });
}

async function quarantinedAtLaocai(): Promise<number> {
  const url = databases?.laocai.url as string;
  return withSql(url, async (sql) => {
    const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM quarantine`;
    return row?.n ?? 0;
  });
}

/** Waits until every one of `ids` is delivered at Hekou and logged at Lao Cai. */
async function waitAllDelivered(ids: string[], timeoutMs: number): Promise<void> {
  await waitFor(
    `${ids.length} messages delivered`,
    async () => {
      const statuses = await deliveryStatuses(ids);
      return statuses.delivered === ids.length ? true : undefined;
    },
    timeoutMs,
  );
}

function describeError(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}\n${err.stack ?? ""}` : String(err);
}

describe("PostgreSQL restarts under running gateways", () => {
  it("a fast restart mid-flow: no crash, every accepted message delivered and logged once", async () => {
    const startedBefore = await postmasterStartedAt();
    const accepted: string[] = [];
    const refused: Answer[] = [];
    const failed: unknown[] = [];
    let restart: Promise<void> | undefined;
    let restartedAt = Number.POSITIVE_INFINITY;
    let acceptedAfterRestart = 0;

    // A steady offered load: submit i starts at t0 + i / rate, whether earlier ones answered
    // or not (they may hang while the database restarts).
    const t0 = performance.now();
    const submits: Promise<void>[] = [];
    for (let i = 0; i < MESSAGES; i++) {
      const wait = t0 + (i * 1000) / RATE_PER_S - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      if (i === RESTART_AFTER) {
        restart = (server as PostgresServerHandle).restart().then(() => {
          restartedAt = performance.now();
        });
      }
      const startedAt = performance.now();
      submits.push(
        submit().then(
          (answer) => {
            if (answer.status === 202) {
              accepted.push(answer.body.id as string);
              if (startedAt > restartedAt) acceptedAfterRestart += 1;
            } else {
              refused.push(answer);
            }
          },
          (err: unknown) => {
            failed.push(err);
          },
        ),
      );
    }
    await restart;
    await Promise.all(submits);

    // The server really restarted, mid-flow.
    expect(await postmasterStartedAt()).not.toBe(startedBefore);
    expect(acceptedAfterRestart).toBeGreaterThan(0);

    // Nothing thrown where no caller could catch it: the gateways would have died.
    expect(uncaught.map(describeError)).toEqual([]);
    expect(unhandled.map(describeError)).toEqual([]);
    expect(failed.map(describeError)).toEqual([]);

    // A submit the restart caught answers 503 store_unavailable, never 500.
    for (const answer of refused) {
      expect(answer.status, JSON.stringify(answer.body)).toBe(503);
      expect(answer.body.code).toBe("store_unavailable");
    }
    expect(accepted.length + refused.length).toBe(MESSAGES);
    expect(accepted.length).toBeGreaterThan(MESSAGES / 2);

    // Every accepted message delivered (Lao Cai's signed receipt applied at Hekou) ...
    await waitAllDelivered(accepted, 90_000);
    expect(await deliveryStatuses(accepted)).toEqual({ delivered: accepted.length });
    // ... and logged exactly once at Lao Cai, nothing else logged, nothing quarantined.
    const logged = await loggedAtLaocai();
    expect([...logged.values()].filter((n) => n !== 1)).toEqual([]);
    expect(accepted.filter((id) => !logged.has(id))).toEqual([]);
    expect(logged.size).toBe(accepted.length);
    expect(await quarantinedAtLaocai()).toBe(0);

    // The reminder sweep works on the reconnected pool too.
    await expect(hekou.gateway.reminders.sweep()).resolves.not.toThrow();
    expect(uncaught.map(describeError)).toEqual([]);
  }, 180_000);

  it("while the database is down the API answers 503 store_unavailable; afterwards it serves again", async () => {
    const db = server as PostgresServerHandle;
    await db.shutdown();
    try {
      const during = await submit("CN-HEKOU-2026-0043");
      expect(during.status, JSON.stringify(during.body)).toBe(503);
      expect(during.headers.get("content-type")).toContain("application/problem+json");
      expect(during.body.code).toBe("store_unavailable");
      expect(during.body.type).toBe("/docs/errors.md#store_unavailable");
      expect(Number(during.headers.get("retry-after"))).toBeGreaterThan(0);

      for (const path of ["/v1/messages", "/v1/cases", "/v1/quarantine"]) {
        const read = await request(hekou, path);
        expect(read.status, `${path}: ${JSON.stringify(read.body)}`).toBe(503);
        expect(read.body.code).toBe("store_unavailable");
        expect(read.headers.get("retry-after")).not.toBeNull();
      }
      // Lao Cai, whose database is on the same server, answers the same.
      const other = await request(laocai, "/v1/messages?direction=outbound");
      expect(other.status).toBe(503);
      expect(other.body.code).toBe("store_unavailable");
    } finally {
      await db.start();
    }

    // Back: the pools reconnect by themselves; no restart of either gateway.
    const after = await waitFor(
      "a submit accepted after the database came back",
      async () => {
        const answer = await submit("CN-HEKOU-2026-0044");
        if (answer.status === 202) return answer;
        expect(answer.status, JSON.stringify(answer.body)).toBe(503);
        return undefined;
      },
      30_000,
    );
    await waitAllDelivered([after.body.id as string], 60_000);
    const read = await request(hekou, `/v1/messages/${after.body.id as string}`);
    expect(read.status).toBe(200);
    expect(read.body.status).toBe("delivered");
    expect(uncaught.map(describeError)).toEqual([]);
    expect(unhandled.map(describeError)).toEqual([]);
  }, 120_000);
});
