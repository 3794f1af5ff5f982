/**
 * Two real gateways — Hekou on PostgreSQL, Lao Cai on PGlite — on a real nats-server: a message
 * delivered and answered with a verified receipt, and every kind of bad input injected straight
 * onto the wire, each quarantined with its code and answered with a negative receipt where the
 * sender can be identified.
 */
import { randomUUID } from "node:crypto";
import { and, eq, inArray } from "drizzle-orm";
import { compactVerify, createLocalJWKSet, type JSONWebKeySet } from "jose";
import { connect, type NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { buildEnvelope } from "../../src/protocol/build-envelope.ts";
import { sha256Hex } from "../../src/protocol/digest.ts";
import { MESSAGE_TYP, RECEIPT_BATCH_TYP } from "../../src/protocol/jws-profile.ts";
import { signCompact } from "../../src/protocol/sign.ts";
import type { Envelope } from "../../src/protocol/types.ts";
import { deliveries, receiptBatches, receipts } from "../../src/store/schema.ts";
import { createTestDatabase } from "../helpers/databases.ts";
import {
  call,
  type Pair,
  startNode,
  startPair,
  type TestNode,
  uniqueTag,
  waitFor,
} from "../helpers/network.ts";
import { CASE_NOTICE_BODY, makeParty } from "../helpers/protocol-fixtures.ts";

const HEKOU = "CN-MPS-HEKOU";
const LAOCAI = "VN-BGC-LAOCAI";

let hekou: TestNode;
let laocai: TestNode;
let pair: Pair | undefined;
let nc: NatsConnection;
let dropDatabase: () => Promise<void>;

beforeAll(async () => {
  const natsUrl = inject("natsUrl");
  const db = await createTestDatabase(inject("databaseUrl"));
  dropDatabase = db.drop;
  pair = await startPair(natsUrl, { hekou: { databaseUrl: db.url } });
  ({ hekou, laocai } = pair);
  nc = await connect({ servers: natsUrl });
});

afterAll(async () => {
  await nc?.drain();
  await pair?.stop();
  await dropDatabase?.();
});

const submit = (node: TestNode, json: unknown) =>
  call(node, "/v1/messages", { method: "POST", json });

function envelope(overrides: Partial<Envelope> = {}, sentAt = new Date()): Envelope {
  return {
    ...buildEnvelope(
      {
        type: "case.notice",
        schemaVersion: 1,
        to: [LAOCAI],
        caseRef: "CN-HEKOU-2026-0042",
        handling: { classification: "restricted", onwardDissemination: "forbidden" },
        body: CASE_NOTICE_BODY,
      },
      { self: HEKOU, clock: () => sentAt, ids: randomUUID, ttlMs: 3_600_000 },
    ),
    ...overrides,
  };
}

/** Publishes bytes straight onto Lao Cai's inbound subject, as a partner (or an attacker) would. */
async function publishRaw(jws: string): Promise<string> {
  await nc
    .jetstream()
    .publish(laocai.gateway.config.inboundSubject, new TextEncoder().encode(jws), {
      msgID: randomUUID(),
    });
  return sha256Hex(jws);
}

async function quarantinedAt(node: TestNode, digest: string) {
  return waitFor(
    `quarantine of ${digest.slice(0, 8)} at ${node.gateway.config.partyId}`,
    async () => {
      const { body } = await call(node, "/v1/quarantine?limit=200");
      return (body.items as Array<Record<string, unknown>>).find((q) => q.digest === digest);
    },
  );
}

/** Hekou gets Lao Cai's negative receipt about a message it never sent: it keeps it too. */
async function negativeReceiptReachedHekou(messageId: string) {
  return waitFor("negative receipt at Hekou", async () => {
    const { body } = await call(hekou, "/v1/quarantine?limit=200");
    return (body.items as Array<Record<string, unknown>>).find(
      (q) => q.kind === "receipt" && q.messageId === messageId,
    );
  });
}

describe("two gateways over NATS", () => {
  it("delivers a case notice and records Lao Cai's signed receipt for the exact bytes sent", async () => {
    const res = await submit(hekou, {
      type: "case.notice",
      to: LAOCAI,
      caseRef: "CN-HEKOU-2026-0042",
      body: CASE_NOTICE_BODY,
    });
    expect(res.status).toBe(202);
    expect(res.headers.get("location")).toBe(`/v1/messages/${res.body.id}`);
    const id = res.body.id as string;

    const done = await waitFor("delivered", async () => {
      const { body } = await call(hekou, `/v1/messages/${id}`);
      return body.status === "delivered" ? body : undefined;
    });
    const receipts = done.receipts as Array<Record<string, unknown>>;
    expect(receipts).toHaveLength(1);
    const receipt = receipts[0] as Record<string, unknown>;
    expect(receipt.status).toBe("accepted");
    expect(receipt.messageDigest).toBe(sha256Hex(done.jws as string));

    // The receipt verifies with Lao Cai's published key, independently of the gateway's code.
    const jwks = (await (
      await fetch(`${laocai.gateway.url}/.well-known/jwks.json`)
    ).json()) as JSONWebKeySet;
    // Hekou declares in its party document that it accepts batch receipts: Lao Cai's answer is
    // one (docs/protocol.md, Batch receipts), accepting these bytes among what it names.
    const { payload, protectedHeader } = await compactVerify(
      receipt.jws as string,
      createLocalJWKSet(jwks),
    );
    expect(protectedHeader.typ).toBe(RECEIPT_BATCH_TYP);
    const signed = JSON.parse(new TextDecoder().decode(payload));
    expect(signed).toMatchObject({
      id: receipt.id,
      type: "receipt.batch",
      from: LAOCAI,
      to: HEKOU,
    });
    expect(signed.accepted).toContainEqual({
      messageId: id,
      digest: { alg: "sha-256", value: sha256Hex(done.jws as string) },
    });

    // Lao Cai logged the same bytes.
    const inbound = await call(laocai, "/v1/messages?direction=inbound");
    expect((inbound.body.items as Array<{ id: string }>).map((m) => m.id)).toContain(id);
    const atLaocai = await call(laocai, `/v1/messages/${id}`);
    expect(atLaocai.body.jws).toBe(done.jws);

    // Once logged and acked, the message leaves the broker (work-queue retention): the database
    // holds the only copy of its body.
    const jsm = await nc.jetstreamManager();
    await waitFor("Lao Cai's stream emptied", async () => {
      const info = await jsm.streams.info(laocai.gateway.config.streamName);
      return info.state.messages === 0 ? true : undefined;
    });
  });

  it("declares receiptBatches only when its size limit lets a batch of 65,536 bytes in", async () => {
    const declared = async (node: TestNode) =>
      (
        (await (await fetch(`${node.gateway.url}/.well-known/jwks.json`)).json()) as {
          party: { receiptBatches?: boolean };
        }
      ).party.receiptBatches;
    expect(await declared(hekou)).toBe(true);
    const small = await startNode(inject("natsUrl"), uniqueTag(), {
      partyId: "TH-RTP-ATHD",
      env: { LIAISON_MAX_MESSAGE_BYTES: "65535" },
    });
    try {
      expect(await declared(small)).toBeUndefined();
    } finally {
      await small.gateway.stop();
    }
  });

  it("answers many messages with fewer batch receipts than messages, and delivers every one", async () => {
    const n = 40;
    const ids = await Promise.all(
      Array.from({ length: n }, async () => {
        const res = await submit(hekou, {
          type: "case.notice",
          to: LAOCAI,
          caseRef: "CN-HEKOU-2026-0043",
          body: CASE_NOTICE_BODY,
        });
        expect(res.status).toBe(202);
        return res.body.id as string;
      }),
    );
    await waitFor(
      "every message delivered",
      async () => {
        const rows = await hekou.gateway.database.db
          .select({ status: deliveries.status })
          .from(deliveries)
          .where(inArray(deliveries.messageId, ids));
        return rows.length === n && rows.every((r) => r.status === "delivered") ? true : undefined;
      },
      60_000,
    );
    // What Lao Cai signed and published for them: batch receipts only, fewer than the messages.
    const answers = await laocai.gateway.database.db
      .select({ batchId: receipts.batchId, jws: receipts.jws })
      .from(receipts)
      .where(and(eq(receipts.direction, "issued"), inArray(receipts.messageId, ids)));
    expect(answers).toHaveLength(n);
    expect(answers.filter((a) => a.batchId === null || a.jws !== null)).toEqual([]);
    const batchIds = [...new Set(answers.map((a) => a.batchId as string))];
    const issued = await laocai.gateway.database.db
      .select({ entries: receiptBatches.entries, publishedAt: receiptBatches.publishedAt })
      .from(receiptBatches)
      .where(and(eq(receiptBatches.direction, "issued"), inArray(receiptBatches.id, batchIds)));
    expect(issued.length).toBe(batchIds.length);
    expect(issued.length).toBeLessThan(n);
    expect(issued.every((b) => b.publishedAt !== null)).toBe(true);
    // Hekou logged each of those batches once, and nothing of them went to its quarantine.
    const received = await hekou.gateway.database.db
      .select({ id: receiptBatches.id })
      .from(receiptBatches)
      .where(and(eq(receiptBatches.direction, "received"), inArray(receiptBatches.id, batchIds)));
    expect(received.map((b) => b.id).sort()).toEqual([...batchIds].sort());
    const kept = await call(hekou, "/v1/quarantine?limit=200");
    expect(
      (kept.body.items as Array<{ messageId: string | null }>).filter((q) =>
        batchIds.includes(q.messageId ?? ""),
      ),
    ).toEqual([]);
  });

  it("logs a redelivered message once and sends its receipt again", async () => {
    const jws = await signCompact(envelope(), hekou.signingKey, MESSAGE_TYP);
    const id = JSON.parse(Buffer.from(jws.split(".")[1] ?? "", "base64url").toString())
      .id as string;
    const receiptState = async () => (await laocai.gateway.queries.getMessage(id))?.receipts[0];
    await publishRaw(jws);
    await waitFor("receipt published", async () => {
      const receipt = await receiptState();
      return receipt?.publishedAt ? receipt : undefined;
    });
    // The sender did not get it and sends the same bytes again: the same receipt goes out again.
    await publishRaw(jws);
    await waitFor("receipt published again", async () => {
      const receipt = await receiptState();
      return receipt?.publishAttempts === 2 && receipt.publishedAt !== null ? receipt : undefined;
    });
    // The second copy is recognised: not logged again, not quarantined.
    const page = await call(laocai, "/v1/messages?direction=inbound&limit=200");
    expect((page.body.items as Array<{ id: string }>).filter((m) => m.id === id)).toHaveLength(1);
    const q = await call(laocai, "/v1/quarantine?limit=200");
    expect(
      (q.body.items as Array<{ messageId: string }>).filter((m) => m.messageId === id),
    ).toHaveLength(0);
  });

  it("quarantines a message with a broken signature and answers with a negative receipt", async () => {
    const e = envelope();
    const jws = await signCompact(e, hekou.signingKey, MESSAGE_TYP);
    const [h, p, s = ""] = jws.split(".");
    const i = Math.floor(s.length / 2);
    const digest = await publishRaw(
      `${h}.${p}.${s.slice(0, i)}${s[i] === "A" ? "B" : "A"}${s.slice(i + 1)}`,
    );
    const q = await quarantinedAt(laocai, digest);
    expect(q).toMatchObject({
      code: "signature_invalid",
      kind: "message",
      claimedFrom: HEKOU,
      messageId: e.id,
    });
    expect(q.receiptId).toBeTruthy();
    const atHekou = await negativeReceiptReachedHekou(e.id);
    expect(atHekou.code).toBe("message_unknown");
  });

  it("quarantines a message from an unknown sender without a receipt", async () => {
    const stranger = await makeParty("MM-MPF-MUSE");
    const digest = await publishRaw(
      await signCompact(envelope({ from: "MM-MPF-MUSE" }), stranger.signing, MESSAGE_TYP),
    );
    const q = await quarantinedAt(laocai, digest);
    expect(q).toMatchObject({ code: "sender_unknown", claimedFrom: null, receiptId: null });
  });

  it("quarantines a message signed with a key not registered for the sender, with a negative receipt", async () => {
    const stranger = await makeParty("MM-MPF-MUSE");
    const e = envelope();
    const digest = await publishRaw(await signCompact(e, stranger.signing, MESSAGE_TYP));
    const q = await quarantinedAt(laocai, digest);
    expect(q).toMatchObject({ code: "key_unknown", claimedFrom: HEKOU });
    expect(q.receiptId).toBeTruthy();
    await negativeReceiptReachedHekou(e.id);
  });

  it("quarantines an expired message with a negative receipt", async () => {
    const sentAt = new Date(Date.now() - 2 * 3_600_000);
    const e = envelope({}, sentAt);
    const digest = await publishRaw(await signCompact(e, hekou.signingKey, MESSAGE_TYP));
    const q = await quarantinedAt(laocai, digest);
    expect(q).toMatchObject({ code: "expired", claimedFrom: HEKOU });
    await negativeReceiptReachedHekou(e.id);
  });

  it("quarantines a misaddressed message with a negative receipt", async () => {
    const e = envelope({ to: ["TH-RTP-ATHD"] });
    const digest = await publishRaw(await signCompact(e, hekou.signingKey, MESSAGE_TYP));
    const q = await quarantinedAt(laocai, digest);
    expect(q).toMatchObject({ code: "misaddressed", claimedFrom: HEKOU });
    await negativeReceiptReachedHekou(e.id);
  });

  it("quarantines a schema-invalid body with a negative receipt that names the field, not the value", async () => {
    const e = envelope({ body: { ...CASE_NOTICE_BODY, victimName: "Pham Thi PRIVATE" } });
    const digest = await publishRaw(await signCompact(e, hekou.signingKey, MESSAGE_TYP));
    const q = await quarantinedAt(laocai, digest);
    expect(q).toMatchObject({ code: "schema_invalid", claimedFrom: HEKOU });
    expect(JSON.stringify(q)).not.toContain("PRIVATE");
    await negativeReceiptReachedHekou(e.id);
    // The quarantine keeps the exact bytes: their digest is the row's digest.
    expect(q.bytes).toBeGreaterThan(0);
  });

  it("quarantines bytes that are not a JWS at all, with no one to answer", async () => {
    const digest = await publishRaw("this is not a JWS");
    const q = await quarantinedAt(laocai, digest);
    expect(q).toMatchObject({ code: "malformed", claimedFrom: null, receiptId: null });
  });

  it("marks a delivery rejected when the partner's signed receipt rejects it", async () => {
    // Lao Cai records Hekou's key as revoked an hour ago: Hekou's next message is refused. A
    // revocation is never lifted, so this runs after every test that needs Hekou trusted.
    const party = laocai.gateway.registry.party(HEKOU);
    const [key] = (await laocai.gateway.parties.listKeys()).filter((k) => k.partyId === HEKOU);
    if (party === undefined || key === undefined)
      throw new Error("Hekou is not registered at Lao Cai");
    await laocai.gateway.registry.add(party, [
      { ...key, revokedAt: new Date(Date.now() - 3_600_000) },
    ]);
    {
      const res = await submit(hekou, {
        type: "case.notice",
        to: LAOCAI,
        caseRef: "CN-HEKOU-2026-0050",
        body: CASE_NOTICE_BODY,
      });
      const id = res.body.id as string;
      const done = await waitFor("final status", async () => {
        const { body } = await call(hekou, `/v1/messages/${id}`);
        return ["delivered", "rejected"].includes(body.status as string) ? body : undefined;
      });
      expect(done.status).toBe("rejected");
      const [receipt] = done.receipts as Array<{ status: string; errors: Array<{ code: string }> }>;
      expect(receipt?.status).toBe("rejected");
      expect(receipt?.errors.map((e) => e.code)).toEqual(["key_revoked"]);
      await laocai.gateway.registry.add(party, [{ ...key, revokedAt: null }]);
      expect(laocai.gateway.registry.keyById(key.kid)?.revokedAt).not.toBeNull();
    }
  });

  it("answers a schema-invalid submit with 422 problem+json and logs nothing", async () => {
    const before = await call(hekou, "/v1/messages?direction=outbound&limit=200");
    const res = await hekou.gateway.app.request("/v1/messages", {
      method: "POST",
      headers: { authorization: `Bearer ${hekou.token}`, "content-type": "application/json" },
      body: JSON.stringify({
        type: "case.notice",
        to: LAOCAI,
        caseRef: "CN-HEKOU-2026-0042",
        body: { incident: "Nguyen PRIVATE" },
      }),
    });
    expect(res.status).toBe(422);
    expect(res.headers.get("content-type")).toContain("application/problem+json");
    const problem = (await res.json()) as Record<string, unknown>;
    expect(problem.code).toBe("schema_invalid");
    expect(problem.type).toMatch(/errors\.md#schema_invalid$/);
    expect(JSON.stringify(problem)).not.toContain("PRIVATE");
    const after = await call(hekou, "/v1/messages?direction=outbound&limit=200");
    expect((after.body.items as unknown[]).length).toBe((before.body.items as unknown[]).length);
  });
});
