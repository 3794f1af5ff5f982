/**
 * The outbound side of the message log: what we signed and sent, each message with one delivery
 * row per recipient (the outbox the dispatcher drains, see delivery-outbox.ts).
 */
import { sql } from "drizzle-orm";
import { type Lease, type OutboundLog, type SignedMessage, sentKey } from "../delivery/ports.ts";
import type { Db } from "./database.ts";
import { MESSAGE_COLUMNS, messageDocuments, messageRowsFrom } from "./message-row.ts";
import { pgArray, rows, run, uuidsOnly } from "./set-sql.ts";

export class SqlOutboundLog implements OutboundLog {
  constructor(private readonly db: Db) {}

  /**
   * One statement for the whole group, whatever its size (atomic on its own, or part of the
   * caller's transaction): the message rows, in the group's order, and one delivery row per
   * recipient, due at the message's sentAt — or, leased, claimed at insert as claimDue would
   * claim them (one attempt, due again at the lease's end) for the caller to publish at once.
   */
  async insert(group: SignedMessage[], lease?: Lease): Promise<void> {
    if (group.length === 0) return;
    const until = lease === undefined ? null : lease.until.toISOString();
    await run(
      this.db,
      sql`
      with logged as (
        insert into messages (${MESSAGE_COLUMNS})
        ${messageRowsFrom("outbound", messageDocuments(group))}
        returning id, to_parties, sent_at)
      insert into deliveries (message_id, recipient, next_attempt_at, attempts)
      select logged.id, r.recipient, coalesce(${until}::timestamptz, logged.sent_at),
        case when ${until}::timestamptz is null then 0 else 1 end
      from logged cross join lateral jsonb_array_elements_text(logged.to_parties)
        with ordinality as r(recipient, n)`,
    );
  }

  async sentDigests(messageIds: string[]): Promise<Map<string, string>> {
    const ids = uuidsOnly(messageIds);
    if (ids.length === 0) return new Map();
    const found = await rows<{ id: string; recipient: string; digest: string }>(
      this.db,
      sql`select m.id, d.recipient, m.digest from messages m
        join deliveries d on d.message_id = m.id
        where m.direction = 'outbound' and m.id = any(${pgArray(ids)}::uuid[])`,
    );
    return new Map(found.map((r) => [sentKey(r.id, r.recipient), r.digest]));
  }
}
