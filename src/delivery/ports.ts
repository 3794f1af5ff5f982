/**
 * What the delivery core needs from the world, declared by the core and implemented by the
 * adapters: the wire (`Transport`, in transport/), the signing key (`Signer`, in registry/), the
 * log (`Log`: pino, in observability/), and the store, one interface per aggregate (in store/).
 * `Store.transaction` runs several writes atomically with every aggregate bound to one database
 * transaction: the message log, its outbox rows and (later) the case update are committed
 * together or not at all.
 */
import type { Awaiting, CaseView } from "../cases/case-types.ts";
import type { WireErrorCode } from "../protocol/errors.ts";
import type { HandoverRecord } from "../protocol/handover-record.ts";
import type { JwsTyp } from "../protocol/jws-profile.ts";
import type { PersonalDataKey } from "../protocol/personal-data.ts";
import type { Envelope, PartyId, Receipt, ReceiptBatch, ReceiptStatus } from "../protocol/types.ts";

export type { Clock, IdSource } from "../protocol/types.ts";

// ─── the wire ────────────────────────────────────────────────────────────────────────────────

export interface PublishResult {
  seq: number;
  /** The broker had these bytes already (same Nats-Msg-Id inside its duplicate window). */
  duplicate: boolean;
}

export interface Transport {
  /** Publishes and waits for the broker's ack; `msgId` is the de-duplication id. */
  publish(subject: string, data: Uint8Array, msgId: string): Promise<PublishResult>;
}

/** Inbound bytes as the transport hands them over. */
export interface InboundItem {
  data: Uint8Array;
  subject: string;
}

// ─── the signing key ─────────────────────────────────────────────────────────────────────────

export interface Signer {
  /** Signs with the key valid now; `key_store_invalid` when there is none. */
  sign(payload: unknown, typ: JwsTyp): Promise<{ jws: string; kid: string }>;
  /** Whether a signature by `kid` is still good to send (our key, valid now, not revoked). */
  canSignWith(kid: string): boolean;
}

/** Our keys for the case workflow: encryption of personal data, the handover record. */
export interface CaseKeys {
  /** Our current encryption public key: every message with personal data is encrypted to it too. */
  encryptionKey(): PersonalDataKey | undefined;
  /** All our encryption private keys, rotated-out ones included (old messages still decrypt). */
  decryptionKeys(): PersonalDataKey[];
  /** Signs a handover record with the signing key valid now. */
  signRecord(payload: Record<string, unknown>): Promise<HandoverRecord>;
  /** Adds our signature to a record the other party signed. */
  countersignRecord(record: HandoverRecord): Promise<HandoverRecord>;
}

/** Partners' encryption keys, from the partner registry. */
export interface EncryptionKeys {
  encryptionKeyOf(partyId: PartyId, at: Date): PersonalDataKey | undefined;
}

// ─── metrics ─────────────────────────────────────────────────────────────────────────────────

/**
 * What the core observes as it works (src/observability/metrics.ts records it for
 * GET /metrics). Labels are party ids, statuses, kinds and codes: never content.
 */
export interface Metrics {
  /** A delivery closed by the partner's receipt, `seconds` after its message was sent. */
  deliveryClosed(recipient: PartyId, status: "delivered" | "rejected", seconds: number): void;
  /** An inbound batch handled (verified, logged, answered), in `seconds`. */
  inboundBatch(size: number, seconds: number): void;
  /**
   * A submitted message made, signed and committed with its deliveries (a case step with its
   * case's update), in `seconds`: from the submitter starting to make it (after a keyed
   * submit's key lookup) to the commit. Reminders the reminder sweep makes are submits too.
   */
  submitted(seconds: number): void;
  /**
   * One publish to the broker (a message or a receipt), in `seconds`: on the prompt path (just
   * committed, see PromptPublisher) or by a pass (a lease ended: a retry, a crash, a refusal).
   */
  published(
    kind: "message" | "receipt",
    ok: boolean,
    seconds: number,
    path: "prompt" | "pass",
  ): void;
}

export const NO_METRICS: Metrics = {
  deliveryClosed: () => {},
  inboundBatch: () => {},
  submitted: () => {},
  published: () => {},
};

// ─── the log ─────────────────────────────────────────────────────────────────────────────────

