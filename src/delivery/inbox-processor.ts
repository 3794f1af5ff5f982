/**
 * Inbound wire messages, from bytes to committed outcomes, a batch at a time: every signature in
 * the batch is verified concurrently (WebCrypto works off the main thread), then verified
 * messages are logged with our signed receipts in one transaction, verified receipts close our
 * deliveries in another, and anything else is quarantined with its code — with a signed negative
 * receipt when the claimed sender is a registered party and the bytes were not themselves a
 * receipt. The caller acks the broker only after this returns.
 */
import type { Logger } from "../observability/logger.ts";
import { buildReceipt } from "../protocol/build-receipt.ts";
import { sha256Hex } from "../protocol/digest.ts";
import type { WireErrorCode } from "../protocol/errors.ts";
import { RECEIPT_TYP } from "../protocol/jws-profile.ts";
import { signCompact } from "../protocol/sign.ts";
import type {
  Clock,
  IdSource,
  KeyResolver,
  PartyId,
  ReceiptError,
  SigningKey,
} from "../protocol/types.ts";
import {
  type Rejection,
  type VerifiedMessage,
  type VerifiedReceipt,
  verifyInbound,
} from "../protocol/verify-inbound.ts";
import type { SchemaRegistry } from "../schemas/schema-registry.ts";
import { type IssuedReceipt, inboundKey, type MessageStore } from "../store/message-store.ts";

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
  /** Called after receipts were queued, so the dispatcher sends them now. */
  onReceiptQueued: () => void;
}

export interface InboundItem {
  data: Uint8Array;
  subject: string;
}

export type InboxOutcome =
  | { outcome: "accepted"; messageId: string }
  | { outcome: "duplicate"; messageId: string }
  | { outcome: "receipt"; messageId: string; status: "accepted" | "rejected"; duplicate: boolean }
  | { outcome: "quarantined"; code: WireErrorCode; receiptSent: boolean };

export class InboxProcessor {
  constructor(private readonly deps: InboxDeps) {}

  async handle(data: Uint8Array, subject: string): Promise<InboxOutcome> {
    const [outcome] = await this.handleBatch([{ data, subject }]);
    if (outcome === undefined) throw new Error("no outcome for the message");
    return outcome;
  }

  async handleBatch(items: InboundItem[]): Promise<InboxOutcome[]> {
    const { deps } = this;
    const now = deps.clock();
    const verdicts = await Promise.all(
      items.map((item) =>
        verifyInbound(item.data, {
          self: deps.self,
          keys: deps.keys,
          schemas: deps.schemas,
          now,
          clockSkewMs: deps.clockSkewMs,
          maxBytes: deps.maxMessageBytes,
        }),
      ),
    );
    const outcomes: Array<InboxOutcome | undefined> = new Array(items.length);
    const messages: number[] = [];
    const receipts: number[] = [];
    const rejected: number[] = [];
    verdicts.forEach((v, i) => {
      if (!v.ok) rejected.push(i);
      else if (v.kind === "message") messages.push(i);
      else receipts.push(i);
    });

    await this.acceptMessages(items, verdicts as VerifiedMessage[], messages, outcomes);
    await this.applyReceipts(items, verdicts as VerifiedReceipt[], receipts, outcomes);
    await this.rejectOrRecognise(items, verdicts as Rejection[], rejected, outcomes);
    if (outcomes.some((o) => o?.outcome === "accepted" || o?.outcome === "duplicate")) {
      deps.onReceiptQueued();
    }
    return outcomes.map((o) => {
      if (o === undefined) throw new Error("an inbound message was left without an outcome");
      return o;
    });
  }

