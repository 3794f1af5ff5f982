/**
 * The inbox over a real embedded PostgreSQL (PGlite) store, real keys and a clock the test moves:
 * batches, duplicates inside a batch, retries after expiry, and negative receipts that point at
 * the failing fields.
 */
import { randomUUID } from "node:crypto";
import { and, eq, isNull } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CaseBook } from "../../src/cases/case-book.ts";
import { loadSchemaRegistry } from "../../src/config/schema-files.ts";
import { Inbox } from "../../src/delivery/inbox.ts";
import type { DueReceipt, PromptPublisher, Signer, Store } from "../../src/delivery/ports.ts";
import { ReceiptIssuer } from "../../src/delivery/receipt-issuer.ts";
import { WakeSignal } from "../../src/delivery/wake-signal.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { buildReceipt } from "../../src/protocol/build-receipt.ts";
import { sha256Hex } from "../../src/protocol/digest.ts";
import { MESSAGE_TYP, RECEIPT_BATCH_TYP, RECEIPT_TYP } from "../../src/protocol/jws-profile.ts";
import { signCompact } from "../../src/protocol/sign.ts";
import type { ReceiptBatch } from "../../src/protocol/types.ts";
import { verifyInbound } from "../../src/protocol/verify-inbound.ts";
import { type Database, openDatabase } from "../../src/store/database.ts";
import { SqlPartyStore } from "../../src/store/party-store.ts";
import { ReadQueries } from "../../src/store/read-queries.ts";
import { deliveries, receiptBatches } from "../../src/store/schema.ts";
import { createStore } from "../../src/store/store.ts";
import {
  CASE_NOTICE_BODY,
  DEADLINES,
  envelopeAt,
  makeParty,
  reencodeEs256,
  resolverOf,
  signerOf,
  type TestParty,
} from "../helpers/protocol-fixtures.ts";

const SUBJECT = "liaison.inbox.VN-BGC-LAOCAI";
let database: Database;
let store: Store;
let queries: ReadQueries;
let hekou: TestParty;
let laocai: TestParty;
let thai: TestParty;
let now = new Date("2026-11-24T12:00:00.000Z");
let inbox: Inbox;
const wake = new WakeSignal();
const enc = new TextEncoder();

beforeAll(async () => {
  database = await openDatabase({ inMemory: true });
  store = createStore(database.db);
  queries = new ReadQueries(database.db);
  hekou = await makeParty("CN-MPS-HEKOU");
  laocai = await makeParty("VN-BGC-LAOCAI");
  thai = await makeParty("TH-RTP-ATHD", { alg: "ES256" });
  for (const p of [hekou, laocai, thai]) await registerParty(p, p === hekou);
  inbox = laocaiInbox(signerOf(laocai));
});

/**
 * Registers `p` (no keys: the tests resolve keys themselves); Hekou's record accepts batch
 * receipts, as the inboxes below that send it batches (`batchesTo`) are told.
 */
async function registerParty(p: TestParty, receiptBatches: boolean): Promise<void> {
  await new SqlPartyStore(database.db).register(
    {
      id: p.id,
      name: p.id,
      country: p.id.slice(0, 2),
      kind: "k",
      inboundSubject: `liaison.inbox.${p.id}`,
      ...(receiptBatches ? { receiptBatches } : {}),
    },
    [],
  );
}

/** Lao Cai's inbox on the test's store, signing its receipts with `signer`. */
function laocaiInbox(
  signer: Signer,
  extra: { batchesTo?: (party: string) => boolean; prompt?: PromptPublisher } = {},
): Inbox {
  const clock = () => now;
  return new Inbox({
    ...extra,
    self: laocai.id,
    store,
    keys: resolverOf(hekou, laocai, thai),
    schemas: loadSchemaRegistry(),
    receipts: new ReceiptIssuer(laocai.id, signer, clock, randomUUID),
    clock,
    clockSkewMs: 300_000,
    maxMessageBytes: 262_144,
    log: createLogger("silent"),
    wake,
    cases: new CaseBook({ keys: resolverOf(hekou, laocai, thai), policy: () => DEADLINES }),
    caseKeys: { decryptionKeys: () => [] },
  });
}

afterAll(async () => {
  await database?.close();
});

async function message(body: Record<string, unknown> = CASE_NOTICE_BODY) {
  const envelope = envelopeAt(hekou.id, [laocai.id], new Date(now.getTime() - 1000), { body });
  return {
    id: envelope.id,
    bytes: enc.encode(await signCompact(envelope, hekou.signing, MESSAGE_TYP)),
  };
}

const item = (data: Uint8Array) => ({ data, subject: SUBJECT });

