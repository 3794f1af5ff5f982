/**
 * Keeps inbound bytes that were not accepted, exactly as received, with their code: once per
 * digest, with our signed negative receipt in the same transaction when the claimed sender is
 * a registered party other than ourselves and the bytes were not themselves a receipt.
 */
import { sha256Hex } from "../protocol/digest.ts";
import type { Rejection } from "../protocol/verify-inbound.ts";
import type { InboxDeps, InboxOutcome } from "./inbox.ts";
import type { InboundItem, IssuedReceipt, Stores } from "./ports.ts";
import { receiptErrors } from "./receipt-issuer.ts";

export class Quarantiner {
  constructor(
    private readonly deps: Pick<
      InboxDeps,
      "self" | "store" | "receipts" | "clock" | "log" | "wake"
    >,
  ) {}

  /**
   * Bytes whose processing threw on every delivery (see the transport): kept as
   * `processing_failed`, with no receipt, so the broker can drop them. Throws when they cannot
   * be kept; the transport then redelivers them.
   */
  async keepUnprocessable(item: InboundItem, deliveries: number): Promise<void> {
    const digest = sha256Hex(item.data);
    const seq = await this.deps.store.quarantine.insert({
      subject: item.subject,
      raw: item.data,
      digest,
      code: "processing_failed",
      detail: `processing failed on ${deliveries} deliveries`,
      issues: [],
      kind: "unknown",
      claimedFrom: null,
      messageId: null,
      receiptId: null,
    });
    this.deps.log.error(
      { code: "processing_failed", digest, deliveries, again: seq === null },
      "inbound bytes could not be processed; quarantined",
    );
  }

  /**
   * The bytes, the reason and, when the sender is known and the bytes were not a receipt, our
   * negative receipt: one transaction. Bytes claiming to come from this gateway itself are never
   * answered: the answer would come back to us. The same bytes again write nothing new; the answer we
   * gave them goes out again (the sender retried, so it may not have it).
   */
  async keep(item: InboundItem, rejection: Rejection): Promise<InboxOutcome> {
    const receipt = await this.answer(rejection);
    const kept = await this.deps.store.transaction((tx) =>
      this.record(tx, item, rejection, receipt),
    );
    return this.report(rejection, kept);
  }

  /**
   * Our signed negative receipt for `rejection`, or null when the bytes are not answered (a
   * receipt, bytes of no known sender, or bytes claiming to come from us).
   */
  async answer(rejection: Rejection): Promise<IssuedReceipt | null> {
    const answer =
      rejection.claimedFrom !== null &&
      rejection.claimedFrom !== this.deps.self &&
      rejection.kind !== "receipt";
    return answer
      ? this.deps.receipts.issue(
          rejection.claimedFrom as string,
          rejection.messageId,
          rejection.digest,
          receiptErrors(rejection),
        )
      : null;
  }

  /**
   * The quarantine row and our answer, in the caller's transaction (`tx`): the same bytes again
   * write nothing new and queue the answer we gave them again.
   */
  async record(
    tx: Stores,
    item: InboundItem,
    rejection: Rejection,
    receipt: IssuedReceipt | null,
  ): Promise<Kept> {
    const seq = await tx.quarantine.insert({
      subject: item.subject,
      raw: item.data,
      digest: rejection.digest,
      code: rejection.code,
      detail: rejection.detail,
      issues: rejection.issues,
      kind: rejection.kind,
      claimedFrom: rejection.claimedFrom,
      messageId: rejection.messageId,
      receiptId: receipt?.receipt.id ?? null,
    });
    if (seq === null) {
      const earlier = await tx.quarantine.answerFor(rejection.digest);
      if (earlier === null) return { again: true, receiptSent: false, requeued: false };
      await tx.receipts.requeueById(earlier, this.deps.clock());
      return { again: true, receiptSent: false, requeued: true };
    }
    if (receipt !== null) await tx.receipts.insertIssued([receipt]);
    return { again: false, receiptSent: receipt !== null, requeued: false };
  }

  /** After the commit: the log line, and the dispatcher woken for a new or re-queued answer. */
  report(rejection: Rejection, kept: Kept): InboxOutcome {
    this.deps.log.warn(
      {
        code: rejection.code,
        kind: rejection.kind,
        from: rejection.claimedFrom,
        messageId: rejection.messageId,
        receiptSent: kept.receiptSent,
        again: kept.again,
      },
      "inbound quarantined",
    );
    // A new answer, or the earlier one queued again: the dispatcher sends it now.
    if (kept.receiptSent || kept.requeued) this.deps.wake.raise();
    return { outcome: "quarantined", code: rejection.code, receiptSent: kept.receiptSent };
  }
}

/** What recording a rejection did. */
export interface Kept {
  /** The same bytes were quarantined before. */
  again: boolean;
  /** A new negative receipt was written, to be published. */
  receiptSent: boolean;
  /** The answer given to these bytes before was queued again. */
  requeued: boolean;
}
