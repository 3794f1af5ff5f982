/**
 * Inbound wire bytes, from the transport to committed outcomes, a batch at a time: every
 * signature in the batch is verified concurrently (WebCrypto works off the main thread); then
 * verified messages are logged with our signed receipts in one transaction, verified receipts
 * close our deliveries in another, and anything else is quarantined with its code — with a signed
 * negative receipt when the claimed sender is a registered party and the bytes were not
 * themselves a receipt. The transport acks the broker only after this returns.
 */
import type { CaseBook } from "../cases/case-book.ts";
import { CASE_REFUSAL_CODES, CASE_TYPES, isCaseType } from "../cases/case-types.ts";
import { caseMessageKey, type Refusal } from "../cases/fold-case.ts";
import type { WireErrorCode } from "../protocol/errors.ts";
import { matchReceipt } from "../protocol/match-receipt.ts";
import type { KeyResolver, PartyId } from "../protocol/types.ts";
import {
  type Rejection,
  type VerifiedMessage,
  type VerifiedReceipt,
  type VerifiedReceiptBatch,
  verifyInbound,
} from "../protocol/verify-inbound.ts";
import type { SchemaRegistry } from "../schemas/schema-registry.ts";
import {
  type CaseKeys,
  type Clock,
  type InboundItem,
  type IssuedBatch,
  type IssuedReceipt,
  inboundKey,
  type Log,
  type Metrics,
  NO_METRICS,
  type PromptPublisher,
  type SignedMessage,
  type Store,
  type Stores,
  sentKey,
} from "./ports.ts";
import { type Kept, Quarantiner } from "./quarantiner.ts";
import type { ReceiptIssuer } from "./receipt-issuer.ts";
import type { WakeSignal } from "./wake-signal.ts";

export interface InboxDeps {
  self: PartyId;
  store: Store;
  keys: KeyResolver;
  schemas: SchemaRegistry;
  receipts: ReceiptIssuer;
  clock: Clock;
  clockSkewMs: number;
  maxMessageBytes: number;
  log: Log;
  /** Raised when receipts wait in the outbox, so the dispatcher sends them now. */
  wake: WakeSignal;
  /**
   * The dispatcher's prompt path: the receipts for newly logged messages are leased to it at
   * commit and published at once (instead of raising `wake` for its next pass).
   */
  prompt?: PromptPublisher;
  /** Admits case steps, in the transaction that logs them. */
  cases: CaseBook;
  /**
   * Whether a sender accepts batch receipts (its registered party record says so): its
   * accepted messages of one batch are answered by one batch receipt, not a receipt each.
   * Absent: every sender gets a receipt per message.
   */
  batchesTo?: (party: PartyId) => boolean;
  /** Our decryption keys: personal data is decrypted on arrival to be validated. */
  caseKeys: Pick<CaseKeys, "decryptionKeys">;
  /** Observations for GET /metrics (none when absent). */
  metrics?: Metrics;
}

export type InboxOutcome =
  | { outcome: "accepted"; messageId: string }
  | { outcome: "duplicate"; messageId: string }
  | { outcome: "receipt"; messageId: string; status: "accepted" | "rejected"; duplicate: boolean }
  | { outcome: "receipt-batch"; batchId: string; entries: number; duplicate: boolean }
  | { outcome: "quarantined"; code: WireErrorCode; receiptSent: boolean };

type Indexed<V> = { index: number; item: InboundItem; verdict: V };

export class Inbox {
  private readonly quarantiner: Quarantiner;
  /** Whether the last batch of messages held copies of messages logged before. */
  private replaying = false;

  constructor(private readonly deps: InboxDeps) {
    this.quarantiner = new Quarantiner(deps);
  }

  async handle(data: Uint8Array, subject: string): Promise<InboxOutcome> {
    const [outcome] = await this.handleBatch([{ data, subject }]);
    if (outcome === undefined) throw new Error("no outcome for the message");
    return outcome;
  }

  async handleBatch(items: InboundItem[]): Promise<InboxOutcome[]> {
    const started = performance.now();
    const outcomes = await this.handleBatchTimed(items);
    (this.deps.metrics ?? NO_METRICS).inboundBatch(
      items.length,
      (performance.now() - started) / 1000,
    );
    return outcomes;
  }

