/**
 * Why POST /v1/messages takes an Idempotency-Key: a submit whose commit reached the database
 * server just as the server stopped answering (SIGSTOP of its processes, as a hung server) is
 * answered `503 store_unavailable` (the pool's query_timeout, 15 s, gives the connection up), yet
 * the server, resumed, commits it: the message is logged and sent. Sent again without a key, the
 * request makes a second message with the same content, which the partner receives twice; sent
 * again with the same key and bytes, it is answered with the message that was committed
 * (`Idempotency-Replayed: true`) and the log holds it once.
 *
 * Deterministic: Hekou's gateway reaches its own PostgreSQL server through a proxy that watches
 * what the gateway sends, and stops the server (then forwards the bytes, which wait in the
 * stopped server's socket) exactly when the message's insert — a single statement for a message
 * outside a case (its implicit commit), or the COMMIT of a case step's transaction — is on its
 * way. Lao Cai is on PGlite.
 */
import { once } from "node:events";
import { type AddressInfo, createConnection, createServer, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  type PostgresServerHandle,
  pauseServer,
  resumeServer,
  startPostgresServer,
  withClient,
} from "../../src/devtools/postgres-server.ts";
import { CONNECT_TIMEOUT_SECONDS, QUERY_TIMEOUT_SECONDS } from "../../src/store/database.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/databases.ts";
import { Api, exampleStep, Journey, uniqueCaseRef } from "../helpers/journey.ts";
import { call, type Pair, startPair, waitFor } from "../helpers/network.ts";
import { describeError, processFaults } from "../helpers/process-faults.ts";
import { CASE_NOTICE_BODY } from "../helpers/protocol-fixtures.ts";

/** Slack for a loaded machine. */
const SLACK_MS = 6_000;

let server: PostgresServerHandle;
let database: TestDatabase;
let proxy: HangingProxy;
let pair: Pair;
let stopped = false;

const { uncaught, unhandled, ...faults } = processFaults();

/** The server was stopped with a connection's statement or COMMIT on its way. */
interface Stopped {
  /** That connection's end at the server: what it received was run (committed or not). */
  ended: Promise<void>;
}

interface HangingProxy {
  port: number;
  /**
   * Stops the server when a connection sends `marker` (`at: "statement"`: before forwarding
   * those bytes) or, after `marker`, the next bytes it sends (`at: "commit"`: in a transaction
   * whose statement with `marker` is its last, the COMMIT); resolves once it did.
   */
  arm(marker: string, at: "statement" | "commit"): Promise<Stopped>;
  close(): void;
}

async function hangingProxy(upstreamPort: number, dataDir: string): Promise<HangingProxy> {
  let armed:
    | { marker: string; at: "statement" | "commit"; fired: (stopped: Stopped) => void }
    | undefined;
  const sockets = new Set<Socket>();
  const proxyServer = createServer((client) => {
    const upstream = createConnection(upstreamPort, "127.0.0.1");
    sockets.add(client).add(upstream);
    let tail = "";
    let sawMarker = false;
    const ended = once(upstream, "close").then(() => {});
    client.on("data", (data: Buffer) => {
      const text = tail + data.toString("latin1");
      tail = text.slice(-512);
      const trigger = armed;
      if (trigger !== undefined) {
        if (!sawMarker && text.includes(trigger.marker)) {
          sawMarker = true;
          if (trigger.at === "statement") {
            armed = undefined;
            pauseServer(dataDir);
            stopped = true;
            trigger.fired({ ended });
          }
        } else if (sawMarker && trigger.at === "commit") {
          // The transaction's next statement: its COMMIT (a simple query the first time on a
          // connection, then a Bind of the statement postgres.js prepared for it).
          armed = undefined;
          pauseServer(dataDir);
          stopped = true;
          trigger.fired({ ended });
        }
      }
      upstream.write(data);
    });
    upstream.on("data", (data: Buffer) => client.write(data));
    client.on("error", () => {});
    upstream.on("error", () => {});
    // A half close: the server reads everything sent before the end, a COMMIT included.
    client.on("close", () => upstream.end());
    upstream.on("close", () => client.destroy());
  });
  proxyServer.listen(0, "127.0.0.1");
  await once(proxyServer, "listening");
  return {
    port: (proxyServer.address() as AddressInfo).port,
    arm: (marker, at) =>
      new Promise((fired) => {
        armed = { marker, at, fired };
      }),
    close: () => {
      proxyServer.close();
      for (const s of sockets) s.destroy();
    },
  };
}

