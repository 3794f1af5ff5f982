/**
 * The dispatcher's prompt path on a real nats-server and PostgreSQL: rows a commit leased to the
 * process are published at once from memory, without a pass; rows whose prompt publish never
 * happened (the process stopped between commit and publish) wait out their lease and are then
 * published by a pass, as any due row.
 */
import { randomUUID } from "node:crypto";
import { connect, type JetStreamManager, type NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { Dispatcher, type DispatcherDeps, MAX_PROMPT_ROWS } from "../../src/delivery/dispatcher.ts";
import type { IssuedReceipt, Log, SignedMessage, Store } from "../../src/delivery/ports.ts";
import { ReceiptIssuer } from "../../src/delivery/receipt-issuer.ts";
import { WakeSignal } from "../../src/delivery/wake-signal.ts";
import type { Envelope } from "../../src/protocol/types.ts";
import { type Database, openDatabase } from "../../src/store/database.ts";
import { SqlPartyStore } from "../../src/store/party-store.ts";
import { ReadQueries } from "../../src/store/read-queries.ts";
import { createStore } from "../../src/store/store.ts";
import { NatsTransport } from "../../src/transport/nats-transport.ts";
import { createTestDatabase } from "../helpers/databases.ts";
import { uniqueTag, waitFor } from "../helpers/network.ts";
import { makeParty, signerOf } from "../helpers/protocol-fixtures.ts";

const SELF = "CN-MPS-HEKOU";
const PARTNER = "VN-BGC-LAOCAI";
const tag = uniqueTag();
const STREAM = `T_${tag}_PROMPT`;
const SUBJECT = `test.${tag}.inbox.${PARTNER}`;
const RETRY = { baseMs: 30_000, maxMs: 60_000, maxAttempts: 5 };
const quiet: Log = { info() {}, warn() {}, error() {} };

let database: Database;
let drop: () => Promise<void>;
let store: Store;
let queries: ReadQueries;
let transport: NatsTransport;
let nc: NatsConnection;
let jsm: JetStreamManager;
let now = new Date();

beforeAll(async () => {
  const db = await createTestDatabase(inject("databaseUrl"));
  drop = db.drop;
  database = await openDatabase({ url: db.url });
  store = createStore(database.db);
  queries = new ReadQueries(database.db);
  const parties = new SqlPartyStore(database.db);
  for (const id of [SELF, PARTNER]) {
    await parties.register(
      {
        id,
        name: id,
        country: id.slice(0, 2),
        kind: "border-police-liaison-office",
        inboundSubject: id === PARTNER ? SUBJECT : `test.${tag}.inbox.${id}`,
        // The partner accepts batch receipts (its registered record), as the batch tests need.
        ...(id === PARTNER ? { receiptBatches: true } : {}),
      },
      [],
    );
  }
  transport = await NatsTransport.connect(inject("natsUrl"), "dispatcher-test");
  await transport.ensureStream({ name: STREAM, subject: SUBJECT, maxAgeMs: 3_600_000 });
  nc = await connect({ servers: inject("natsUrl") });
  jsm = await nc.jetstreamManager();
});

afterAll(async () => {
  await jsm?.streams.delete(STREAM).catch(() => {});
  await nc?.close();
  await transport?.close();
  await database?.close();
  await drop?.();
});

function dispatcher(extra: Partial<DispatcherDeps> = {}): Dispatcher {
  return new Dispatcher({
    ...extra,
    store,
    transport,
    clock: () => now,
    wake: new WakeSignal(),
    log: quiet,
    batchSize: 100,
    pollMs: 50,
    retry: RETRY,
    subjectOf: (party) => (party === PARTNER ? SUBJECT : undefined),
    ...extra,
  });
}

function message(): SignedMessage {
  const sentAt = now;
  const envelope: Envelope = {
    id: randomUUID(),
    type: "case.notice",
    schemaVersion: 1,
    from: SELF,
    to: [PARTNER],
    caseRef: "CN-HEKOU-2026-0042",
    sentAt: sentAt.toISOString(),
    expiresAt: new Date(sentAt.getTime() + 86_400_000).toISOString(),
    handling: { classification: "restricted", onwardDissemination: "forbidden" },
    body: {},
  };
  const digest = randomUUID().replaceAll("-", "").padEnd(64, "0");
  return { envelope, jws: `jws-${envelope.id}`, digest, kid: "k" };
}

function receipt(): IssuedReceipt {
  const id = randomUUID();
  return {
    receipt: {
      id,
      type: "receipt",
      schemaVersion: 1,
      from: SELF,
      to: PARTNER,
      sentAt: now.toISOString(),
      messageId: randomUUID(),
      digest: { alg: "sha-256", value: "a".repeat(64) },
      status: "accepted",
      errors: [],
    },
    messageDigest: "a".repeat(64),
    jws: `receipt-${id}`,
    digest: id.replaceAll("-", "").padEnd(64, "1"),
  };
}

/** The payloads the partner's stream holds. */
async function published(): Promise<string[]> {
  const info = await jsm.streams.info(STREAM);
  const out: string[] = [];
  for (
    let seq = info.state.first_seq;
    seq <= info.state.last_seq && info.state.messages > 0;
    seq++
  ) {
    const m = await jsm.streams.getMessage(STREAM, { seq }).catch(() => undefined);
    if (m !== undefined) out.push(new TextDecoder().decode(m.data));
  }
  return out;
}

async function status(messageId: string) {
  const d = (await queries.getMessage(messageId))?.deliveries[0];
  return d === undefined ? undefined : { status: d.status, attempts: d.attempts };
}

describe("the dispatcher's prompt path", () => {
  it("publishes what a commit leased to it at once, without a pass, and marks it", async () => {
    now = new Date();
    const d = dispatcher(); // never started: no pass runs
    const m = message();
    await store.outbound.insert([m], d.deliveryLease());
    const r = receipt();
    await store.receipts.insertIssued([r], d.receiptLease());
    d.sendDeliveries([
      { messageId: m.envelope.id, recipient: PARTNER, jws: m.jws, digest: m.digest, attempts: 1 },
    ]);
    d.sendReceipts([{ id: r.receipt.id, toParty: PARTNER, jws: r.jws, digest: r.digest }]);
    await d.stop(); // waits for the prompt publishes under way

    expect(await published()).toEqual(expect.arrayContaining([m.jws, r.jws]));
    expect(await status(m.envelope.id)).toEqual({ status: "sent", attempts: 1 });
    // Nothing was left for a pass: the receipt is marked published, the delivery leased.
    expect(await dispatcher().tick()).toBe(0);
  });

  it("leaves rows whose prompt publish never happened to a pass once their lease ends", async () => {
    now = new Date();
    const stopped = dispatcher();
    await stopped.stop();
    const m = message();
    const lease = stopped.deliveryLease();
    await store.outbound.insert([m], lease);
    const r = receipt();
    await store.receipts.insertIssued([r], stopped.receiptLease());
    // Stopped between commit and publish (a shutdown): nothing goes out.
    stopped.sendDeliveries([
      { messageId: m.envelope.id, recipient: PARTNER, jws: m.jws, digest: m.digest, attempts: 1 },
    ]);
    stopped.sendReceipts([{ id: r.receipt.id, toParty: PARTNER, jws: r.jws, digest: r.digest }]);
    const later = dispatcher();
    expect(await later.tick()).toBe(0); // still leased: no pass takes them
    expect(await published()).not.toContain(m.jws);
    expect(await status(m.envelope.id)).toEqual({ status: "queued", attempts: 1 });

    now = new Date(Math.max(lease.until.getTime(), now.getTime() + RETRY.baseMs) + 1);
    // (The first test's delivery, sent without a receipt, is due again by now too.)
    expect(await later.tick()).toBeGreaterThanOrEqual(2);
    await waitFor("both published", async () => {
      const all = await published();
      return all.includes(m.jws) && all.includes(r.jws) ? true : undefined;
    });
    expect(await status(m.envelope.id)).toEqual({ status: "sent", attempts: 1 });
  });

  it("holds at most MAX_PROMPT_ROWS in flight: the rows beyond wait for their lease, and the bound frees up as publishes end", async () => {
    now = new Date();
    const d = dispatcher();
    const [a, b, c] = [message(), message(), message()];
    await store.outbound.insert([a, b, c], d.deliveryLease());
    const row = (m: SignedMessage) => ({
      messageId: m.envelope.id,
      recipient: PARTNER,
      jws: m.jws,
      digest: m.digest,
      attempts: 1,
    });
    // One batch one row over the bound: the rows that fit go out, the last one waits.
    d.sendDeliveries([...Array.from({ length: MAX_PROMPT_ROWS }, () => row(a)), row(b)]);
    await d.settled();
    expect(await status(a.envelope.id)).toEqual({ status: "sent", attempts: 1 });
    expect(await status(b.envelope.id)).toEqual({ status: "queued", attempts: 1 });
    expect(await published()).not.toContain(b.jws);
    // Those publishes ended: the bound is free again for what is committed next.
    d.sendDeliveries([row(c)]);
    await d.stop();
    expect(await status(c.envelope.id)).toEqual({ status: "sent", attempts: 1 });
  });

  it("never throws to the committer: a failure to start the publish leaves the rows leased", async () => {
    now = new Date();
    const broken = new Dispatcher({
      ...{ store, transport, clock: () => now, wake: new WakeSignal(), log: quiet },
      ...{ batchSize: 100, pollMs: 50, retry: RETRY },
      subjectOf: () => {
        throw new Error("registry unreadable, on purpose");
      },
    });
    const m = message();
    await store.outbound.insert([m], broken.deliveryLease());
    const row = {
      messageId: m.envelope.id,
      recipient: PARTNER,
      jws: m.jws,
      digest: m.digest,
      attempts: 1,
    };
    expect(() => broken.sendDeliveries([row])).not.toThrow();
    expect(() =>
      broken.sendReceipts([{ id: m.envelope.id, toParty: PARTNER, jws: "r", digest: m.digest }]),
    ).not.toThrow();
    await broken.stop();
    expect(await status(m.envelope.id)).toEqual({ status: "queued", attempts: 1 });
  });
});

describe("the dispatcher and our batch receipts", () => {
  /** Messages from the partner, logged with one batch receipt `issuer` signed for them. */
  async function answeredInBatch(issuer: ReceiptIssuer, n: number, lease?: { until: Date }) {
    const messages = Array.from({ length: n }, () => {
      const m = message();
      return { ...m, envelope: { ...m.envelope, from: PARTNER, to: [SELF] } };
    });
    const [batch] = await issuer.issueBatches(
      PARTNER,
      messages.map((m) => ({ messageId: m.envelope.id, digest: m.digest })),
    );
    if (batch === undefined) throw new Error("no batch");
    await store.inbound.insertAnswered(messages.map((message) => ({ message })));
    await store.receipts.insertIssuedBatches([batch], lease);
    return { messages, batch };
  }
  /** A segment of a JWS as JSON; {} for the made-up bytes the other tests publish. */
  const segment = (jws: string, n: 0 | 1) => {
    try {
      return JSON.parse(Buffer.from(jws.split(".")[n] ?? "", "base64url").toString());
    } catch {
      return {};
    }
  };
  const payloadOf = (jws: string) => segment(jws, 1);
  const headerOf = (jws: string) => segment(jws, 0);

  it("publishes a batch leased at commit on the prompt path, once, and marks it", async () => {
    now = new Date();
    const ours = await makeParty(SELF);
    const d = dispatcher();
    const issuer = new ReceiptIssuer(SELF, signerOf(ours), () => now, randomUUID);
    const { messages, batch } = await answeredInBatch(issuer, 3, d.receiptLease());
    d.sendReceipts([
      { id: batch.batch.id, toParty: PARTNER, jws: batch.jws, digest: batch.digest, batch: true },
    ]);
    await d.stop();
    expect((await published()).filter((p) => p === batch.jws)).toHaveLength(1);
    const shown = (await queries.getMessage(messages[0]?.envelope.id as string))?.receipts[0];
    expect(shown).toMatchObject({ id: batch.batch.id, publishAttempts: 1 });
    expect(shown?.publishedAt).not.toBeNull();
    // Nothing is left for a pass, even once the lease has ended.
    now = new Date(now.getTime() + RETRY.baseMs + 1);
    const pass = await store.receipts.claimUnpublished({ now, limit: 1000, leaseMs: 1000 });
    expect(pass.map((r) => r.id)).not.toContain(batch.batch.id);
  });

  it("signs a batch again when its key was revoked before a re-send: same entries, new id, new key; the old one never goes out again", async () => {
    now = new Date();
    const [oldKey, newKey] = [await makeParty(SELF), await makeParty(SELF)];
    const before = new ReceiptIssuer(SELF, signerOf(oldKey), () => now, randomUUID);
    const { messages, batch } = await answeredInBatch(before, 2);
    const renewing = new ReceiptIssuer(SELF, signerOf(newKey), () => now, randomUUID);
    const d = dispatcher({ renewReceipt: (jws) => renewing.renew(jws) });
    // First sent while the key was good (a dispatcher whose signer still holds it renews nothing).
    const first = dispatcher({ renewReceipt: (jws) => before.renew(jws) });
    await first.tick();
    expect(await published()).toContain(batch.jws);
    // A redelivery of the second message: its batch is due again, and its key is revoked now.
    const m = messages[1] as SignedMessage;
    expect(await store.receipts.requeueIssued(m.envelope.id, m.digest, now)).toBe(true);
    await d.tick();
    const renewed = (await published()).filter(
      (p) => headerOf(p).typ === "liaison-receipt-batch+jws" && payloadOf(p).id !== batch.batch.id,
    );
    const fresh = renewed.find((p) =>
      payloadOf(p).accepted.some((e: { messageId: string }) => e.messageId === m.envelope.id),
    );
    if (fresh === undefined) throw new Error("no renewed batch published");
    expect(headerOf(fresh).kid).toBe(newKey.signing.kid);
    expect(payloadOf(fresh)).toMatchObject({ from: SELF, to: PARTNER, type: "receipt.batch" });
    expect(payloadOf(fresh).accepted).toEqual(batch.batch.accepted);
    expect((await published()).filter((p) => p === batch.jws)).toHaveLength(1);
    // The old batch is kept as evidence, marked replaced; each message finds both.
    const shown = (await queries.getMessage(m.envelope.id))?.receipts ?? [];
    expect(shown.map((r) => [r.id, r.supersededBy, r.jws])).toEqual([
      [batch.batch.id, payloadOf(fresh).id, batch.jws],
      [payloadOf(fresh).id, null, fresh],
    ]);
    // Another redelivery sends the new one, never the old.
    now = new Date(now.getTime() + 1);
    expect(await store.receipts.requeueIssued(m.envelope.id, m.digest, now)).toBe(true);
    const due = await store.receipts.claimUnpublished({ now, limit: 1000, leaseMs: 1000 });
    expect(due.map((r) => r.id).filter((id) => id === batch.batch.id)).toEqual([]);
    expect(due.map((r) => r.id)).toContain(payloadOf(fresh).id);
  });
});