  private async handleBatchTimed(items: InboundItem[]): Promise<InboxOutcome[]> {
    const { deps } = this;
    const now = deps.clock();
    const context = {
      self: deps.self,
      keys: deps.keys,
      schemas: deps.schemas,
      now,
      clockSkewMs: deps.clockSkewMs,
      maxBytes: deps.maxMessageBytes,
      decryptionKeys: deps.caseKeys.decryptionKeys(),
    };
    const verdicts = await Promise.all(items.map((item) => verifyInbound(item.data, context)));
    const messages: Array<Indexed<VerifiedMessage>> = [];
    const receipts: Array<Indexed<VerifiedReceipt>> = [];
    const batches: Array<Indexed<VerifiedReceiptBatch>> = [];
    const rejected: Array<Indexed<Rejection>> = [];
    verdicts.forEach((verdict, index) => {
      const item = items[index] as InboundItem;
      if (!verdict.ok) rejected.push({ index, item, verdict });
      else if (verdict.kind === "message") messages.push({ index, item, verdict });
      else if (verdict.kind === "receipt") receipts.push({ index, item, verdict });
      else batches.push({ index, item, verdict });
    });

    const outcomes: Array<InboxOutcome | undefined> = new Array(items.length);
    const settle = (index: number, outcome: InboxOutcome) => {
      outcomes[index] = outcome;
    };
    await this.acceptMessages(messages, settle);
    await this.applyReceipts(receipts, settle);
    for (const batch of batches) settle(batch.index, await this.applyBatch(batch));
    await this.rejectOrRecognise(rejected, settle);
    // A duplicate's receipt was requeued; an accepted message's went the prompt path, if any.
    if (
      outcomes.some(
        (o) =>
          o?.outcome === "duplicate" || (o?.outcome === "accepted" && deps.prompt === undefined),
      )
    ) {
      deps.wake.raise();
    }
    return outcomes.map((o) => {
      if (o === undefined) throw new Error("an inbound message was left without an outcome");
      return o;
    });
  }

