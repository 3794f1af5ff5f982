/**
 * The read side the HTTP API serves: one message with its deliveries and receipts, pages of the
 * log and of the quarantine, counts. Nothing here writes.
 */
import { and, asc, desc, eq, gt, inArray, isNotNull, isNull, lt, lte, or, sql } from "drizzle-orm";
import type { Db } from "./database.ts";
import {
  alerts,
  cases,
  type DeliveryStatus,
  deliveries,
  messages,
  quarantine,
  receiptBatches,
  receipts,
} from "./schema.ts";
import { rows } from "./set-sql.ts";

export type MessageRow = typeof messages.$inferSelect;
export type DeliveryRow = typeof deliveries.$inferSelect;
/**
 * A receipt as the API shows it. An entry of a batch receipt shows the batch: its id, its JWS,
 * the digest of its bytes and, for ours, its publishing state and the batch that replaced it
 * (`batchId` names it too); a single receipt has `batchId` null.
 */
export type ReceiptRow = Omit<typeof receipts.$inferSelect, "jws" | "digest"> & {
  jws: string;
  digest: string;
};
export type QuarantineRow = typeof quarantine.$inferSelect;
export type CaseRow = typeof cases.$inferSelect;
export type AlertRow = typeof alerts.$inferSelect;

export interface MessageDetail {
  message: MessageRow;
  deliveries: DeliveryRow[];
  receipts: ReceiptRow[];
}

export class ReadQueries {
  constructor(private readonly db: Db) {}

