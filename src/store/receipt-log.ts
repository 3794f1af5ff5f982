/**
 * Receipts both ways. `issued` rows are ours, answering inbound bytes, and double as the receipt
 * outbox (`published_at` null until the broker acknowledged them); `received` rows are partners'
 * receipts for our messages. Batch receipts (`receipt_batches`, docs/protocol.md "Batch
 * receipts") are kept once each, with an entry row in `receipts` per message they answer
 * (schema.ts); our unpublished batches are the outbox as well. The batch statements are
 * set-based (set-sql.ts): one statement, one parameter, whatever the batch's size.
 */
import { and, eq, isNull, or, type SQL, sql } from "drizzle-orm";
import type {
  ClosedDelivery,
  DueReceipt,
  IssuedBatch,
  IssuedReceipt,
  Lease,
  ReceiptLog,
  ReceivedBatch,
  ReceivedReceipt,
} from "../delivery/ports.ts";
import type { Receipt, ReceiptBatch } from "../protocol/types.ts";
import type { Db } from "./database.ts";
import type { RowDocuments } from "./message-row.ts";
import { receiptBatches, receipts } from "./schema.ts";
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
 * Batch receipts as RowDocuments: the batch rows as JSON (id, "from", "to", n: its entries,
 * digest, "sentAt") with their JWS as an array, and `entries`, every entry of every batch as one
 * JSON document ("batchId", "messageId", digest: the message's).
 */
export function batchDocuments(
  batches: Array<{ batch: ReceiptBatch; jws: string; digest: string }>,
): RowDocuments & { entries: string } {
  return {
    json: JSON.stringify(
      batches.map(({ batch: b, digest }) => ({
        id: b.id,
        from: b.from,
        to: b.to,
        n: b.accepted.length,
        digest,
        sentAt: b.sentAt,
      })),
    ),
    jws: pgArray(batches.map((b) => b.jws)),
    entries: JSON.stringify(
      batches.flatMap(({ batch: b }) =>
        b.accepted.map((e) => ({ batchId: b.id, messageId: e.messageId, digest: e.digest.value })),
      ),
    ),
  };
}

/**
 * The rows of batchDocuments as `b` (id, "from", "to", n, digest, "sentAt", jws): for a `from`
 * clause.
 */
export function batchRowsSource(documents: RowDocuments): SQL {
  return sql`rows from (
        json_to_recordset(${documents.json}::json) as (id uuid, "from" text, "to" text, n int,
          digest text, "sentAt" timestamptz),
        unnest(${documents.jws}::text[]))
      as b(id, "from", "to", n, digest, "sentAt", jws)`;
}

/** The entries of batchDocuments as `e` ("batchId", "messageId", digest): for a `from` clause. */
export function batchEntriesSource(entries: string): SQL {
  return sql`json_to_recordset(${entries}::json) as e("batchId" uuid, "messageId" uuid,
    digest text)`;
}

/**
 * The id of the entry row of message `messageId` in batch `batchId` (SQL expressions): the wire
 * gives an entry no id of its own, and this one is the same whenever the entry is written. The
 * first 128 bits of a SHA-256 (not md5, which a PostgreSQL built for FIPS mode refuses).
 */
export function entryId(batchId: SQL, messageId: SQL): SQL {
  return sql`substr(encode(sha256(convert_to(${batchId}::text || ' ' || ${messageId}::text,
    'UTF8')), 'hex'), 1, 32)::uuid`;
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

  async insertIssuedBatches(batches: IssuedBatch[], lease?: Lease): Promise<Set<string>> {
    if (batches.length === 0) return new Set();
    const until = lease === undefined ? null : lease.until.toISOString();
    const documents = batchDocuments(batches);
    // A batch whose entries are not each a message logged from its addressee with that digest,
    // and not answered yet, is not written (ports.ts). Entry rows are never published
    // themselves: written with published_at set, outside every claim of single receipts (and
    // of replicas running code from before migration 0009).
    const written = await rows<{ id: string }>(
      this.db,
      sql`with e as (select * from ${batchEntriesSource(documents.entries)}),
        b as (
          select b.* from ${batchRowsSource(documents)}
          -- Each entry is looked up by itself: in the log by its unique key (the lateral with
          -- its limit keeps the planner, when its statistics are stale, from scanning every
          -- message of the sender for each entry, a cost that grows with the log), in the
          -- receipts by message id. An answer to the batch's addressee (\`to_party\`, a partner)
          -- can only be one we issued: that condition stands for direction = 'issued', whose
          -- index the planner would otherwise AND with the message id's, reading every issued
          -- row's entry in it once per entry.
          where b.n = (
            select count(distinct e."messageId") from e
            join lateral (select 1 from messages m
              where m.direction = 'inbound' and m.from_party = b."to" and m.id = e."messageId"
                and m.digest = e.digest
              limit 1) m on true
            where e."batchId" = b.id
              and not exists (select 1 from receipts r
                where r.message_id = e."messageId" and r.to_party = b."to"
                  and r.status = 'accepted'))),
        batches as (
          insert into receipt_batches (id, direction, from_party, to_party, entries, jws, digest,
            next_publish_at, publish_attempts)
          select b.id, 'issued', b."from", b."to", b.n, b.jws, b.digest,
            coalesce(${until}::timestamptz, b."sentAt"),
            case when ${until}::timestamptz is null then 0 else 1 end
          from b
          returning id),
        entries as (
          insert into receipts (id, message_id, message_digest, from_party, to_party, status,
            errors, direction, batch_id, published_at)
          select ${entryId(sql`e."batchId"`, sql`e."messageId"`)}, e."messageId", e.digest,
            b."from", b."to", 'accepted', '[]'::jsonb, 'issued', b.id, now()
          from e join b on b.id = e."batchId"
          returning id)
        select id from batches`,
    );
    return new Set(written.map((w) => w.id));
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
          isNull(receipts.batchId),
        ),
      )
      .returning({ id: receipts.id });
    if (rows.length > 0) return true;
    // Answered in a batch: that batch goes out again, the same bytes (or the batch that
    // replaced it when it was signed again: it has entry rows of its own, and is not superseded)
    // — only to a party whose registered record still accepts batch receipts. One that withdrew
    // it gets none (false here: the caller answers with a single receipt).
    const batches = await this.db
      .update(receiptBatches)
      .set({ publishedAt: null, nextPublishAt: at })
      .where(
        and(
          eq(receiptBatches.direction, "issued"),
          isNull(receiptBatches.supersededBy),
          sql`exists (select 1 from parties p
            where p.id = ${receiptBatches.toParty} and p.receipt_batches)`,
          sql`${receiptBatches.id} in (select r.batch_id from receipts r
            where r.direction = 'issued' and r.message_id = ${messageId}
              and r.message_digest = ${messageDigest} and r.batch_id is not null)`,
        ),
      )
      .returning({ id: receiptBatches.id });
    return batches.length > 0;
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

  async supersede(oldId: string, fresh: IssuedReceipt | IssuedBatch): Promise<void> {
    if ("batch" in fresh) return this.supersedeBatch(oldId, fresh);
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

  /**
   * The fresh batch (unpublished, due now) with an entry row for each of its entries (the old
   * one's: renewal signs the same entries again); the old batch, and every batch it replaced,
   * point at it.
   */
  private async supersedeBatch(oldId: string, fresh: IssuedBatch): Promise<void> {
    const documents = batchDocuments([fresh]);
    await this.db.transaction(async (tx) => {
      const db = tx as unknown as Db;
      await run(
        db,
        sql`insert into receipt_batches (id, direction, from_party, to_party, entries, jws,
            digest, next_publish_at)
          select b.id, 'issued', b."from", b."to", b.n, b.jws, b.digest, b."sentAt"
          from ${batchRowsSource(documents)}`,
      );
      await run(
        db,
        // From the fresh batch's own entries (the old one's, signed again): no lookup of the old
        // entry rows, which no index on batch_id would find without reading every receipt.
        sql`insert into receipts (id, message_id, message_digest, from_party, to_party, status,
            errors, direction, batch_id, published_at)
          select ${entryId(sql`e."batchId"`, sql`e."messageId"`)}, e."messageId", e.digest,
            ${fresh.batch.from}, ${fresh.batch.to}, 'accepted', '[]'::jsonb, 'issued',
            e."batchId", now()
          from ${batchEntriesSource(documents.entries)}
          on conflict do nothing`,
      );
      await run(
        db,
        sql`update receipt_batches set superseded_by = ${fresh.batch.id}::uuid
          where direction = 'issued'
            and (id = ${oldId}::uuid or superseded_by = ${oldId}::uuid)`,
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
    closed: ClosedDelivery[];
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
        where direction = 'received' and id = any(${pgArray(wanted)}::uuid[])
          and jws is not null`,
    );
    return new Map(found.map((r) => [r.id, { digest: r.digest, jws: r.jws }]));
  }

  async insertReceivedBatch(
    received: ReceivedBatch,
    at: Date,
  ): Promise<{ fresh: boolean; closed: ClosedDelivery[] }> {
    const documents = batchDocuments([received]);
    const [result] = await rows<{
      fresh: number;
      closed:
        | Array<{ messageId: string; recipient: string; status: string; sentAt: string }>
        | string;
    }>(
      this.db,
      sql`with fresh as (
          insert into receipt_batches (id, direction, from_party, to_party, entries, jws, digest)
          select b.id, 'received', b."from", b."to", b.n, b.jws, b.digest
          from ${batchRowsSource(documents)}
          on conflict do nothing
          returning id, from_party, to_party),
        e as (select * from ${batchEntriesSource(documents.entries)}),
        entries as (
          insert into receipts (id, message_id, message_digest, from_party, to_party, status,
            errors, direction, batch_id)
          select ${entryId(sql`f.id`, sql`e."messageId"`)}, e."messageId", e.digest,
            f.from_party, f.to_party, 'accepted', '[]'::jsonb, 'received', f.id
          from fresh f, e
          on conflict do nothing
          returning id),
        closed as (
          update deliveries d set
            status = 'delivered',
            receipt_id = f.id,
            last_error = null,
            updated_at = ${at.toISOString()}::timestamptz
          from fresh f, e, messages m
          where d.message_id = e."messageId" and d.recipient = f.from_party
            and m.id = d.message_id and m.direction = 'outbound'
            and d.status in ('queued', 'sent', 'failed')
          returning d.message_id as "messageId", d.recipient, d.status, m.sent_at as "sentAt")
        select (select count(*) from fresh)::int as fresh,
          (select count(*) from entries)::int as entries,
          (select coalesce(json_agg(closed), '[]') from closed) as closed`,
    );
    const closed =
      typeof result?.closed === "string"
        ? (JSON.parse(result.closed) as Exclude<typeof result.closed, string>)
        : (result?.closed ?? []);
    return {
      fresh: Number(result?.fresh ?? 0) > 0,
      closed: closed.map((c) => ({
        messageId: c.messageId,
        recipient: c.recipient,
        status: c.status as "delivered" | "rejected",
        sentAt: new Date(c.sentAt),
      })),
    };
  }

  async findReceivedBatch(id: string): Promise<{ digest: string; jws: string } | undefined> {
    if (uuidsOnly([id]).length === 0) return undefined;
    const [found] = await rows<{ digest: string; jws: string }>(
      this.db,
      sql`select digest, jws from receipt_batches
        where direction = 'received' and id = ${id}::uuid`,
    );
    return found;
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
    const now = opts.now.toISOString();
    const until = new Date(opts.now.getTime() + opts.leaseMs).toISOString();
    const claimed = await rows<DueReceipt & { due: string; batch: boolean }>(
      this.db,
      sql`with due as (
          select r.seq, r.next_publish_at from receipts r
          join parties p on p.id = r.to_party
          where r.direction = 'issued' and r.published_at is null and r.superseded_by is null
            and r.batch_id is null
            and r.next_publish_at <= ${now}::timestamptz
          order by r.next_publish_at
          limit ${opts.limit}::int
          for update of r skip locked),
        claimed as (
          update receipts r set
            publish_attempts = r.publish_attempts + 1,
            next_publish_at = ${until}::timestamptz
          from due, parties p
          where r.seq = due.seq and p.id = r.to_party
          returning r.id, r.to_party as "toParty", r.jws, r.digest, p.inbound_subject as subject,
            due.next_publish_at as due, r.seq, false as batch),
        due_batches as (
          select b.seq, b.next_publish_at from receipt_batches b
          join parties p on p.id = b.to_party
          where b.direction = 'issued' and b.published_at is null and b.superseded_by is null
            and b.next_publish_at <= ${now}::timestamptz
            -- Never to a party whose registered record (no longer) accepts batch receipts: the
            -- batch is withheld, unpublished (docs/protocol.md, Batch receipts).
            and p.receipt_batches
          order by b.next_publish_at
          limit ${opts.limit}::int
          for update of b skip locked),
        claimed_batches as (
          update receipt_batches b set
            publish_attempts = b.publish_attempts + 1,
            next_publish_at = ${until}::timestamptz
          from due_batches due, parties p
          where b.seq = due.seq and p.id = b.to_party
          returning b.id, b.to_party as "toParty", b.jws, b.digest, p.inbound_subject as subject,
            due.next_publish_at as due, b.seq, true as batch)
        select * from claimed union all select * from claimed_batches
        order by due, batch, seq`,
    );
    return claimed.map(({ id, toParty, jws, digest, subject, batch }) => ({
      id,
      toParty,
      jws,
      digest,
      subject,
      ...(batch ? { batch: true } : {}),
    }));
  }

  async markPublished(ids: string[], at: Date): Promise<void> {
    const published = uuidsOnly(ids);
    if (published.length === 0) return;
    // Receipt and batch ids are ours and random: a list names each in its own table.
    await run(
      this.db,
      sql`with receipt as (
          update receipts set published_at = ${at.toISOString()}::timestamptz
          where direction = 'issued' and id = any(${pgArray(published)}::uuid[])
          returning 1),
        batch as (
          update receipt_batches set published_at = ${at.toISOString()}::timestamptz
          where direction = 'issued' and id = any(${pgArray(published)}::uuid[])
          returning 1)
        select (select count(*) from receipt)::int as receipts,
          (select count(*) from batch)::int as batches`,
    );
  }
}
