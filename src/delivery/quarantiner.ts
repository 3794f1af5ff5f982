/**
 * Keeps inbound bytes that were not accepted, exactly as received, with their code: once per
 * digest, with our signed negative receipt in the same transaction when the claimed sender is
 * a registered party other than ourselves and the bytes were not themselves a receipt.
 */
import { sha256Hex } from "../protocol/digest.ts";
import type { Rejection } from "../protocol/verify-inbound.ts";
import type { InboxDeps, InboxOutcome } from "./inbox.ts";
import type { InboundItem } from "./ports.ts";
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
    const { store, clock, log, receipts, wake } = this.deps;
    const answer =
      rejection.claimedFrom !== null &&
      rejection.claimedFrom !== this.deps.self &&
      rejection.kind !== "receipt";
    const receipt = answer
      ? await receipts.issue(
          rejection.claimedFrom as string,
          rejection.messageId,
          rejection.digest,
          receiptErrors(rejection),
        )
      : null;
    let requeued = false;
    const seq = await store.transaction(async (tx) => {
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
        if (earlier !== null) {
          await tx.receipts.requeueById(earlier, clock());
          requeued = true;
        }
      } else if (receipt !== null) {
        await tx.receipts.insertIssued([receipt]);
      }
      return seq;
    });
    const receiptSent = answer && seq !== null;
    log.warn(
      {
        code: rejection.code,
        kind: rejection.kind,
        from: rejection.claimedFrom,
        messageId: rejection.messageId,
        receiptSent,
        again: seq === null,
      },
      "inbound quarantined",
    );
    // A new answer, or the earlier one queued again: the dispatcher sends it now.
    if (receiptSent || requeued) wake.raise();
    return { outcome: "quarantined", code: rejection.code, receiptSent };
  }
}