  /**
   * Our outbound message with this id if there is one, else the inbound message logged first.
   * Outbound: its deliveries and the partners' receipts. Inbound: every receipt we issued that
   * names this id (negative receipts for rejected copies and receipts for other signature
   * encodings included), oldest first.
   */
  async getMessage(id: string): Promise<MessageDetail | undefined> {
    const rows = await this.db
      .select()
      .from(messages)
      .where(eq(messages.id, id))
      .orderBy(asc(messages.seq));
    const message = rows.find((r) => r.direction === "outbound") ?? rows[0];
    if (message === undefined) return undefined;
    const outbound = message.direction === "outbound";
    const [d, r] = await Promise.all([
      outbound
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
            outbound
              ? and(eq(receipts.direction, "received"), eq(receipts.messageDigest, message.digest))
              : eq(receipts.direction, "issued"),
          ),
        )
        .orderBy(asc(receipts.seq)),
    ]);
    return { message, deliveries: d, receipts: await this.withBatches(r) };
  }

  /** Entry rows of batch receipts as their batch (see ReceiptRow). */
  private async withBatches(found: Array<typeof receipts.$inferSelect>): Promise<ReceiptRow[]> {
    // By (direction, id), the key of the batches' only index: the entry row's direction is its
    // batch's. By id alone, PostgreSQL reads every batch (no skip scan before version 18).
    const idsOf = (direction: "issued" | "received") => [
      ...new Set(
        found.flatMap((r) => (r.batchId === null || r.direction !== direction ? [] : [r.batchId])),
      ),
    ];
    const byDirection = (["issued", "received"] as const).flatMap((direction) => {
      const ids = idsOf(direction);
      return ids.length === 0
        ? []
        : [and(eq(receiptBatches.direction, direction), inArray(receiptBatches.id, ids))];
    });
    const batches =
      byDirection.length === 0
        ? []
        : await this.db
            .select({
              id: receiptBatches.id,
              direction: receiptBatches.direction,
              jws: receiptBatches.jws,
              digest: receiptBatches.digest,
              publishedAt: receiptBatches.publishedAt,
              publishAttempts: receiptBatches.publishAttempts,
              nextPublishAt: receiptBatches.nextPublishAt,
              supersededBy: receiptBatches.supersededBy,
            })
            .from(receiptBatches)
            .where(or(...byDirection));
    const byKey = new Map(batches.map((b) => [`${b.direction} ${b.id}`, b]));
    return found.flatMap((r) => {
      if (r.batchId === null) {
        return r.jws === null || r.digest === null ? [] : [{ ...r, jws: r.jws, digest: r.digest }];
      }
      const batch = byKey.get(`${r.direction} ${r.batchId}`);
      if (batch === undefined) return [];
      const { direction: _, ...shown } = batch;
      return [{ ...r, ...shown }];
    });
  }

  /** Keyset pagination on the log's sequence number, newest first. */
  listMessages(opts: {
    direction: "inbound" | "outbound";
    before?: number | undefined;
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

  /** Oldest first, after a sequence number. */
  listQuarantine(opts: { after?: number | undefined; limit: number }): Promise<QuarantineRow[]> {
    return this.db
      .select()
      .from(quarantine)
      .where(opts.after === undefined ? undefined : gt(quarantine.seq, opts.after))
      .orderBy(asc(quarantine.seq))
      .limit(opts.limit);
  }

  /** Cases by reference, after a reference; filtered by state, party, overdue at an instant. */
  listCases(opts: {
    state?: string | undefined;
    party?: string | undefined;
    overdueAt?: Date | undefined;
    after?: string | undefined;
    limit: number;
  }): Promise<CaseRow[]> {
    return this.db
      .select()
      .from(cases)
      .where(
        and(
          opts.state === undefined ? undefined : eq(cases.state, opts.state),
          opts.party === undefined
            ? undefined
            : or(eq(cases.identifyingParty, opts.party), eq(cases.originParty, opts.party)),
          opts.overdueAt === undefined ? undefined : lte(cases.dueAt, opts.overdueAt),
          opts.after === undefined ? undefined : gt(cases.caseRef, opts.after),
        ),
      )
      .orderBy(asc(cases.caseRef))
      .limit(opts.limit);
  }

  /** Alerts, newest first, before an id; `active`: only unresolved (true) or resolved (false). */
  listAlerts(opts: {
    active?: boolean | undefined;
    before?: number | undefined;
    limit: number;
  }): Promise<AlertRow[]> {
    return this.db
      .select()
      .from(alerts)
      .where(
        and(
          opts.active === undefined
            ? undefined
            : opts.active
              ? isNull(alerts.resolvedAt)
              : isNotNull(alerts.resolvedAt),
          opts.before === undefined ? undefined : lt(alerts.id, opts.before),
        ),
      )
      .orderBy(desc(alerts.id))
      .limit(opts.limit);
  }

  /** Deliveries of our messages and every receipt (both ways) naming these ids. */
  async caseTimeline(
    messageIds: string[],
  ): Promise<{ deliveries: DeliveryRow[]; receipts: ReceiptRow[] }> {
    if (messageIds.length === 0) return { deliveries: [], receipts: [] };
    const [d, r] = await Promise.all([
      this.db.select().from(deliveries).where(inArray(deliveries.messageId, messageIds)),
      this.db
        .select()
        .from(receipts)
        .where(inArray(receipts.messageId, messageIds))
        .orderBy(asc(receipts.seq)),
    ]);
    return { deliveries: d, receipts: await this.withBatches(r) };
  }

  /** What GET /metrics reports from the store, one round trip per family. */
  async metricsSnapshot(now: Date) {
    const [byPartner, outbox, receiptOutbox, byCode, receiptCounts, caseStates, activeAlerts] =
      await Promise.all([
        this.db
          .select({
            status: deliveries.status,
            partner: deliveries.recipient,
            n: sql<number>`count(*)::int`,
          })
          .from(deliveries)
          .groupBy(deliveries.status, deliveries.recipient),
        this.db
          .select({
            n: sql<number>`count(*)::int`,
            oldest: sql<string | null>`min(${messages.sentAt})`,
          })
          .from(deliveries)
          .innerJoin(
            messages,
            and(eq(messages.id, deliveries.messageId), eq(messages.direction, "outbound")),
          )
          .where(inArray(deliveries.status, ["queued", "sent"])),
        // What waits to be published: single receipts and batch receipts (not their entries),
        // not those replaced by one signed again (kept as evidence, never sent again), nor
        // batches withheld from a party that no longer accepts them (never claimed).
        rows<{ n: number; oldest: string | null }>(
          this.db,
          sql`select count(*)::int as n, min(created_at) as oldest from (
              select created_at from receipts
              where direction = 'issued' and published_at is null and batch_id is null
                and superseded_by is null
              union all
              select b.created_at from receipt_batches b
              join parties p on p.id = b.to_party and p.receipt_batches
              where b.direction = 'issued' and b.published_at is null
                and b.superseded_by is null) unpublished`,
        ),
        this.db
          .select({ code: quarantine.code, n: sql<number>`count(*)::int` })
          .from(quarantine)
          .groupBy(quarantine.code),
        this.db
          .select({
            direction: receipts.direction,
            status: receipts.status,
            n: sql<number>`count(*)::int`,
          })
          .from(receipts)
          .groupBy(receipts.direction, receipts.status),
        this.db
          .select({
            state: cases.state,
            n: sql<number>`count(*)::int`,
            overdue: sql<number>`count(*) filter (where ${cases.dueAt} <= ${now.toISOString()}::timestamptz)::int`,
          })
          .from(cases)
          .groupBy(cases.state),
        this.db
          .select({ kind: alerts.kind, partner: alerts.partner, since: alerts.since })
          .from(alerts)
          .where(isNull(alerts.resolvedAt)),
      ]);
    const age = (oldest: string | null | undefined) =>
      oldest === null || oldest === undefined
        ? 0
        : Math.max(0, (now.getTime() - new Date(oldest).getTime()) / 1000);
    return {
      deliveries: byPartner.map((r) => ({ ...r, n: Number(r.n) })),
      outbox: {
        deliveries: { depth: Number(outbox[0]?.n ?? 0), oldestAgeSeconds: age(outbox[0]?.oldest) },
        receipts: {
          depth: Number(receiptOutbox[0]?.n ?? 0),
          oldestAgeSeconds: age(receiptOutbox[0]?.oldest),
        },
      },
      quarantine: byCode.map((r) => ({ code: r.code, n: Number(r.n) })),
      receipts: receiptCounts.map((r) => ({ ...r, n: Number(r.n) })),
      cases: caseStates.map((r) => ({
        state: r.state,
        n: Number(r.n),
        overdue: Number(r.overdue),
      })),
      alerts: activeAlerts,
    };
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

  /**
   * Cheap round trip for readiness, which also fails when the server answers but does not take
   * writes: a standby still in recovery (a name or address moved to it before its promotion
   * ended), or a database set read-only. Every write of the gateway would answer 503 there,
   * and a load balancer must take the replica out meanwhile.
   */
  async ping(): Promise<void> {
    const [row] = await rows<{ recovery: boolean; readOnly: string }>(
      this.db,
      sql`select pg_is_in_recovery() as recovery,
        current_setting('transaction_read_only') as "readOnly"`,
    );
    if (row?.recovery === true || row?.readOnly === "on") {
      throw new Error("the database does not take writes now");
    }
  }
}
