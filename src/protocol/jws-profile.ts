/**
 * The JWS profile of the wire protocol (docs/protocol.md, "JWS profile"): compact serialisation
 * (RFC 7515 §7.1), an explicit `typ` (RFC 7515 §4.1.9, RFC 8725 §3.11) that separates messages
 * from receipts (single or batch), `kid` naming a key in the partner registry, and a closed list of algorithms.
 */
export const MESSAGE_TYP = "liaison-message+jws";
export const RECEIPT_TYP = "liaison-receipt+jws";
/** One signed receipt accepting several messages (docs/protocol.md, "Batch receipts"). */
export const RECEIPT_BATCH_TYP = "liaison-receipt-batch+jws";
export type JwsTyp = typeof MESSAGE_TYP | typeof RECEIPT_TYP | typeof RECEIPT_BATCH_TYP;

/**
 * The handover record signed by both countries (src/protocol/handover-record.ts): General JSON
 * Serialization (RFC 7515 §7.2.1), not compact, so it is deliberately not a JwsTyp.
 */
export const HANDOVER_RECORD_TYP = "liaison-handover-record+jws";

/** EdDSA is Ed25519 (RFC 8037); ES256 is accepted from partners whose HSMs lack Ed25519. */
export const ALLOWED_ALGS = ["EdDSA", "ES256"] as const;
export type SigningAlg = (typeof ALLOWED_ALGS)[number];

/** Inbound bytes above this are refused before any parsing. */
export const DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024;

export const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
