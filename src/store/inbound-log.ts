/** The inbound side of the message log: partners' messages we verified and accepted. */
import { sql } from "drizzle-orm";
import {
  type InboundKey,
  type InboundLog,
  type IssuedReceipt,
  inboundKey,
  type Lease,
  type SignedMessage,
} from "../delivery/ports.ts";
import type { PartyId } from "../protocol/types.ts";
import type { Db } from "./database.ts";
import { MESSAGE_COLUMNS, messageDocuments, messageRowsFrom } from "./message-row.ts";
import { receiptDocuments, receiptRowsSource } from "./receipt-log.ts";
import { pgArray, rows, uuidsOnly } from "./set-sql.ts";

export class SqlInboundLog implements InboundLog {
  constructor(private readonly db: Db) {}

  async find(
    keys: Array<{ from: PartyId; id: string }>,
  ): Promise<Map<InboundKey, { digest: string; jws: string }>> {
    const ids = uuidsOnly(keys.map((k) => k.id));
    if (ids.length === 0) return new Map();
    const found = await rows<{ id: string; from_party: string; digest: string; jws: string }>(
      this.db,
      sql`select id, from_party, digest, jws from messages
        where direction = 'inbound' and id = any(${pgArray(ids)}::uuid[])`,
    );
    return new Map(
      found.map((r) => [inboundKey(r.from_party, r.id), { digest: r.digest, jws: r.jws }]),
    );
  }

  /**
   * A (sender, id) already logged — another replica, a redelivery — is not stored again. One
   * statement for the batch.
   */
  async insert(group: SignedMessage[]): Promise<Set<InboundKey>> {
    if (group.length === 0) return new Set();
    const inserted = await rows<{ id: string; from_party: string }>(
      this.db,
      sql`insert into messages (${MESSAGE_COLUMNS})
        ${messageRowsFrom("inbound", messageDocuments(group))}
        on conflict do nothing
        returning id, from_party`,
    );
    return new Set(inserted.map((r) => inboundKey(r.from_party, r.id)));
  }

  /**
   * One statement for the batch: the messages not logged yet, and the receipt answering each
   * message it logged — never one for a (sender, id) another replica or a redelivery logged
   * first (the receipt names the message id and is addressed to its sender). A message without
   * a receipt is logged only: a batch receipt answers it (ReceiptLog.insertIssuedBatches, in the
   * same transaction).
   */
  async insertAnswered(
    answered: Array<{ message: SignedMessage; receipt?: IssuedReceipt | undefined }>,
    lease?: Lease,
  ): Promise<Set<InboundKey>> {
    if (answered.length === 0) return new Set();
    const until = lease === undefined ? null : lease.until.toISOString();
    const inserted = await rows<{ id: string; from_party: string }>(
      this.db,
      sql`with logged as (
          insert into messages (${MESSAGE_COLUMNS})
          ${messageRowsFrom("inbound", messageDocuments(answered.map((a) => a.message)))}
          on conflict do nothing
          returning id, from_party),
        answers as (
          insert into receipts (id, message_id, message_digest, from_party, to_party, status,
            errors, jws, digest, next_publish_at, publish_attempts, direction)
          select r.id, r."messageId", r."messageDigest", r."from", r."to", r.status, r.errors,
            r.jws, r.digest, coalesce(${until}::timestamptz, r."sentAt"),
            case when ${until}::timestamptz is null then 0 else 1 end, 'issued'
          from ${receiptRowsSource(receiptDocuments(answered.flatMap((a) => a.receipt ?? [])))}
            join logged on logged.id = r."messageId" and logged.from_party = r."to")
        select id, from_party from logged`,
    );
    return new Set(inserted.map((r) => inboundKey(r.from_party, r.id)));
  }
}