beforeAll(async () => {
  faults.start();
  server = await startPostgresServer();
  database = await createTestDatabase(server.url);
  proxy = await hangingProxy(server.port, server.dataDir);
  const viaProxy = new URL(database.url);
  viaProxy.port = String(proxy.port);
  pair = await startPair(inject("natsUrl"), { hekou: { databaseUrl: viaProxy.toString() } });
}, 120_000);

afterAll(async () => {
  try {
    if (stopped) resumeServer(server.dataDir);
    await pair?.stop();
    proxy?.close();
    await server?.stop();
  } finally {
    faults.stop();
  }
});

/** `promise` within 30 s, or the test fails naming `what`. */
async function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 30_000);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The proxy stopped the server: within 30 s of the submit, or the test fails. */
function seen(fired: Promise<Stopped>): Promise<Stopped> {
  return within(fired, "the proxy to see the statement it waits for");
}

/**
 * Resumes the server and waits until the stopped connection ended at the server (it ran what it
 * had received); returns how many messages of the case were committed then.
 */
async function resumeAndSettle(stoppedAt: Stopped, caseRef: string): Promise<number> {
  resume();
  await within(stoppedAt.ended, "the given-up connection to end at the server");
  return (await outboundOf(caseRef)).length;
}

function resume(): void {
  resumeServer(server.dataDir);
  stopped = false;
}

function submit(bytes: string, key?: string) {
  return call(pair.hekou, "/v1/messages", {
    method: "POST",
    body: bytes,
    headers: key === undefined ? {} : { "idempotency-key": key },
  });
}

/** Hekou's outbound messages in a case, read on the server directly (not through the proxy). */
function outboundOf(caseRef: string) {
  return withClient(
    database.url,
    (sql) => sql<{ id: string; idempotency_key: string | null }[]>`
      SELECT id::text, idempotency_key FROM messages
      WHERE direction = 'outbound' AND case_ref = ${caseRef} ORDER BY seq`,
  );
}

/** The submit answered while the server is stopped: 503 store_unavailable, within the bound. */
async function expectUnavailable(answer: Promise<Awaited<ReturnType<typeof submit>>>, at: number) {
  const result = await answer;
  const ms = performance.now() - at;
  expect(result.status, JSON.stringify(result.body)).toBe(503);
  expect(result.body.code).toBe("store_unavailable");
  expect(ms).toBeLessThan((QUERY_TIMEOUT_SECONDS + CONNECT_TIMEOUT_SECONDS) * 1000 + SLACK_MS);
}

/** Sends until accepted (the pool reconnects once the server is back). */
function acceptedAfterResume(bytes: string, key?: string) {
  return waitFor(
    "the request accepted once the server resumed",
    async () => {
      const answer = await submit(bytes, key);
      if (answer.status === 503) return undefined;
      return answer;
    },
    30_000,
  );
}

/** Lao Cai's inbound messages of the case, once `count` arrived (and a moment for more). */
async function laocaiInbound(caseRef: string, count: number): Promise<string[]> {
  const read = async () => {
    const { body } = await call(pair.laocai, "/v1/messages?direction=inbound&limit=200");
    return (body.items as Array<{ id: string; caseRef: string }>)
      .filter((m) => m.caseRef === caseRef)
      .map((m) => m.id);
  };
  await waitFor(`${count} message(s) at Lao Cai`, async () =>
    (await read()).length >= count ? true : undefined,
  );
  return read();
}

