/**
 * The outbox: one `deliveries` row per outbound message and recipient, from `queued` to `sent`
 * (the broker took it) to `delivered` / `rejected` (the partner's signed receipt) or `failed`.
 * Claiming locks due rows with FOR UPDATE SKIP LOCKED, so replicas sharing the database never
 * publish the same row at once; what happens to each claimed row (its next attempt, or failure)
 * is decided by the caller's retry schedule, not here.
 */
import { and, eq, or, sql } from "drizzle-orm";
import type {
  DeliveryCandidate,
  DeliveryOutbox,
  DeliveryPlan,
  DeliveryRef,
  DueDelivery,
} from "../delivery/ports.ts";
import type { ReceiptStatus } from "../protocol/types.ts";
import type { Db } from "./database.ts";
import { deliveries } from "./schema.ts";
import { pgArray, run, rows as setRows } from "./set-sql.ts";

export class SqlDeliveryOutbox implements DeliveryOutbox {
  constructor(private readonly db: Db) {}

  /** Two statements per batch, whatever its size: the locking select and one update. */
  claimDue(opts: {
    now: Date;
    limit: number;
    plan: (candidate: DeliveryCandidate) => DeliveryPlan;
  }): Promise<{ due: DueDelivery[]; failed: Array<DeliveryRef & { reason: string }> }> {
    return this.db.transaction(async (tx) => {
      const rows = await setRows<{
        messageId: string;
        recipient: string;
        status: "queued" | "sent";
        attempts: number;
        expiresAt: string;
        jws: string;
        digest: string;
        subject: string;
      }>(
        tx as unknown as Db,
        sql`select d.message_id as "messageId", d.recipient, d.status, d.attempts,
            m.expires_at as "expiresAt", m.jws, m.digest, p.inbound_subject as subject
          from deliveries d
          join messages m on m.id = d.message_id and m.direction = 'outbound'
          join parties p on p.id = d.recipient
          where d.status in ('queued', 'sent')
            and d.next_attempt_at <= ${opts.now.toISOString()}::timestamptz
          order by d.next_attempt_at
          limit ${opts.limit}::int
          for update of d skip locked`,
      );
      if (rows.length === 0) return { due: [], failed: [] };

      const due: DueDelivery[] = [];
      const failed: Array<DeliveryRef & { reason: string }> = [];
      const updates = rows.map((row) => {
        const plan = opts.plan({ ...row, expiresAt: new Date(row.expiresAt) });
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
      await run(
        tx as unknown as Db,
        sql`
        update ${deliveries} set
          status = v.status,
          attempts = v.attempts,
          next_attempt_at = coalesce(v.next, ${deliveries.nextAttemptAt}),
          last_error = coalesce(v.error, ${deliveries.lastError}),
          updated_at = ${opts.now.toISOString()}::timestamptz
        from jsonb_to_recordset(${JSON.stringify(updates)}::jsonb)
          as v(message_id uuid, recipient text, status text, attempts int, next timestamptz, error text)
        where ${deliveries.messageId} = v.message_id and ${deliveries.recipient} = v.recipient`,
      );
      return { due, failed };
    });
  }

  async markSent(sent: DeliveryRef[], at: Date): Promise<void> {
    if (sent.length === 0) return;
    // The first publish the broker accepted: the retry budget counts from here.
    await run(
      this.db,
      sql`
      update deliveries set status = 'sent', attempts = 1, last_error = null,
        updated_at = ${at.toISOString()}::timestamptz
      where status = 'queued' and (message_id, recipient) in (${refs(sent)})`,
    );
  }

  async markError(delivery: DeliveryRef, error: string, at: Date): Promise<void> {
    await this.db
      .update(deliveries)
      .set({ lastError: error.slice(0, 500), updatedAt: at })
      .where(matching([delivery]));
  }

  /**
   * A receipt closes its delivery even after `failed`: the partner did get the message. One
   * statement for the batch; should two receipts in it close the same delivery, the accepted
   * one does (as it would, processed first).
   */
  async close(
    closing: Array<DeliveryRef & { status: ReceiptStatus }>,
    at: Date,
  ): Promise<Array<DeliveryRef & { status: "delivered" | "rejected"; sentAt: Date }>> {
    const byDelivery = new Map<string, DeliveryRef & { status: ReceiptStatus }>();
    for (const c of closing) {
      const key = `${c.messageId} ${c.recipient}`;
      if (byDelivery.get(key)?.status !== "accepted") byDelivery.set(key, c);
    }
    const these = [...byDelivery.values()].filter((c) => UUID_LIKE.test(c.messageId));
    if (these.length === 0) return [];
    const closed = await setRows<{
      messageId: string;
      recipient: string;
      status: "delivered" | "rejected";
      sentAt: string;
    }>(
      this.db,
      sql`update deliveries d set
          status = v.next,
          receipt_id = (select r.id from receipts r where r.direction = 'received'
            and r.message_id = d.message_id and r.from_party = d.recipient
            order by r.seq desc limit 1),
          last_error = null,
          updated_at = ${at.toISOString()}::timestamptz
        from messages m, unnest(${pgArray(these.map((c) => c.messageId))}::uuid[],
            ${pgArray(these.map((c) => c.recipient))}::text[],
            ${pgArray(these.map((c) => (c.status === "accepted" ? "delivered" : "rejected")))}::text[])
          as v(message_id, recipient, next)
        where m.id = d.message_id and m.direction = 'outbound'
          and d.status in ('queued', 'sent', 'failed')
          and d.message_id = v.message_id and d.recipient = v.recipient
        returning d.message_id as "messageId", d.recipient, d.status, m.sent_at as "sentAt"`,
    );
    return closed.map((c) => ({ ...c, sentAt: new Date(c.sentAt) }));
  }
}

/** `select …` of (message_id, recipient) pairs, for `(message_id, recipient) in (…)`. */
function refs(these: DeliveryRef[]) {
  const ok = these.filter((d) => UUID_LIKE.test(d.messageId));
  return sql`select * from unnest(${pgArray(ok.map((d) => d.messageId))}::uuid[],
    ${pgArray(ok.map((d) => d.recipient))}::text[])`;
}

const UUID_LIKE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function matching(refs: DeliveryRef[]) {
  return or(
    ...refs.map((d) =>
      and(eq(deliveries.messageId, d.messageId), eq(deliveries.recipient, d.recipient)),
    ),
  );
}
