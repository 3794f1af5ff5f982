/**
 * The broker goes away and comes back: messages submitted meanwhile are kept in the database,
 * published once NATS is back, and each is logged exactly once by the recipient.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type NatsServerHandle, startNatsServer } from "../../src/devtools/nats-server.ts";
import { createTestDatabase } from "../helpers/databases.ts";
import { call, type Pair, startPair, type TestNode, waitFor } from "../helpers/network.ts";
import { CASE_NOTICE_BODY } from "../helpers/protocol-fixtures.ts";

let nats: NatsServerHandle;
let storeDir: string;
let hekou: TestNode;
let laocai: TestNode;
let pair: Pair | undefined;
let dropDatabase: () => Promise<void> = async () => {};

beforeAll(async () => {
  // The store directory is ours, so the broker's state survives its restart, as on a real server.
  storeDir = mkdtempSync(join(tmpdir(), "liaison-outage-nats-"));
  nats = await startNatsServer({ storeDir });
  const db = await createTestDatabase(inject("databaseUrl"));
  dropDatabase = db.drop;
  pair = await startPair(nats.url, { hekou: { databaseUrl: db.url } });
  ({ hekou, laocai } = pair);
});

afterAll(async () => {
  await pair?.stop();
  await nats?.stop();
  await dropDatabase();
  rmSync(storeDir, { recursive: true, force: true });
});

async function submit(caseRef: string): Promise<string> {
  const res = await call(hekou, "/v1/messages", {
    method: "POST",
    json: { type: "case.notice", to: "VN-BGC-LAOCAI", caseRef, body: CASE_NOTICE_BODY },
  });
  expect(res.status).toBe(202);
  return res.body.id as string;
}

async function statusOf(id: string): Promise<Record<string, unknown>> {
  return (await call(hekou, `/v1/messages/${id}`)).body;
}

describe("NATS outage", () => {
  it("keeps submitting during the outage and delivers everything exactly once afterwards", async () => {
    const before = [await submit("CN-HEKOU-2026-0100"), await submit("CN-HEKOU-2026-0101")];
    for (const id of before) {
      await waitFor(`delivered ${id}`, async () =>
        (await statusOf(id)).status === "delivered" ? true : undefined,
      );
    }

    const { port } = nats;
    await nats.stop();
    const during = [
      await submit("CN-HEKOU-2026-0102"),
      await submit("CN-HEKOU-2026-0103"),
      await submit("CN-HEKOU-2026-0104"),
    ];
    // The publishes fail and are retried; the messages wait in the database.
    await waitFor("a failed publish recorded", async () => {
      const s = await statusOf(during[0] as string);
      const [d] = s.deliveries as Array<{ lastError: string | null; attempts: number }>;
      return d !== undefined && d.attempts >= 1 && d.lastError !== null ? true : undefined;
    });
    expect((await statusOf(during[0] as string)).status).toBe("queued");

    nats = await startNatsServer({ port, storeDir });
    for (const id of during) {
      await waitFor(
        `delivered ${id} after the outage`,
        async () => ((await statusOf(id)).status === "delivered" ? true : undefined),
        30_000,
      );
    }
    const inbound = await call(laocai, "/v1/messages?direction=inbound&limit=200");
    const ids = (inbound.body.items as Array<{ id: string }>).map((m) => m.id);
    expect(ids.sort()).toEqual([...before, ...during].sort());
    const quarantine = await call(laocai, "/v1/quarantine");
    expect(quarantine.body.items).toEqual([]);
  }, 90_000);

  it("recreates its inbox when the broker comes back without its state", async () => {
    const { port } = nats;
    await nats.stop();
    rmSync(storeDir, { recursive: true, force: true });
    storeDir = mkdtempSync(join(tmpdir(), "liaison-outage-nats-"));
    nats = await startNatsServer({ port, storeDir });
    const id = await submit("CN-HEKOU-2026-0105");
    await waitFor(
      `delivered ${id} by a broker that lost its state`,
      async () => ((await statusOf(id)).status === "delivered" ? true : undefined),
      30_000,
    );
    const inbound = await call(laocai, "/v1/messages?direction=inbound&limit=200");
    expect((inbound.body.items as Array<{ id: string }>).filter((m) => m.id === id)).toHaveLength(
      1,
    );
  }, 60_000);
});
