/**
 * A nats-server that answers JetStream management requests late: the server process is paused
 * (SIGSTOP) while the transport asks for its inbox, and resumed (SIGCONT) after nats.js's 5 s
 * request timeout. Requests that may be repeated are asked again; past the last attempt the
 * error names the request instead of nats.js's bare "TIMEOUT".
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsServerHandle, startNatsServer } from "../../src/devtools/nats-server.ts";
import { ManagementError, NatsTransport } from "../../src/transport/nats-transport.ts";

let server: NatsServerHandle;
let transport: NatsTransport;

beforeAll(async () => {
  server = await startNatsServer();
  transport = await NatsTransport.connect(server.url, "slow-server-test");
});

afterAll(async () => {
  process.kill(server.pid, "SIGCONT");
  await transport?.close();
  await server?.stop();
});

function inbox() {
  const tag = randomBytes(4).toString("hex").toUpperCase();
  return {
    stream: `SLOW_${tag}`,
    subject: `test.slow.${tag}`,
    durable: "gateway",
    ackWaitMs: 30_000,
    maxAckPending: 100,
  };
}

/** The server process's state letter (`T` once SIGSTOP took effect), from /proc. */
function processState(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
}

/**
 * Pauses the server for `ms`, while `during` runs; returns what it settled with. `during` starts
 * only once the kernel shows the process stopped: the signal takes effect asynchronously, and a
 * request sent in between could still be answered (seen under load: the first request answered,
 * the next one timed out).
 */
async function pausedFor<T>(ms: number, during: () => Promise<T>) {
  process.kill(server.pid, "SIGSTOP");
  while (processState(server.pid) !== "T") await new Promise((r) => setTimeout(r, 5));
  const resumed = new Promise<void>((resolve) =>
    setTimeout(() => {
      process.kill(server.pid, "SIGCONT");
      resolve();
    }, ms),
  );
  const settled = await Promise.allSettled([during()]);
  await resumed;
  return settled[0] as PromiseSettledResult<T>;
}

describe("JetStream management requests to a server that answers late", () => {
  it("are asked again after a timeout: the inbox is made once the server answers", async () => {
    const opts = inbox();
    const result = await pausedFor(7_000, () => transport.ensureInbox(opts));
    expect(result.status).toBe("fulfilled");
    expect((result as PromiseFulfilledResult<boolean>).value).toBe(true);
    // Made exactly once, and usable: asked again, it exists and nothing needs making.
    expect(await transport.ensureInbox(opts)).toBe(false);
    await transport.publish(opts.subject, new TextEncoder().encode("x"), `${opts.stream}-1`);
    expect(await transport.consumerPending(opts.stream, opts.durable)).toEqual({
      pending: 1,
      ackPending: 0,
    });
  }, 30_000);

  it("past the last attempt, fail with an error naming the request, not a bare TIMEOUT", async () => {
    const opts = inbox();
    const result = await pausedFor(17_000, () => transport.ensureInbox(opts));
    expect(result.status).toBe("rejected");
    const err = (result as PromiseRejectedResult).reason;
    expect(err).toBeInstanceOf(ManagementError);
    expect(err).toMatchObject({
      request: `stream info ${opts.stream}`,
      attempts: 3,
      code: "TIMEOUT",
    });
    expect(String(err.message)).toContain(`stream info ${opts.stream}`);
    // The server is back: the same request now succeeds.
    expect(await transport.ensureInbox(opts)).toBe(true);
  }, 45_000);

  it("the consumer's backlog (for a metrics scrape) is asked once: it fails after one timeout, not three", async () => {
    const opts = inbox();
    await transport.ensureInbox(opts);
    const result = await pausedFor(7_000, () => transport.consumerPending(opts.stream, "gateway"));
    expect(result.status).toBe("rejected");
    expect((result as PromiseRejectedResult).reason).toMatchObject({
      request: `consumer info ${opts.stream}/gateway`,
      attempts: 1,
      code: "TIMEOUT",
    });
  }, 30_000);
});