  /** New messages are logged with our receipt; (sender, id) pairs already logged are duplicates. */
  private async acceptMessages(
    items: InboundItem[],
    verdicts: VerifiedMessage[],
    indexes: number[],
    outcomes: Array<InboxOutcome | undefined>,
  ): Promise<void> {
    if (indexes.length === 0) return;
    const { deps } = this;
    const keyOf = (i: number) => {
      const { envelope } = verdicts[i] as VerifiedMessage;
      return { from: envelope.from, id: envelope.id };
    };
    const logged = await deps.store.findInbound(indexes.map(keyOf));
    const seen = new Set<string>();
    const fresh: number[] = [];
    const later: number[] = [];
    for (const i of indexes) {
      const { from, id } = keyOf(i);
      const key = inboundKey(from, id);
      if (logged.has(key) || seen.has(key)) later.push(i);
      else {
        seen.add(key);
        fresh.push(i);
      }
    }
    const signed = await Promise.all(
      fresh.map(async (i) => {
        const v = verdicts[i] as VerifiedMessage;
        return {
          message: { envelope: v.envelope, jws: v.jws, digest: v.digest, kid: v.kid },
          receipt: await this.issueReceipt(v.envelope.from, v.envelope.id, v.digest, []),
        };
      }),
    );
    const stored = await deps.store.recordInbound(signed);
    for (const i of fresh) {
      const { envelope } = verdicts[i] as VerifiedMessage;
      if (!stored.has(inboundKey(envelope.from, envelope.id))) {
        later.push(i);
        continue;
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
      outcomes[i] = { outcome: "accepted", messageId: envelope.id };
    }
    if (later.length === 0) return;
    const known = await deps.store.findInbound(later.map(keyOf));
    for (const i of later) {
      const { from, id } = keyOf(i);
      outcomes[i] = await this.duplicate(
        items[i] as InboundItem,
        verdicts[i] as VerifiedMessage,
        known.get(inboundKey(from, id)),
      );
    }
  }

  /**
   * Bytes that fail verification now but are exactly a message we logged earlier — a sender's
   * retry arriving after the message expired or after its key was revoked — get our earlier
   * receipt again rather than a contradicting negative one. Everything else is quarantined.
   */
  private async rejectOrRecognise(
    items: InboundItem[],
    verdicts: Rejection[],
    indexes: number[],
    outcomes: Array<InboxOutcome | undefined>,
  ): Promise<void> {
    if (indexes.length === 0) return;
    const keys = indexes.flatMap((i) => {
      const v = verdicts[i] as Rejection;
      return v.kind === "message" && v.messageId !== null && v.claimedFrom !== null
        ? [{ from: v.claimedFrom, id: v.messageId }]
        : [];
    });
    const logged = await this.deps.store.findInbound(keys);
    for (const i of indexes) {
      const rejection = verdicts[i] as Rejection;
      const { claimedFrom, messageId } = rejection;
      const earlier =
        claimedFrom === null || messageId === null
          ? undefined
          : logged.get(inboundKey(claimedFrom, messageId));
      if (
        rejection.kind === "message" &&
        messageId !== null &&
        earlier?.digest === rejection.digest
      ) {
        await this.deps.store.requeueIssuedReceipt(messageId, rejection.digest, this.deps.clock());
        this.deps.log.info(
          { messageId, from: claimedFrom, code: rejection.code },
          "retry of a logged message; receipt sent again",
        );
        outcomes[i] = { outcome: "duplicate", messageId };
        continue;
      }
      outcomes[i] = await this.quarantine(items[i] as InboundItem, rejection);
    }
  }

  /**
   * A redelivery of a message we logged: our receipt goes out again. The same signed content
   * with another encoding of its signature (ECDSA signatures are malleable: s and n−s both
   * verify) is the same message: it gets a receipt of its own, naming its own digest, so the
   * sender, which knows only its own bytes, can close its delivery. The same id with other
   * content is a conflict.
   */
  private async duplicate(
    item: InboundItem,
    verdict: VerifiedMessage,
    logged: { digest: string; jws: string } | undefined,
  ): Promise<InboxOutcome> {
    const { envelope } = verdict;
    if (logged?.digest === verdict.digest) {
      await this.deps.store.requeueIssuedReceipt(envelope.id, verdict.digest, this.deps.clock());
      this.deps.log.info(
        { messageId: envelope.id, from: envelope.from },
        "duplicate message; receipt sent again",
      );
      return { outcome: "duplicate", messageId: envelope.id };
    }
    if (logged !== undefined && signingInput(logged.jws) === signingInput(verdict.jws)) {
      // Answered once per encoding: a replay of the variant re-sends that receipt.
      if (
        await this.deps.store.requeueIssuedReceipt(envelope.id, verdict.digest, this.deps.clock())
      ) {
        return { outcome: "duplicate", messageId: envelope.id };
      }
      await this.deps.store.insertIssuedReceipt(
        await this.issueReceipt(envelope.from, envelope.id, verdict.digest, []),
      );
      this.deps.log.info(
        { messageId: envelope.id, from: envelope.from },
        "duplicate message, other signature encoding; receipt for its bytes",
      );
      return { outcome: "duplicate", messageId: envelope.id };
    }
    return this.quarantine(item, {
      ok: false,
      code: "duplicate_conflict",
      detail: "a different message with this id was already received from this sender",
      issues: [],
      digest: verdict.digest,
      kind: "message",
      claimedFrom: envelope.from,
      messageId: envelope.id,
    });
  }

  private async applyReceipts(
    items: InboundItem[],
    verdicts: VerifiedReceipt[],
    indexes: number[],
    outcomes: Array<InboxOutcome | undefined>,
  ): Promise<void> {
    if (indexes.length === 0) return;
    const applied = await this.deps.store.applyReceivedReceipts(
      indexes.map((i) => {
        const v = verdicts[i] as VerifiedReceipt;
        return { receipt: v.receipt, jws: v.jws, digest: v.digest };
      }),
      this.deps.clock(),
    );
    for (const [k, i] of indexes.entries()) {
      const { receipt, digest } = verdicts[i] as VerifiedReceipt;
      const result = applied[k];
      if (result === undefined) throw new Error("no outcome for a receipt");
      if (!result.ok) {
        outcomes[i] = await this.quarantine(items[i] as InboundItem, {
          ok: false,
          code: result.code,
          detail: result.detail,
          issues: [],
          digest,
          kind: "receipt",
          claimedFrom: receipt.from,
          messageId: receipt.messageId,
        });
        continue;
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
      outcomes[i] = {
        outcome: "receipt",
        messageId: receipt.messageId ?? "",
        status: receipt.status,
        duplicate: result.duplicate,
      };
    }
  }

  private async quarantine(item: InboundItem, rejection: Rejection): Promise<InboxOutcome> {
    const answer = rejection.claimedFrom !== null && rejection.kind !== "receipt";
    const receipt = answer
      ? await this.issueReceipt(
          rejection.claimedFrom as string,
          rejection.messageId,
          rejection.digest,
          receiptErrors(rejection),
        )
      : null;
    const seq = await this.deps.store.quarantine(
      {
        subject: item.subject,
        raw: item.data,
        digest: rejection.digest,
        code: rejection.code,
        detail: rejection.detail,
        issues: rejection.issues,
        kind: rejection.kind,
        claimedFrom: rejection.claimedFrom,
        messageId: rejection.messageId,
      },
      receipt,
    );
    // null: these exact bytes were kept (and answered) before; a redelivery adds nothing.
    const receiptSent = answer && seq !== null;
    this.deps.log.warn(
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
    if (receiptSent) this.deps.onReceiptQueued();
    return { outcome: "quarantined", code: rejection.code, receiptSent };
  }

  private async issueReceipt(
    to: PartyId,
    messageId: string | null,
    messageDigest: string,
    errors: ReceiptError[],
  ): Promise<IssuedReceipt> {
    const receipt = buildReceipt(
      { to, messageId, digest: messageDigest, errors },
      { self: this.deps.self, clock: this.deps.clock, ids: this.deps.ids },
    );
    const jws = await signCompact(receipt, this.deps.signingKey(), RECEIPT_TYP);
    return { receipt, messageDigest, jws, digest: sha256Hex(jws) };
  }
}

/** One error per invalid field (with its JSON pointer) when the rejection has issues, else one. */
export function receiptErrors(rejection: Rejection): ReceiptError[] {
  if (rejection.issues.length === 0)
    return [{ code: rejection.code, detail: rejection.detail.slice(0, 500) }];
  return rejection.issues.slice(0, 32).map((issue) => ({
    code: rejection.code,
    detail: issue.message.slice(0, 500),
    path: issue.path.slice(0, 300),
  }));
}

/** `header.payload`: what the signature covers. */
function signingInput(jws: string): string {
  return jws.slice(0, jws.lastIndexOf("."));
}
