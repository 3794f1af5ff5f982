/**
 * Receipts both ways. `issued` rows are ours, answering inbound bytes, and double as the receipt
 * outbox (`published_at` null until the broker acknowledged them); `received` rows are partners'
 * receipts for our messages.
 */
import { and, asc, eq, inArray, isNull, lte, sql } from "drizzle-orm";
import type { DueReceipt, IssuedReceipt, ReceiptLog, ReceivedReceipt } from "../delivery/ports.ts";
import type { Db } from "./database.ts";
import { parties, receipts } from "./schema.ts";

export class SqlReceiptLog implements ReceiptLog {
  constructor(private readonly db: Db) {}

  async insertIssued(issued: IssuedReceipt[]): Promise<void> {
    if (issued.length === 0) return;
    await this.db.insert(receipts).values(
      issued.map((r) => ({
        id: r.receipt.id,
        direction: "issued" as const,
        messageId: r.receipt.messageId,
        messageDigest: r.messageDigest,
        fromParty: r.receipt.from,
        toParty: r.receipt.to,
        status: r.receipt.status,
        errors: r.receipt.errors,
        jws: r.jws,
        digest: r.digest,
        nextPublishAt: new Date(r.receipt.sentAt),
      })),
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
        ),
      )
      .returning({ id: receipts.id });
    return rows.length > 0;
  }

  async requeueById(receiptId: string, at: Date): Promise<void> {
    await this.db
      .update(receipts)
      .set({ publishedAt: null, nextPublishAt: at })
      .where(and(eq(receipts.direction, "issued"), eq(receipts.id, receiptId)));
  }

  async insertReceived(received: ReceivedReceipt[]): Promise<Set<string>> {
    if (received.length === 0) return new Set();
    const inserted = await this.db
      .insert(receipts)
      .values(
        received.map(({ receipt, jws, digest }) => ({
          id: receipt.id,
          direction: "received" as const,
          messageId: receipt.messageId,
          messageDigest: receipt.digest.value,
          fromParty: receipt.from,
          toParty: receipt.to,
          status: receipt.status,
          errors: receipt.errors,
          jws,
          digest,
        })),
      )
      .onConflictDoNothing()
      .returning({ id: receipts.id });
    return new Set(inserted.map((r) => r.id));
  }

  async findReceived(ids: string[]): Promise<Map<string, { digest: string; jws: string }>> {
    if (ids.length === 0) return new Map();
    const rows = await this.db
      .select({ id: receipts.id, digest: receipts.digest, jws: receipts.jws })
      .from(receipts)
      .where(and(eq(receipts.direction, "received"), inArray(receipts.id, ids)));
    return new Map(rows.map((r) => [r.id, { digest: r.digest, jws: r.jws }]));
  }

  /** Issued receipts not yet acknowledged by the broker, leased like deliveries. */
  async claimUnpublished(opts: {
    now: Date;
    limit: number;
    leaseMs: number;
  }): Promise<DueReceipt[]> {
    return this.db.transaction(async (tx) => {
      const rows = await tx
        .select({
          id: receipts.id,
          toParty: receipts.toParty,
          jws: receipts.jws,
          digest: receipts.digest,
          subject: parties.inboundSubject,
        })
        .from(receipts)
        .innerJoin(parties, eq(parties.id, receipts.toParty))
        .where(
          and(
            eq(receipts.direction, "issued"),
            isNull(receipts.publishedAt),
            lte(receipts.nextPublishAt, opts.now),
          ),
        )
        .orderBy(asc(receipts.nextPublishAt))
        .limit(opts.limit)
        .for("update", { of: receipts, skipLocked: true });
      if (rows.length === 0) return [];
      await tx
        .update(receipts)
        .set({
          publishAttempts: sql`${receipts.publishAttempts} + 1`,
          nextPublishAt: new Date(opts.now.getTime() + opts.leaseMs),
        })
        .where(
          and(
            eq(receipts.direction, "issued"),
            inArray(
              receipts.id,
              rows.map((r) => r.id),
            ),
          ),
        );
      return rows;
    });
  }

  async markPublished(ids: string[], at: Date): Promise<void> {
    if (ids.length === 0) return;
    await this.db
      .update(receipts)
      .set({ publishedAt: at })
      .where(and(eq(receipts.direction, "issued"), inArray(receipts.id, ids)));
  }
}
