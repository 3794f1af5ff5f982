/**
 * The inbox's durable consumer is deleted while the gateway stays connected (an operator's
 * mistake, a lost replica): the gateway recreates it and goes on consuming.
 */
import { connect, type NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { call, type Pair, startPair, type TestNode, waitFor } from "../helpers/network.ts";
import { CASE_NOTICE_BODY } from "../helpers/protocol-fixtures.ts";

let hekou: TestNode;
let laocai: TestNode;
let pair: Pair | undefined;
let nc: NatsConnection;

beforeAll(async () => {
  pair = await startPair(inject("natsUrl"));
  ({ hekou, laocai } = pair);
  nc = await connect({ servers: inject("natsUrl") });
});

afterAll(async () => {
  await nc?.drain();
  await pair?.stop();
});

async function deliver(caseRef: string): Promise<void> {
  const res = await call(hekou, "/v1/messages", {
    method: "POST",
    json: { type: "case.notice", to: "VN-BGC-LAOCAI", caseRef, body: CASE_NOTICE_BODY },
  });
  expect(res.status).toBe(202);
  await waitFor(
    `delivered ${caseRef}`,
    async () =>
      (await call(hekou, `/v1/messages/${res.body.id}`)).body.status === "delivered"
        ? true
        : undefined,
    30_000,
  );
}

describe("consumer loss", () => {
  it("recreates a deleted durable consumer and keeps receiving", async () => {
    await deliver("CN-HEKOU-2026-0300");
    const jsm = await nc.jetstreamManager();
    await jsm.consumers.delete(laocai.gateway.config.streamName, "gateway");
    await deliver("CN-HEKOU-2026-0301");
    const info = await jsm.consumers.info(laocai.gateway.config.streamName, "gateway");
    expect(info.config.durable_name).toBe("gateway");
  }, 60_000);
});
