import type { Clock, IdSource, PartyId, Receipt, ReceiptError } from "./types.ts";

export interface ReceiptInput {
  /** The party that sent the message being answered. */
  to: PartyId;
  messageId: string | null;
  /** SHA-256 (hex) of the exact JWS bytes received. */
  digest: string;
  errors: ReceiptError[];
}

/** A receipt accepts when `errors` is empty and rejects otherwise. */
export function buildReceipt(
  input: ReceiptInput,
  ctx: { self: PartyId; clock: Clock; ids: IdSource },
): Receipt {
  return {
    id: ctx.ids(),
    type: "receipt",
    schemaVersion: 1,
    from: ctx.self,
    to: input.to,
    sentAt: ctx.clock().toISOString(),
    messageId: input.messageId,
    digest: { alg: "sha-256", value: input.digest },
    status: input.errors.length === 0 ? "accepted" : "rejected",
    errors: input.errors,
  };
}