describe("Inbox", () => {
  it("handles a mixed batch in one pass: accepted, duplicate inside the batch, quarantined", async () => {
    const a = await message();
    const b = await message();
    const outcomes = await inbox.handleBatch([
      item(a.bytes),
      item(b.bytes),
      item(a.bytes),
      item(enc.encode("garbage")),
    ]);
    expect(outcomes).toEqual([
      { outcome: "accepted", messageId: a.id },
      { outcome: "accepted", messageId: b.id },
      { outcome: "duplicate", messageId: a.id },
      { outcome: "quarantined", code: "malformed", receiptSent: false },
    ]);
    expect(
      (
        await store.inbound.find([
          { from: hekou.id, id: a.id },
          { from: hekou.id, id: b.id },
        ])
      ).size,
    ).toBe(2);
  });

  it("takes a message logged in an earlier batch as a duplicate: not logged or answered twice, its receipt sent again", async () => {
    const m = await message();
    expect(await inbox.handle(m.bytes, SUBJECT)).toEqual({ outcome: "accepted", messageId: m.id });
    const [first] = (await queries.getMessage(m.id))?.receipts ?? [];
    await store.receipts.markPublished([first?.id as string], now);
    const fresh = await message();
    expect(await inbox.handleBatch([item(m.bytes), item(fresh.bytes)])).toEqual([
      { outcome: "duplicate", messageId: m.id },
      { outcome: "accepted", messageId: fresh.id },
    ]);
    // One receipt for the message, the first, due to be published again.
    const receipts = (await queries.getMessage(m.id))?.receipts ?? [];
    expect(receipts.map((r) => r.id)).toEqual([first?.id]);
    const due = await store.receipts.claimUnpublished({ now, limit: 1000, leaseMs: 1000 });
    expect(due.map((d) => d.id)).toContain(first?.id);
  });

  it("signs no receipt again for a replay of logged messages once one batch of it was seen", async () => {
    // A consumer made again reads its stream from the start: batch after batch of messages
    // logged before. The first such batch is found out after its insert (its receipts were
    // signed for nothing); from the next on, the batch is looked up before anything is signed.
    let signatures = 0;
    const signer = signerOf(laocai);
    const counted = laocaiInbox({
      sign: (payload, typ) => {
        signatures += 1;
        return signer.sign(payload, typ);
      },
      canSignWith: signer.canSignWith,
    });
    const logged = [await message(), await message(), await message()];
    const replay = () => counted.handleBatch(logged.map((m) => item(m.bytes)));
    const duplicates = logged.map((m) => ({ outcome: "duplicate", messageId: m.id }));
    expect((await replay()).map((o) => o.outcome)).toEqual(["accepted", "accepted", "accepted"]);
    expect(signatures).toBe(3);
    expect(await replay()).toEqual(duplicates);
    expect(signatures).toBe(6);
    expect(await replay()).toEqual(duplicates);
    expect(signatures).toBe(6);
    // New messages again: signed once each, and the lookup first stops after this batch.
    const fresh = [await message(), await message()];
    expect(await counted.handleBatch(fresh.map((m) => item(m.bytes)))).toEqual(
      fresh.map((m) => ({ outcome: "accepted", messageId: m.id })),
    );
    expect(signatures).toBe(8);
    expect((await queries.getMessage(logged[0]?.id as string))?.receipts).toHaveLength(1);
  });

  it("answers a retry that arrives after the message expired with the earlier receipt, not a rejection", async () => {
    const m = await message();
    expect(await inbox.handle(m.bytes, SUBJECT)).toEqual({ outcome: "accepted", messageId: m.id });
    const saved = now;
    now = new Date(now.getTime() + 3 * 86_400_000);
    try {
      expect(await inbox.handle(m.bytes, SUBJECT)).toEqual({
        outcome: "duplicate",
        messageId: m.id,
      });
      const found = await queries.getMessage(m.id);
      expect(found?.receipts.map((r) => r.status)).toEqual(["accepted"]);
      // A message never seen before, equally late, is refused.
      const late = envelopeAt(hekou.id, [laocai.id], new Date(saved.getTime() - 1000));
      const outcome = await inbox.handle(
        enc.encode(await signCompact(late, hekou.signing, MESSAGE_TYP)),
        SUBJECT,
      );
      expect(outcome).toEqual({ outcome: "quarantined", code: "expired", receiptSent: true });
    } finally {
      now = saved;
    }
  });

  it("quarantines the same id with other bytes as duplicate_conflict", async () => {
    const first = envelopeAt(hekou.id, [laocai.id], new Date(now.getTime() - 1000));
    const second = { ...first, caseRef: "CN-HEKOU-2026-0077" };
    expect(
      (
        await inbox.handle(
          enc.encode(await signCompact(first, hekou.signing, MESSAGE_TYP)),
          SUBJECT,
        )
      ).outcome,
    ).toBe("accepted");
    const outcome = await inbox.handle(
      enc.encode(await signCompact(second, hekou.signing, MESSAGE_TYP)),
      SUBJECT,
    );
    expect(outcome).toEqual({
      outcome: "quarantined",
      code: "duplicate_conflict",
      receiptSent: true,
    });
  });

  it("sends a negative receipt with one error per invalid field, each with its JSON pointer", async () => {
    const m = await message({ ...CASE_NOTICE_BODY, victimName: "Lo PRIVATE", extraField: 1 });
    expect(await inbox.handle(m.bytes, SUBJECT)).toEqual({
      outcome: "quarantined",
      code: "schema_invalid",
      receiptSent: true,
    });
    const [row] = (await queries.listQuarantine({ limit: 200 })).filter(
      (q) => q.messageId === m.id,
    );
    const due = await store.receipts.claimUnpublished({
      now: new Date(now.getTime() + 86_400_000),
      limit: 500,
      leaseMs: 1000,
    });
    const receipt = due.find((r) => r.id === row?.receiptId);
    if (receipt === undefined) throw new Error("no negative receipt queued");
    const payload = JSON.parse(
      Buffer.from(receipt.jws.split(".")[1] ?? "", "base64url").toString(),
    );
    expect(payload.status).toBe("rejected");
    expect(payload.errors.length).toBeGreaterThanOrEqual(1);
    for (const e of payload.errors) {
      expect(e.code).toBe("schema_invalid");
      expect(typeof e.path).toBe("string");
    }
    expect(receipt.jws).not.toContain(Buffer.from("PRIVATE").toString("base64url").slice(0, 6));
    expect(JSON.stringify(payload)).not.toContain("PRIVATE");
  });

  it("answers the same rejected bytes once, and sends that answer again when they come back", async () => {
    const m = await message({ ...CASE_NOTICE_BODY, unexpected: true });
    expect(await inbox.handle(m.bytes, SUBJECT)).toEqual({
      outcome: "quarantined",
      code: "schema_invalid",
      receiptSent: true,
    });
    const answer = (await queries.listQuarantine({ limit: 200 })).find(
      (q) => q.messageId === m.id,
    )?.receiptId;
    if (answer === undefined || answer === null) throw new Error("no negative receipt");
    const claim = () =>
      store.receipts.claimUnpublished({
        now: new Date(now.getTime() + 86_400_000),
        limit: 1000,
        leaseMs: 1,
      });
    expect((await claim()).map((r) => r.id)).toContain(answer);
    await store.receipts.markPublished([answer], now);
    expect(await inbox.handle(m.bytes, SUBJECT)).toEqual({
      outcome: "quarantined",
      code: "schema_invalid",
      receiptSent: false,
    });
    const kept = (await queries.listQuarantine({ limit: 200 })).filter((q) => q.messageId === m.id);
    expect(kept).toHaveLength(1);
    // The earlier answer is due again, and no second answer was written.
    const answers = (await claim()).filter(
      (r) =>
        JSON.parse(Buffer.from(r.jws.split(".")[1] ?? "", "base64url").toString()).messageId ===
        m.id,
    );
    expect(answers.map((r) => r.id)).toEqual([answer]);
  });

  it("never answers bytes that claim to come from this gateway itself", async () => {
    // A forgery in our own name (signed with another party's key): kept, but not answered,
    // since the answer would be addressed to ourselves.
    const forged = envelopeAt(laocai.id, [laocai.id], new Date(now.getTime() - 1000));
    expect(
      await inbox.handle(
        enc.encode(await signCompact(forged, hekou.signing, MESSAGE_TYP)),
        SUBJECT,
      ),
    ).toEqual({ outcome: "quarantined", code: "key_unknown", receiptSent: false });
    const [row] = (await queries.listQuarantine({ limit: 500 })).filter(
      (q) => q.messageId === forged.id,
    );
    expect(row).toMatchObject({ claimedFrom: laocai.id, receiptId: null });
  });

  it("keeps bytes that could not be processed as processing_failed, without an answer", async () => {
    const bytes = enc.encode(`unprocessable ${randomUUID()}`);
    await inbox.quarantineUnprocessable({ data: bytes, subject: SUBJECT }, 5);
    const [row] = (await queries.listQuarantine({ limit: 500 })).filter(
      (q) => q.digest === sha256Hex(bytes),
    );
    expect(row).toMatchObject({
      code: "processing_failed",
      detail: "processing failed on 5 deliveries",
      receiptId: null,
    });
    expect(Array.from(row?.raw ?? [])).toEqual(Array.from(bytes));
    // The same bytes again add nothing.
    await inbox.quarantineUnprocessable({ data: bytes, subject: SUBJECT }, 6);
    expect(
      (await queries.listQuarantine({ limit: 500 })).filter((q) => q.digest === sha256Hex(bytes)),
    ).toHaveLength(1);
  });

  it("takes the same id from two senders as two messages", async () => {
    const fromHekou = envelopeAt(hekou.id, [laocai.id], new Date(now.getTime() - 1000));
    const fromThai = {
      ...envelopeAt(thai.id, [laocai.id], new Date(now.getTime() - 1000)),
      id: fromHekou.id,
    };
    const outcomes = await inbox.handleBatch([
      item(enc.encode(await signCompact(fromThai, thai.signing, MESSAGE_TYP))),
      item(enc.encode(await signCompact(fromHekou, hekou.signing, MESSAGE_TYP))),
    ]);
    expect(outcomes.map((o) => o.outcome)).toEqual(["accepted", "accepted"]);
  });

  it("answers the same content under another ECDSA signature encoding with a receipt naming those bytes", async () => {
    const envelope = envelopeAt(thai.id, [laocai.id], new Date(now.getTime() - 1000));
    const jws = await signCompact(envelope, thai.signing, MESSAGE_TYP);
    const variant = reencodeEs256(jws);

    expect(await inbox.handle(enc.encode(variant), SUBJECT)).toEqual({
      outcome: "accepted",
      messageId: envelope.id,
    });
    // The sender's own bytes arrive later: not a conflict, and answered with their own digest.
    expect(await inbox.handle(enc.encode(jws), SUBJECT)).toEqual({
      outcome: "duplicate",
      messageId: envelope.id,
    });
    const due = await store.receipts.claimUnpublished({
      now: new Date(now.getTime() + 86_400_000),
      limit: 1000,
      leaseMs: 1,
    });
    const digests = due
      .filter((r) => r.toParty === thai.id)
      .map((r) => JSON.parse(Buffer.from(r.jws.split(".")[1] ?? "", "base64url").toString()))
      .filter((r) => r.messageId === envelope.id)
      .map((r) => r.digest.value);
    expect(digests.sort()).toEqual([sha256Hex(jws), sha256Hex(variant)].sort());
  });

  it("closes our delivery with a partner's receipt for the exact bytes, and quarantines receipts that match nothing we sent", async () => {
    const sent = envelopeAt(laocai.id, [hekou.id], new Date(now.getTime() - 2000));
    const jws = await signCompact(sent, laocai.signing, MESSAGE_TYP);
    await store.outbound.insert([{ envelope: sent, jws, digest: sha256Hex(jws), kid: "k" }]);
    const receiptFrom = async (messageId: string, digest: string, signer = hekou) => {
      const receipt = buildReceipt(
        { to: laocai.id, messageId, digest, errors: [] },
        { self: signer.id, clock: () => now, ids: randomUUID },
      );
      return enc.encode(await signCompact(receipt, signer.signing, RECEIPT_TYP));
    };
    wake.take();
    const outcomes = await inbox.handleBatch([
      item(await receiptFrom(randomUUID(), sha256Hex(jws))),
      // Thai never received this message: its receipt for it answers nothing we sent.
      item(await receiptFrom(sent.id, sha256Hex(jws), thai)),
      item(await receiptFrom(sent.id, "0".repeat(64))),
      item(await receiptFrom(sent.id, sha256Hex(jws))),
    ]);
    expect(outcomes).toEqual([
      { outcome: "quarantined", code: "message_unknown", receiptSent: false },
      { outcome: "quarantined", code: "message_unknown", receiptSent: false },
      { outcome: "quarantined", code: "digest_mismatch", receiptSent: false },
      { outcome: "receipt", messageId: sent.id, status: "accepted", duplicate: false },
    ]);
    // No answer to a receipt, so nothing for the dispatcher to send.
    expect(wake.take()).toBe(false);
    const found = await queries.getMessage(sent.id);
    expect(found?.deliveries.map((d) => d.status)).toEqual(["delivered"]);
    expect(found?.receipts).toHaveLength(1);
  });

  it("keeps a receipt that reuses a logged receipt's id with other content, and lets the first stand", async () => {
    const sent = envelopeAt(laocai.id, [hekou.id], new Date(now.getTime() - 2000));
    const jws = await signCompact(sent, laocai.signing, MESSAGE_TYP);
    await store.outbound.insert([{ envelope: sent, jws, digest: sha256Hex(jws), kid: "k" }]);
    const id = randomUUID();
    const signed = async (status: "accepted" | "rejected") => {
      const receipt = {
        ...buildReceipt(
          {
            to: laocai.id,
            messageId: sent.id,
            digest: sha256Hex(jws),
            errors: status === "accepted" ? [] : [{ code: "schema_invalid" as const }],
          },
          { self: hekou.id, clock: () => now, ids: () => id },
        ),
      };
      return enc.encode(await signCompact(receipt, hekou.signing, RECEIPT_TYP));
    };
    const accepted = await signed("accepted");
    const rejected = await signed("rejected");
    // In one batch, and again later: the first logged stands, the others are kept, unanswered.
    expect(await inbox.handleBatch([item(accepted), item(rejected), item(accepted)])).toEqual([
      { outcome: "receipt", messageId: sent.id, status: "accepted", duplicate: false },
      { outcome: "quarantined", code: "duplicate_conflict", receiptSent: false },
      { outcome: "receipt", messageId: sent.id, status: "accepted", duplicate: true },
    ]);
    expect(await inbox.handle(rejected, SUBJECT)).toEqual({
      outcome: "quarantined",
      code: "duplicate_conflict",
      receiptSent: false,
    });
    const found = await queries.getMessage(sent.id);
    expect(found?.deliveries.map((d) => d.status)).toEqual(["delivered"]);
    const kept = (await queries.listQuarantine({ limit: 500 })).filter(
      (q) => q.digest === sha256Hex(rejected),
    );
    expect(kept).toHaveLength(1);
  });

  it("takes a receipt under another ECDSA signature encoding as the same receipt, not a conflict", async () => {
    const sent = envelopeAt(laocai.id, [thai.id], new Date(now.getTime() - 2000));
    const jws = await signCompact(sent, laocai.signing, MESSAGE_TYP);
    await store.outbound.insert([{ envelope: sent, jws, digest: sha256Hex(jws), kid: "k" }]);
    const receipt = buildReceipt(
      { to: laocai.id, messageId: sent.id, digest: sha256Hex(jws), errors: [] },
      { self: thai.id, clock: () => now, ids: randomUUID },
    );
    const original = await signCompact(receipt, thai.signing, RECEIPT_TYP);
    const variant = reencodeEs256(original);
    expect(await inbox.handle(enc.encode(original), SUBJECT)).toMatchObject({
      outcome: "receipt",
      duplicate: false,
    });
    expect(await inbox.handle(enc.encode(variant), SUBJECT)).toMatchObject({
      outcome: "receipt",
      duplicate: true,
    });
  });

  it("raises the wake signal when a receipt of ours waits to be sent", async () => {
    wake.take();
    const m = await message();
    await inbox.handle(m.bytes, SUBJECT);
    expect(wake.take()).toBe(true);
  });

  it("raises the wake signal when quarantined bytes come again and their earlier answer is queued again", async () => {
    const m = await message({ ...CASE_NOTICE_BODY, extraField: 1 });
    expect(await inbox.handle(m.bytes, SUBJECT)).toMatchObject({ receiptSent: true });
    wake.take();
    expect(await inbox.handle(m.bytes, SUBJECT)).toEqual({
      outcome: "quarantined",
      code: "schema_invalid",
      receiptSent: false,
    });
    expect(wake.take()).toBe(true);
  });
});

