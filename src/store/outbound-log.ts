/**
 * The outbound side of the message log: what we signed and sent, each message with one delivery
 * row per recipient (the outbox the dispatcher drains, see delivery-outbox.ts).
 */
import { and, eq, inArray } from "drizzle-orm";
import { type OutboundLog, type SignedMessage, sentKey } from "../delivery/ports.ts";
import type { Db } from "./database.ts";
import { messageRow } from "./message-row.ts";
import { deliveries, messages } from "./schema.ts";

export class SqlOutboundLog implements OutboundLog {
  constructor(private readonly db: Db) {}

  /** Two multi-row statements, in the caller's transaction or one of its own. */
  async insert(group: SignedMessage[]): Promise<void> {
    if (group.length === 0) return;
    await this.db.transaction(async (tx) => {
      await tx.insert(messages).values(group.map((m) => messageRow("outbound", m)));
      await tx.insert(deliveries).values(
        group.flatMap((m) =>
          m.envelope.to.map((recipient) => ({
            messageId: m.envelope.id,
            recipient,
            nextAttemptAt: new Date(m.envelope.sentAt),
          })),
        ),
      );
    });
  }

  async sentDigests(messageIds: string[]): Promise<Map<string, string>> {
    if (messageIds.length === 0) return new Map();
    const rows = await this.db
      .select({ id: messages.id, recipient: deliveries.recipient, digest: messages.digest })
      .from(messages)
      .innerJoin(deliveries, eq(deliveries.messageId, messages.id))
      .where(and(eq(messages.direction, "outbound"), inArray(messages.id, messageIds)));
    return new Map(rows.map((r) => [sentKey(r.id, r.recipient), r.digest]));
  }
}
