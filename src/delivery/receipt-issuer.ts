/**
 * Our signed receipts: accepted for a message we logged, rejected (one error per invalid field,
 * with its JSON pointer, never a value) for bytes we quarantined.
 */
import { decodeJwt, decodeProtectedHeader } from "jose";
import { buildReceipt } from "../protocol/build-receipt.ts";
import { sha256Hex } from "../protocol/digest.ts";
import { RECEIPT_TYP } from "../protocol/jws-profile.ts";
import type { PartyId, Receipt, ReceiptError } from "../protocol/types.ts";
import type { Rejection } from "../protocol/verify-inbound.ts";
import type { Clock, IdSource, IssuedReceipt, Signer } from "./ports.ts";

export class ReceiptIssuer {
  constructor(
    private readonly self: PartyId,
    private readonly signer: Signer,
    private readonly clock: Clock,
    private readonly ids: IdSource,
  ) {}

  async issue(
    to: PartyId,
    messageId: string | null,
    messageDigest: string,
    errors: ReceiptError[] = [],
  ): Promise<IssuedReceipt> {
    const receipt = buildReceipt(
      { to, messageId, digest: messageDigest, errors },
      { self: this.self, clock: this.clock, ids: this.ids },
    );
    const { jws } = await this.signer.sign(receipt, RECEIPT_TYP);
    return { receipt, messageDigest, jws, digest: sha256Hex(jws) };
  }

  /**
   * A receipt about to be published again whose signing key has been revoked or has expired
   * since: the same answer (recipient, message, digest, errors) as a new receipt, with a new id
   * and time, signed with the key valid now — the old bytes would be refused `key_revoked`.
   * Undefined when the stored one is still good to send.
   */
  async renew(jws: string): Promise<IssuedReceipt | undefined> {
    const { kid } = decodeProtectedHeader(jws);
    if (typeof kid === "string" && this.signer.canSignWith(kid)) return undefined;
    const old = decodeJwt(jws) as unknown as Receipt;
    return this.issue(old.to, old.messageId, old.digest.value, old.errors);
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
