import type { CryptoKey } from "jose";
import type { WireErrorCode } from "./errors.ts";
import type { SigningAlg } from "./jws-profile.ts";

export type PartyId = string;
export type MessageId = string;

export type Classification = "official" | "restricted" | "confidential" | "secret";
export type OnwardDissemination = "forbidden" | "with-originator-consent" | "allowed";

export interface Handling {
  classification: Classification;
  onwardDissemination: OnwardDissemination;
}

/** The JWS payload of every message (schemas/envelope.v1.json). */
export interface Envelope {
  id: MessageId;
  type: string;
  schemaVersion: number;
  from: PartyId;
  to: PartyId[];
  caseRef: string;
  inReplyTo?: MessageId;
  sentAt: string;
  expiresAt: string;
  handling: Handling;
  body: Record<string, unknown>;
}

export type ReceiptStatus = "accepted" | "rejected";

export interface ReceiptError {
  code: WireErrorCode;
  detail?: string;
  /** JSON pointer into the rejected payload, for field-level errors. */
  path?: string;
}

/** The JWS payload of a receipt (schemas/receipt.v1.json). */
export interface Receipt {
  id: MessageId;
  type: "receipt";
  schemaVersion: 1;
  from: PartyId;
  to: PartyId;
  sentAt: string;
  messageId: MessageId | null;
  digest: { alg: "sha-256"; value: string };
  status: ReceiptStatus;
  errors: ReceiptError[];
}

/** One message a batch receipt accepts: its id and the digest of the exact bytes received. */
export interface BatchEntry {
  messageId: MessageId;
  digest: { alg: "sha-256"; value: string };
}

/**
 * The JWS payload of a batch receipt (schemas/receipt-batch.v1.json): one accepted receipt per
 * entry, with this `from`, `to` and `sentAt`, signed once. Never a rejection.
 */
export interface ReceiptBatch {
  id: MessageId;
  type: "receipt.batch";
  schemaVersion: 1;
  from: PartyId;
  to: PartyId;
  sentAt: string;
  accepted: BatchEntry[];
}

/**
 * The most bytes a batch receipt's compact JWS may have (docs/protocol.md, Batch receipts): an
 * issuer never sends a larger one, and a party declaring `receiptBatches` accepts inbound JWS of
 * at least this size.
 */
export const MAX_BATCH_RECEIPT_BYTES = 65_536;

/**
 * The most entries one batch receipt holds (the schema's maxItems): with the longest ids, party
 * ids, `sentAt`, `kid` and `typ`, serialised without whitespace, 300 entries make a compact JWS
 * of at most 62,539 bytes, within MAX_BATCH_RECEIPT_BYTES (the arithmetic: schemas/
 * receipt-batch.v1.json, `accepted`).
 */
export const MAX_BATCH_ENTRIES = 300;

/**
 * Whether a gateway refusing inbound bytes above `maxMessageBytes` can declare that it accepts
 * batch receipts: only when a batch of the largest size allowed fits.
 */
export function acceptsBatchReceipts(maxMessageBytes: number): boolean {
  return maxMessageBytes >= MAX_BATCH_RECEIPT_BYTES;
}

/** A private key ready to sign: imported once at start, never re-imported per message. */
export interface SigningKey {
  kid: string;
  alg: SigningAlg;
  key: CryptoKey;
}

/** A partner's (or our own) public key as the registry holds it, imported once. */
export interface RegisteredKey {
  kid: string;
  partyId: PartyId;
  alg: SigningAlg;
  key: CryptoKey;
  validFrom: Date;
  validUntil: Date | null;
  revokedAt: Date | null;
}

/**
 * What verification (and encryption to partners) needs from the partner registry: synchronous
 * lookups over a cache.
 */
export interface KeyResolver {
  hasParty(partyId: PartyId): boolean;
  /** A signing key by kid; NEVER an encryption key, so no signature verifies with one. */
  keyById(kid: string): RegisteredKey | undefined;
  /**
   * The party's X25519 encryption key to encrypt personal data to at `at`: the newest (by
   * validFrom) valid at `at` and not revoked; undefined when the party has none.
   */
  encryptionKeyOf(partyId: PartyId, at: Date): { kid: string; key: CryptoKey } | undefined;
}

export type Clock = () => Date;
export type IdSource = () => string;

/** A party as the registry holds it: one agency office with a gateway. */
export interface PartyRecord {
  id: PartyId;
  name: string;
  country: string;
  kind: string;
  inboundSubject: string;
  /**
   * The JetStream domain of the party's own nats-server, when its country is federated (see
   * docs/protocol.md, Federation); absent: it receives by direct publish to `inboundSubject`.
   */
  natsDomain?: string | undefined;
  /**
   * The party accepts batch receipts (docs/protocol.md, "Batch receipts"): messages from it may
   * be answered by one batch receipt each batch. Absent: false.
   */
  receiptBatches?: boolean | undefined;
}

/** A public key as the registry stores it: the JWK without kid/alg/use, and its validity. */
export interface KeyRecord {
  kid: string;
  partyId: PartyId;
  /**
   * "sig": verifies messages and receipts (alg EdDSA or ES256); "enc": an X25519 key that
   * personal data is encrypted to (alg ECDH-ES+A256KW), never used to verify. Absent means
   * "sig", as the registry's column defaults to.
   */
  use?: "sig" | "enc";
  alg: string;
  publicJwk: Record<string, unknown>;
  validFrom: Date;
  validUntil: Date | null;
  revokedAt: Date | null;
}
