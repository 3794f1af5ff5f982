/** The inbound side of the message log: partners' messages we verified and accepted. */
import { sql } from "drizzle-orm";
import {
  type InboundKey,
  type InboundLog,
  inboundKey,
  type SignedMessage,
} from "../delivery/ports.ts";
import type { PartyId } from "../protocol/types.ts";
import type { Db } from "./database.ts";
import { MESSAGE_COLUMNS, messageDocuments, messageRowsFrom } from "./message-row.ts";
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
}
