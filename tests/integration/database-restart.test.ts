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
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { type AddressInfo, createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { drizzle } from "drizzle-orm/postgres-js";
import { connect } from "nats";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { freePort } from "../../src/devtools/free-port.ts";
import {
  type PostgresServerHandle,
  startPostgresServer,
} from "../../src/devtools/postgres-server.ts";
import { LiaisonError } from "../../src/protocol/errors.ts";
import { type Db, isStoreUnavailable } from "../../src/store/database.ts";
import { ReadQueries } from "../../src/store/read-queries.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/databases.ts";
import { type Pair, startPair, type TestNode, waitFor } from "../helpers/network.ts";
import { describeError, processFaults } from "../helpers/process-faults.ts";
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
const { uncaught, unhandled, ...faults } = processFaults();

beforeAll(async () => {
  faults.start();
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
    faults.stop();
  }
});

interface Answer {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
  /** How long the answer took. */
  ms: number;
}

/**
 * While the database is down, the answer comes within its own Retry-After: a refused connection
 * fails at once, and a closed connection of the pool waits at most 1 s before it tries again
 * (a request may wait for two such attempts when all are in use). Measured 10 ms to 3.8 s on a
 * loaded 2-core machine; 8 s in one run with postgres.js's flush timer left set on close and a
 * 2 s reconnect cap.
 */
const OUTAGE_ANSWER_MS = 5_000;

