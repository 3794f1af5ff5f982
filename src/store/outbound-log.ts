/**
 * The outbound side of the message log: what we signed and sent, each message with one delivery
 * row per recipient (the outbox the dispatcher drains, see delivery-outbox.ts).
 */
import { sql } from "drizzle-orm";
import {
  IdempotencyKeyTaken,
  type IdempotentOriginal,
  type Lease,
  type OutboundLog,
  type SignedMessage,
  sentKey,
} from "../delivery/ports.ts";
import type { Db } from "./database.ts";
import { messageDocuments, OUTBOUND_COLUMNS, outboundRowsFrom } from "./message-row.ts";
import { IDEMPOTENCY_KEY_INDEX } from "./schema.ts";
import { pgArray, rows, run, uuidsOnly } from "./set-sql.ts";

export class SqlOutboundLog implements OutboundLog {
  constructor(private readonly db: Db) {}

  /**
   * One statement for the whole group, whatever its size (atomic on its own, or part of the
   * caller's transaction): the message rows, in the group's order, and one delivery row per
   * recipient, due at the message's sentAt — or, leased, claimed at insert as claimDue would
   * claim them (one attempt, due again at the lease's end) for the caller to publish at once.
   * A message whose Idempotency-Key the log holds already (or another message of the group
   * holds) fails the statement: IdempotencyKeyTaken, nothing written.
   */
  async insert(group: SignedMessage[], lease?: Lease): Promise<void> {
    if (group.length === 0) return;
    const until = lease === undefined ? null : lease.until.toISOString();
    try {
      await this.insertRows(group, until);
    } catch (err) {
      if (isKeyTaken(err)) throw new IdempotencyKeyTaken({ cause: err });
      throw err;
    }
  }

  private async insertRows(group: SignedMessage[], until: string | null): Promise<void> {
    await run(
      this.db,
      sql`
      with logged as (
        insert into messages (${OUTBOUND_COLUMNS})
        ${outboundRowsFrom(messageDocuments(group))}
        returning id, to_parties, sent_at)
      insert into deliveries (message_id, recipient, next_attempt_at, attempts)
      select logged.id, r.recipient, coalesce(${until}::timestamptz, logged.sent_at),
        case when ${until}::timestamptz is null then 0 else 1 end
      from logged cross join lateral jsonb_array_elements_text(logged.to_parties)
        with ordinality as r(recipient, n)`,
    );
  }

  async findByIdempotencyKey(key: string): Promise<IdempotentOriginal | undefined> {
    const [found] = await rows<{ jws: string; request_digest: string }>(
      this.db,
      sql`select jws, request_digest from messages
        where direction = 'outbound' and idempotency_key = ${key}`,
    );
    return found === undefined
      ? undefined
      : { jws: found.jws, requestDigest: found.request_digest };
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

/**
 * A unique violation (SQLSTATE 23505) of the Idempotency-Key index, from postgres.js
 * (`constraint_name`) or PGlite (`constraint`), bare or as the `cause` of drizzle's error.
 */
function isKeyTaken(err: unknown): boolean {
  for (let e = err, depth = 0; typeof e === "object" && e !== null && depth < 5; depth++) {
    const { code, constraint_name, constraint } = e as Record<string, unknown>;
    if (code === "23505" && (constraint_name ?? constraint) === IDEMPOTENCY_KEY_INDEX) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}
