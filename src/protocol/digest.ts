import { createHash, createHmac } from "node:crypto";

/** SHA-256 of the exact bytes as received or sent, lowercase hex: the digest a receipt names. */
export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * The fingerprint of a submit's request body kept with its Idempotency-Key
 * (`messages.request_digest`): HMAC-SHA-256 of the bytes under `secret`, lowercase hex. Not a
 * plain SHA-256: the request may hold a victim's personal data in clear (the gateway encrypts it
 * into the message), and a plain hash kept in the database would let anyone who reads the
 * database (a backup, a replica) test guesses of it offline. The secret is never in the database.
 */
export function requestFingerprint(secret: string, bytes: Uint8Array): string {
  return createHmac("sha256", secret)
    .update("liaison-gateway idempotency v1\n")
    .update(bytes)
    .digest("hex");
}
