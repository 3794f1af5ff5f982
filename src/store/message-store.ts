/**
 * The repository over the drizzle schema: every write the delivery layer needs, each in the
 * transaction that keeps the log, the outbox and the receipts consistent. The same code runs
 * on postgres.js and PGlite.
 */
import { and, asc, desc, eq, gt, inArray, isNull, lt, lte, or, sql } from "drizzle-orm";
import { LiaisonError } from "../protocol/errors.ts";
import type { Envelope, Receipt, ReceiptStatus } from "../protocol/types.ts";
import type { Db } from "./database.ts";
import {
  type DeliveryStatus,
  deliveries,
  messages,
  parties,
  partyKeys,
  quarantine,
  receipts,
} from "./schema.ts";

export interface PartyRecord {
  id: string;
  name: string;
  country: string;
  kind: string;
  inboundSubject: string;
}

export interface KeyRecord {
  kid: string;
  partyId: string;
  alg: string;
  publicJwk: Record<string, unknown>;
  validFrom: Date;
  validUntil: Date | null;
  revokedAt: Date | null;
}

export interface SignedMessage {
  envelope: Envelope;
  jws: string;
  digest: string;
  kid: string;
}

export interface IssuedReceipt {
  receipt: Receipt;
  /** Digest of the message bytes the receipt answers. */
  messageDigest: string;
  jws: string;
  digest: string;
}

export interface QuarantineInput {
  subject: string;
  raw: Uint8Array;
  digest: string;
  code: string;
  detail: string;
  issues: Array<{ path: string; message: string }>;
  kind: string;
  claimedFrom: string | null;
  messageId: string | null;
}

export interface DueDelivery {
  messageId: string;
  recipient: string;
  subject: string;
  jws: string;
  /** SHA-256 of the JWS bytes: the broker de-duplication id (Nats-Msg-Id). */
  digest: string;
  attempts: number;
}

export interface DueReceipt {
  id: string;
  toParty: string;
  subject: string;
  jws: string;
  digest: string;
}

export type ReceivedReceiptOutcome =
  | { ok: true; duplicate: boolean; status: ReceiptStatus }
  | { ok: false; code: "message_unknown" | "digest_mismatch"; detail: string };

export type MessageRow = typeof messages.$inferSelect;
export type DeliveryRow = typeof deliveries.$inferSelect;
export type ReceiptRow = typeof receipts.$inferSelect;
export type QuarantineRow = typeof quarantine.$inferSelect;

export class MessageStore {
  private outboundQueue: Array<{
    message: SignedMessage;
    resolve: () => void;
    reject: (err: unknown) => void;
  }> = [];
  private outboundFlushing = false;

  constructor(private readonly db: Db) {}