describe("Inbox, batch receipts received (docs/protocol.md, Batch receipts)", () => {
  /** `n` messages Lao Cai sent to Hekou, logged with their deliveries (queued). */
  async function sentToHekou(n: number, to = hekou.id) {
    const sent = [];
    for (let i = 0; i < n; i++) {
      const envelope = envelopeAt(laocai.id, [to], new Date(now.getTime() - 2000));
      const jws = await signCompact(envelope, laocai.signing, MESSAGE_TYP);
      sent.push({ envelope, jws, digest: sha256Hex(jws), kid: "k" });
    }
    await store.outbound.insert(sent);
    return sent;
  }

  /** A batch receipt `signer` signs, accepting these (message id, digest) pairs. */
  async function batchFrom(
    accepted: Array<{ messageId: string; digest: string }>,
    overrides: Partial<ReceiptBatch> = {},
    signer: TestParty = hekou,
  ) {
    const batch: ReceiptBatch = {
      id: randomUUID(),
      type: "receipt.batch",
      schemaVersion: 1,
      from: signer.id,
      to: laocai.id,
      sentAt: now.toISOString(),
      accepted: accepted.map((a) => ({
        messageId: a.messageId,
        digest: { alg: "sha-256", value: a.digest },
      })),
      ...overrides,
    };
    const jws = await signCompact(batch, signer.signing, RECEIPT_BATCH_TYP);
    return { batch, jws, bytes: enc.encode(jws) };
  }

  const entriesOf = (sent: Array<{ envelope: { id: string }; digest: string }>) =>
    sent.map((m) => ({ messageId: m.envelope.id, digest: m.digest }));
  const statuses = async (sent: Array<{ envelope: { id: string } }>) =>
    Promise.all(
      sent.map(async (m) =>
        (await queries.getMessage(m.envelope.id))?.deliveries.map((d) => d.status).join(),
      ),
    );

  it("closes every delivery it names, logs the batch once and shows it as each message's receipt", async () => {
    const sent = await sentToHekou(3);
    const { batch, jws, bytes } = await batchFrom(entriesOf(sent));
    wake.take();
    expect(await inbox.handle(bytes, SUBJECT)).toEqual({
      outcome: "receipt-batch",
      batchId: batch.id,
      entries: 3,
      duplicate: false,
    });
    // Receipts are never answered.
    expect(wake.take()).toBe(false);
    expect(await statuses(sent)).toEqual(["delivered", "delivered", "delivered"]);
    for (const m of sent) {
      const found = await queries.getMessage(m.envelope.id);
      expect(found?.deliveries[0]?.receiptId).toBe(batch.id);
      expect(found?.receipts).toEqual([
        expect.objectContaining({
          id: batch.id,
          batchId: batch.id,
          direction: "received",
          fromParty: hekou.id,
          status: "accepted",
          errors: [],
          jws,
          digest: sha256Hex(jws),
          messageDigest: m.digest,
        }),
      ]);
    }
    expect(await store.receipts.findReceivedBatch(batch.id)).toEqual({
      digest: sha256Hex(jws),
      jws,
    });
  });

  it("is all or nothing: one entry naming nothing we sent, or another digest, closes nothing and is kept, unanswered", async () => {
    const sent = await sentToHekou(2);
    const unknown = await batchFrom([
      ...entriesOf(sent),
      { messageId: randomUUID(), digest: "a".repeat(64) },
    ]);
    const other = await batchFrom([
      ...entriesOf(sent).slice(0, 1),
      { messageId: sent[1]?.envelope.id as string, digest: "0".repeat(64) },
    ]);
    // Thai was sent none of these: its batch naming them matches nothing it was sent.
    const thais = await batchFrom(entriesOf(sent), { from: thai.id }, thai);
    wake.take();
    expect(
      await inbox.handleBatch([item(unknown.bytes), item(other.bytes), item(thais.bytes)]),
    ).toEqual([
      { outcome: "quarantined", code: "message_unknown", receiptSent: false },
      { outcome: "quarantined", code: "digest_mismatch", receiptSent: false },
      { outcome: "quarantined", code: "message_unknown", receiptSent: false },
    ]);
    expect(wake.take()).toBe(false);
    expect(await statuses(sent)).toEqual(["queued", "queued"]);
    for (const b of [unknown, other, thais]) {
      expect(await store.receipts.findReceivedBatch(b.batch.id)).toBeUndefined();
    }
    const kept = (await queries.listQuarantine({ limit: 1000 })).filter((q) =>
      [unknown, other, thais].some((b) => sha256Hex(b.jws) === q.digest),
    );
    expect(kept.map((q) => [q.kind, q.messageId, q.receiptId])).toEqual([
      ["receipt", unknown.batch.id, null],
      ["receipt", other.batch.id, null],
      ["receipt", thais.batch.id, null],
    ]);
    for (const m of sent) expect((await queries.getMessage(m.envelope.id))?.receipts).toEqual([]);
  });

  it("changes nothing when replayed, and keeps other content under a logged batch id as duplicate_conflict", async () => {
    const sent = await sentToHekou(2);
    const first = await batchFrom(entriesOf(sent));
    expect(await inbox.handle(first.bytes, SUBJECT)).toMatchObject({ duplicate: false });
    // The same bytes again (in one inbound batch with a first copy, and later): nothing new.
    const again = await inbox.handleBatch([item(first.bytes)]);
    expect(again).toEqual([
      { outcome: "receipt-batch", batchId: first.batch.id, entries: 2, duplicate: true },
    ]);
    // Another message, answered under the first batch's id: other signed content.
    const [third] = await sentToHekou(1);
    const conflicting = await batchFrom(entriesOf(third === undefined ? [] : [third]), {
      id: first.batch.id,
    });
    expect(await inbox.handle(conflicting.bytes, SUBJECT)).toEqual({
      outcome: "quarantined",
      code: "duplicate_conflict",
      receiptSent: false,
    });
    expect(await statuses(third === undefined ? [] : [third])).toEqual(["queued"]);
    expect(await store.receipts.findReceivedBatch(first.batch.id)).toEqual({
      digest: sha256Hex(first.jws),
      jws: first.jws,
    });
    for (const m of sent) {
      expect((await queries.getMessage(m.envelope.id))?.receipts.map((r) => r.id)).toEqual([
        first.batch.id,
      ]);
    }
  });

  it("takes a batch under another ECDSA signature encoding as the same batch, not a conflict", async () => {
    const sent = await sentToHekou(1, thai.id);
    const original = await batchFrom(entriesOf(sent), { from: thai.id }, thai);
    const variant = enc.encode(reencodeEs256(original.jws));
    expect(await inbox.handle(original.bytes, SUBJECT)).toMatchObject({ duplicate: false });
    expect(await inbox.handle(variant, SUBJECT)).toMatchObject({
      outcome: "receipt-batch",
      duplicate: true,
    });
  });

  it("leaves a delivery closed before as it was, and a later single receipt for it changes nothing", async () => {
    const sent = await sentToHekou(2);
    const [done, open] = sent as [(typeof sent)[0], (typeof sent)[0]];
    const single = buildReceipt(
      {
        to: laocai.id,
        messageId: done.envelope.id,
        digest: done.digest,
        errors: [{ code: "schema_invalid" }],
      },
      { self: hekou.id, clock: () => now, ids: randomUUID },
    );
    await inbox.handle(enc.encode(await signCompact(single, hekou.signing, RECEIPT_TYP)), SUBJECT);
    expect(await statuses(sent)).toEqual(["rejected", "queued"]);
    const batch = await batchFrom(entriesOf(sent));
    expect(await inbox.handle(batch.bytes, SUBJECT)).toMatchObject({ duplicate: false });
    expect(await statuses(sent)).toEqual(["rejected", "delivered"]);
    const later = buildReceipt(
      {
        to: laocai.id,
        messageId: open.envelope.id,
        digest: open.digest,
        errors: [{ code: "expired" }],
      },
      { self: hekou.id, clock: () => now, ids: randomUUID },
    );
    await inbox.handle(enc.encode(await signCompact(later, hekou.signing, RECEIPT_TYP)), SUBJECT);
    expect(await statuses(sent)).toEqual(["rejected", "delivered"]);
  });

  it("closes a delivery that had failed, as an accepted receipt would", async () => {
    const sent = await sentToHekou(2);
    const [failed] = sent as [(typeof sent)[0]];
    await database.db
      .update(deliveries)
      .set({ status: "failed" })
      .where(eq(deliveries.messageId, failed.envelope.id));
    expect(await statuses(sent)).toEqual(["failed", "queued"]);
    const batch = await batchFrom(entriesOf(sent));
    expect(await inbox.handle(batch.bytes, SUBJECT)).toMatchObject({ duplicate: false });
    expect(await statuses(sent)).toEqual(["delivered", "delivered"]);
    expect((await queries.getMessage(failed.envelope.id))?.deliveries[0]?.receiptId).toBe(
      batch.batch.id,
    );
  });

  it("keeps a single receipt whose id is taken by an entry of a batch received as duplicate_conflict, never drops it", async () => {
    const sent = await sentToHekou(2);
    const [inBatch, other] = sent as [(typeof sent)[0], (typeof sent)[0]];
    const batch = await batchFrom(entriesOf([inBatch]));
    expect(await inbox.handle(batch.bytes, SUBJECT)).toMatchObject({ duplicate: false });
    // The entry row's id (src/store/receipt-log.ts entryId): the first 128 bits of the SHA-256
    // of the batch id and the message id.
    const hex = sha256Hex(`${batch.batch.id} ${inBatch.envelope.id}`).slice(0, 32);
    const taken = [8, 12, 16, 20].reduce(
      (id, at, k) => `${id.slice(0, at + k)}-${id.slice(at + k)}`,
      hex,
    );
    const single = buildReceipt(
      { to: laocai.id, messageId: other.envelope.id, digest: other.digest, errors: [] },
      { self: hekou.id, clock: () => now, ids: () => taken },
    );
    const jws = await signCompact(single, hekou.signing, RECEIPT_TYP);
    // Alone (one statement) and with another receipt for the same delivery (the transaction).
    const again = buildReceipt(
      { to: laocai.id, messageId: other.envelope.id, digest: other.digest, errors: [] },
      { self: hekou.id, clock: () => now, ids: randomUUID },
    );
    const alsoJws = await signCompact(again, hekou.signing, RECEIPT_TYP);
    expect(await inbox.handle(enc.encode(jws), SUBJECT)).toEqual({
      outcome: "quarantined",
      code: "duplicate_conflict",
      receiptSent: false,
    });
    expect(await statuses([other])).toEqual(["queued"]);
    const [first, second] = await inbox.handleBatch([
      item(enc.encode(jws)),
      item(enc.encode(alsoJws)),
    ]);
    expect(first).toEqual({
      outcome: "quarantined",
      code: "duplicate_conflict",
      receiptSent: false,
    });
    expect(second).toMatchObject({ outcome: "receipt", duplicate: false });
    const kept = (await queries.listQuarantine({ limit: 1000 })).filter(
      (q) => q.digest === sha256Hex(jws),
    );
    // The same bytes kept twice are one quarantine row.
    expect(kept.map((q) => [q.kind, q.code])).toEqual([["receipt", "duplicate_conflict"]]);
  });

  it("refuses a batch not addressed to us, one naming a message twice, one failing its schema: kept, unanswered", async () => {
    const sent = await sentToHekou(1);
    const [entry] = entriesOf(sent);
    const misaddressed = await batchFrom(entriesOf(sent), { to: thai.id });
    const twice = await batchFrom(entry === undefined ? [] : [entry, entry]);
    const empty = await batchFrom([]);
    expect(
      await inbox.handleBatch([item(misaddressed.bytes), item(twice.bytes), item(empty.bytes)]),
    ).toEqual([
      { outcome: "quarantined", code: "misaddressed", receiptSent: false },
      { outcome: "quarantined", code: "envelope_invalid", receiptSent: false },
      { outcome: "quarantined", code: "envelope_invalid", receiptSent: false },
    ]);
    expect(await statuses(sent)).toEqual(["queued"]);
  });
});