  /** New messages are logged with our receipt; (sender, id) pairs already logged are duplicates. */
  private async acceptMessages(
    batch: Array<Indexed<VerifiedMessage>>,
    settle: (index: number, outcome: InboxOutcome) => void,
  ): Promise<void> {
    if (batch.length === 0) return;
    const { store, log, receipts } = this.deps;
    const keyOf = ({ verdict }: Indexed<VerifiedMessage>) => ({
      from: verdict.envelope.from,
      id: verdict.envelope.id,
    });
    // Which are logged already (redeliveries, another replica's): a case step must be known as
    // one before its case is asked to admit it. A batch of no case step skips the lookup — its
    // insert logs only what is new (on conflict do nothing), and the rest is looked up after —
    // unless the batch before held copies of logged messages: a replay (a consumer made again
    // reads its stream from the start) is then looked up first, not signed a receipt again.
    const lookFirst = this.replaying || batch.some((m) => isCaseType(m.verdict.envelope.type));
    const logged = lookFirst
      ? await store.inbound.find(batch.map(keyOf))
      : new Map<string, unknown>();
    const seen = new Set<string>();
    const fresh: Array<Indexed<VerifiedMessage>> = [];
    const later: Array<Indexed<VerifiedMessage>> = [];
    for (const m of batch) {
      const { from, id } = keyOf(m);
      const key = inboundKey(from, id);
      if (logged.has(key) || seen.has(key)) later.push(m);
      else {
        seen.add(key);
        fresh.push(m);
      }
    }
    // A sender that accepts batch receipts gets one for the messages of this batch that we
    // log (docs/protocol.md, Batch receipts), signed once; every other sender a receipt each.
    const batched = (from: PartyId) => this.deps.batchesTo?.(from) === true;
    const signed: Array<{ message: SignedMessage; receipt?: IssuedReceipt }> = await Promise.all(
      fresh.map(async ({ verdict: v }) => {
        const message = { envelope: v.envelope, jws: v.jws, digest: v.digest, kid: v.kid };
        return batched(v.envelope.from)
          ? { message }
          : { message, receipt: await receipts.issue(v.envelope.from, v.envelope.id, v.digest) };
      }),
    );
    /** Batch receipts for the batched messages among these, one per sender (MAX_BATCH_ENTRIES). */
    const batchesFor = async (messages: SignedMessage[]): Promise<IssuedBatch[]> => {
      const bySender = new Map<PartyId, Array<{ messageId: string; digest: string }>>();
      for (const m of messages) {
        if (!batched(m.envelope.from)) continue;
        const entries = bySender.get(m.envelope.from) ?? [];
        entries.push({ messageId: m.envelope.id, digest: m.digest });
        bySender.set(m.envelope.from, entries);
      }
      const batches = await Promise.all(
        [...bySender].map(([to, entries]) => receipts.issueBatches(to, entries)),
      );
      return batches.flat();
    };
    // The log rows, our receipts for them and the cases they move: one transaction (one
    // statement when no message of the batch is a step of a case). A case step
    // its case does not allow is refused, never logged, and quarantined with our negative
    // receipt in that same transaction, under the case's lock: a replica handling another copy
    // meanwhile finds it refused, never admits it. Another replica may have logged some
    // meanwhile: those are not stored again and their receipts not written.
    const lease = this.deps.prompt?.receiptLease();
    const steps = signed.map((s) => s.message.envelope).filter((e) => isCaseType(e.type));
    const answered = (stored: Set<string>, batches: IssuedBatch[]) => ({
      receipts: signed
        .filter((s) => stored.has(inboundKey(s.message.envelope.from, s.message.envelope.id)))
        .flatMap((s) => s.receipt ?? []),
      batches,
    });
    /**
     * The batch receipts for what `insertAnswered` just stored in `tx`: signed once the insert
     * told which messages are new (a redelivery or another replica's copy is not), so that a
     * batch accepts exactly the messages it logged.
     */
    const answerInBatches = async (tx: Stores, stored: Set<string>) => {
      const batches = await batchesFor(
        signed
          .map((s) => s.message)
          .filter((m) => stored.has(inboundKey(m.envelope.from, m.envelope.id))),
      );
      const written = await tx.receipts.insertIssuedBatches(batches, lease);
      // Never expected: the store refuses a batch naming bytes this transaction did not log.
      // Undone (the transaction with it) rather than leave a message unanswered.
      if (batches.some((b) => !written.has(b.batch.id))) {
        throw new Error("a batch receipt named a message not logged with its digest");
      }
      return batches;
    };
    // Messages of no case (the common path): the log rows and our receipts are one statement,
    // atomic on its own, with nothing to admit or refuse — and, when a sender accepts batch
    // receipts, its batches in the same transaction.
    const noBatches = signed.every((s) => s.receipt !== undefined);
    const { stored, refused, kept, issued } = await (steps.length === 0
      ? (noBatches
          ? store.inbound
              .insertAnswered(signed, lease)
              .then((keys) => ({ keys, batches: [] as IssuedBatch[] }))
          : store.transaction(async (tx) => {
              const keys = await tx.inbound.insertAnswered(signed, lease);
              return { keys, batches: await answerInBatches(tx, keys) };
            })
        ).then(({ keys, batches }) => ({
          stored: keys,
          refused: new Map<string, Refusal>(),
          kept: new Map<number, { rejection: Rejection; kept: Kept }>(),
          issued: answered(keys, batches),
        }))
      : store.transaction(async (tx) => {
          // A case step refused once stays refused, whatever the case allows by now: the sender
          // took our negative receipt as final, and both sides must keep holding the same steps.
          // The cases' locks first: whether a step was refused before is read under them too.
          await tx.cases.lock(steps.map((e) => e.caseRef));
          const earlier = await tx.quarantine.refusedEarlier(
            steps.map((e) => ({ from: e.from, id: e.id })),
            CASE_REFUSAL_CODES,
          );
          const refused = await this.deps.cases.admit(
            tx,
            steps.filter((e) => !earlier.has(inboundKey(e.from, e.id))),
          );
          for (const [key, refusal] of earlier) refused.set(key, refusal as Refusal);
          const admitted = signed.filter((s) => !refused.has(caseMessageKey(s.message.envelope)));
          const keys = await tx.inbound.insertAnswered(admitted, lease);
          // A refused step is not stored: no batch accepts it.
          const batches = await answerInBatches(tx, keys);
          const kept = new Map<number, { rejection: Rejection; kept: Kept }>();
          for (const m of fresh) {
            const refusal = refused.get(caseMessageKey(m.verdict.envelope));
            if (refusal === undefined) continue;
            const rejection = stepRejection(m.verdict, refusal);
            const receipt = await this.quarantiner.answer(rejection);
            kept.set(m.index, {
              rejection,
              kept: await this.quarantiner.record(tx, m.item, rejection, receipt),
            });
          }
          return { stored: keys, refused, kept, issued: answered(keys, batches) };
        }));
    if (lease !== undefined) {
      this.deps.prompt?.sendReceipts([
        ...issued.receipts.map(({ receipt, jws, digest }) => ({
          id: receipt.id,
          toParty: receipt.to,
          jws,
          digest,
        })),
        ...issued.batches.map(({ batch, jws, digest }) => ({
          id: batch.id,
          toParty: batch.to,
          jws,
          digest,
          batch: true,
        })),
      ]);
    }
    for (const m of fresh) {
      const { envelope } = m.verdict;
      const refusal = kept.get(m.index);
      if (refusal !== undefined) {
        settle(m.index, this.quarantiner.report(refusal.rejection, refusal.kept));
        continue;
      }
      if (!stored.has(inboundKey(envelope.from, envelope.id))) {
        later.push(m);
        continue;
      }
      log.info(
        {
          messageId: envelope.id,
          type: envelope.type,
          caseRef: envelope.caseRef,
          from: envelope.from,
        },
        "message accepted",
      );
      settle(m.index, { outcome: "accepted", messageId: envelope.id });
    }
    this.replaying = later.length > 0;
    if (later.length === 0) return;
    const known = await store.inbound.find(later.map(keyOf));
    for (const m of later) {
      const { from, id } = keyOf(m);
      const logged = known.get(inboundKey(from, id));
      // Another copy, in this batch, of a step its case refused: nothing is logged under its id,
      // so it is refused with the case's code, as a later redelivery would be — not a conflict.
      const refusal = logged === undefined ? refused.get(inboundKey(from, id)) : undefined;
      settle(
        m.index,
        refusal === undefined ? await this.duplicate(m, logged) : await this.refuseStep(m, refusal),
      );
    }
  }

