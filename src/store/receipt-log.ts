/**
 * Receipts both ways. `issued` rows are ours, answering inbound bytes, and double as the receipt
 * outbox (`published_at` null until the broker acknowledged them); `received` rows are partners'
 * receipts for our messages. The batch statements are set-based (set-sql.ts): one statement,
 * one parameter, whatever the batch's size.
 */
import { and, eq, isNull, or, type SQL, sql } from "drizzle-orm";
import type {
  DeliveryRef,
  DueReceipt,
  IssuedReceipt,
  Lease,
  ReceiptLog,
  ReceivedReceipt,
} from "../delivery/ports.ts";
import type { Receipt } from "../protocol/types.ts";
import type { Db } from "./database.ts";
import type { RowDocuments } from "./message-row.ts";
import { receipts } from "./schema.ts";
import { pgArray, rows, run, uuidsOnly } from "./set-sql.ts";

/** The receipt rows of one direction as RowDocuments (message-row.ts), in the batch's order. */
export function receiptDocuments(
  batch: Array<{ receipt: Receipt; messageDigest: string; jws: string; digest: string }>,
): RowDocuments {
  return {
    json: JSON.stringify(
      batch.map(({ receipt: r, messageDigest, digest }) => ({
        id: r.id,
        messageId: r.messageId,
        messageDigest,
        from: r.from,
        to: r.to,
        status: r.status,
        errors: r.errors,
        digest,
        sentAt: r.sentAt,
      })),
    ),
    jws: pgArray(batch.map((r) => r.jws)),
  };
}

/**
 * The rows of receiptDocuments as `r` (id, "messageId", "messageDigest", "from", "to", status,
 * errors, digest, "sentAt", jws, ordinality), each document parsed once: for a `from` clause.
 */
export function receiptRowsSource(documents: RowDocuments): SQL {
  return sql`rows from (
        json_to_recordset(${documents.json}::json) as (id uuid, "messageId" uuid,
          "messageDigest" text, "from" text, "to" text, status text, errors jsonb, digest text,
          "sentAt" timestamptz),
        unnest(${documents.jws}::text[]))
      with ordinality as r(id, "messageId", "messageDigest", "from", "to", status, errors,
        digest, "sentAt", jws, ordinality)`;
}

/**
 * `select …` of the rows of receiptDocuments, with `tail` (more columns) after the receipt's
 * own, in the batch's order.
 */
function receiptRows(documents: RowDocuments, tail: SQL) {
  return sql`select id, "messageId", "messageDigest", "from", "to", status, errors, jws, digest,
      ${tail}
    from ${receiptRowsSource(documents)}
    order by ordinality`;
}

export class SqlReceiptLog implements ReceiptLog {
  constructor(private readonly db: Db) {}

  async insertIssued(issued: IssuedReceipt[], lease?: Lease): Promise<void> {
    if (issued.length === 0) return;
    // Leased: claimed at insert, as claimUnpublished would (one attempt, due again at the
    // lease's end), for the caller to publish at once.
    const until = lease === undefined ? null : lease.until.toISOString();
    await run(
      this.db,
      sql`
      insert into receipts (id, message_id, message_digest, from_party, to_party, status, errors,
        jws, digest, next_publish_at, publish_attempts, direction)
      ${receiptRows(
        receiptDocuments(issued),
        sql`coalesce(${until}::timestamptz, "sentAt"),
          case when ${until}::timestamptz is null then 0 else 1 end, 'issued'`,
      )}`,
    );
  }

  async requeueIssued(messageId: string, messageDigest: string, at: Date): Promise<boolean> {
    const rows = await this.db
      .update(receipts)
      .set({ publishedAt: null, nextPublishAt: at })
      .where(
        and(
          eq(receipts.direction, "issued"),
          eq(receipts.messageId, messageId),
          eq(receipts.messageDigest, messageDigest),
          eq(receipts.status, "accepted"),
          isNull(receipts.supersededBy),
        ),
      )
      .returning({ id: receipts.id });
    return rows.length > 0;
  }

  async requeueById(receiptId: string, at: Date): Promise<void> {
    await this.db
      .update(receipts)
      .set({ publishedAt: null, nextPublishAt: at })
      .where(
        and(
          eq(receipts.direction, "issued"),
          // The receipt itself, or the one that replaced it when it was signed again.
          or(
            and(eq(receipts.id, receiptId), isNull(receipts.supersededBy)),
            sql`${receipts.id} = (select r.superseded_by from receipts r
              where r.direction = 'issued' and r.id = ${receiptId})`,
          ),
        ),
      );
  }

  async supersede(oldId: string, fresh: IssuedReceipt): Promise<void> {
    await this.db.transaction(async (tx) => {
      await new SqlReceiptLog(tx as unknown as Db).insertIssued([fresh]);
      // Every receipt the old one replaced points at the newest, so a requeue finds it.
      await tx
        .update(receipts)
        .set({ supersededBy: fresh.receipt.id })
        .where(
          and(
            eq(receipts.direction, "issued"),
            or(eq(receipts.id, oldId), eq(receipts.supersededBy, oldId)),
          ),
        );
    });
  }