  /**
   * Registers or updates a party and its keys in one transaction: keys are inserted, or their
   * revocation and end of validity brought forward (never back); a kid never moves to another
   * party (request_invalid, and nothing of the call is written).
   */
  async registerParty(party: PartyRecord, keys: KeyRecord[]): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx
        .insert(parties)
        .values(party)
        .onConflictDoUpdate({
          target: parties.id,
          set: {
            name: party.name,
            country: party.country,
            kind: party.kind,
            inboundSubject: party.inboundSubject,
            updatedAt: sql`now()`,
          },
        });
      for (const key of keys) {
        const [row] = await tx
          .insert(partyKeys)
          .values(key)
          .onConflictDoUpdate({
            target: partyKeys.kid,
            // One way only: a revocation is never lifted and moves only earlier, a validity only
            // ends earlier, and validFrom never moves (an old or forged document cannot undo
            // a revocation). least() ignores nulls.
            set: {
              validUntil: sql`least(${partyKeys.validUntil}, excluded.valid_until)`,
              revokedAt: sql`least(${partyKeys.revokedAt}, excluded.revoked_at)`,
            },
            setWhere: eq(partyKeys.partyId, key.partyId),
          })
          .returning({ kid: partyKeys.kid });
        if (row === undefined) {
          throw new LiaisonError(
            "request_invalid",
            `key ${key.kid} is registered for another party`,
          );
        }
      }
    });
  }

  listParties(): Promise<PartyRecord[]> {
    return this.db
      .select({
        id: parties.id,
        name: parties.name,
        country: parties.country,
        kind: parties.kind,
        inboundSubject: parties.inboundSubject,
      })
      .from(parties)
      .orderBy(asc(parties.id));
  }

  listKeys(): Promise<KeyRecord[]> {
    return this.db
      .select({
        kid: partyKeys.kid,
        partyId: partyKeys.partyId,
        alg: partyKeys.alg,
        publicJwk: partyKeys.publicJwk,
        validFrom: partyKeys.validFrom,
        validUntil: partyKeys.validUntil,
        revokedAt: partyKeys.revokedAt,
      })
      .from(partyKeys)
      .orderBy(asc(partyKeys.partyId), asc(partyKeys.validFrom));
  }

  /**
   * The message log row and one outbox row per recipient, in one transaction. Concurrent calls
   * are group-committed: while one transaction runs, the next calls queue and go together in
   * the following one (two multi-row statements). Should a group fail, each message is retried
   * in a transaction of its own, so one bad row fails only its own caller.
   */
  insertOutbound(message: SignedMessage): Promise<void> {
    return new Promise((resolve, reject) => {
      this.outboundQueue.push({ message, resolve, reject });
      if (!this.outboundFlushing) void this.flushOutbound();
    });
  }

  private async flushOutbound(): Promise<void> {
    this.outboundFlushing = true;
    try {
      while (this.outboundQueue.length > 0) {
        const group = this.outboundQueue.splice(0, 500);
        try {
          await this.insertOutboundGroup(group.map((g) => g.message));
          for (const g of group) g.resolve();
        } catch (err) {
          if (group.length === 1) {
            group[0]?.reject(err);
            continue;
          }
          for (const g of group) {
            await this.insertOutboundGroup([g.message]).then(g.resolve, g.reject);
          }
        }
      }
    } finally {
      this.outboundFlushing = false;
    }
  }

  private async insertOutboundGroup(group: SignedMessage[]): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.insert(messages).values(group.map((m) => messageValues("outbound", m)));
      await tx.insert(deliveries).values(
        group.flatMap((m) =>
          m.envelope.to.map((recipient) => ({
            messageId: m.envelope.id,
            recipient,
            nextAttemptAt: new Date(m.envelope.sentAt),
          })),
        ),
      );
    });
  }

  /**
   * Claims deliveries that are due: not yet published, or published without a receipt by the
   * time their retry is due. Claimed rows are leased until their next attempt (now + backoff:
   * base·2^(n−1), capped, ±25 % jitter), so replicas sharing the database skip them
   * (FOR UPDATE SKIP LOCKED). Rows past the retry budget become `failed` instead. Three
   * statements per batch, whatever its size.
   */
  async claimDueDeliveries(opts: {
    now: Date;
    limit: number;
    maxAttempts: number;
    retryBaseMs: number;
    retryMaxMs: number;
  }): Promise<{ due: DueDelivery[]; failed: Array<{ messageId: string; recipient: string }> }> {
    return this.db.transaction(async (tx) => {
      const now = opts.now.toISOString();
      const candidates = tx.$with("candidates").as(
        tx
          .select({
            messageId: deliveries.messageId,
            recipient: deliveries.recipient,
            expiresAt: sql<Date>`${messages.expiresAt}`.as("expires_at"),
          })
          .from(deliveries)
          .innerJoin(
            messages,
            and(eq(messages.id, deliveries.messageId), eq(messages.direction, "outbound")),
          )
          .where(
            and(
              inArray(deliveries.status, ["queued", "sent"]),
              lte(deliveries.nextAttemptAt, opts.now),
            ),
          )
          .orderBy(asc(deliveries.nextAttemptAt))
          .limit(opts.limit)
          .for("update", { of: deliveries, skipLocked: true }),
      );
      // The budget counts publishes the broker accepted: a delivery the broker never took (link
      // down, partner's inbox missing) stays queued and keeps trying until the message expires.
      const overBudget = sql`(${deliveries.status} = 'sent' and ${deliveries.attempts} >= ${opts.maxAttempts})`;
      const expired = sql`(${candidates.expiresAt} <= ${now}::timestamptz)`;
      const exhausted = sql`(${overBudget} or ${expired})`;
      const claimed = await tx
        .with(candidates)
        .update(deliveries)
        .set({
          status: sql`case when ${exhausted} then 'failed' else ${deliveries.status} end`,
          lastError: sql`case when ${overBudget} then 'no receipt within the retry budget' when ${expired} then 'expired before it was delivered' else ${deliveries.lastError} end`,
          attempts: sql`case when ${exhausted} then ${deliveries.attempts} else ${deliveries.attempts} + 1 end`,
          nextAttemptAt: sql`${now}::timestamptz + least(${opts.retryMaxMs}::float8, ${opts.retryBaseMs}::float8 * power(2, least(${deliveries.attempts}, 30))) * (0.75 + random() * 0.5) * interval '1 millisecond'`,
          updatedAt: opts.now,
        })
        .from(candidates)
        .where(
          and(
            eq(deliveries.messageId, candidates.messageId),
            eq(deliveries.recipient, candidates.recipient),
          ),
        )
        .returning({
          messageId: deliveries.messageId,
          recipient: deliveries.recipient,
          attempts: deliveries.attempts,
          status: deliveries.status,
        });
      const failed = claimed
        .filter((c) => c.status === "failed")
        .map(({ messageId, recipient }) => ({ messageId, recipient }));
      const live = claimed.filter((c) => c.status !== "failed");
      if (live.length === 0) return { due: [], failed };
      const details = await tx
        .select({
          messageId: messages.id,
          recipient: parties.id,
          jws: messages.jws,
          digest: messages.digest,
          subject: parties.inboundSubject,
        })
        .from(messages)
        .innerJoin(deliveries, eq(deliveries.messageId, messages.id))
        .innerJoin(parties, eq(parties.id, deliveries.recipient))
        .where(
          and(
            eq(messages.direction, "outbound"),
            inArray(
              messages.id,
              live.map((d) => d.messageId),
            ),
          ),
        );
      const byKey = new Map(details.map((d) => [`${d.messageId} ${d.recipient}`, d]));
      const due = live.flatMap((c) => {
        const d = byKey.get(`${c.messageId} ${c.recipient}`);
        return d === undefined
          ? []
          : [
              {
                messageId: c.messageId,
                recipient: c.recipient,
                attempts: c.attempts,
                jws: d.jws,
                digest: d.digest,
                subject: d.subject,
              },
            ];
      });
      return { due, failed };
    });
  }

  /** The broker acknowledged these publishes: `queued` becomes `sent` (a receipt may already be in). */
  async markDeliveriesSent(
    sent: Array<{ messageId: string; recipient: string }>,
    at: Date,
  ): Promise<void> {
    if (sent.length === 0) return;
    await this.db
      .update(deliveries)
      // The first publish the broker accepted: the retry budget counts from here.
      .set({ status: "sent", attempts: 1, lastError: null, updatedAt: at })
      .where(
        and(
          eq(deliveries.status, "queued"),
          or(
            ...sent.map((d) =>
              and(eq(deliveries.messageId, d.messageId), eq(deliveries.recipient, d.recipient)),
            ),
          ),
        ),
      );
  }

  async markDeliveryError(
    messageId: string,
    recipient: string,
    error: string,
    at: Date,
  ): Promise<void> {
    await this.db
      .update(deliveries)
      .set({ lastError: error.slice(0, 500), updatedAt: at })
      .where(and(eq(deliveries.messageId, messageId), eq(deliveries.recipient, recipient)));
  }

  /** Inbound messages already logged under these (sender, id) pairs, keyed `${from} ${id}`. */
  async findInbound(
    keys: Array<{ from: string; id: string }>,
  ): Promise<Map<string, { digest: string; jws: string }>> {
    if (keys.length === 0) return new Map();
    const rows = await this.db
      .select({
        id: messages.id,
        from: messages.fromParty,
        digest: messages.digest,
        jws: messages.jws,
      })
      .from(messages)
      .where(
        and(
          eq(messages.direction, "inbound"),
          inArray(
            messages.id,
            keys.map((k) => k.id),
          ),
        ),
      );
    return new Map(rows.map((r) => [inboundKey(r.from, r.id), { digest: r.digest, jws: r.jws }]));
  }

  /**
   * Inbound messages and our receipts for them, in one transaction, two statements. Returns the
   * ids stored; a message whose id is already logged (another replica, a redelivery) is not
   * stored again and its receipt is not written.
   */
  async recordInbound(
    items: Array<{ message: SignedMessage; receipt: IssuedReceipt }>,
  ): Promise<Set<string>> {
    if (items.length === 0) return new Set();
    return this.db.transaction(async (tx) => {
      const inserted = await tx
        .insert(messages)
        .values(items.map((i) => messageValues("inbound", i.message)))
        .onConflictDoNothing()
        .returning({ id: messages.id, from: messages.fromParty });
      const stored = new Set(inserted.map((r) => inboundKey(r.from, r.id)));
      const receiptRows = items
        .filter((i) => stored.has(inboundKey(i.message.envelope.from, i.message.envelope.id)))
        .map((i) => issuedValues(i.receipt));
      if (receiptRows.length > 0) await tx.insert(receipts).values(receiptRows);
      return stored;
    });
  }

  /** Sends the receipt we issued for a message again (the sender retried: it did not get it). */
  async requeueIssuedReceipt(messageId: string, digest: string, at: Date): Promise<boolean> {
    const rows = await this.db
      .update(receipts)
      .set({ publishedAt: null, nextPublishAt: at })
      .where(
        and(
          eq(receipts.direction, "issued"),
          eq(receipts.messageId, messageId),
          eq(receipts.messageDigest, digest),
          eq(receipts.status, "accepted"),
        ),
      )
      .returning({ id: receipts.id });
    return rows.length > 0;
  }

  /**
   * The bytes, the reason and, when the sender is known, the negative receipt: one transaction.
   * Returns null, writing nothing, when these exact bytes are already in quarantine.
   */
  async quarantine(input: QuarantineInput, receipt: IssuedReceipt | null): Promise<number | null> {
    return this.db.transaction(async (tx) => {
      const [row] = await tx
        .insert(quarantine)
        .values({ ...input, receiptId: receipt?.receipt.id ?? null })
        .onConflictDoNothing({ target: quarantine.digest })
        .returning({ seq: quarantine.seq });
      if (row === undefined) {
        // These exact bytes are already kept: send the answer we gave them again (the sender
        // retried, so it may not have it), and write nothing new.
        await tx
          .update(receipts)
          .set({ publishedAt: null, nextPublishAt: sql`now()` })
          .where(
            and(
              eq(receipts.direction, "issued"),
              sql`${receipts.id} = (select ${quarantine.receiptId} from ${quarantine} where ${quarantine.digest} = ${input.digest})`,
            ),
          );
        return null;
      }
      if (receipt !== null) await tx.insert(receipts).values(issuedValues(receipt));
      return row.seq;
    });
  }

  /** A receipt of ours that answers bytes we did not log again (see InboxProcessor.duplicate). */
  async insertIssuedReceipt(receipt: IssuedReceipt): Promise<void> {
    await this.db.insert(receipts).values(issuedValues(receipt));
  }

  /**
   * Partners' verified receipts for our messages: each checked against what we sent (the message
   * id, the recipient, the digest of the exact bytes), logged, and its delivery closed. One
   * transaction for the batch; the outcome of each receipt in input order.
   */
  async applyReceivedReceipts(
    inputs: Array<{ receipt: Receipt; jws: string; digest: string }>,
    at: Date,
  ): Promise<ReceivedReceiptOutcome[]> {
    if (inputs.length === 0) return [];
    return this.db.transaction(async (tx) => {
      const ids = [
        ...new Set(
          inputs.flatMap((i) => (i.receipt.messageId === null ? [] : [i.receipt.messageId])),
        ),
      ];
      const sent =
        ids.length === 0
          ? []
          : await tx
              .select({ id: messages.id, recipient: deliveries.recipient, digest: messages.digest })
              .from(messages)
              .innerJoin(deliveries, eq(deliveries.messageId, messages.id))
              .where(and(eq(messages.direction, "outbound"), inArray(messages.id, ids)));
      const digestOf = new Map(sent.map((r) => [`${r.id} ${r.recipient}`, r.digest]));
      const outcomes: ReceivedReceiptOutcome[] = inputs.map(({ receipt }) => {
        const digest =
          receipt.messageId === null
            ? undefined
            : digestOf.get(`${receipt.messageId} ${receipt.from}`);
        if (digest === undefined) {
          return {
            ok: false,
            code: "message_unknown",
            detail: "no message with this id was sent to the receipt's sender",
          };
        }
        if (digest !== receipt.digest.value) {
          return {
            ok: false,
            code: "digest_mismatch",
            detail: "the receipt's digest is not the digest of the message sent",
          };
        }
        return { ok: true, duplicate: false, status: receipt.status };
      });
      const valid = inputs.filter((_, i) => outcomes[i]?.ok === true);
      if (valid.length === 0) return outcomes;
      const inserted = await tx
        .insert(receipts)
        .values(
          valid.map(({ receipt, jws, digest }) => ({
            id: receipt.id,
            direction: "received" as const,
            messageId: receipt.messageId,
            messageDigest: receipt.digest.value,
            fromParty: receipt.from,
            toParty: receipt.to,
            status: receipt.status,
            errors: receipt.errors,
            jws,
            digest,
          })),
        )
        .onConflictDoNothing()
        .returning({ id: receipts.id });
      const fresh = new Set(inserted.map((r) => r.id));
      for (const status of ["accepted", "rejected"] as const) {
        const closing = valid.filter((v) => v.receipt.status === status && fresh.has(v.receipt.id));
        if (closing.length === 0) continue;
        const delivery: DeliveryStatus = status === "accepted" ? "delivered" : "rejected";
        await tx
          .update(deliveries)
          .set({
            status: delivery,
            receiptId: sql`(select r.id from receipts r where r.direction = 'received' and r.message_id = ${deliveries.messageId} and r.from_party = ${deliveries.recipient} order by r.seq desc limit 1)`,
            lastError: null,
            updatedAt: at,
          })
          .where(
            and(
              inArray(deliveries.status, ["queued", "sent", "failed"]),
              or(
                ...closing.map((c) =>
                  and(
                    eq(deliveries.messageId, c.receipt.messageId as string),
                    eq(deliveries.recipient, c.receipt.from),
                  ),
                ),
              ),
            ),
          );
      }
      return outcomes.map((o, i) => {
        const receiptId = inputs[i]?.receipt.id ?? "";
        return o.ok ? { ...o, duplicate: !fresh.has(receiptId) } : o;
      });
    });
  }

  /** Issued receipts not yet acknowledged by the broker, leased like deliveries. */
  async claimUnpublishedReceipts(opts: {
    now: Date;
    limit: number;
    leaseMs: number;
  }): Promise<DueReceipt[]> {
    return this.db.transaction(async (tx) => {
      const rows = await tx
        .select({
          id: receipts.id,
          toParty: receipts.toParty,
          jws: receipts.jws,
          digest: receipts.digest,
          attempts: receipts.publishAttempts,
        })
        .from(receipts)
        .where(
          and(
            eq(receipts.direction, "issued"),
            isNull(receipts.publishedAt),
            lte(receipts.nextPublishAt, opts.now),
          ),
        )
        .orderBy(asc(receipts.nextPublishAt))
        .limit(opts.limit)
        .for("update", { skipLocked: true });
      if (rows.length === 0) return [];
      await tx
        .update(receipts)
        .set({
          publishAttempts: sql`${receipts.publishAttempts} + 1`,
          nextPublishAt: new Date(opts.now.getTime() + opts.leaseMs),
        })
        .where(
          and(
            eq(receipts.direction, "issued"),
            inArray(
              receipts.id,
              rows.map((r) => r.id),
            ),
          ),
        );
      const subjects = await tx
        .select({ id: parties.id, subject: parties.inboundSubject })
        .from(parties)
        .where(
          inArray(
            parties.id,
            rows.map((r) => r.toParty),
          ),
        );
      const subjectById = new Map(subjects.map((s) => [s.id, s.subject]));
      return rows.map((r) => ({
        id: r.id,
        toParty: r.toParty,
        jws: r.jws,
        digest: r.digest,
        subject: subjectById.get(r.toParty) ?? "",
      }));
    });
  }

  async markReceiptsPublished(ids: string[], at: Date): Promise<void> {
    if (ids.length === 0) return;
    await this.db
      .update(receipts)
      .set({ publishedAt: at })
      .where(and(eq(receipts.direction, "issued"), inArray(receipts.id, ids)));
  }

  async getMessage(
    id: string,
  ): Promise<
    { message: MessageRow; deliveries: DeliveryRow[]; receipts: ReceiptRow[] } | undefined
  > {
    const rows = await this.db
      .select()
      .from(messages)
      .where(eq(messages.id, id))
      .orderBy(asc(messages.seq));
    const message = rows.find((r) => r.direction === "outbound") ?? rows[0];
    if (message === undefined) return undefined;
    const [d, r] = await Promise.all([
      message.direction === "outbound"
        ? this.db
            .select()
            .from(deliveries)
            .where(eq(deliveries.messageId, id))
            .orderBy(asc(deliveries.recipient))
        : Promise.resolve([]),
      this.db
        .select()
        .from(receipts)
        .where(
          and(
            eq(receipts.messageId, id),
            eq(receipts.messageDigest, message.digest),
            eq(receipts.direction, message.direction === "outbound" ? "received" : "issued"),
          ),
        )
        .orderBy(asc(receipts.seq)),
    ]);
    return { message, deliveries: d, receipts: r };
  }

  /** Keyset pagination on the log's sequence number, newest first. */
  listMessages(opts: {
    direction: "inbound" | "outbound";
    before?: number;
    limit: number;
  }): Promise<MessageRow[]> {
    return this.db
      .select()
      .from(messages)
      .where(
        and(
          eq(messages.direction, opts.direction),
          opts.before === undefined ? undefined : lt(messages.seq, opts.before),
        ),
      )
      .orderBy(desc(messages.seq))
      .limit(opts.limit);
  }

  listQuarantine(opts: { after?: number; limit: number }): Promise<QuarantineRow[]> {
    return this.db
      .select()
      .from(quarantine)
      .where(opts.after === undefined ? undefined : gt(quarantine.seq, opts.after))
      .orderBy(asc(quarantine.seq))
      .limit(opts.limit);
  }

  async deliveryCounts(): Promise<Record<DeliveryStatus, number>> {
    const rows = await this.db
      .select({ status: deliveries.status, n: sql<number>`count(*)::int` })
      .from(deliveries)
      .groupBy(deliveries.status);
    const counts: Record<DeliveryStatus, number> = {
      queued: 0,
      sent: 0,
      delivered: 0,
      rejected: 0,
      failed: 0,
    };
    for (const row of rows) counts[row.status] = Number(row.n);
    return counts;
  }

  async quarantineCount(): Promise<number> {
    const [row] = await this.db.select({ n: sql<number>`count(*)::int` }).from(quarantine);
    return Number(row?.n ?? 0);
  }

  /** Cheap round trip for readiness. */
  async ping(): Promise<void> {
    await this.db.execute(sql`select 1`);
  }
}

function messageValues(direction: "inbound" | "outbound", m: SignedMessage) {
  const e = m.envelope;
  return {
    id: e.id,
    direction,
    type: e.type,
    schemaVersion: e.schemaVersion,
    fromParty: e.from,
    toParties: e.to,
    caseRef: e.caseRef,
    inReplyTo: e.inReplyTo ?? null,
    sentAt: new Date(e.sentAt),
    expiresAt: new Date(e.expiresAt),
    classification: e.handling.classification,
    kid: m.kid,
    jws: m.jws,
    digest: m.digest,
  };
}

function issuedValues(r: IssuedReceipt) {
  return {
    id: r.receipt.id,
    direction: "issued" as const,
    messageId: r.receipt.messageId,
    messageDigest: r.messageDigest,
    fromParty: r.receipt.from,
    toParty: r.receipt.to,
    status: r.receipt.status,
    errors: r.receipt.errors,
    jws: r.jws,
    digest: r.digest,
    nextPublishAt: new Date(r.receipt.sentAt),
  };
}

/** The key of an inbound message: ids are unique per sender. */
export function inboundKey(from: string, id: string): string {
  return `${from} ${id}`;
}
