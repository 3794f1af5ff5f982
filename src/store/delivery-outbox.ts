/**
 * The outbox: one `deliveries` row per outbound message and recipient, from `queued` to `sent`
 * (the broker took it) to `delivered` / `rejected` (the partner's signed receipt) or `failed`.
 * Claiming locks due rows with FOR UPDATE SKIP LOCKED, so replicas sharing the database never
 * publish the same row at once; what happens to each claimed row (its next attempt, or failure)
 * is decided by the caller's retry schedule, not here.
 */
import { and, asc, eq, inArray, lte, or, sql } from "drizzle-orm";
import type {
  DeliveryCandidate,
  DeliveryOutbox,
  DeliveryPlan,
  DeliveryRef,
  DueDelivery,
} from "../delivery/ports.ts";
import type { ReceiptStatus } from "../protocol/types.ts";
import type { Db } from "./database.ts";
import { deliveries, messages, parties } from "./schema.ts";

export class SqlDeliveryOutbox implements DeliveryOutbox {
  constructor(private readonly db: Db) {}

  /** Two statements per batch, whatever its size: the locking select and one update. */
  claimDue(opts: {
    now: Date;
    limit: number;
    plan: (candidate: DeliveryCandidate) => DeliveryPlan;
  }): Promise<{ due: DueDelivery[]; failed: Array<DeliveryRef & { reason: string }> }> {
    return this.db.transaction(async (tx) => {
      const rows = await tx
        .select({
          messageId: deliveries.messageId,
          recipient: deliveries.recipient,
          status: deliveries.status,
          attempts: deliveries.attempts,
          expiresAt: messages.expiresAt,
          jws: messages.jws,
          digest: messages.digest,
          subject: parties.inboundSubject,
        })
        .from(deliveries)
        .innerJoin(
          messages,
          and(eq(messages.id, deliveries.messageId), eq(messages.direction, "outbound")),
        )
        .innerJoin(parties, eq(parties.id, deliveries.recipient))
        .where(
          and(
            inArray(deliveries.status, ["queued", "sent"]),
            lte(deliveries.nextAttemptAt, opts.now),
          ),
        )
        .orderBy(asc(deliveries.nextAttemptAt))
        .limit(opts.limit)
        .for("update", { of: deliveries, skipLocked: true });
      if (rows.length === 0) return { due: [], failed: [] };

      const due: DueDelivery[] = [];
      const failed: Array<DeliveryRef & { reason: string }> = [];
      const updates = rows.map((row) => {
        const plan = opts.plan({ ...row, status: row.status as "queued" | "sent" });
        const ref = { message_id: row.messageId, recipient: row.recipient };
        if (plan.action === "fail") {
          failed.push({ messageId: row.messageId, recipient: row.recipient, reason: plan.reason });
          return {
            ...ref,
            status: "failed",
            attempts: row.attempts,
            next: null,
            error: plan.reason,
          };
        }
        const { messageId, recipient, jws, digest, subject } = row;
        due.push({ messageId, recipient, jws, digest, subject, attempts: plan.attempts });
        return {
          ...ref,
          status: row.status,
          attempts: plan.attempts,
          next: plan.nextAttemptAt.toISOString(),
          error: null,
        };
      });
      // One statement for the batch: each row's decision travels as one JSON document.
      await tx.execute(sql`
        update ${deliveries} set
          status = v.status,
          attempts = v.attempts,
          next_attempt_at = coalesce(v.next, ${deliveries.nextAttemptAt}),
          last_error = coalesce(v.error, ${deliveries.lastError}),
          updated_at = ${opts.now.toISOString()}::timestamptz
        from jsonb_to_recordset(${JSON.stringify(updates)}::jsonb)
          as v(message_id uuid, recipient text, status text, attempts int, next timestamptz, error text)
        where ${deliveries.messageId} = v.message_id and ${deliveries.recipient} = v.recipient`);
      return { due, failed };
    });
  }

  async markSent(sent: DeliveryRef[], at: Date): Promise<void> {
    if (sent.length === 0) return;
    await this.db
      .update(deliveries)
      // The first publish the broker accepted: the retry budget counts from here.
      .set({ status: "sent", attempts: 1, lastError: null, updatedAt: at })
      .where(and(eq(deliveries.status, "queued"), matching(sent)));
  }

  async markError(delivery: DeliveryRef, error: string, at: Date): Promise<void> {
    await this.db
      .update(deliveries)
      .set({ lastError: error.slice(0, 500), updatedAt: at })
      .where(matching([delivery]));
  }

  /** A receipt closes its delivery even after `failed`: the partner did get the message. */
  async close(
    closing: Array<DeliveryRef & { status: ReceiptStatus }>,
    at: Date,
  ): Promise<Array<DeliveryRef & { status: "delivered" | "rejected"; sentAt: Date }>> {
    const closed: Array<DeliveryRef & { status: "delivered" | "rejected"; sentAt: Date }> = [];
    for (const status of ["accepted", "rejected"] as const) {
      const these = closing.filter((c) => c.status === status);
      if (these.length === 0) continue;
      const next = status === "accepted" ? "delivered" : "rejected";
      const rows = await this.db
        .update(deliveries)
        .set({
          status: next,
          receiptId: sql`(select r.id from receipts r where r.direction = 'received' and r.message_id = ${deliveries.messageId} and r.from_party = ${deliveries.recipient} order by r.seq desc limit 1)`,
          lastError: null,
          updatedAt: at,
        })
        .from(messages)
        .where(
          and(
            eq(messages.id, deliveries.messageId),
            eq(messages.direction, "outbound"),
            inArray(deliveries.status, ["queued", "sent", "failed"]),
            matching(these),
          ),
        )
        .returning({
          messageId: deliveries.messageId,
          recipient: deliveries.recipient,
          sentAt: messages.sentAt,
        });
      for (const row of rows) closed.push({ ...row, status: next });
    }
    return closed;
  }
}

function matching(refs: DeliveryRef[]) {
  return or(
    ...refs.map((d) =>
      and(eq(deliveries.messageId, d.messageId), eq(deliveries.recipient, d.recipient)),
    ),
  );
}
