/**
 * The store's aggregates (party store, outbound log and outbox, inbound log, receipts,
 * quarantine, read queries), run on both drivers: a real PostgreSQL server and embedded PGlite.
 */
import { randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import { calculateJwkThumbprint, exportJWK, generateKeyPair } from "jose";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { CaseView } from "../../src/cases/case-types.ts";
import { GroupCommit } from "../../src/delivery/group-commit.ts";
import {
  type IssuedBatch,
  type IssuedReceipt,
  inboundKey,
  type SignedMessage,
  type Store,
  sentKey,
} from "../../src/delivery/ports.ts";
import { planDelivery } from "../../src/delivery/retry-schedule.ts";
import type { Envelope, KeyRecord, Receipt, ReceiptBatch } from "../../src/protocol/types.ts";
import { PartnerRegistry } from "../../src/registry/partner-registry.ts";
import type { Database } from "../../src/store/database.ts";
import { SqlPartyStore } from "../../src/store/party-store.ts";
import { ReadQueries } from "../../src/store/read-queries.ts";
import { rows } from "../../src/store/set-sql.ts";
import { createStore } from "../../src/store/store.ts";
import { openDriverDatabase, registerParties } from "../helpers/databases.ts";

const SELF = "CN-MPS-HEKOU";
const PARTNER = "VN-BGC-LAOCAI";
const T0 = new Date("2026-11-24T12:00:00.000Z");

function envelope(to: string[] = [PARTNER], from = SELF): Envelope {
  return {
    id: randomUUID(),
    type: "case.notice",
    schemaVersion: 1,
    from,
    to,
    caseRef: "CN-HEKOU-2026-0042",
    sentAt: T0.toISOString(),
    expiresAt: new Date(T0.getTime() + 86_400_000).toISOString(),
    handling: { classification: "restricted", onwardDissemination: "forbidden" },
    body: {},
  };
}

function receiptFor(
  messageId: string | null,
  digest: string,
  from = PARTNER,
  status: "accepted" | "rejected" = "accepted",
): Receipt {
  return {
    id: randomUUID(),
    type: "receipt",
    schemaVersion: 1,
    from,
    to: SELF,
    sentAt: T0.toISOString(),
    messageId,
    digest: { alg: "sha-256", value: digest },
    status,
    errors: status === "accepted" ? [] : [{ code: "schema_invalid" }],
  };
}

function issued(receipt: Receipt, messageDigest: string): IssuedReceipt {
  return { receipt, messageDigest, jws: `receipt-${receipt.id}`, digest: "f".repeat(64) };
}

/** A batch receipt from `from` to `to` accepting these messages, with made-up bytes. */
function batchOf(
  messages: Array<{ envelope: { id: string }; digest: string }>,
  from = PARTNER,
  to = SELF,
): IssuedBatch {
  const batch: ReceiptBatch = {
    id: randomUUID(),
    type: "receipt.batch",
    schemaVersion: 1,
    from,
    to,
    sentAt: T0.toISOString(),
    accepted: messages.map((m) => ({
      messageId: m.envelope.id,
      digest: { alg: "sha-256", value: m.digest },
    })),
  };
  return { batch, jws: `batch-${batch.id}`, digest: randomUUID().replaceAll("-", "").repeat(2) };
}

const digestOf = (n: number) => n.toString(16).padStart(64, "0");
const retry = { baseMs: 1000, maxMs: 1000 };

describe.each(["postgres", "pglite"] as const)("the store on %s", (driver) => {
  let database: Database;
  let store: Store;
  let parties: SqlPartyStore;
  let queries: ReadQueries;
  let drop: () => Promise<void> = async () => {};

  beforeAll(async () => {
    ({ database, drop } = await openDriverDatabase(driver, inject("databaseUrl")));
    expect(database.driver).toBe(driver);
    store = createStore(database.db);
    parties = new SqlPartyStore(database.db);
    queries = new ReadQueries(database.db);
    await registerParties(database.db, [SELF, PARTNER, "TH-RTP-ATHD"]);
    // The partner the batch tests below answer in batches accepts them (its registered record).
    await acceptsBatches(true);
  });

  /** Registers PARTNER's record again, declaring receiptBatches or not. */
  const acceptsBatches = (receiptBatches: boolean) =>
    parties.register(
      {
        id: PARTNER,
        name: PARTNER,
        country: PARTNER.slice(0, 2),
        kind: "border-police-liaison-office",
        inboundSubject: `liaison.inbox.${PARTNER}`,
        ...(receiptBatches ? { receiptBatches } : {}),
      },
      [],
    );

  afterAll(async () => {
    await database?.close();
    await drop();
  });

  // The submitter's way in: group-committed outbound inserts.
  let commits: GroupCommit<SignedMessage> | undefined;
  const insertOutbound = (m: SignedMessage) => {
    commits ??= new GroupCommit((group) => store.outbound.insert(group));
    return commits.add(m);
  };
  const claimDue = (opts: {
    now: Date;
    limit: number;
    maxAttempts: number;
    baseMs: number;
    maxMs: number;
  }) =>
    store.outbox.claimDue({
      now: opts.now,
      limit: opts.limit,
      plan: (c) => planDelivery(c, opts.now, opts),
    });
  it("registers keys, only ever brings revocation and validity end forward, and never moves a kid", async () => {
    const key = {
      kid: `kid-${randomUUID()}`,
      partyId: PARTNER,
      alg: "EdDSA",
      publicJwk: { kty: "OKP" },
      validFrom: T0,
      validUntil: null,
      revokedAt: null,
    };
    const partner = (await parties.listParties()).find((p) => p.id === PARTNER);
    const thai = (await parties.listParties()).find((p) => p.id === "TH-RTP-ATHD");
    if (partner === undefined || thai === undefined) throw new Error("parties missing");
    await parties.register(partner, [key]);
    await parties.register(partner, [{ ...key, revokedAt: T0 }]);
    const stored = async () => (await parties.listKeys()).find((k) => k.kid === key.kid);
    expect((await stored())?.revokedAt?.toISOString()).toBe(T0.toISOString());
    // An older document (no revocation, other validity) cannot undo or postpone it.
    const later = new Date(T0.getTime() + 86_400_000);
    await parties.register(partner, [{ ...key, revokedAt: null, validFrom: new Date(0) }]);
    await parties.register(partner, [{ ...key, revokedAt: later }]);
    expect((await stored())?.revokedAt?.toISOString()).toBe(T0.toISOString());
    expect((await stored())?.validFrom.toISOString()).toBe(T0.toISOString());
    await parties.register(partner, [{ ...key, validUntil: later }]);
    await parties.register(partner, [{ ...key, validUntil: null }]);
    expect((await stored())?.validUntil?.toISOString()).toBe(later.toISOString());
    const renamed = { ...thai, name: "renamed in the refused call" };
    await expect(parties.register(renamed, [{ ...key, partyId: thai.id }])).rejects.toMatchObject({
      code: "request_invalid",
    });
    // Nothing of the refused call was written.
    expect((await parties.listParties()).find((p) => p.id === thai.id)?.name).toBe(thai.name);
  });

  it("stores each key's use: encryption keys round-trip as enc, keys without a use as sig, and a use never changes", async () => {
    // A party of its own: another test registers a key under PARTNER that does not import.
    const partner = {
      id: "KH-NCCT-POIPET",
      name: "Poipet",
      country: "KH",
      kind: "border-police-liaison-office",
      inboundSubject: "liaison.inbox.KH-NCCT-POIPET",
    };
    const x25519 = await generateKeyPair("ECDH-ES+A256KW", { crv: "X25519", extractable: true });
    const encJwk = await exportJWK(x25519.publicKey);
    const ed25519 = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
    const sigJwk = await exportJWK(ed25519.publicKey);
    const enc: KeyRecord = {
      kid: await calculateJwkThumbprint(encJwk, "sha256"),
      partyId: partner.id,
      use: "enc",
      alg: "ECDH-ES+A256KW",
      publicJwk: { ...encJwk },
      validFrom: T0,
      validUntil: null,
      revokedAt: null,
    };
    // Written as callers did before keys had a use.
    const sig: KeyRecord = {
      kid: await calculateJwkThumbprint(sigJwk, "sha256"),
      partyId: partner.id,
      alg: "EdDSA",
      publicJwk: { ...sigJwk },
      validFrom: T0,
      validUntil: null,
      revokedAt: null,
    };
    await parties.register(partner, [sig, enc]);
    const stored = async (kid: string) => (await parties.listKeys()).find((k) => k.kid === kid);
    expect(await stored(enc.kid)).toEqual(enc);
    expect(await stored(sig.kid)).toEqual({ ...sig, use: "sig" });
    // A re-registration brings the end of validity forward, and leaves the use as it was.
    const later = new Date(T0.getTime() + 86_400_000);
    await parties.register(partner, [{ ...enc, use: "sig", validUntil: later }]);
    expect(await stored(enc.kid)).toEqual({ ...enc, validUntil: later });

    // The registry, loaded from what the store lists for the party, keeps the two apart.
    const registry = await PartnerRegistry.load({
      register: (party, keys) => parties.register(party, keys),
      listParties: async () => [partner],
      listKeys: async () => (await parties.listKeys()).filter((k) => k.partyId === partner.id),
    });
    expect(registry.keyById(enc.kid)).toBeUndefined();
    expect(registry.keyById(sig.kid)?.alg).toBe("EdDSA");
    expect(registry.encryptionKeyOf(partner.id, T0)?.kid).toBe(enc.kid);
    expect(registry.encryptionKeyOf(partner.id, later)).toBeUndefined();
  });

  it("claims a new delivery once, leases it for the backoff, and fails it after the budget", async () => {
    const e = envelope();
    await insertOutbound({ envelope: e, jws: "jws-1", digest: digestOf(1), kid: "k" });
    const mine = (r: { due: Array<{ messageId: string }> }) =>
      r.due.filter((d) => d.messageId === e.id);
    const claim = (now: Date) => claimDue({ now, limit: 100, maxAttempts: 2, ...retry });

    const first = await claim(T0);
    expect(mine(first)).toEqual([
      {
        messageId: e.id,
        recipient: PARTNER,
        attempts: 1,
        jws: "jws-1",
        digest: digestOf(1),
        subject: `liaison.inbox.${PARTNER}`,
      },
    ]);
    const leased = (await queries.getMessage(e.id))?.deliveries[0]?.nextAttemptAt.getTime() ?? 0;
    expect(leased - T0.getTime()).toBeGreaterThanOrEqual(750);
    expect(leased - T0.getTime()).toBeLessThanOrEqual(1250);
    expect(mine(await claim(T0))).toEqual([]);

    await store.outbox.markSent([{ messageId: e.id, recipient: PARTNER }], T0);
    expect((await queries.getMessage(e.id))?.deliveries[0]?.status).toBe("sent");
    expect(mine(await claim(new Date(T0.getTime() + 1300)))).toHaveLength(1);
    const exhausted = await claim(new Date(T0.getTime() + 2600));
    expect(mine(exhausted)).toEqual([]);
    expect(exhausted.failed).toContainEqual({
      messageId: e.id,
      recipient: PARTNER,
      reason: "no receipt within the retry budget",
    });
    const found = await queries.getMessage(e.id);
    expect(found?.deliveries.map((d) => d.status)).toEqual(["failed"]);
    expect(found?.deliveries[0]?.attempts).toBe(2);
  });

  it("group-commits concurrent outbound inserts, and fails only the bad one of a group", async () => {
    const existing = envelope();
    await insertOutbound({
      envelope: existing,
      jws: "first",
      digest: digestOf(300),
      kid: "k",
    });
    const fresh = Array.from({ length: 30 }, () => envelope());
    const results = await Promise.allSettled([
      ...fresh.map((e, i) =>
        insertOutbound({ envelope: e, jws: `g-${i}`, digest: digestOf(301 + i), kid: "k" }),
      ),
      insertOutbound({ envelope: existing, jws: "again", digest: digestOf(399), kid: "k" }),
    ]);
    expect(results.slice(0, 30).every((r) => r.status === "fulfilled")).toBe(true);
    expect(results[30]?.status).toBe("rejected");
    for (const e of fresh)
      expect((await queries.getMessage(e.id))?.deliveries.map((d) => d.status)).toEqual(["queued"]);
    expect((await queries.getMessage(existing.id))?.message.jws).toBe("first");
  });

  it("keeps retrying a delivery the broker never accepted, until its message expires", async () => {
    const e = envelope();
    await insertOutbound({
      envelope: e,
      jws: "never-acked",
      digest: digestOf(400),
      kid: "k",
    });
    const mine = (r: { due: Array<{ messageId: string }> }) =>
      r.due.filter((d) => d.messageId === e.id);
    let at = T0.getTime();
    for (let i = 0; i < 5; i++) {
      // maxAttempts 2, but no publish was ever acknowledged: still due, never failed.
      const r = await claimDue({
        now: new Date(at),
        limit: 500,
        maxAttempts: 2,
        ...retry,
      });
      expect(mine(r)).toHaveLength(1);
      at += 1300;
    }
    expect((await queries.getMessage(e.id))?.deliveries[0]).toMatchObject({
      status: "queued",
      attempts: 5,
    });
    const afterExpiry = new Date(new Date(e.expiresAt).getTime() + 1);
    const r = await claimDue({
      now: afterExpiry,
      limit: 500,
      maxAttempts: 2,
      ...retry,
    });
    expect(r.failed).toContainEqual({
      messageId: e.id,
      recipient: PARTNER,
      reason: "expired before it was delivered",
    });
    expect((await queries.getMessage(e.id))?.deliveries[0]).toMatchObject({
      status: "failed",
      lastError: "expired before it was delivered",
    });
  });

  it("hands each due delivery to exactly one of two concurrent claimers", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const e = envelope();
      ids.push(e.id);
      await insertOutbound({
        envelope: e,
        jws: `jws-${i}`,
        digest: digestOf(100 + i),
        kid: "k",
      });
    }
    const claim = () =>
      claimDue({
        now: new Date(T0.getTime() + 10_000_000),
        limit: 100,
        maxAttempts: 5,
        baseMs: 60_000_000,
        maxMs: 60_000_000,
      });
    const [a, b] = await Promise.all([claim(), claim()]);
    const claimed = [...a.due, ...b.due].map((d) => d.messageId).filter((id) => ids.includes(id));
    expect(new Set(claimed).size).toBe(claimed.length);
    expect(claimed.length).toBe(20);
  });

  it("knows what it sent to whom, logs received receipts once, and closes only the deliveries named", async () => {
    const e = envelope([PARTNER, "TH-RTP-ATHD"]);
    await insertOutbound({ envelope: e, jws: "jws-r", digest: digestOf(7), kid: "k" });
    expect(await store.outbound.sentDigests([e.id, randomUUID()])).toEqual(
      new Map([
        [sentKey(e.id, PARTNER), digestOf(7)],
        [sentKey(e.id, "TH-RTP-ATHD"), digestOf(7)],
      ]),
    );
    const good = { receipt: receiptFor(e.id, digestOf(7)), jws: "r-74", digest: digestOf(74) };
    const thai = {
      receipt: receiptFor(e.id, digestOf(7), "TH-RTP-ATHD", "rejected"),
      jws: "r-75",
      digest: digestOf(75),
    };
    const fresh = await store.transaction(async (tx) => {
      const fresh = await tx.receipts.insertReceived([good, thai]);
      await tx.outbox.close(
        [
          { messageId: e.id, recipient: PARTNER, status: "accepted" },
          { messageId: e.id, recipient: "TH-RTP-ATHD", status: "rejected" },
        ],
        T0,
      );
      return fresh;
    });
    expect(fresh).toEqual(new Set([good.receipt.id, thai.receipt.id]));
    // The same receipt again is not new.
    expect(await store.receipts.insertReceived([good])).toEqual(new Set());
    const found = await queries.getMessage(e.id);
    expect(Object.fromEntries(found?.deliveries.map((d) => [d.recipient, d.status]) ?? [])).toEqual(
      { [PARTNER]: "delivered", "TH-RTP-ATHD": "rejected" },
    );
    expect(
      Object.fromEntries(found?.deliveries.map((d) => [d.recipient, d.receiptId]) ?? []),
    ).toEqual({ [PARTNER]: good.receipt.id, "TH-RTP-ATHD": thai.receipt.id });
    expect(found?.receipts.map((r) => r.id)).toEqual([good.receipt.id, thai.receipt.id]);
  });

  it("logs received receipts and closes their deliveries in one statement, only for receipts it logged", async () => {
    const e = envelope([PARTNER, "TH-RTP-ATHD"]);
    await insertOutbound({ envelope: e, jws: "jws-c", digest: digestOf(41), kid: "k" });
    await store.outbox.markSent(
      [
        { messageId: e.id, recipient: PARTNER },
        { messageId: e.id, recipient: "TH-RTP-ATHD" },
      ],
      T0,
    );
    const good = { receipt: receiptFor(e.id, digestOf(41)), jws: "r-42", digest: digestOf(42) };
    const at = new Date(T0.getTime() + 2_500);
    const first = await store.receipts.insertReceivedClosing([good], at);
    expect(first.fresh).toEqual(new Set([good.receipt.id]));
    expect(first.closed).toEqual([
      { messageId: e.id, recipient: PARTNER, status: "delivered", sentAt: T0 },
    ]);
    // Logged once: the same receipt again is not new and closes nothing.
    expect(await store.receipts.insertReceivedClosing([good], at)).toEqual({
      fresh: new Set(),
      closed: [],
    });
    const found = await queries.getMessage(e.id);
    expect(
      Object.fromEntries(
        found?.deliveries.map((d) => [d.recipient, [d.status, d.receiptId]]) ?? [],
      ),
    ).toEqual({ [PARTNER]: ["delivered", good.receipt.id], "TH-RTP-ATHD": ["sent", null] });
    expect(found?.deliveries.find((d) => d.recipient === PARTNER)?.updatedAt).toEqual(at);
  });

  it("reads a case's messages both ways, without other types, marking our steps the partner refused", async () => {
    const ref = `CN-HEKOU-2026-${String(driver === "postgres" ? 8101 : 8102)}`;
    const step = (type: string, from = SELF, to = [PARTNER]) => {
      const e = { ...envelope(to, from), type, caseRef: ref };
      return {
        envelope: e,
        jws: `jws-${e.id}`,
        digest: digestOf(Math.floor(Math.random() * 1e9)),
        kid: "k",
      };
    };
    const opened = step("victim.identified");
    const notice = step("case.notice");
    const refused = step("identity.verification.request");
    const answer = step("identity.verification.response", PARTNER, [SELF]);
    await store.outbound.insert([opened, notice, refused]);
    await store.inbound.insert([answer]);
    await store.outbox.close(
      [{ messageId: refused.envelope.id, recipient: PARTNER, status: "rejected" }],
      T0,
    );
    // The partner's accepted receipt for the opening step: it shows who accepted it.
    await store.receipts.insertReceived([
      {
        receipt: receiptFor(opened.envelope.id, opened.digest),
        jws: `receipt-of-${opened.envelope.id}`,
        digest: digestOf(Math.floor(Math.random() * 1e9)),
      },
    ]);
    const types = [
      "victim.identified",
      "identity.verification.request",
      "identity.verification.response",
    ];
    const read = await store.cases.messages(ref, types);
    expect(read.map((m) => [m.direction, m.jws, m.refused, m.acceptedBy]).sort()).toEqual(
      [
        ["outbound", opened.jws, false, [PARTNER]],
        ["outbound", refused.jws, true, []],
        ["inbound", answer.jws, false, []],
      ].sort(),
    );
    expect(await store.cases.caseRefsOf([opened.envelope.id, notice.envelope.id], types)).toEqual([
      ref,
    ]);
    expect(await store.cases.caseRefsOf([notice.envelope.id], types)).toEqual([]);
  });

  it("saves a case's summary, lists it by filter, and reminds of each deadline once", async () => {
    const ref = "CN-HEKOU-2026-8200";
    const view = (dueAt: string | undefined): CaseView => ({
      caseRef: ref,
      state: "verification-requested",
      identifying: SELF,
      origin: PARTNER,
      minor: true,
      openedAt: T0.toISOString(),
      updatedAt: T0.toISOString(),
      awaiting: [
        {
          party: PARTNER,
          types: ["identity.verification.response"],
          since: T0.toISOString(),
          ...(dueAt === undefined ? {} : { dueAt }),
        },
      ],
      applied: [],
      skipped: [],
      openRequestId: null,
      handoverScheduledAt: null,
      handoverBorderCrossingId: null,
      signedRecord: null,
    });
    const due = new Date(T0.getTime() + 3_600_000);
    await store.cases.save(view(due.toISOString()), 2);
    const [row] = await queries.listCases({
      state: "verification-requested",
      party: PARTNER,
      limit: 10,
    });
    expect(row).toMatchObject({ caseRef: ref, dueAt: due, owingParty: PARTNER, messageCount: 2 });
    expect(await queries.listCases({ party: "TH-RTP-ATHD", limit: 10 })).toEqual([]);
    expect(await store.cases.overdue(T0, 10)).toEqual([]);
    const overdue = await store.cases.overdue(due, 10);
    expect(overdue.map((c) => c.caseRef)).toContain(ref);
    await store.cases.markReminded(ref, due);
    expect((await store.cases.overdue(due, 10)).map((c) => c.caseRef)).not.toContain(ref);
    // A new request, a new deadline: overdue again once it passes, and the mark survives saves.
    const later = new Date(due.getTime() + 3_600_000);
    await store.cases.save(view(later.toISOString()), 3);
    expect((await store.cases.overdue(due, 10)).map((c) => c.caseRef)).not.toContain(ref);
    expect((await store.cases.overdue(later, 10)).map((c) => c.caseRef)).toContain(ref);
    await store.cases.save(view(undefined), 4);
    expect((await store.cases.overdue(later, 10)).map((c) => c.caseRef)).not.toContain(ref);
  });

  it("holds a case's lock until the transaction ends: a second transaction on the case waits", async () => {
    const events: string[] = [];
    const first = store.transaction(async (tx) => {
      await tx.cases.lock(["CN-HEKOU-2026-8300", "CN-HEKOU-2026-8301"]);
      events.push("first locked");
      await new Promise((r) => setTimeout(r, 300));
      events.push("first done");
    });
    await new Promise((r) => setTimeout(r, 50));
    const second = store.transaction(async (tx) => {
      await tx.cases.lock(["CN-HEKOU-2026-8301"]);
      events.push("second locked");
    });
    const other = store.transaction(async (tx) => {
      await tx.cases.lock(["CN-HEKOU-2026-8399"]);
      events.push("other case locked");
    });
    await Promise.all([first, second, other]);
    expect(events.indexOf("second locked")).toBeGreaterThan(events.indexOf("first done"));
    if (driver === "postgres") {
      // Another case is not held up (PGlite runs one transaction at a time anyway).
      expect(events.indexOf("other case locked")).toBeLessThan(events.indexOf("first done"));
    }
  });

  it("finds messages refused earlier with a case code, by sender and id", async () => {
    const id = randomUUID();
    await store.quarantine.insert({
      subject: "s",
      raw: new Uint8Array([1, 2, 3]),
      digest: digestOf(8400 + (driver === "postgres" ? 1 : 2)),
      code: "transition_not_allowed",
      detail: "not now",
      issues: [],
      kind: "message",
      claimedFrom: PARTNER,
      messageId: id,
      receiptId: null,
    });
    const found = await store.quarantine.refusedEarlier(
      [
        { from: PARTNER, id },
        { from: "TH-RTP-ATHD", id },
      ],
      ["transition_not_allowed", "reply_unmatched"],
    );
    expect([...found.entries()]).toEqual([
      [inboundKey(PARTNER, id), { code: "transition_not_allowed", detail: "not now" }],
    ]);
    expect(
      (await store.quarantine.refusedEarlier([{ from: PARTNER, id }], ["reply_unmatched"])).size,
    ).toBe(0);
  });

  it("rolls back every write of a transaction when one fails", async () => {
    const e = envelope();
    const message = { envelope: e, jws: "tx", digest: digestOf(500), kid: "k" };
    await expect(
      store.transaction(async (tx) => {
        await tx.outbound.insert([message]);
        await tx.outbound.insert([message]);
      }),
    ).rejects.toThrow();
    expect(await queries.getMessage(e.id)).toBeUndefined();
  });

  it("logs an inbound message once with its receipt, and re-queues the receipt for a redelivery", async () => {
    const e = envelope([SELF], PARTNER);
    const r = issued({ ...receiptFor(e.id, digestOf(9)), from: SELF, to: PARTNER }, digestOf(9));
    const message = { envelope: e, jws: "in-jws", digest: digestOf(9), kid: "k" };
    expect(await store.inbound.insert([message])).toEqual(new Set([inboundKey(PARTNER, e.id)]));
    await store.receipts.insertIssued([r]);
    expect(await store.inbound.insert([message])).toEqual(new Set());
    expect(
      await store.inbound.find([
        { from: PARTNER, id: e.id },
        { from: PARTNER, id: randomUUID() },
      ]),
    ).toEqual(new Map([[inboundKey(PARTNER, e.id), { digest: digestOf(9), jws: "in-jws" }]]));
    // The same id from another sender is another message: ids are unique per sender.
    const fromThai = { ...message, envelope: { ...e, from: "TH-RTP-ATHD" }, digest: digestOf(10) };
    expect(await store.inbound.insert([fromThai])).toEqual(
      new Set([inboundKey("TH-RTP-ATHD", e.id)]),
    );

    const due = await store.receipts.claimUnpublished({ now: T0, limit: 100, leaseMs: 1000 });
    expect(due.filter((d) => d.id === r.receipt.id)).toEqual([
      {
        id: r.receipt.id,
        toParty: PARTNER,
        jws: r.jws,
        digest: r.digest,
        subject: `liaison.inbox.${PARTNER}`,
      },
    ]);
    expect(
      (await store.receipts.claimUnpublished({ now: T0, limit: 100, leaseMs: 1000 })).filter(
        (d) => d.id === r.receipt.id,
      ),
    ).toEqual([]);
    await store.receipts.markPublished([r.receipt.id], T0);
    expect(
      (
        await store.receipts.claimUnpublished({
          now: new Date(T0.getTime() + 5000),
          limit: 100,
          leaseMs: 1000,
        })
      ).filter((d) => d.id === r.receipt.id),
    ).toEqual([]);

    expect(await store.receipts.requeueIssued(e.id, digestOf(9), T0)).toBe(true);
    expect(
      (await store.receipts.claimUnpublished({ now: T0, limit: 100, leaseMs: 1000 })).map(
        (d) => d.id,
      ),
    ).toContain(r.receipt.id);
  });

  it("leaves deliveries and receipts leased at insert (the prompt path) to their writer until the lease ends", async () => {
    const until = new Date(T0.getTime() + 30_000);
    const e = envelope();
    await store.outbound.insert(
      [{ envelope: e, jws: "jws-leased", digest: digestOf(21), kid: "k" }],
      {
        until,
      },
    );
    const mine = (r: { due: Array<{ messageId: string; attempts: number }> }) =>
      r.due.filter((d) => d.messageId === e.id);
    const claim = (now: Date) => claimDue({ now, limit: 100, maxAttempts: 5, ...retry });
    // Claimed at insert, as a pass would have: one attempt, due again at the lease's end.
    const row = (await queries.getMessage(e.id))?.deliveries[0];
    expect(row).toMatchObject({ status: "queued", attempts: 1 });
    expect(row?.nextAttemptAt.getTime()).toBe(until.getTime());
    expect(mine(await claim(T0))).toEqual([]);
    expect(mine(await claim(new Date(until.getTime() - 1)))).toEqual([]);
    // Not published (the writer died, or the broker refused): any pass takes it after the lease.
    expect(mine(await claim(until)).map((d) => d.attempts)).toEqual([2]);

    const m = envelope([SELF], PARTNER);
    const r = issued({ ...receiptFor(m.id, digestOf(22)), from: SELF, to: PARTNER }, digestOf(22));
    await store.receipts.insertIssued([r], { until });
    const receiptDue = async (now: Date) =>
      (await store.receipts.claimUnpublished({ now, limit: 100, leaseMs: 1000 })).filter(
        (d) => d.id === r.receipt.id,
      );
    expect(await receiptDue(T0)).toEqual([]);
    expect(await receiptDue(new Date(until.getTime() - 1))).toEqual([]);
    expect((await receiptDue(until)).map((d) => d.id)).toEqual([r.receipt.id]);
  });

  it("logs inbound messages with their receipts in one statement, answering only what it logged", async () => {
    const before = envelope([SELF], PARTNER);
    const known = { envelope: before, jws: "in-known", digest: digestOf(31), kid: "k" };
    expect(await store.inbound.insert([known])).toEqual(new Set([inboundKey(PARTNER, before.id)]));
    const e = envelope([SELF], PARTNER);
    const fresh = { envelope: e, jws: "in-fresh", digest: digestOf(32), kid: "k" };
    const answer = (m: SignedMessage) =>
      issued({ ...receiptFor(m.envelope.id, m.digest), from: SELF, to: PARTNER }, m.digest);
    const [rKnown, rFresh] = [answer(known), answer(fresh)];
    const until = new Date(T0.getTime() + 30_000);
    const stored = await store.inbound.insertAnswered(
      [
        { message: known, receipt: rKnown },
        { message: fresh, receipt: rFresh },
      ],
      { until },
    );
    expect(stored).toEqual(new Set([inboundKey(PARTNER, e.id)]));
    // Only the message it logged is answered, and its receipt is leased like insertIssued's.
    const due = async (now: Date) =>
      (await store.receipts.claimUnpublished({ now, limit: 100, leaseMs: 1000 }))
        .map((d) => d.id)
        .filter((id) => id === rKnown.receipt.id || id === rFresh.receipt.id);
    expect(await due(T0)).toEqual([]);
    expect(await due(until)).toEqual([rFresh.receipt.id]);
    expect(await store.inbound.find([{ from: PARTNER, id: e.id }])).toEqual(
      new Map([[inboundKey(PARTNER, e.id), { digest: digestOf(32), jws: "in-fresh" }]]),
    );
  });

  it("registers whether a party accepts batch receipts, and a re-registration changes it", async () => {
    const party = {
      id: `KH-NCCT-B${driver === "postgres" ? "PG" : "LITE"}`,
      name: "Poipet",
      country: "KH",
      kind: "border-police-liaison-office",
      inboundSubject: "liaison.inbox.KH-NCCT-POIPET",
    };
    const listed = async () => (await parties.listParties()).find((p) => p.id === party.id);
    await parties.register({ ...party, receiptBatches: true }, []);
    expect(await listed()).toEqual({ ...party, receiptBatches: true });
    await parties.register(party, []);
    expect(await listed()).toEqual(party);
  });

  it("logs a partner's batch receipt once, each entry closing its delivery; the batch is each message's receipt", async () => {
    const sent = [envelope(), envelope(), envelope([PARTNER, "TH-RTP-ATHD"])].map((e, i) => ({
      envelope: e,
      jws: `jws-b${i}`,
      digest: digestOf(900 + i),
      kid: "k",
    }));
    await store.outbound.insert(sent);
    await store.outbox.markSent(
      [{ messageId: sent[1]?.envelope.id as string, recipient: PARTNER }],
      T0,
    );
    // One was closed before (by a negative receipt): an entry leaves it as it is.
    await store.outbox.close(
      [{ messageId: sent[0]?.envelope.id as string, recipient: PARTNER, status: "rejected" }],
      T0,
    );
    const batch = batchOf(sent);
    const at = new Date(T0.getTime() + 2_500);
    const first = await store.receipts.insertReceivedBatch(batch, at);
    expect(first.fresh).toBe(true);
    expect(first.closed.sort((a, b) => a.messageId.localeCompare(b.messageId))).toEqual(
      sent
        .slice(1)
        .map((m) => ({
          messageId: m.envelope.id,
          recipient: PARTNER,
          status: "delivered",
          sentAt: T0,
        }))
        .sort((a, b) => a.messageId.localeCompare(b.messageId)),
    );
    // Logged once: the same batch id again writes and closes nothing.
    expect(await store.receipts.insertReceivedBatch({ ...batch, jws: "other" }, at)).toEqual({
      fresh: false,
      closed: [],
    });
    expect(await store.receipts.findReceivedBatch(batch.batch.id)).toEqual({
      digest: batch.digest,
      jws: batch.jws,
    });
    expect(await store.receipts.findReceivedBatch(randomUUID())).toBeUndefined();
    const statuses = await Promise.all(
      sent.map(async (m) =>
        (await queries.getMessage(m.envelope.id))?.deliveries.map((d) => [
          d.recipient,
          d.status,
          d.receiptId,
        ]),
      ),
    );
    expect(statuses).toEqual([
      [[PARTNER, "rejected", null]],
      [[PARTNER, "delivered", batch.batch.id]],
      [
        ["TH-RTP-ATHD", "queued", null],
        [PARTNER, "delivered", batch.batch.id],
      ],
    ]);
    const shown = (await queries.getMessage(sent[2]?.envelope.id as string))?.receipts ?? [];
    expect(shown.map((r) => [r.id, r.batchId, r.jws, r.digest, r.messageDigest, r.status])).toEqual(
      [[batch.batch.id, batch.batch.id, batch.jws, batch.digest, digestOf(902), "accepted"]],
    );
    // A batch's entries are not single receipts: findReceived does not take them for one.
    expect(await store.receipts.findReceived(shown.map((r) => r.id))).toEqual(new Map());
  });

  it("logs inbound messages answered by a batch receipt, and the batch once with an entry per message, leased", async () => {
    const fresh = [0, 1].map((i) => ({
      envelope: envelope([SELF], PARTNER),
      jws: `in-bfresh-${i}`,
      digest: digestOf(952 + i),
      kid: "k",
    }));
    const single = issued(
      { ...receiptFor(fresh[1]?.envelope.id as string, digestOf(953)), from: SELF, to: PARTNER },
      digestOf(953),
    );
    const until = new Date(T0.getTime() + 30_000);
    // Answered by us: the batch goes to the partner (from SELF, to PARTNER).
    const batch = batchOf([fresh[0] as SignedMessage], SELF, PARTNER);
    await store.transaction(async (tx) => {
      const stored = await tx.inbound.insertAnswered(
        [
          { message: fresh[0] as SignedMessage },
          { message: fresh[1] as SignedMessage, receipt: single },
        ],
        { until },
      );
      expect(stored).toEqual(new Set(fresh.map((m) => inboundKey(PARTNER, m.envelope.id))));
      await tx.receipts.insertIssuedBatches([batch], { until });
    });
    const due = async (now: Date) =>
      (await store.receipts.claimUnpublished({ now, limit: 1000, leaseMs: 1000 })).filter((d) =>
        [batch.batch.id, single.receipt.id].includes(d.id),
      );
    expect(await due(T0)).toEqual([]);
    expect((await due(until)).map((d) => [d.id, d.batch ?? false, d.jws, d.digest])).toEqual([
      [single.receipt.id, false, single.jws, single.digest],
      [batch.batch.id, true, batch.jws, batch.digest],
    ]);
    // Each message finds its answer: the batch, or its receipt.
    const shown = async (id: string) =>
      ((await queries.getMessage(id))?.receipts ?? []).map((r) => [r.id, r.direction, r.toParty]);
    expect(await shown(fresh[0]?.envelope.id as string)).toEqual([
      [batch.batch.id, "issued", PARTNER],
    ]);
    expect(await shown(fresh[1]?.envelope.id as string)).toEqual([
      [single.receipt.id, "issued", PARTNER],
    ]);
  });

  it("sends a batch again for a redelivery of one of its messages, and renews it: same entries, the old one kept, never sent again", async () => {
    const messages = [0, 1].map((i) => ({
      envelope: envelope([SELF], PARTNER),
      jws: `in-renew-${i}`,
      digest: digestOf(960 + i),
      kid: "k",
    }));
    const old = batchOf(messages, SELF, PARTNER);
    await store.inbound.insertAnswered(messages.map((message) => ({ message })));
    await store.receipts.insertIssuedBatches([old]);
    const dueNow = async (now = T0) =>
      (await store.receipts.claimUnpublished({ now, limit: 1000, leaseMs: 1000 })).filter((d) =>
        d.jws.startsWith("batch-"),
      );
    expect((await dueNow()).map((d) => d.id)).toContain(old.batch.id);
    await store.receipts.markPublished([old.batch.id], T0);
    expect((await dueNow(new Date(T0.getTime() + 5_000))).map((d) => d.id)).not.toContain(
      old.batch.id,
    );
    // A redelivery of the second message: the batch goes out again, the same bytes.
    const m1 = messages[1] as SignedMessage;
    expect(await store.receipts.requeueIssued(m1.envelope.id, m1.digest, T0)).toBe(true);
    expect(await store.receipts.requeueIssued(m1.envelope.id, digestOf(1), T0)).toBe(false);
    const again = (await dueNow(new Date(T0.getTime() + 5_000))).filter(
      (d) => d.id === old.batch.id,
    );
    expect(again).toEqual([
      {
        id: old.batch.id,
        toParty: PARTNER,
        subject: `liaison.inbox.${PARTNER}`,
        jws: old.jws,
        digest: old.digest,
        batch: true,
      },
    ]);
    // Its key was revoked: the same entries, signed again, replace it.
    const fresh = { ...batchOf(messages, SELF, PARTNER), jws: "batch-renewed" };
    await store.receipts.supersede(old.batch.id, fresh);
    await store.receipts.markPublished([fresh.batch.id], T0);
    const shown = ((await queries.getMessage(m1.envelope.id))?.receipts ?? []).map((r) => [
      r.id,
      r.supersededBy,
      r.jws,
    ]);
    expect(shown).toEqual([
      [old.batch.id, fresh.batch.id, old.jws],
      [fresh.batch.id, null, fresh.jws],
    ]);
    // A later redelivery sends the new batch; the old one never goes out again.
    expect(await store.receipts.requeueIssued(m1.envelope.id, m1.digest, T0)).toBe(true);
    expect(
      (await dueNow(new Date(T0.getTime() + 20_000)))
        .map((d) => d.id)
        .filter((id) => id === old.batch.id || id === fresh.batch.id),
    ).toEqual([fresh.batch.id]);
    // The partner withdraws receiptBatches: no batch is queued again for it (false: the inbox
    // answers with a single receipt), and one queued before is withheld, never claimed.
    await store.receipts.requeueIssued(m1.envelope.id, m1.digest, T0);
    await acceptsBatches(false);
    try {
      expect(await store.receipts.requeueIssued(m1.envelope.id, m1.digest, T0)).toBe(false);
      // None to the partner at all, not even one an earlier test left unpublished.
      expect(await dueNow(new Date(T0.getTime() + 40_000))).toEqual([]);
    } finally {
      await acceptsBatches(true);
    }
    // Declared again: the withheld batch goes out as it was.
    expect(
      (await dueNow(new Date(T0.getTime() + 40_000)))
        .filter((d) => d.id === old.batch.id || d.id === fresh.batch.id)
        .map((d) => [d.id, d.jws]),
    ).toEqual([[fresh.batch.id, fresh.jws]]);
  });

  it("writes a batch only when every message it accepts is logged from its addressee with that digest and not answered yet", async () => {
    const logged = [0, 1, 2].map((i) => ({
      envelope: envelope([SELF], PARTNER),
      jws: `in-guard-${i}`,
      digest: digestOf(970 + i),
      kid: "k",
    }));
    const [one, two, answered] = logged as [SignedMessage, SignedMessage, SignedMessage];
    const single = issued(
      { ...receiptFor(answered.envelope.id, answered.digest), from: SELF, to: PARTNER },
      answered.digest,
    );
    await store.inbound.insertAnswered([
      { message: one },
      { message: two },
      { message: answered, receipt: single },
    ]);
    const unlogged = { envelope: envelope([SELF], PARTNER), digest: digestOf(979) };
    // Another replica logged `one` under other bytes: a batch naming those is not ours to sign.
    const otherBytes = batchOf([{ ...one, digest: digestOf(978) }, two], SELF, PARTNER);
    const notLogged = batchOf([two, unlogged], SELF, PARTNER);
    const answeredBefore = batchOf([answered, two], SELF, PARTNER);
    // Logged from PARTNER: a batch to another party does not accept them.
    const otherParty = batchOf([one, two], SELF, "TH-RTP-ATHD");
    const good = batchOf([one, two], SELF, PARTNER);
    expect(
      await store.receipts.insertIssuedBatches([
        otherBytes,
        notLogged,
        answeredBefore,
        otherParty,
        good,
      ]),
    ).toEqual(new Set([good.batch.id]));
    // Answered by now: the same entries signed again are not written a second time.
    expect(await store.receipts.insertIssuedBatches([batchOf([two], SELF, PARTNER)])).toEqual(
      new Set(),
    );
    const shown = async (m: SignedMessage) =>
      ((await queries.getMessage(m.envelope.id))?.receipts ?? []).map((r) => r.id);
    expect(await shown(one)).toEqual([good.batch.id]);
    expect(await shown(two)).toEqual([good.batch.id]);
    expect(await shown(answered)).toEqual([single.receipt.id]);
    const due = (
      await store.receipts.claimUnpublished({ now: T0, limit: 1000, leaseMs: 1000 })
    ).map((d) => d.id);
    for (const b of [otherBytes, notLogged, answeredBefore, otherParty]) {
      expect(due).not.toContain(b.batch.id);
    }
    expect(due).toContain(good.batch.id);
  });

  it("writes entry rows outside every claim of single receipts: published, never due themselves", async () => {
    const messages = [0, 1].map((i) => ({
      envelope: envelope([SELF], PARTNER),
      jws: `in-entry-${i}`,
      digest: digestOf(980 + i),
      kid: "k",
    }));
    const old = batchOf(messages, SELF, PARTNER);
    await store.inbound.insertAnswered(messages.map((message) => ({ message })));
    await store.receipts.insertIssuedBatches([old]);
    const fresh = batchOf(messages, SELF, PARTNER);
    await store.receipts.supersede(old.batch.id, fresh);
    // What a replica running code from before migration 0009 claims as a due single receipt
    // (its claimUnpublished): none of the entry rows, first written or written by supersede.
    const claimable = await rows<{ n: number }>(
      database.db,
      sql`select count(*)::int as n from receipts
        where direction = 'issued' and published_at is null and superseded_by is null
          and batch_id in (${old.batch.id}::uuid, ${fresh.batch.id}::uuid)`,
    );
    const entries = await rows<{ n: number }>(
      database.db,
      sql`select count(*)::int as n from receipts
        where batch_id in (${old.batch.id}::uuid, ${fresh.batch.id}::uuid)`,
    );
    expect([entries[0]?.n, claimable[0]?.n]).toEqual([4, 0]);
  });

  it("counts in the receipt outbox gauge what waits to be published, not what was replaced", async () => {
    const depth = async () => (await queries.metricsSnapshot(T0)).outbox.receipts.depth;
    const before = await depth();
    const messages = [0, 1, 2].map((i) => ({
      envelope: envelope([SELF], PARTNER),
      jws: `in-gauge-${i}`,
      digest: digestOf(990 + i),
      kid: "k",
    }));
    const [a, b, c] = messages as [SignedMessage, SignedMessage, SignedMessage];
    const single = issued(
      { ...receiptFor(c.envelope.id, c.digest), from: SELF, to: PARTNER },
      c.digest,
    );
    await store.inbound.insertAnswered([
      { message: a },
      { message: b },
      { message: c, receipt: single },
    ]);
    const batch = batchOf([a, b], SELF, PARTNER);
    await store.receipts.insertIssuedBatches([batch]);
    // One batch (not its two entries) and one receipt wait.
    expect(await depth()).toBe(before + 2);
    // Both signed again: the replaced ones are kept, never sent again, not waiting.
    const renewedBatch = batchOf([a, b], SELF, PARTNER);
    await store.receipts.supersede(batch.batch.id, renewedBatch);
    const renewedSingle = issued(
      { ...receiptFor(c.envelope.id, c.digest), from: SELF, to: PARTNER },
      c.digest,
    );
    await store.receipts.supersede(single.receipt.id, renewedSingle);
    expect(await depth()).toBe(before + 2);
    await store.receipts.markPublished([renewedBatch.batch.id, renewedSingle.receipt.id], T0);
    expect(await depth()).toBe(before);
  });

  it("stores signed bytes exactly as given, in their row, whatever characters they hold", async () => {
    // The JWS travel to the server apart from the other columns (a text array zipped with the
    // JSON rows): quotes, backslashes, the array's own delimiters, the word NULL, characters
    // beyond ASCII and the empty string must each come back as given, in its own row.
    const odd = ['a"b', "c\\d", "{e,f} g", "NULL", "Lào Cai – 河口 🚩", "", 'x\\"y'];
    const out = odd.map((jws, k) => ({
      envelope: envelope(),
      jws,
      digest: digestOf(70 + k),
      kid: "k",
    }));
    await store.outbound.insert(out);
    const ids = new Set(out.map((m) => m.envelope.id));
    const due = (await claimDue({ now: T0, limit: 1000, maxAttempts: 5, ...retry })).due.filter(
      (d) => ids.has(d.messageId),
    );
    expect(new Map(due.map((d) => [d.messageId, d.jws]))).toEqual(
      new Map(out.map((m) => [m.envelope.id, m.jws])),
    );

    const inbound = odd.map((jws, k) => ({
      message: { envelope: envelope([SELF], PARTNER), jws, digest: digestOf(80 + k), kid: "k" },
      receipt: {
        ...issued(receiptFor(null, digestOf(80 + k), SELF), digestOf(80 + k)),
        jws: odd[odd.length - 1 - k] as string,
      },
    }));
    for (const a of inbound) {
      a.receipt.receipt = { ...a.receipt.receipt, messageId: a.message.envelope.id, to: PARTNER };
    }
    await store.inbound.insertAnswered(inbound);
    expect(
      await store.inbound.find(inbound.map((a) => ({ from: PARTNER, id: a.message.envelope.id }))),
    ).toEqual(
      new Map(
        inbound.map((a) => [
          inboundKey(PARTNER, a.message.envelope.id),
          { digest: a.message.digest, jws: a.message.jws },
        ]),
      ),
    );
    const receiptIds = new Set(inbound.map((a) => a.receipt.receipt.id));
    const receiptsDue = (
      await store.receipts.claimUnpublished({ now: T0, limit: 1000, leaseMs: 1000 })
    ).filter((d) => receiptIds.has(d.id));
    expect(new Map(receiptsDue.map((d) => [d.id, d.jws]))).toEqual(
      new Map(inbound.map((a) => [a.receipt.receipt.id, a.receipt.jws])),
    );

    const received = odd.map((jws, k) => ({
      receipt: receiptFor(out[k]?.envelope.id ?? null, digestOf(70 + k)),
      jws,
      digest: digestOf(90 + k),
    }));
    await store.receipts.insertReceivedClosing(received, T0);
    expect(await store.receipts.findReceived(received.map((r) => r.receipt.id))).toEqual(
      new Map(received.map((r) => [r.receipt.id, { digest: r.digest, jws: r.jws }])),
    );
  });

  it("keeps quarantined bytes exactly, once per digest, and knows the receipt that answered them", async () => {
    const raw = new Uint8Array([0, 255, 1, 254, 0x2e, 10, 13, 0]);
    const r = issued(
      { ...receiptFor(null, digestOf(11), SELF, "rejected"), to: PARTNER },
      digestOf(11),
    );
    const entry = {
      subject: "liaison.inbox.x",
      raw,
      digest: digestOf(11),
      code: "malformed" as const,
      detail: "d",
      issues: [],
      kind: "unknown" as const,
      claimedFrom: PARTNER,
      messageId: null,
      receiptId: r.receipt.id,
    };
    const seq = await store.quarantine.insert(entry);
    await store.receipts.insertIssued([r]);
    if (seq === null) throw new Error("not quarantined");
    const [row] = await queries.listQuarantine({ after: seq - 1, limit: 1 });
    expect(row?.code).toBe("malformed");
    expect(Array.from(row?.raw ?? [])).toEqual(Array.from(raw));
    expect(row?.receiptId).toBe(r.receipt.id);
    // The same bytes again (a redelivery): kept once; the earlier answer is found and re-sent.
    expect(await store.quarantine.insert({ ...entry, receiptId: randomUUID() })).toBeNull();
    expect(await store.quarantine.answerFor(digestOf(11))).toBe(r.receipt.id);
    expect(await store.quarantine.answerFor(digestOf(12))).toBeNull();
    const claim = () =>
      store.receipts.claimUnpublished({
        now: new Date(T0.getTime() + 86_400_000),
        limit: 1000,
        leaseMs: 1,
      });
    expect((await claim()).map((q) => q.id)).toContain(r.receipt.id);
    await store.receipts.markPublished([r.receipt.id], T0);
    expect((await claim()).map((q) => q.id)).not.toContain(r.receipt.id);
    await store.receipts.requeueById(r.receipt.id, T0);
    expect((await claim()).map((q) => q.id)).toContain(r.receipt.id);
    expect(await queries.quarantineCount()).toBeGreaterThanOrEqual(1);
  });

  it("pages the log newest first with a cursor", async () => {
    for (let i = 0; i < 5; i++) {
      const e = envelope([SELF], PARTNER);
      await store.inbound.insert([
        { envelope: e, jws: `p-${i}`, digest: digestOf(200 + i), kid: "k" },
      ]);
    }
    const first = await queries.listMessages({ direction: "inbound", limit: 2 });
    const second = await queries.listMessages({
      direction: "inbound",
      limit: 2,
      before: first.at(-1)?.seq,
    });
    expect(first).toHaveLength(2);
    expect(second).toHaveLength(2);
    expect((first[0]?.seq ?? 0) > (first[1]?.seq ?? 0)).toBe(true);
    expect((first[1]?.seq ?? 0) > (second[0]?.seq ?? 0)).toBe(true);
  });
});
