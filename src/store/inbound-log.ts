/** The inbound side of the message log: partners' messages we verified and accepted. */
import { and, eq, inArray } from "drizzle-orm";
import {
  type InboundKey,
  type InboundLog,
  inboundKey,
  type SignedMessage,
} from "../delivery/ports.ts";
import type { PartyId } from "../protocol/types.ts";
import type { Db } from "./database.ts";
import { messageRow } from "./message-row.ts";
import { messages } from "./schema.ts";

export class SqlInboundLog implements InboundLog {
  constructor(private readonly db: Db) {}

  async find(
    keys: Array<{ from: PartyId; id: string }>,
  ): Promise<Map<InboundKey, { digest: string; jws: string }>> {
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

  /** A (sender, id) already logged — another replica, a redelivery — is not stored again. */
  async insert(group: SignedMessage[]): Promise<Set<InboundKey>> {
    if (group.length === 0) return new Set();
    const inserted = await this.db
      .insert(messages)
      .values(group.map((m) => messageRow("inbound", m)))
      .onConflictDoNothing()
      .returning({ id: messages.id, from: messages.fromParty });
    return new Set(inserted.map((r) => inboundKey(r.from, r.id)));
  }
}