  /** A verified message its case does not allow: quarantined, answered with the case's code. */
  private refuseStep(
    { item, verdict }: Indexed<VerifiedMessage>,
    refusal: Refusal,
  ): Promise<InboxOutcome> {
    return this.quarantiner.keep(item, stepRejection(verdict, refusal));
  }

  /**
   * A redelivery of a message we logged: our receipt goes out again. The same signed content
   * with another encoding of its signature (ECDSA signatures are malleable: s and n−s both
   * verify) is the same message: it gets a receipt of its own, naming its own digest, so the
   * sender, which knows only its own bytes, can close its delivery. The same id with other
   * content is a conflict.
   */
  private async duplicate(
    { item, verdict }: Indexed<VerifiedMessage>,
    logged: { digest: string; jws: string } | undefined,
  ): Promise<InboxOutcome> {
    const { store, clock, log, receipts } = this.deps;
    const { envelope } = verdict;
    const duplicate = { outcome: "duplicate", messageId: envelope.id } as const;
    if (logged?.digest === verdict.digest) {
      await this.answerAgain(envelope.from, envelope.id, verdict.digest);
      log.info(
        { messageId: envelope.id, from: envelope.from },
        "duplicate message; receipt sent again",
      );
      return duplicate;
    }
    if (logged !== undefined && signingInput(logged.jws) === signingInput(verdict.jws)) {
      // Answered once per encoding: a replay of the variant re-sends that receipt.
      if (await store.receipts.requeueIssued(envelope.id, verdict.digest, clock()))
        return duplicate;
      await store.receipts.insertIssued([
        await receipts.issue(envelope.from, envelope.id, verdict.digest),
      ]);
      log.info(
        { messageId: envelope.id, from: envelope.from },
        "duplicate message, other signature encoding; receipt for its bytes",
      );
      return duplicate;
    }
    return this.quarantiner.keep(item, {
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

  /**
   * Partners' receipts for our messages, one transaction for the batch: each is matched against
   * what we sent (protocol/match-receipt.ts), logged, and closes its delivery; a receipt that
   * matches nothing we sent is quarantined.
   */
  private async applyReceipts(
    batch: Array<Indexed<VerifiedReceipt>>,
    settle: (index: number, outcome: InboxOutcome) => void,
  ): Promise<void> {
    if (batch.length === 0) return;
    const { store, clock } = this.deps;
    const ids = [...new Set(batch.flatMap(({ verdict }) => verdict.receipt.messageId ?? []))];
    // What we sent never changes once logged (and a receipt can only answer what was committed
    // before it was published): read outside the transaction.
    const sent = await store.outbound.sentDigests(ids);
    const matches = batch.map(({ verdict: { receipt } }) =>
      matchReceipt(
        receipt,
        receipt.messageId === null ? undefined : sent.get(sentKey(receipt.messageId, receipt.from)),
      ),
    );
    const valid = batch.filter((_, k) => matches[k]?.ok === true).map((r) => r.verdict);
    const closedMetric =
      (closedAt: Date) =>
      (c: { recipient: string; status: "delivered" | "rejected"; sentAt: Date }) =>
        (this.deps.metrics ?? NO_METRICS).deliveryClosed(
          c.recipient,
          c.status,
          Math.max(0, closedAt.getTime() - c.sentAt.getTime()) / 1000,
        );
    // The common batch — positive receipts, each of its own id for a delivery of its own — is
    // logged and closes its deliveries in one statement, atomic on its own. The rest (a refusal
    // may move a case; two receipts may compete for one id or one delivery) takes the
    // transaction below.
    const distinct = (key: (v: VerifiedReceipt) => string) =>
      new Set(valid.map(key)).size === valid.length;
    if (
      valid.every((v) => v.receipt.status === "accepted") &&
      distinct((v) => v.receipt.id) &&
      distinct((v) => sentKey(v.receipt.messageId ?? "", v.receipt.from))
    ) {
      const closedAt = clock();
      const { fresh, closed } = await store.receipts.insertReceivedClosing(valid, closedAt);
      closed.forEach(closedMetric(closedAt));
      const logged = await store.receipts.findReceived(
        valid.map((v) => v.receipt.id).filter((id) => !fresh.has(id)),
      );
      for (const v of valid) {
        if (fresh.has(v.receipt.id)) logged.set(v.receipt.id, { digest: v.digest, jws: v.jws });
      }
      await this.settleReceipts(batch, matches, fresh, logged, settle);
      return;
    }
    const { fresh, logged } = await store.transaction(async (tx) => {
      const fresh = await tx.receipts.insertReceived(valid);
      // What is logged under each id now: these bytes, or other bytes under the same id. A new
      // id that occurs once in the batch holds these bytes; only the others are looked up.
      const counts = new Map<string, number>();
      for (const v of valid) counts.set(v.receipt.id, (counts.get(v.receipt.id) ?? 0) + 1);
      const certain = (id: string) => fresh.has(id) && counts.get(id) === 1;
      const logged = await tx.receipts.findReceived(
        [...counts.keys()].filter((id) => !certain(id)),
      );
      for (const v of valid) {
        if (certain(v.receipt.id)) logged.set(v.receipt.id, { digest: v.digest, jws: v.jws });
      }
      const closing = new Map(
        valid
          .filter((v) => fresh.has(v.receipt.id) && logged.get(v.receipt.id)?.digest === v.digest)
          .map(({ receipt }) => [receipt.id, receipt]),
      );
      const closedAt = clock();
      const closed = await tx.outbox.close(
        [...closing.values()].map((receipt) => ({
          messageId: receipt.messageId as string,
          recipient: receipt.from,
          status: receipt.status,
        })),
        closedAt,
      );
      closed.forEach(closedMetric(closedAt));
      // A case step the other party refused never became part of the case: recompute it.
      const refusedSteps = [...closing.values()]
        .filter((r) => r.status === "rejected")
        .map((r) => r.messageId as string);
      await this.deps.cases.refresh(tx, await tx.cases.caseRefsOf(refusedSteps, CASE_TYPES));
      return { fresh, logged };
    });
    await this.settleReceipts(batch, matches, fresh, logged, settle);
  }

  /**
   * A partner's batch receipt (docs/protocol.md, Batch receipts), all or nothing: B3, every entry
   * names a message we sent to its issuer, with that digest, else the whole batch is kept as
   * `message_unknown` or `digest_mismatch` (the first entry that fails decides); then, in one
   * statement, it is logged once and each entry closes its delivery as an accepted receipt
   * would. B4: a batch id logged before is this batch again (the same bytes, or the same signed
   * content under another signature encoding) and changes nothing, or it is kept as
   * `duplicate_conflict`. Never answered.
   */
  private async applyBatch({
    item,
    verdict,
  }: Indexed<VerifiedReceiptBatch>): Promise<InboxOutcome> {
    const { store, clock, log } = this.deps;
    const { batch, digest, jws } = verdict;
    const keep = (code: WireErrorCode, detail: string) =>
      this.quarantiner.keep(item, {
        ok: false,
        code,
        detail,
        issues: [],
        digest,
        kind: "receipt",
        claimedFrom: batch.from,
        messageId: batch.id,
      });
    const sent = await store.outbound.sentDigests(batch.accepted.map((e) => e.messageId));
    for (const entry of batch.accepted) {
      const sentDigest = sent.get(sentKey(entry.messageId, batch.from));
      if (sentDigest === undefined) {
        return keep("message_unknown", "an entry names no message sent to the batch's sender");
      }
      if (sentDigest !== entry.digest.value) {
        return keep("digest_mismatch", "an entry's digest is not the digest of the message sent");
      }
    }
    const closedAt = clock();
    const { fresh, closed } = await store.receipts.insertReceivedBatch(
      { batch, jws, digest },
      closedAt,
    );
    for (const c of closed) {
      (this.deps.metrics ?? NO_METRICS).deliveryClosed(
        c.recipient,
        c.status,
        Math.max(0, closedAt.getTime() - c.sentAt.getTime()) / 1000,
      );
    }
    if (!fresh) {
      const first = await store.receipts.findReceivedBatch(batch.id);
      if (
        first !== undefined &&
        first.digest !== digest &&
        signingInput(first.jws) !== signingInput(jws)
      ) {
        return keep("duplicate_conflict", "a different batch receipt with this id was received");
      }
    }
    log.info(
      {
        batchId: batch.id,
        from: batch.from,
        entries: batch.accepted.length,
        closed: closed.length,
      },
      fresh ? "batch receipt received" : "batch receipt received again",
    );
    return {
      outcome: "receipt-batch",
      batchId: batch.id,
      entries: batch.accepted.length,
      duplicate: !fresh,
    };
  }

  /** Each receipt's outcome, once logged: kept when it matched nothing or conflicts, else taken. */
  private async settleReceipts(
    batch: Array<Indexed<VerifiedReceipt>>,
    matches: ReturnType<typeof matchReceipt>[],
    fresh: Set<string>,
    logged: Map<string, { digest: string; jws: string }>,
    settle: (index: number, outcome: InboxOutcome) => void,
  ): Promise<void> {
    const { log } = this.deps;
    const answered = new Set<string>();
    for (const [k, { index, item, verdict }] of batch.entries()) {
      const { receipt, digest } = verdict;
      const match = matches[k];
      if (match === undefined) throw new Error("no outcome for a receipt");
      const first = logged.get(receipt.id);
      // Kept, never answered: a receipt matching nothing we sent, or other signed content under
      // a logged receipt id (the logged one stands). The same receipt under another encoding of
      // its signature (ECDSA signatures are malleable) is the same receipt, not a conflict.
      // An id not logged now and held by no single receipt is taken by an entry of one of the
      // partner's batch receipts (whose rows have no bytes of their own): a conflict too, never
      // dropped unseen.
      const refusal = !match.ok
        ? match
        : first === undefined && !fresh.has(receipt.id)
          ? {
              code: "duplicate_conflict" as const,
              detail: "this receipt id is taken by an entry of a batch receipt received",
            }
          : first !== undefined &&
              first.digest !== digest &&
              signingInput(first.jws) !== signingInput(verdict.jws)
            ? {
                code: "duplicate_conflict" as const,
                detail: "a different receipt with this id was already received",
              }
            : undefined;
      if (refusal !== undefined) {
        settle(
          index,
          await this.quarantiner.keep(item, {
            ok: false,
            code: refusal.code,
            detail: refusal.detail,
            issues: [],
            digest,
            kind: "receipt",
            claimedFrom: receipt.from,
            messageId: receipt.messageId,
          }),
        );
        continue;
      }
      log.info(
        {
          messageId: receipt.messageId,
          from: receipt.from,
          status: receipt.status,
          codes: receipt.errors.map((e) => e.code),
        },
        "receipt received",
      );
      settle(index, {
        outcome: "receipt",
        messageId: receipt.messageId ?? "",
        status: receipt.status,
        duplicate: !fresh.has(receipt.id) || answered.has(receipt.id),
      });
      answered.add(receipt.id);
    }
  }

  /**
   * Bytes that fail verification now but are exactly a message we logged earlier — a sender's
   * retry arriving after the message expired or after its key was revoked — get our earlier
   * receipt again rather than a contradicting negative one. Everything else is quarantined.
   */
  private async rejectOrRecognise(
    batch: Array<Indexed<Rejection>>,
    settle: (index: number, outcome: InboxOutcome) => void,
  ): Promise<void> {
    if (batch.length === 0) return;
    const { store, log } = this.deps;
    const logged = await store.inbound.find(
      batch.flatMap(({ verdict: v }) =>
        v.kind === "message" && v.messageId !== null && v.claimedFrom !== null
          ? [{ from: v.claimedFrom, id: v.messageId }]
          : [],
      ),
    );
    for (const { index, item, verdict } of batch) {
      const { claimedFrom, messageId, kind, digest, code } = verdict;
      const earlier =
        claimedFrom === null || messageId === null
          ? undefined
          : logged.get(inboundKey(claimedFrom, messageId));
      if (
        kind === "message" &&
        messageId !== null &&
        claimedFrom !== null &&
        earlier?.digest === digest
      ) {
        await this.answerAgain(claimedFrom, messageId, digest);
        log.info(
          { messageId, from: claimedFrom, code },
          "retry of a logged message; receipt sent again",
        );
        settle(index, { outcome: "duplicate", messageId });
        continue;
      }
      settle(index, await this.quarantiner.keep(item, verdict));
    }
  }

  /**
   * Our accepted answer to bytes we logged goes out again: its receipt or its batch receipt
   * (requeueIssued). A message answered in a batch whose sender's registered record no longer
   * accepts batch receipts (it withdrew `receiptBatches`) gets a single accepted receipt for
   * the same digest instead — the same answer, in the form it accepts; its next copy re-sends
   * that receipt.
   */
  private async answerAgain(from: PartyId, messageId: string, digest: string): Promise<void> {
    const { store, clock, receipts } = this.deps;
    if (await store.receipts.requeueIssued(messageId, digest, clock())) return;
    await store.receipts.insertIssued([await receipts.issue(from, messageId, digest)]);
  }

  /** See Quarantiner.keepUnprocessable: the transport's way to end a poison message. */
  quarantineUnprocessable(item: InboundItem, deliveries: number): Promise<void> {
    return this.quarantiner.keepUnprocessable(item, deliveries);
  }
}

/** `header.payload`: what the signature covers. */
function signingInput(jws: string): string {
  return jws.slice(0, jws.lastIndexOf("."));
}

/** The rejection of a verified case step its case refused: the case's code, no field issues. */
function stepRejection(verdict: VerifiedMessage, refusal: Refusal): Rejection {
  return {
    ok: false,
    code: refusal.code,
    detail: refusal.detail,
    issues: [],
    digest: verdict.digest,
    kind: "message",
    claimedFrom: verdict.envelope.from,
    messageId: verdict.envelope.id,
  };
}
