import { createHash } from "node:crypto";

/** SHA-256 of the exact bytes as received or sent, lowercase hex: the digest a receipt names. */
export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}