describe("a submit whose commit reached a server that then stopped answering", () => {
  it("a case step, with a key, stopped with its transaction's COMMIT sent: 503, and the server, resumed, commits it; the same request answers 202 with its id, replayed; one message, delivered once, the case advanced once", async () => {
    const api = new Api();
    const journey = new Journey(pair, api, uniqueCaseRef());
    const bytes = JSON.stringify(journey.request(exampleStep("01")));
    const key = `hang-step-${journey.caseRef}`;
    const fired = proxy.arm(`"idempotencyKey":"${key}"`, "commit");
    const at = performance.now();
    const answer = submit(bytes, key);
    const stoppedAt = await seen(fired);
    await expectUnavailable(answer, at);
    // The ambiguity: answered 503, committed all the same.
    expect(await resumeAndSettle(stoppedAt, journey.caseRef)).toBe(1);
    const again = await acceptedAfterResume(bytes, key);
    expect(again.status, JSON.stringify(again.body)).toBe(202);
    expect(await outboundOf(journey.caseRef)).toEqual([
      { id: again.body.id, idempotency_key: key },
    ]);
    expect(again.headers.get("idempotency-replayed")).toBe("true");
    expect(await laocaiInbound(journey.caseRef, 1)).toEqual([again.body.id]);
    const timeline = (await api.caseAt(pair.hekou, journey.caseRef)).timeline as unknown[];
    expect(timeline).toHaveLength(1);
    expect(uncaught.map(describeError)).toEqual([]);
    expect(unhandled.map(describeError)).toEqual([]);
  }, 120_000);

  // A message outside a case commits in one autocommit statement. Whether the server, resumed,
  // runs it or cancels it (the pool's statement_timeout may have been armed before the server
  // stopped) depends on the bytes it had received: each test reads which it was, once the
  // given-up connection ended, and holds the gateway to the answer that outcome calls for.
  it("a message outside a case, with a key, stopped with its statement sent: 503; the same request answers 202 with the message committed (replayed) or makes it now; one message, delivered once", async () => {
    const caseRef = uniqueCaseRef();
    const key = `hang-notice-${caseRef}`;
    const bytes = JSON.stringify({
      type: "case.notice",
      to: "VN-BGC-LAOCAI",
      caseRef,
      body: CASE_NOTICE_BODY,
    });
    const fired = proxy.arm(`"idempotencyKey":"${key}"`, "statement");
    const at = performance.now();
    const answer = submit(bytes, key);
    const stoppedAt = await seen(fired);
    await expectUnavailable(answer, at);
    const committed = await resumeAndSettle(stoppedAt, caseRef);
    expect([0, 1]).toContain(committed);
    const again = await acceptedAfterResume(bytes, key);
    expect(again.status, JSON.stringify(again.body)).toBe(202);
    expect(await outboundOf(caseRef)).toEqual([{ id: again.body.id, idempotency_key: key }]);
    expect(again.headers.get("idempotency-replayed")).toBe(committed === 1 ? "true" : null);
    expect(await laocaiInbound(caseRef, 1)).toEqual([again.body.id]);
    expect(uncaught.map(describeError)).toEqual([]);
    expect(unhandled.map(describeError)).toEqual([]);
  }, 120_000);

  it("without a key, the same: 503, and the request sent again makes a second message whenever the first was committed (the harm)", async () => {
    const caseRef = uniqueCaseRef();
    const bytes = JSON.stringify({
      type: "case.notice",
      to: "VN-BGC-LAOCAI",
      caseRef,
      body: CASE_NOTICE_BODY,
    });
    const fired = proxy.arm(`"caseRef":"${caseRef}"`, "statement");
    const at = performance.now();
    const answer = submit(bytes);
    const stoppedAt = await seen(fired);
    await expectUnavailable(answer, at);
    const committed = await resumeAndSettle(stoppedAt, caseRef);
    const again = await acceptedAfterResume(bytes);
    expect(again.status).toBe(202);
    const rows = await outboundOf(caseRef);
    expect(rows).toHaveLength(committed + 1);
    expect(rows.map((r) => r.id)).toContain(again.body.id);
    expect(await laocaiInbound(caseRef, committed + 1)).toHaveLength(committed + 1);
  }, 120_000);
});
