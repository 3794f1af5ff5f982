import { describe, expect, it } from "vitest";
import { matchReceipt } from "../../src/protocol/match-receipt.ts";
import type { Receipt } from "../../src/protocol/types.ts";

const digest = "a".repeat(64);
const receipt = (messageId: string | null, value = digest): Receipt => ({
  id: "1b4e28ba-2fa1-41d2-883f-0016d3cca427",
  type: "receipt",
  schemaVersion: 1,
  from: "VN-BGC-LAOCAI",
  to: "CN-MPS-HEKOU",
  sentAt: "2026-11-24T12:00:00.000Z",
  messageId,
  digest: { alg: "sha-256", value },
  status: "accepted",
  errors: [],
});
const id = "6f1c2a52-9d7e-4a4b-8f3e-2c1d0b9a8e7f";

describe("matchReceipt", () => {
  it("accepts a receipt naming a message we sent to its signer, with the digest of our bytes", () => {
    expect(matchReceipt(receipt(id), digest)).toEqual({ ok: true });
  });

  it("answers message_unknown when we sent nothing under that id to the receipt's signer", () => {
    expect(matchReceipt(receipt(id), undefined)).toMatchObject({
      ok: false,
      code: "message_unknown",
    });
  });

  it("answers message_unknown for a receipt that names no message", () => {
    expect(matchReceipt(receipt(null), digest)).toMatchObject({
      ok: false,
      code: "message_unknown",
    });
  });

  it("answers digest_mismatch when the receipt names other bytes than the ones we sent", () => {
    expect(matchReceipt(receipt(id, "b".repeat(64)), digest)).toMatchObject({
      ok: false,
      code: "digest_mismatch",
    });
  });
});