  async insertReceived(received: ReceivedReceipt[]): Promise<Set<string>> {
    if (received.length === 0) return new Set();
    const inserted = await rows<{ id: string }>(
      this.db,
      sql`insert into receipts (id, message_id, message_digest, from_party, to_party, status,
          errors, jws, digest, direction)
        ${receiptRows(
          receiptDocuments(received.map((r) => ({ ...r, messageDigest: r.receipt.digest.value }))),
          sql`'received'`,
        )}
        on conflict do nothing
        returning id`,
    );
    return new Set(inserted.map((r) => r.id));
  }

  async insertReceivedClosing(
    received: ReceivedReceipt[],
    at: Date,
  ): Promise<{
    fresh: Set<string>;
    closed: Array<DeliveryRef & { status: "delivered" | "rejected"; sentAt: Date }>;
  }> {
    if (received.length === 0) return { fresh: new Set(), closed: [] };
    const [result] = await rows<{
      fresh: string[] | string;
      closed:
        | Array<{ messageId: string; recipient: string; status: string; sentAt: string }>
        | string;
    }>(
      this.db,
      sql`with fresh as (
          insert into receipts (id, message_id, message_digest, from_party, to_party, status,
            errors, jws, digest, direction)
          ${receiptRows(
            receiptDocuments(
              received.map((r) => ({ ...r, messageDigest: r.receipt.digest.value })),
            ),
            sql`'received'`,
          )}
          on conflict do nothing
          returning id, message_id, from_party, status),
        closed as (
          update deliveries d set
            status = case when f.status = 'accepted' then 'delivered' else 'rejected' end,
            receipt_id = f.id,
            last_error = null,
            updated_at = ${at.toISOString()}::timestamptz
          from fresh f, messages m
          where d.message_id = f.message_id and d.recipient = f.from_party
            and m.id = d.message_id and m.direction = 'outbound'
            and d.status in ('queued', 'sent', 'failed')
          returning d.message_id as "messageId", d.recipient, d.status, m.sent_at as "sentAt")
        select (select coalesce(json_agg(id), '[]') from fresh) as fresh,
          (select coalesce(json_agg(closed), '[]') from closed) as closed`,
    );
    // json comes back parsed from postgres.js, as text from PGlite under drizzle.
    const parse = <T>(v: T | string): T => (typeof v === "string" ? (JSON.parse(v) as T) : v);
    return {
      fresh: new Set(parse(result?.fresh ?? [])),
      closed: parse(result?.closed ?? []).map((c) => ({
        messageId: c.messageId,
        recipient: c.recipient,
        status: c.status as "delivered" | "rejected",
        sentAt: new Date(c.sentAt),
      })),
    };
  }

  async findReceived(ids: string[]): Promise<Map<string, { digest: string; jws: string }>> {
    const wanted = uuidsOnly(ids);
    if (wanted.length === 0) return new Map();
    const found = await rows<{ id: string; digest: string; jws: string }>(
      this.db,
      sql`select id, digest, jws from receipts
        where direction = 'received' and id = any(${pgArray(wanted)}::uuid[])`,
    );
    return new Map(found.map((r) => [r.id, { digest: r.digest, jws: r.jws }]));
  }

  /**
   * Issued receipts not yet acknowledged by the broker, leased like deliveries: one statement
   * locks the due rows (skipping those another replica holds), moves their next attempt to the
   * end of the lease and returns them, oldest due first.
   */
  async claimUnpublished(opts: {
    now: Date;
    limit: number;
    leaseMs: number;
  }): Promise<DueReceipt[]> {
    const claimed = await rows<DueReceipt & { due: string }>(
      this.db,
      sql`with due as (
          select r.seq, r.next_publish_at from receipts r
          join parties p on p.id = r.to_party
          where r.direction = 'issued' and r.published_at is null and r.superseded_by is null
            and r.next_publish_at <= ${opts.now.toISOString()}::timestamptz
          order by r.next_publish_at
          limit ${opts.limit}::int
          for update of r skip locked),
        claimed as (
          update receipts r set
            publish_attempts = r.publish_attempts + 1,
            next_publish_at = ${new Date(opts.now.getTime() + opts.leaseMs).toISOString()}::timestamptz
          from due, parties p
          where r.seq = due.seq and p.id = r.to_party
          returning r.id, r.to_party as "toParty", r.jws, r.digest, p.inbound_subject as subject,
            due.next_publish_at as due, r.seq)
        select * from claimed order by due, seq`,
    );
    return claimed.map(({ id, toParty, jws, digest, subject }) => ({
      id,
      toParty,
      jws,
      digest,
      subject,
    }));
  }

  async markPublished(ids: string[], at: Date): Promise<void> {
    const published = uuidsOnly(ids);
    if (published.length === 0) return;
    await run(
      this.db,
      sql`
      update receipts set published_at = ${at.toISOString()}::timestamptz
      where direction = 'issued' and id = any(${pgArray(published)}::uuid[])`,
    );
  }
}
