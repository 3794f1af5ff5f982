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
  startPostgresServer,
  withClient,
} from "../../src/devtools/postgres-server.ts";
import { CONNECT_TIMEOUT_SECONDS, QUERY_TIMEOUT_SECONDS } from "../../src/store/database.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/databases.ts";
import { Api, exampleStep, Journey, uniqueCaseRef } from "../helpers/journey.ts";
import { call, type Pair, startPair, waitFor } from "../helpers/network.ts";
import { describeError, processFaults } from "../helpers/process-faults.ts";
import { CASE_NOTICE_BODY } from "../helpers/protocol-fixtures.ts";
import { hangServer, resumeServer } from "../helpers/server-stop.ts";

/** Slack for a loaded machine. */
const SLACK_MS = 6_000;

let server: PostgresServerHandle;
let database: TestDatabase;
let proxy: HangingProxy;
let pair: Pair;
let stopped = false;

const { uncaught, unhandled, ...faults } = processFaults();

interface HangingProxy {
  port: number;
  /**
   * Stops the server when a connection sends `marker` (`at: "statement"`: before forwarding
   * those bytes) or, after `marker`, its next COMMIT (`at: "commit"`); resolves once it did.
   */
  arm(marker: string, at: "statement" | "commit"): Promise<void>;
  close(): void;
}

async function hangingProxy(upstreamPort: number, dataDir: string): Promise<HangingProxy> {
  let armed: { marker: string; at: "statement" | "commit"; fired: () => void } | undefined;
  const sockets = new Set<Socket>();
  const proxyServer = createServer((client) => {
    const upstream = createConnection(upstreamPort, "127.0.0.1");
    sockets.add(client).add(upstream);
    let tail = "";
    let sawMarker = false;
    client.on("data", (data: Buffer) => {
      const text = tail + data.toString("latin1");
      tail = text.slice(-512);
      const trigger = armed;
      if (trigger !== undefined) {
        if (!sawMarker && text.includes(trigger.marker)) {
          sawMarker = true;
          if (trigger.at === "statement") {
            armed = undefined;
            hangServer(dataDir);
            stopped = true;
            trigger.fired();
          }
        } else if (sawMarker && trigger.at === "commit" && /commit\0/i.test(text)) {
          armed = undefined;
          hangServer(dataDir);
          stopped = true;
          trigger.fired();
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

/** The proxy stopped the server: within 30 s of the submit, or the test fails. */
async function seen(fired: Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error("the proxy never saw the statement it waits for")),
      30_000,
    );
  });
  try {
    await Promise.race([fired, late]);
  } finally {
    clearTimeout(timer);
  }
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
  it("without a key: 503, the message committed all the same, and the request sent again makes a second one (the harm)", async () => {
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
    await seen(fired);
    await expectUnavailable(answer, at);
    resume();
    const again = await acceptedAfterResume(bytes);
    expect(again.status).toBe(202);
    const rows = await outboundOf(caseRef);
    expect(rows).toHaveLength(2);
    expect(rows.map((r) => r.id)).toContain(again.body.id);
    expect(await laocaiInbound(caseRef, 2)).toHaveLength(2);
  }, 120_000);

  it("a message outside a case, with a key: 503, then the same request answers 202 with the id committed, replayed; one message, delivered once", async () => {
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
    await seen(fired);
    await expectUnavailable(answer, at);
    resume();
    const again = await acceptedAfterResume(bytes, key);
    expect(again.status, JSON.stringify(again.body)).toBe(202);
    const rows = await outboundOf(caseRef);
    expect(rows).toEqual([{ id: again.body.id, idempotency_key: key }]);
    expect(again.headers.get("idempotency-replayed")).toBe("true");
    expect(await laocaiInbound(caseRef, 1)).toEqual([again.body.id]);
    expect(uncaught.map(describeError)).toEqual([]);
    expect(unhandled.map(describeError)).toEqual([]);
  }, 120_000);

  it("a case step, with a key, stopped with its transaction's COMMIT sent: 503, then the same request answers 202 with the step committed, replayed; the case advanced once", async () => {
    const api = new Api();
    const journey = new Journey(pair, api, uniqueCaseRef());
    const bytes = JSON.stringify(journey.request(exampleStep("01")));
    const key = `hang-step-${journey.caseRef}`;
    const fired = proxy.arm(`"idempotencyKey":"${key}"`, "commit");
    const at = performance.now();
    const answer = submit(bytes, key);
    await seen(fired);
    await expectUnavailable(answer, at);
    resume();
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
});
