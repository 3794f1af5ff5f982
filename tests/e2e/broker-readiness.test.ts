/**
 * /readyz follows the broker: a real nats-server is stopped and started again on the same port
 * and store directory. The gateway stays ready through an interruption shorter than
 * LIAISON_BROKER_UNREACHABLE_SECONDS, says not ready once the broker has been unreachable for
 * longer, and is ready again after it reconnected.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsServerHandle, startNatsServer } from "../../src/devtools/nats-server.ts";
import { startNode, type TestNode, uniqueTag, waitFor } from "../helpers/network.ts";

const UNREACHABLE_SECONDS = 3;

let nats: NatsServerHandle;
let storeDir: string;
let node: (TestNode & { dataDir: string }) | undefined;

beforeAll(async () => {
  storeDir = mkdtempSync(join(tmpdir(), "liaison-readiness-nats-"));
  nats = await startNatsServer({ storeDir });
  node = await startNode(nats.url, uniqueTag(), {
    partyId: "CN-MPS-HEKOU",
    env: { LIAISON_BROKER_UNREACHABLE_SECONDS: String(UNREACHABLE_SECONDS) },
  });
});

afterAll(async () => {
  await node?.gateway.stop();
  await nats?.stop();
  rmSync(storeDir, { recursive: true, force: true });
});

async function readyz(): Promise<{ status: number; code: unknown }> {
  const res = await (node as TestNode).gateway.app.request("/readyz");
  const body = (await res.json()) as { code?: unknown };
  return { status: res.status, code: body.code };
}

describe("readiness and the broker", () => {
  it("says not ready once the broker has been unreachable for longer than the setting, and ready again after it reconnected", async () => {
    expect(await readyz()).toEqual({ status: 200, code: undefined });
    const transport = (node as TestNode).gateway.transport;
    expect(transport.unreachableSince()).toBeUndefined();

    const { port } = nats;
    await nats.stop();
    const down = await waitFor("the disconnect seen", async () => transport.unreachableSince());
    const stoppedAt = Date.now();
    // Within the allowed time it stays ready (only checked while that time has surely not passed).
    const early = await readyz();
    if (Date.now() - down.getTime() < UNREACHABLE_SECONDS * 1000 - 500) {
      expect(early.status).toBe(200);
    }
    await waitFor(
      "not ready",
      async () => ((await readyz()).status === 503 ? true : undefined),
      UNREACHABLE_SECONDS * 1000 + 15_000,
    );
    expect(await readyz()).toEqual({ status: 503, code: "not_ready" });
    // Not before the setting's time had passed since the disconnect.
    expect(Date.now() - down.getTime()).toBeGreaterThanOrEqual(UNREACHABLE_SECONDS * 1000);
    expect(down.getTime()).toBeLessThanOrEqual(stoppedAt);

    nats = await startNatsServer({ port, storeDir });
    await waitFor(
      "ready again after the reconnect",
      async () => ((await readyz()).status === 200 ? true : undefined),
      30_000,
    );
    expect(transport.unreachableSince()).toBeUndefined();
  }, 60_000);
});
