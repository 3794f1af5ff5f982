/**
 * Does a partner's verified receipt answer a message we sent? It must name a message we sent to
 * the receipt's signer, and the SHA-256 of the exact bytes we sent (docs/protocol.md, Receipts).
 */
import type { Receipt } from "./types.ts";

export type ReceiptMatch =
  | { ok: true }
  | { ok: false; code: "message_unknown" | "digest_mismatch"; detail: string };

/** `sentDigest`: the digest of what we sent to `receipt.from` under `receipt.messageId`, if any. */
export function matchReceipt(receipt: Receipt, sentDigest: string | undefined): ReceiptMatch {
  if (receipt.messageId === null || sentDigest === undefined) {
    return {
      ok: false,
      code: "message_unknown",
      detail: "no message with this id was sent to the receipt's sender",
    };
  }
  if (sentDigest !== receipt.digest.value) {
    return {
      ok: false,
      code: "digest_mismatch",
      detail: "the receipt's digest is not the digest of the message sent",
    };
  }
  return { ok: true };
}