describe("Inbox, batch receipts issued to a sender that accepts them", () => {
  /** The prompt path, recording what each commit handed it. */
  function recorder() {
    const handed: Array<Array<Omit<DueReceipt, "subject">>> = [];
    const prompt: PromptPublisher = {
      deliveryLease: () => ({ until: new Date(now.getTime() + 30_000) }),
      receiptLease: () => ({ until: new Date(now.getTime() + 30_000) }),
      sendDeliveries: () => {},
      sendReceipts: (due) => handed.push(due),
    };
    return { handed, prompt };
  }
  const payloadOf = (jws: string) =>
    JSON.parse(Buffer.from(jws.split(".")[1] ?? "", "base64url").toString());
  const typOf = (jws: string) =>
    JSON.parse(Buffer.from(jws.split(".")[0] ?? "", "base64url").toString()).typ;

  /** A message from `from` (a registered party) to Lao Cai. */
  async function messageFrom(from: TestParty, overrides: Record<string, unknown> = {}) {
    const envelope = {
      ...envelopeAt(from.id, [laocai.id], new Date(now.getTime() - 1000)),
      ...overrides,
    };
    const jws = await signCompact(envelope, from.signing, MESSAGE_TYP);
    return { id: envelope.id, jws, digest: sha256Hex(jws), bytes: enc.encode(jws) };
  }

  it("answers the accepted messages of one batch with one signed batch receipt; a sender that does not accept them gets a receipt each", async () => {
    const { handed, prompt } = recorder();
    const batching = laocaiInbox(signerOf(laocai), {
      batchesTo: (party) => party === hekou.id,
      prompt,
    });
    const fromHekou = [
      await messageFrom(hekou),
      await messageFrom(hekou),
      await messageFrom(hekou),
    ];
    const fromThai = [await messageFrom(thai), await messageFrom(thai)];
    const outcomes = await batching.handleBatch(
      [fromHekou[0], fromThai[0], fromHekou[1], fromThai[1], fromHekou[2]].map((m) =>
        item((m as { bytes: Uint8Array }).bytes),
      ),
    );
    expect(outcomes.map((o) => o.outcome)).toEqual(Array(5).fill("accepted"));
    // One commit, handed to the prompt path: two receipts for Thai, one batch for Hekou.
    expect(handed).toHaveLength(1);
    const [due = []] = handed;
    const batches = due.filter((d) => d.batch === true);
    const singles = due.filter((d) => d.batch !== true);
    expect(batches).toHaveLength(1);
    expect(singles.map((d) => [d.toParty, typOf(d.jws), payloadOf(d.jws).messageId])).toEqual(
      fromThai.map((m) => [thai.id, RECEIPT_TYP, m.id]),
    );
    const [batch] = batches as [Omit<DueReceipt, "subject">];
    expect(batch.digest).toBe(sha256Hex(batch.jws));
    expect(typOf(batch.jws)).toBe(RECEIPT_BATCH_TYP);
    expect(payloadOf(batch.jws)).toEqual({
      id: batch.id,
      type: "receipt.batch",
      schemaVersion: 1,
      from: laocai.id,
      to: hekou.id,
      sentAt: now.toISOString(),
      accepted: fromHekou.map((m) => ({
        messageId: m.id,
        digest: { alg: "sha-256", value: m.digest },
      })),
    });
    // Hekou can verify it as any receipt: steps 1-23, then B1 and B2.
    const hekouSees = await verifyInbound(enc.encode(batch.jws), {
      self: hekou.id,
      keys: resolverOf(hekou, laocai, thai),
      schemas: loadSchemaRegistry(),
      now,
      clockSkewMs: 0,
      maxBytes: 262_144,
      decryptionKeys: [],
    });
    expect(hekouSees).toMatchObject({ ok: true, kind: "receipt-batch" });
    // Each message finds it as its answer, leased to the prompt path like a receipt.
    for (const m of fromHekou) {
      expect((await queries.getMessage(m.id))?.receipts).toEqual([
        expect.objectContaining({
          id: batch.id,
          batchId: batch.id,
          toParty: hekou.id,
          messageDigest: m.digest,
          jws: batch.jws,
          publishAttempts: 1,
          publishedAt: null,
        }),
      ]);
    }
  });

  it("sends that batch again, the same bytes, for a redelivery of one of its messages", async () => {
    const { handed, prompt } = recorder();
    const batching = laocaiInbox(signerOf(laocai), { batchesTo: () => true, prompt });
    const [a, b] = [await messageFrom(hekou), await messageFrom(hekou)];
    await batching.handleBatch([item(a.bytes), item(b.bytes)]);
    const [batch] = handed.flat();
    if (batch === undefined) throw new Error("no batch handed over");
    await store.receipts.markPublished([batch.id], now);
    const fresh = await messageFrom(hekou);
    // A redelivery of b, with a new message: b's batch goes out again; the new one gets its own.
    wake.take();
    expect(await batching.handleBatch([item(b.bytes), item(fresh.bytes)])).toEqual([
      { outcome: "duplicate", messageId: b.id },
      { outcome: "accepted", messageId: fresh.id },
    ]);
    expect(wake.take()).toBe(true);
    const later = new Date(now.getTime() + 60_000);
    const due = await store.receipts.claimUnpublished({ now: later, limit: 1000, leaseMs: 1000 });
    expect(due.filter((d) => d.id === batch.id)).toEqual([
      { ...batch, subject: `liaison.inbox.${hekou.id}`, batch: true },
    ]);
    // The new message's batch accepts it alone: b was logged before, its answer is b's batch.
    const second = handed.flat().find((d) => d.id !== batch.id);
    expect(
      payloadOf(second?.jws ?? "").accepted.map((e: { messageId: string }) => e.messageId),
    ).toEqual([fresh.id]);
    expect((await queries.getMessage(b.id))?.receipts.map((r) => r.id)).toEqual([batch.id]);
    expect((await queries.getMessage(fresh.id))?.receipts.map((r) => r.id)).toEqual([second?.id]);
  });

  it("never sends a batch to a sender that withdrew receiptBatches: a redelivery of a message its batch answered gets a single accepted receipt, the batch is withheld", async () => {
    const { handed, prompt } = recorder();
    const batching = laocaiInbox(signerOf(laocai), { batchesTo: () => true, prompt });
    const [a, b, c] = [
      await messageFrom(hekou),
      await messageFrom(hekou),
      await messageFrom(hekou),
    ];
    await batching.handleBatch([item(a.bytes), item(b.bytes), item(c.bytes)]);
    const [batch] = handed.flat();
    if (batch === undefined) throw new Error("no batch handed over");
    await store.receipts.markPublished([batch.id], now);
    // A redelivery of a while Hekou still accepts batches queues the batch again (unpublished).
    expect(await batching.handleBatch([item(a.bytes)])).toEqual([
      { outcome: "duplicate", messageId: a.id },
    ]);
    const depth = async () => (await queries.metricsSnapshot(now)).outbox.receipts.depth;
    const queued = await depth();
    // Every batch to Hekou waiting to be published (this one, and those earlier tests left).
    const toHekou = await database.db
      .select({ id: receiptBatches.id })
      .from(receiptBatches)
      .where(
        and(
          eq(receiptBatches.direction, "issued"),
          eq(receiptBatches.toParty, hekou.id),
          isNull(receiptBatches.publishedAt),
          isNull(receiptBatches.supersededBy),
        ),
      );
    expect(toHekou.map((r) => r.id)).toContain(batch.id);
    // Hekou registers its party document again, without receiptBatches.
    await registerParty(hekou, false);
    try {
      // They are withheld: not counted as waiting to be published either.
      expect(await depth()).toBe(queued - toHekou.length);
      const single = laocaiInbox(signerOf(laocai), { batchesTo: () => false, prompt });
      // b again, twice (the second time in another batch of the transport).
      expect(await single.handleBatch([item(b.bytes)])).toEqual([
        { outcome: "duplicate", messageId: b.id },
      ]);
      expect(await single.handleBatch([item(b.bytes)])).toEqual([
        { outcome: "duplicate", messageId: b.id },
      ]);
      const later = new Date(now.getTime() + 60_000);
      const due = await store.receipts.claimUnpublished({ now: later, limit: 1000, leaseMs: 1000 });
      // No batch goes out to Hekou: the one queued again for a is withheld; b is answered by
      // one single accepted receipt for its digest, signed once and queued again.
      expect(due.filter((d) => d.batch === true)).toEqual([]);
      const toB = due.filter((d) => payloadOf(d.jws).messageId === b.id);
      expect(toB).toHaveLength(1);
      const [receipt] = toB as [DueReceipt];
      expect(typOf(receipt.jws)).toBe(RECEIPT_TYP);
      expect(receipt.toParty).toBe(hekou.id);
      expect(payloadOf(receipt.jws)).toMatchObject({
        from: laocai.id,
        to: hekou.id,
        messageId: b.id,
        status: "accepted",
        digest: { alg: "sha-256", value: b.digest },
      });
      expect((await queries.getMessage(b.id))?.receipts.map((r) => r.id).sort()).toEqual(
        [batch.id, receipt.id].sort(),
      );
    } finally {
      await registerParty(hekou, true);
    }
  });

  it("never accepts in a batch bytes another replica logged under the same id first: the batch names only what this commit logged", async () => {
    const { handed, prompt } = recorder();
    const batching = laocaiInbox(signerOf(laocai), { batchesTo: () => true, prompt });
    // Another replica logged Hekou's first message with other content, and Thai's first under
    // the other encoding of its ECDSA signature, before these copies arrive here.
    const [hekouFirst, hekouNew] = [await messageFrom(hekou), await messageFrom(hekou)];
    const [thaiFirst, thaiNew] = [await messageFrom(thai), await messageFrom(thai)];
    const otherContent = envelopeAt(hekou.id, [laocai.id], new Date(now.getTime() - 2000), {
      id: hekouFirst.id,
    });
    const otherJws = await signCompact(otherContent, hekou.signing, MESSAGE_TYP);
    const variantJws = reencodeEs256(thaiFirst.jws);
    const thaiEnvelope = JSON.parse(
      Buffer.from(thaiFirst.jws.split(".")[1] ?? "", "base64url").toString(),
    );
    await store.inbound.insert([
      { envelope: otherContent, jws: otherJws, digest: sha256Hex(otherJws), kid: "k" },
      { envelope: thaiEnvelope, jws: variantJws, digest: sha256Hex(variantJws), kid: "k" },
    ]);
    const outcomes = await batching.handleBatch(
      [hekouFirst, hekouNew, thaiFirst, thaiNew].map((m) => item(m.bytes)),
    );
    expect(outcomes).toEqual([
      expect.objectContaining({ outcome: "quarantined", code: "duplicate_conflict" }),
      { outcome: "accepted", messageId: hekouNew.id },
      { outcome: "duplicate", messageId: thaiFirst.id },
      { outcome: "accepted", messageId: thaiNew.id },
    ]);
    const batches = handed.flat().filter((d) => d.batch === true);
    expect(
      batches
        .map((d) => [
          d.toParty,
          payloadOf(d.jws).accepted.map((e: { messageId: string; digest: { value: string } }) => [
            e.messageId,
            e.digest.value,
          ]),
        ])
        .sort(),
    ).toEqual(
      [
        [hekou.id, [[hekouNew.id, hekouNew.digest]]],
        [thai.id, [[thaiNew.id, thaiNew.digest]]],
      ].sort(),
    );
    // Thai's copy under the other encoding gets a single receipt naming its own bytes.
    expect(
      ((await queries.getMessage(thaiFirst.id))?.receipts ?? []).map((r) => [
        r.batchId ?? null,
        r.messageDigest,
        typOf(r.jws ?? ""),
      ]),
    ).toEqual([[null, thaiFirst.digest, RECEIPT_TYP]]);
    // Hekou's conflicting copy: a negative single receipt, never an acceptance.
    expect(
      ((await queries.getMessage(hekouFirst.id))?.receipts ?? []).map((r) => [
        r.batchId ?? null,
        r.status,
        r.messageDigest,
      ]),
    ).toEqual([[null, "rejected", hekouFirst.digest]]);
  });

  it("never accepts in a batch a case step its case refused: that one gets its negative receipt", async () => {
    const { handed, prompt } = recorder();
    const batching = laocaiInbox(signerOf(laocai), { batchesTo: () => true, prompt });
    const notice = await messageFrom(hekou);
    // A reminder in a case nobody opened: the case refuses it.
    const reminder = await messageFrom(hekou, {
      type: "case.reminder",
      caseRef: `CN-HEKOU-2026-${randomUUID().slice(0, 4).toUpperCase()}`,
      body: { awaitedType: "case.closed", dueAt: now.toISOString() },
    });
    const outcomes = await batching.handleBatch([item(reminder.bytes), item(notice.bytes)]);
    expect(outcomes[0]).toMatchObject({ outcome: "quarantined", receiptSent: true });
    expect(outcomes[1]).toEqual({ outcome: "accepted", messageId: notice.id });
    const batches = handed.flat().filter((d) => d.batch === true);
    expect(
      batches.map((d) => payloadOf(d.jws).accepted.map((e: { messageId: string }) => e.messageId)),
    ).toEqual([[notice.id]]);
    expect((await queries.getMessage(reminder.id))?.receipts ?? []).toEqual([]);
  });
});