/** Structured events: identifiers and codes only, never bodies (pino's Logger fits). */
export interface Log {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

// ─── records ─────────────────────────────────────────────────────────────────────────────────

export interface SignedMessage {
  envelope: Envelope;
  jws: string;
  /** SHA-256 of the JWS bytes: what a receipt names, and the broker de-duplication id. */
  digest: string;
  kid: string;
  /** An outbound message submitted with an Idempotency-Key: stored with it. */
  idempotency?: Idempotency | undefined;
}

/**
 * A submit's `Idempotency-Key` (POST /v1/messages) and the fingerprint of the request body's
 * bytes it came with (requestFingerprint: an HMAC under a secret that is not in the database):
 * one message per key; the same key again with the same bytes is answered with that message,
 * with other bytes refused (idempotency_key_reused).
 */
export interface Idempotency {
  key: string;
  requestDigest: string;
}

/** The message made under an Idempotency-Key, as the outbound log keeps it. */
export interface IdempotentOriginal {
  /** The signed message: its payload is the envelope the first request was answered with. */
  jws: string;
  requestDigest: string;
}

/**
 * Thrown by `OutboundLog.insert` when a message's Idempotency-Key is already in the log (another
 * submit with the key committed first): nothing of the insert was written; the caller looks the
 * key up (`findByIdempotencyKey`) and answers with what it finds.
 */
export class IdempotencyKeyTaken extends Error {
  constructor(options?: { cause?: unknown }) {
    super("a message with this Idempotency-Key is already in the log", options);
    this.name = "IdempotencyKeyTaken";
  }
}

export interface IssuedReceipt {
  receipt: Receipt;
  /** Digest of the message bytes the receipt answers. */
  messageDigest: string;
  jws: string;
  digest: string;
}

export interface ReceivedReceipt {
  receipt: Receipt;
  jws: string;
  digest: string;
}

/** One of our batch receipts (docs/protocol.md, Batch receipts): signed once, stored once. */
export interface IssuedBatch {
  batch: ReceiptBatch;
  jws: string;
  digest: string;
}

/** A partner's batch receipt, verified and matched against what we sent (B1-B3). */
export interface ReceivedBatch {
  batch: ReceiptBatch;
  jws: string;
  digest: string;
}

/** A delivery a receipt closed, with its message's sentAt (for the latency metric). */
export type ClosedDelivery = DeliveryRef & { status: "delivered" | "rejected"; sentAt: Date };

export interface QuarantineEntry {
  subject: string;
  raw: Uint8Array;
  digest: string;
  code: WireErrorCode;
  detail: string;
  issues: Array<{ path: string; message: string }>;
  kind: "message" | "receipt" | "unknown";
  claimedFrom: PartyId | null;
  messageId: string | null;
  /** The negative receipt answering these bytes, if any. */
  receiptId: string | null;
}

/** A delivery the outbox offers for claiming, with what the retry schedule decides on. */
export interface DeliveryCandidate {
  messageId: string;
  recipient: PartyId;
  status: "queued" | "sent";
  /** Publishes so far (counted from the broker's first ack; see markSent). */
  attempts: number;
  expiresAt: Date;
}

/** What the retry schedule decided for one claimed delivery. */
export type DeliveryPlan =
  | { action: "publish"; attempts: number; nextAttemptAt: Date }
  | { action: "fail"; reason: string };

export interface DueDelivery {
  messageId: string;
  recipient: PartyId;
  subject: string;
  jws: string;
  digest: string;
  attempts: number;
}

export interface DueReceipt {
  id: string;
  toParty: PartyId;
  subject: string;
  jws: string;
  digest: string;
  /** One of our batch receipts (its id is the batch's), not a single receipt. */
  batch?: boolean | undefined;
}

export interface DeliveryRef {
  messageId: string;
  recipient: PartyId;
}

/**
 * The dispatcher's prompt path. A commit that writes deliveries or receipts leases them to this
 * process (Lease) and hands them over as soon as it has committed: they are published at once,
 * not at the dispatcher's next pass, and never read back from the database. Should that publish
 * not happen or fail, the rows are due again when the lease ends, for any pass of any replica.
 */
export interface PromptPublisher {
  /** The lease a delivery takes at insert: as long as a claim's (the first retry's delay). */
  deliveryLease(): Lease;
  /** The lease a receipt takes at insert: as long as a claim's. */
  receiptLease(): Lease;
  /** Publishes these committed, leased deliveries (the subject is the registry's). */
  sendDeliveries(due: Array<Omit<DueDelivery, "subject">>): void;
  /** Publishes these committed, leased receipts. */
  sendReceipts(due: Array<Omit<DueReceipt, "subject">>): void;
}

/** `${from} ${id}`: inbound ids are unique per sender. */
export type InboundKey = string;

export function inboundKey(from: PartyId, id: string): InboundKey {
  return `${from} ${id}`;
}

/** `${messageId} ${recipient}`: one delivery of one of our messages. */
export function sentKey(messageId: string, recipient: PartyId): string {
  return `${messageId} ${recipient}`;
}

// ─── the store, one interface per aggregate ──────────────────────────────────────────────────

/**
 * Rows claimed at insert by the process that wrote them, to publish at once after the commit:
 * no other pass (nor replica) takes them before `until`, when they are due again should that
 * publish not have happened (the process died, the broker refused).
 */
export interface Lease {
  until: Date;
}

export interface OutboundLog {
  /** The messages and one delivery (outbox row) per recipient; leased, see Lease. */
  insert(messages: SignedMessage[], lease?: Lease): Promise<void>;
  /**
   * The message made under this Idempotency-Key (compared exactly), if any. `insert` throws
   * IdempotencyKeyTaken (and writes nothing) when a message's key is already taken.
   */
  findByIdempotencyKey(key: string): Promise<IdempotentOriginal | undefined>;
  /** Digests of what we sent, keyed by sentKey(messageId, recipient). */
  sentDigests(messageIds: string[]): Promise<Map<string, string>>;
}

export interface DeliveryOutbox {
  /**
   * Locks due deliveries (skipping rows another replica holds), asks `plan` what to do with
   * each, records the decision (a lease until `nextAttemptAt`, or `failed`) and returns them.
   */
  claimDue(opts: {
    now: Date;
    limit: number;
    plan: (candidate: DeliveryCandidate) => DeliveryPlan;
  }): Promise<{ due: DueDelivery[]; failed: Array<DeliveryRef & { reason: string }> }>;
  /** The broker acknowledged these publishes: `queued` becomes `sent`. */
  markSent(sent: DeliveryRef[], at: Date): Promise<void>;
  markError(delivery: DeliveryRef, error: string, at: Date): Promise<void>;
  /**
   * A partner's receipt ends the delivery: `delivered` or `rejected`. Returns the deliveries it
   * closed (not those closed before), with their message's sentAt.
   */
  close(
    closing: Array<DeliveryRef & { status: ReceiptStatus }>,
    at: Date,
  ): Promise<Array<DeliveryRef & { status: "delivered" | "rejected"; sentAt: Date }>>;
}

export interface InboundLog {
  /** Messages already logged under these (sender, id) pairs. */
  find(
    keys: Array<{ from: PartyId; id: string }>,
  ): Promise<Map<InboundKey, { digest: string; jws: string }>>;
  /** Logs what is not logged yet; returns the keys it stored. */
  insert(messages: SignedMessage[]): Promise<Set<InboundKey>>;
  /**
   * `insert`, and our receipt (leased, see Lease) for exactly each message it stored that comes
   * with one: one statement, atomic on its own or part of the caller's transaction. A message
   * without a receipt is answered by a batch receipt (ReceiptLog.insertIssuedBatches) in the
   * caller's transaction, once it is known to be stored.
   */
  insertAnswered(
    answered: Array<{ message: SignedMessage; receipt?: IssuedReceipt | undefined }>,
    lease?: Lease,
  ): Promise<Set<InboundKey>>;
}

export interface ReceiptLog {
  /** Our receipts; they wait in the receipt outbox until published. */
  insertIssued(receipts: IssuedReceipt[], lease?: Lease): Promise<void>;
  /**
   * Our batch receipts (leased, see Lease), each with an entry row per message it accepts:
   * they wait in the receipt outbox until published. One statement. A batch is written only
   * when every message it accepts is logged inbound from its addressee with exactly the digest
   * it names and has no answer of ours yet (we never sign "accepted" for bytes not in our log,
   * nor answer a message twice); returns the ids of the batches written.
   */
  insertIssuedBatches(batches: IssuedBatch[], lease?: Lease): Promise<Set<string>>;
  /**
   * Our accepted answer for these exact bytes goes out again — its receipt, or the batch
   * receipt holding it (the batch that replaced it, if it was signed again) when its addressee's
   * registered record still accepts batch receipts; false when there is none.
   */
  requeueIssued(messageId: string, messageDigest: string, at: Date): Promise<boolean>;
  /** Sends one of our receipts again (the bytes it answers came again). */
  requeueById(receiptId: string, at: Date): Promise<void>;
  /** Partners' receipts; returns the ids that were new. */
  insertReceived(receipts: ReceivedReceipt[]): Promise<Set<string>>;
  /**
   * `insertReceived`, and each receipt it logged closes the delivery it answers (`delivered` or
   * `rejected`, as DeliveryOutbox.close): one statement. Only for receipts of distinct ids
   * answering distinct deliveries, each matched against what we sent.
   */
  insertReceivedClosing(
    receipts: ReceivedReceipt[],
    at: Date,
  ): Promise<{
    fresh: Set<string>;
    closed: ClosedDelivery[];
  }>;
  /** The partners' receipts logged under these ids: their bytes and digest. */
  findReceived(ids: string[]): Promise<Map<string, { digest: string; jws: string }>>;
  /**
   * A partner's batch receipt, logged once, and each of its entries closes its delivery as an
   * accepted receipt would (`queued`, `sent` or `failed` → `delivered`): one statement. Nothing
   * is written or closed when a batch with this id was logged already (`fresh` false).
   */
  insertReceivedBatch(
    received: ReceivedBatch,
    at: Date,
  ): Promise<{
    fresh: boolean;
    closed: ClosedDelivery[];
  }>;
  /** The partner's batch receipt logged under this id: its bytes and digest. */
  findReceivedBatch(id: string): Promise<{ digest: string; jws: string } | undefined>;
  /**
   * Our receipts and batch receipts due for publishing (batches marked `batch`), at most
   * `limit` of each, leased for `leaseMs`.
   */
  claimUnpublished(opts: { now: Date; limit: number; leaseMs: number }): Promise<DueReceipt[]>;
  /**
   * Replaces an unpublished receipt (or batch receipt) whose signing key is no longer valid by
   * `fresh` (the same answer, signed again): `fresh` is stored to be published, the old one kept,
   * marked superseded, never published again.
   */
  supersede(oldId: string, fresh: IssuedReceipt | IssuedBatch): Promise<void>;
  /** The broker has these receipts and batch receipts (by id). */
  markPublished(ids: string[], at: Date): Promise<void>;
}

export interface QuarantineLog {
  /** Keeps the bytes once per digest: null, writing nothing, when they are already kept. */
  insert(entry: QuarantineEntry): Promise<number | null>;
  /** The negative receipt that answered the quarantined bytes with this digest, if any. */
  answerFor(digest: string): Promise<string | null>;
  /**
   * Messages among these (sender, id) pairs that were refused earlier with one of these codes:
   * the first refusal of each, by inboundKey.
   */
  refusedEarlier(
    keys: Array<{ from: PartyId; id: string }>,
    codes: readonly WireErrorCode[],
  ): Promise<Map<InboundKey, { code: WireErrorCode; detail: string }>>;
}

/** A message of a case as the message log holds it: the JWS is the truth. */
export interface LoggedCaseMessage {
  direction: "inbound" | "outbound";
  jws: string;
  /** One of our steps the other party refused (a rejected delivery): never part of the case. */
  refused: boolean;
  /** Our steps: the parties whose accepted receipt we hold. */
  acceptedBy: string[];
}

export interface CaseLog {
  /**
   * Serialises work on these cases until the transaction ends (taken in a fixed order, so two
   * transactions never wait on each other in a cycle). Only meaningful inside a transaction.
   */
  lock(caseRefs: string[]): Promise<void>;
  /**
   * The case's messages of these types, both directions, our own messages the other party
   * refused (a rejected delivery) marked as such: those never became part of the case.
   */
  messages(caseRef: string, types: readonly string[]): Promise<LoggedCaseMessage[]>;
  /** Stores the fold's result as the case's summary row. */
  save(view: CaseView, messageCount: number): Promise<void>;
  /** Removes the summary row of a case no message opens any more. */
  remove(caseRef: string): Promise<void>;
  /** The cases our messages with these ids belong to, for the given types. */
  caseRefsOf(messageIds: string[], types: readonly string[]): Promise<string[]>;
  /** Cases whose earliest deadline is due at `now` and was not reminded of yet, oldest first. */
  overdue(now: Date, limit: number): Promise<Array<{ caseRef: string; awaiting: Awaiting[] }>>;
  /** Records that the reminder for this deadline was sent; false when it was already. */
  markReminded(caseRef: string, dueAt: Date): Promise<boolean>;
}

export interface Stores {
  cases: CaseLog;
  outbound: OutboundLog;
  outbox: DeliveryOutbox;
  inbound: InboundLog;
  receipts: ReceiptLog;
  quarantine: QuarantineLog;
}

export interface Store extends Stores {
  /** Runs `work` in one database transaction, every aggregate bound to it. */
  transaction<T>(work: (tx: Stores) => Promise<T>): Promise<T>;
}