/** Over real HTTP, as a local user's system calls the gateway. */
async function request(node: TestNode, path: string, init: RequestInit = {}): Promise<Answer> {
  const started = performance.now();
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
    ms: performance.now() - started,
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

/** Settles with "pending" when `promise` has not settled within `ms`. */
function within<T>(promise: Promise<T>, ms: number): Promise<T | "pending"> {
  return Promise.race([
    promise,
    new Promise<"pending">((resolve) => setTimeout(() => resolve("pending"), ms)),
  ]);
}

/** The error a promise rejects with, or "resolved" / "pending". */
async function outcome(promise: Promise<unknown>, ms = 5_000): Promise<unknown> {
  return within(
    promise.then(
      () => "resolved",
      (err: unknown) => err,
    ),
    ms,
  );
}

/** Lets a rejection nobody handled reach the recorder (Node reports it after a turn). */
const settle = () => new Promise((resolve) => setTimeout(resolve, 200));

/**
 * The driver's defects one at a time, each reproduced as its upstream report does, against this
 * file's server (each test terminates only the backends of its own client).
 */
describe("postgres.js 3.4.9 as patched (patches/postgres+3.4.9.patch)", () => {
  const clients: postgres.Sql[] = [];
  const client = (options: postgres.Options<Record<string, never>> = {}) => {
    const sql = postgres((server as PostgresServerHandle).url, { onnotice: () => {}, ...options });
    clients.push(sql);
    return sql;
  };
  afterAll(async () => {
    await Promise.all(clients.map((sql) => sql.end({ timeout: 1 }).catch(() => {})));
  });

  it("a query on a connection whose backend died rejects CONNECTION_CLOSED (porsager/postgres#1208)", async () => {
    const sql = client({ max: 2 });
    const killer = client({ max: 1 });
    const reserved = await sql.reserve();
    const [row] = await reserved<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
    await killer`SELECT pg_terminate_backend(${row?.pid as number})`;
    // Rejects, CONNECTION_CLOSED or ECONNRESET, depending on when the driver saw the close.
    await outcome(reserved`SELECT 1`);
    // Unpatched: nextWrite writes to the null socket in a setImmediate callback, an uncaught
    // TypeError (the process ends), and this query never settles.
    const second = await outcome(reserved`SELECT 1`);
    await settle();
    expect(uncaught.map(describeError)).toEqual([]);
    expect(second).toMatchObject({ code: "CONNECTION_CLOSED" });
  });

  it("a transaction whose connection died runs nothing more, on the reconnected connection neither (porsager/postgres#1216)", async () => {
    const sql = client({ max: 1 });
    const killer = client({ max: 1 });
    await sql`CREATE TABLE IF NOT EXISTS patch_probe (n int)`;
    await sql`DELETE FROM patch_probe`;
    let proceed: () => void = () => {};
    const reconnected = new Promise<void>((resolve) => {
      proceed = resolve;
    });
    let callback: Promise<unknown> = Promise.resolve();
    const transaction = sql.begin((tx) => {
      callback = (async () => {
        const [row] = await tx<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
        await killer`SELECT pg_terminate_backend(${row?.pid as number})`;
        await reconnected;
        // The transaction is gone; unpatched, this INSERT runs on the pool's new session,
        // outside any transaction, and commits.
        await tx`INSERT INTO patch_probe VALUES (1)`;
      })();
      return callback;
    });
    expect(await outcome(transaction)).toMatchObject({ code: "CONNECTION_CLOSED" });
    // The pool reconnects its one connection for the next query.
    await waitFor("the pool reconnected", async () =>
      (await outcome(sql`SELECT 1`)) === "resolved" ? true : undefined,
    );
    proceed();
    expect(await outcome(callback)).toMatchObject({ code: "CONNECTION_CLOSED" });
    const [count] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM patch_probe`;
    expect(count?.n).toBe(0);
    await settle();
    expect(uncaught.map(describeError)).toEqual([]);
  });

  it("a failed array-type query of a new connection is no unhandled rejection (porsager/postgres#1192)", async () => {
    // A 1 ms statement_timeout from the startup packet cancels the driver's own pg_type query.
    const sql = client({ max: 1, connection: { statement_timeout: 1 } });
    await outcome(sql`SELECT pg_sleep(0.05)`);
    await settle();
    expect(unhandled.map(describeError)).toEqual([]);
  });
});

/** The error `work` fails with. */
async function failure(work: () => Promise<unknown>): Promise<unknown> {
  try {
    await work();
  } catch (err) {
    return err;
  }
  throw new Error("expected a failure");
}

describe("readiness: a database that answers but does not take writes", () => {
  it("the readiness ping fails on a database set read-only, and passes again once it is not", async () => {
    const target = await createTestDatabase((server as PostgresServerHandle).url);
    const admin = postgres(target.url, { max: 1, onnotice: () => {} });
    // A new pool each time: a session takes default_transaction_read_only when it starts.
    const ping = async () => {
      const client = postgres(target.url, { max: 1, onnotice: () => {} });
      try {
        await new ReadQueries(drizzle({ client }) as unknown as Db).ping();
        return "ready";
      } catch (err) {
        return String(err);
      } finally {
        await client.end({ timeout: 1 });
      }
    };
    try {
      expect(await ping()).toBe("ready");
      const name = new URL(target.url).pathname.slice(1);
      await admin.unsafe(`alter database "${name}" set default_transaction_read_only = on`);
      expect(await ping()).toContain("does not take writes");
      await admin.unsafe(`alter database "${name}" reset default_transaction_read_only`);
      expect(await ping()).toBe("ready");
    } finally {
      await admin.end({ timeout: 1 });
      await target.drop();
    }
  });
});

describe("isStoreUnavailable: one classification of the store's connection errors", () => {
  it("says yes to real errors of a database that cannot be reached, through drizzle's wrapping", async () => {
    const url = (server as PostgresServerHandle).url;
    const closedPort = new URL(url);
    closedPort.port = String(await freePort());
    const refused = postgres(closedPort.toString(), { max: 1, onnotice: () => {} });
    const refusedError = await failure(() => refused`SELECT 1`);
    await refused.end({ timeout: 1 });
    expect(refusedError).toMatchObject({ code: "ECONNREFUSED" });
    expect(isStoreUnavailable(refusedError)).toBe(true);

    // drizzle wraps the driver's error: DrizzleQueryError, its message quoting the SQL.
    const viaDrizzle = postgres(closedPort.toString(), { max: 1, onnotice: () => {} });
    const wrapped = await failure(() => drizzle({ client: viaDrizzle }).execute("SELECT 1"));
    await viaDrizzle.end({ timeout: 1 });
    expect((wrapped as Error).cause).toMatchObject({ code: "ECONNREFUSED" });
    expect(isStoreUnavailable(wrapped)).toBe(true);

    // The server ends the session: 57P01 admin_shutdown (or the close itself, by timing).
    const victim = postgres(url, { max: 1, onnotice: () => {} });
    const killer = postgres(url, { max: 1, onnotice: () => {} });
    const [row] = await victim<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
    const sleeping = failure(() => victim`SELECT pg_sleep(10)`);
    await waitFor("the sleep to run", async () => {
      const [active] = await killer<{ n: number }[]>`
        SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE pid = ${row?.pid as number} AND state = 'active'`;
      return active?.n === 1 ? true : undefined;
    });
    await killer`SELECT pg_terminate_backend(${row?.pid as number})`;
    const terminated = await sleeping;
    await victim.end({ timeout: 1 });
    await killer.end({ timeout: 1 });
    expect(["57P01", "CONNECTION_CLOSED", "ECONNRESET"]).toContain(
      (terminated as { code?: string }).code,
    );
    expect(isStoreUnavailable(terminated)).toBe(true);

    // A write after the server ended the connection (a restart's FIN reached the socket before
    // the driver noticed): Node's writeAfterFIN, an EPIPE without a syscall, which postgres.js
    // passes on as the queries' error. Seen as `500 internal` under a fast restart mid-flow.
    const ender = createServer((socket) => socket.end());
    await new Promise<void>((resolve) => ender.listen(0, "127.0.0.1", resolve));
    const client = createConnection((ender.address() as AddressInfo).port, "127.0.0.1");
    await once(client, "end");
    const [afterFin] = await Promise.all([once(client, "error"), client.write("Q")]);
    client.destroy();
    await new Promise((resolve) => ender.close(resolve));
    expect(afterFin[0]).toMatchObject({ code: "EPIPE" });
    expect((afterFin[0] as { syscall?: string }).syscall).toBeUndefined();
    expect(isStoreUnavailable(afterFin[0])).toBe(true);

    // A server reached over a Unix socket, down: its socket file is gone (ENOENT on connect).
    const socketDir = mkdtempSync(join(tmpdir(), "liaison-no-pg-"));
    const viaSocket = postgres({
      path: join(socketDir, ".s.PGSQL.5432"),
      max: 1,
      onnotice: () => {},
    });
    const noSocket = await failure(() => viaSocket`SELECT 1`);
    await viaSocket.end({ timeout: 1 });
    rmSync(socketDir, { recursive: true, force: true });
    expect(noSocket).toMatchObject({ code: "ENOENT", syscall: "connect" });
    expect(isStoreUnavailable(noSocket)).toBe(true);
    // …but a file that is missing is not the store.
    const noFile = await failure(() => readFile(join(socketDir, "nothing")));
    expect(noFile).toMatchObject({ code: "ENOENT", syscall: "open" });
    expect(isStoreUnavailable(noFile)).toBe(false);

    // A server that goes away during the TLS handshake (sslmode=require): this one accepts the
    // SSLRequest and closes before the handshake. Node's TLS client: ECONNRESET, no syscall.
    const halfTls = createServer((socket) => {
      socket.once("data", () => {
        socket.write("S");
        setTimeout(() => socket.destroy(), 20);
      });
    });
    await new Promise<void>((resolve) => halfTls.listen(0, "127.0.0.1", resolve));
    const viaTls = postgres({
      host: "127.0.0.1",
      port: (halfTls.address() as AddressInfo).port,
      ssl: "require",
      max: 1,
      onnotice: () => {},
    });
    const cutHandshake = await failure(() => viaTls`SELECT 1`);
    await viaTls.end({ timeout: 1 });
    await new Promise((resolve) => halfTls.close(resolve));
    expect(cutHandshake).toMatchObject({ code: "ECONNRESET" });
    expect((cutHandshake as { syscall?: string }).syscall).toBeUndefined();
    expect(isStoreUnavailable(cutHandshake)).toBe(true);
    // …but an HTTP request its client aborted (the same code, another message) is not.
    const aborted = Object.assign(new Error("aborted"), { code: "ECONNRESET" });
    expect(isStoreUnavailable(aborted)).toBe(false);

    // The embedded store, closed (the gateway is stopping).
    const pglite = await PGlite.create();
    await pglite.close();
    const closed = await failure(() => pglite.query("SELECT 1"));
    expect(isStoreUnavailable(closed)).toBe(true);
  });

  it("says no to errors of the request or the data, and to another library's CONNECTION_CLOSED", async () => {
    const sql = postgres((server as PostgresServerHandle).url, { max: 1, onnotice: () => {} });
    try {
      const undefinedTable = await failure(() =>
        drizzle({ client: sql }).execute("SELECT * FROM no_such_table"),
      );
      expect((undefinedTable as Error).cause).toMatchObject({ code: "42P01" });
      expect(isStoreUnavailable(undefinedTable)).toBe(false);
      const divisionByZero = await failure(() => sql`SELECT 1 / 0`);
      expect(divisionByZero).toMatchObject({ code: "22012" });
      expect(isStoreUnavailable(divisionByZero)).toBe(false);
    } finally {
      await sql.end({ timeout: 1 });
    }
    // nats.js's NatsError has a CONNECTION_CLOSED code of its own: not the store's.
    const nc = await connect({ servers: inject("natsUrl") });
    await nc.close();
    const natsClosed = await failure(async () => nc.publish("liaison.test.closed"));
    expect(natsClosed).toMatchObject({ code: "CONNECTION_CLOSED" });
    expect(isStoreUnavailable(natsClosed)).toBe(false);
    expect(isStoreUnavailable(new LiaisonError("schema_invalid", "body invalid"))).toBe(false);
    expect(isStoreUnavailable(undefined)).toBe(false);
  });
});

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
      expect(during.ms).toBeLessThan(OUTAGE_ANSWER_MS);

      for (const path of ["/v1/messages", "/v1/cases", "/v1/quarantine", "/metrics"]) {
        const read = await request(hekou, path);
        expect(read.status, `${path}: ${JSON.stringify(read.body)}`).toBe(503);
        expect(read.body.code).toBe("store_unavailable");
        expect(read.headers.get("retry-after")).not.toBeNull();
        expect(read.ms, path).toBeLessThan(OUTAGE_ANSWER_MS);
      }
      const ready = await request(hekou, "/readyz");
      expect(ready.status).toBe(503);
      expect(ready.body.code).toBe("not_ready");
      // Lao Cai, whose database is on the same server, answers the same.
      const other = await request(laocai, "/v1/messages?direction=outbound");
      expect(other.status).toBe(503);
      expect(other.body.code).toBe("store_unavailable");
      expect(other.ms).toBeLessThan(OUTAGE_ANSWER_MS);
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
