/**
 * One inbound wire message, from bytes to a committed outcome: verified → logged with our signed
 * receipt; a verified receipt → applied to our delivery; anything else → quarantined with its
 * code (and a signed negative receipt when the claimed sender is a registered party and the
 * bytes were not themselves a receipt). The caller acks the broker only after this returns.
 */
import type { Logger } from "../observability/logger.ts";
import { buildReceipt } from "../protocol/build-receipt.ts";
import { sha256Hex } from "../protocol/digest.ts";
import type { ErrorIssue, WireErrorCode } from "../protocol/errors.ts";
import { RECEIPT_TYP } from "../protocol/jws-profile.ts";
import { signCompact } from "../protocol/sign.ts";
import type { Clock, IdSource, KeyResolver, PartyId, SigningKey } from "../protocol/types.ts";
import { type InboundVerdict, verifyInbound } from "../protocol/verify-inbound.ts";
import type { SchemaRegistry } from "../schemas/schema-registry.ts";
import type { IssuedReceipt, MessageStore } from "../store/message-store.ts";

export interface InboxDeps {
  self: PartyId;
  store: MessageStore;
  keys: KeyResolver;
  schemas: SchemaRegistry;
  signingKey: () => SigningKey;
  clock: Clock;
  ids: IdSource;
  clockSkewMs: number;
  maxMessageBytes: number;
  log: Logger;
  /** Called after a receipt was queued, so the dispatcher sends it now. */
  onReceiptQueued: () => void;
}

export type InboxOutcome =
  | { outcome: "accepted"; messageId: string }
  | { outcome: "duplicate"; messageId: string }
  | { outcome: "receipt"; messageId: string; status: "accepted" | "rejected"; duplicate: boolean }
  | { outcome: "quarantined"; code: WireErrorCode; receiptSent: boolean };

export class InboxProcessor {
  constructor(private readonly deps: InboxDeps) {}

  async handle(data: Uint8Array, subject: string): Promise<InboxOutcome> {
    const { deps } = this;
    const verdict = await verifyInbound(data, {
      self: deps.self,
      keys: deps.keys,
      schemas: deps.schemas,
      now: deps.clock(),
      clockSkewMs: deps.clockSkewMs,
      maxBytes: deps.maxMessageBytes,
    });
    if (!verdict.ok) return this.quarantine(data, subject, verdict);
    if (verdict.kind === "receipt") return this.applyReceipt(data, subject, verdict);

    const { envelope } = verdict;
    const seen = await deps.store.findInbound(envelope.id);
    if (seen !== undefined) return this.duplicate(data, subject, verdict, seen.digest);

    const receipt = await this.issueReceipt(envelope.from, envelope.id, verdict.digest, []);
    const stored = await deps.store.recordInbound(
      { envelope, jws: verdict.jws, digest: verdict.digest, kid: verdict.kid },
      receipt,
    );
    if (stored === "duplicate") {
      const again = await deps.store.findInbound(envelope.id);
      return this.duplicate(data, subject, verdict, again?.digest ?? "");
    }
    deps.log.info(
      {
        messageId: envelope.id,
        type: envelope.type,
        caseRef: envelope.caseRef,
        from: envelope.from,
      },
      "message accepted",
    );
    deps.onReceiptQueued();
    return { outcome: "accepted", messageId: envelope.id };
  }

  /** A redelivery of a message we logged: send our receipt again. Same id, other bytes: conflict. */
  private async duplicate(
    data: Uint8Array,
    subject: string,
    verdict: Extract<InboundVerdict, { kind: "message"; ok: true }>,
    loggedDigest: string,
  ): Promise<InboxOutcome> {
    const { envelope } = verdict;
    if (loggedDigest === verdict.digest) {
      await this.deps.store.requeueIssuedReceipt(envelope.id, verdict.digest, this.deps.clock());
      this.deps.log.info(
        { messageId: envelope.id, from: envelope.from },
        "duplicate message; receipt sent again",
      );
      this.deps.onReceiptQueued();
      return { outcome: "duplicate", messageId: envelope.id };
    }
    return this.quarantine(data, subject, {
      ok: false,
      code: "duplicate_conflict",
      detail: "a different message with this id was already received",
      issues: [],
      digest: verdict.digest,
      kind: "message",
      claimedFrom: envelope.from,
      messageId: envelope.id,
    });
  }

  private async applyReceipt(
    data: Uint8Array,
    subject: string,
    verdict: Extract<InboundVerdict, { kind: "receipt"; ok: true }>,
  ): Promise<InboxOutcome> {
    const { receipt } = verdict;
    const outcome = await this.deps.store.applyReceivedReceipt({
      receipt,
      jws: verdict.jws,
      digest: verdict.digest,
      at: this.deps.clock(),
    });
    if (!outcome.ok) {
      return this.quarantine(data, subject, {
        ok: false,
        code: outcome.code,
        detail: outcome.detail,
        issues: [],
        digest: verdict.digest,
        kind: "receipt",
        claimedFrom: receipt.from,
        messageId: receipt.messageId,
      });
    }
    this.deps.log.info(
      {
        messageId: receipt.messageId,
        from: receipt.from,
        status: receipt.status,
        codes: receipt.errors.map((e) => e.code),
      },
      "receipt received",
    );
    return {
      outcome: "receipt",
      messageId: receipt.messageId ?? "",
      status: receipt.status,
      duplicate: outcome.duplicate,
    };
  }

  private async quarantine(
    data: Uint8Array,
    subject: string,
    rejection: Extract<InboundVerdict, { ok: false }>,
  ): Promise<InboxOutcome> {
    const answer = rejection.claimedFrom !== null && rejection.kind !== "receipt";
    const receipt = answer
      ? await this.issueReceipt(
          rejection.claimedFrom as string,
          rejection.messageId,
          rejection.digest,
          [{ code: rejection.code, detail: rejection.detail }],
        )
      : null;
    await this.deps.store.quarantine(
      {
        subject,
        raw: data,
        digest: rejection.digest,
        code: rejection.code,
        detail: rejection.detail,
        issues: rejection.issues as ErrorIssue[],
        kind: rejection.kind,
        claimedFrom: rejection.claimedFrom,
        messageId: rejection.messageId,
      },
      receipt,
    );
    this.deps.log.warn(
      {
        code: rejection.code,
        kind: rejection.kind,
        from: rejection.claimedFrom,
        messageId: rejection.messageId,
        receiptSent: answer,
      },
      "inbound quarantined",
    );
    if (answer) this.deps.onReceiptQueued();
    return { outcome: "quarantined", code: rejection.code, receiptSent: answer };
  }

  private async issueReceipt(
    to: PartyId,
    messageId: string | null,
    messageDigest: string,
    errors: Array<{ code: WireErrorCode; detail?: string }>,
  ): Promise<IssuedReceipt> {
    const receipt = buildReceipt(
      { to, messageId, digest: messageDigest, errors },
      { self: this.deps.self, clock: this.deps.clock, ids: this.deps.ids },
    );
    const jws = await signCompact(receipt, this.deps.signingKey(), RECEIPT_TYP);
    return { receipt, messageDigest, jws, digest: sha256Hex(jws) };
  }
}
