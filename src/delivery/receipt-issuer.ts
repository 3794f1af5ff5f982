/**
 * Our signed receipts: accepted for a message we logged, rejected (one error per invalid field,
 * with its JSON pointer, never a value) for bytes we quarantined; and batch receipts, one signed
 * statement accepting several messages of one sender (docs/protocol.md, Batch receipts).
 */
import { decodeJwt, decodeProtectedHeader } from "jose";
import { buildReceipt } from "../protocol/build-receipt.ts";
import { sha256Hex } from "../protocol/digest.ts";
import { RECEIPT_BATCH_TYP, RECEIPT_TYP } from "../protocol/jws-profile.ts";
import {
  type BatchEntry,
  MAX_BATCH_ENTRIES,
  MAX_BATCH_RECEIPT_BYTES,
  type PartyId,
  type Receipt,
  type ReceiptBatch,
  type ReceiptError,
} from "../protocol/types.ts";
import type { Rejection } from "../protocol/verify-inbound.ts";
import type { Clock, IdSource, IssuedBatch, IssuedReceipt, Signer } from "./ports.ts";

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
   * One batch receipt accepting these messages of `to`, 1 to MAX_BATCH_ENTRIES of them, no
   * message id twice (docs/protocol.md, Batch receipts).
   */
  async issueBatch(
    to: PartyId,
    accepted: Array<{ messageId: string; digest: string }>,
  ): Promise<IssuedBatch> {
    if (accepted.length === 0 || accepted.length > MAX_BATCH_ENTRIES) {
      throw new Error(`a batch receipt holds 1 to ${MAX_BATCH_ENTRIES} entries`);
    }
    return this.signBatch(
      to,
      accepted.map((a) => ({
        messageId: a.messageId,
        digest: { alg: "sha-256", value: a.digest },
      })),
    );
  }

  /**
   * Batch receipts for these accepted messages of `to`: as few as MAX_BATCH_ENTRIES allows, each
   * within MAX_BATCH_RECEIPT_BYTES (which MAX_BATCH_ENTRIES guarantees for our compact JSON; a
   * signed batch over the bound would be split in two and signed again).
   */
  async issueBatches(
    to: PartyId,
    accepted: Array<{ messageId: string; digest: string }>,
  ): Promise<IssuedBatch[]> {
    const chunks: Array<typeof accepted> = [];
    for (let i = 0; i < accepted.length; i += MAX_BATCH_ENTRIES) {
      chunks.push(accepted.slice(i, i + MAX_BATCH_ENTRIES));
    }
    const within = async (chunk: typeof accepted): Promise<IssuedBatch[]> => {
      const issued = await this.issueBatch(to, chunk);
      if (issued.jws.length <= MAX_BATCH_RECEIPT_BYTES) return [issued];
      if (chunk.length === 1) throw new Error("a batch receipt of one entry exceeds its bound");
      const half = Math.ceil(chunk.length / 2);
      return [...(await within(chunk.slice(0, half))), ...(await within(chunk.slice(half)))];
    };
    return (await Promise.all(chunks.map(within))).flat();
  }

  private async signBatch(to: PartyId, accepted: BatchEntry[]): Promise<IssuedBatch> {
    const batch: ReceiptBatch = {
      id: this.ids(),
      type: "receipt.batch",
      schemaVersion: 1,
      from: this.self,
      to,
      sentAt: this.clock().toISOString(),
      accepted,
    };
    const { jws } = await this.signer.sign(batch, RECEIPT_BATCH_TYP);
    return { batch, jws, digest: sha256Hex(jws) };
  }

  /**
   * A receipt (or batch receipt) about to be published again whose signing key has been revoked
   * or has expired since: the same answer (recipient, message, digest, errors; a batch's
   * entries) as a new one, with a new id and time, signed with the key valid now — the old bytes
   * would be refused `key_revoked`. Undefined when the stored one is still good to send.
   */
  async renew(jws: string): Promise<IssuedReceipt | IssuedBatch | undefined> {
    const { kid, typ } = decodeProtectedHeader(jws);
    if (typeof kid === "string" && this.signer.canSignWith(kid)) return undefined;
    if (typ === RECEIPT_BATCH_TYP) {
      const old = decodeJwt(jws) as unknown as ReceiptBatch;
      return this.signBatch(old.to, old.accepted);
    }
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
