/**
 * The size bound of batch receipts (docs/protocol.md, Batch receipts > Size): a batch of the
 * schema's maxItems entries with the longest ids, party ids, `sentAt`, `kid` and `typ` is a
 * compact JWS within 65,536 bytes, with real signatures of both algorithms; our issuer chunks
 * by it; and a gateway declares that it accepts batches only when its size limit lets one in.
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { loadSchemaRegistry } from "../../src/config/schema-files.ts";
import { ReceiptIssuer } from "../../src/delivery/receipt-issuer.ts";
import type { JwsTyp } from "../../src/protocol/jws-profile.ts";
import { signCompact } from "../../src/protocol/sign.ts";
import {
  acceptsBatchReceipts,
  MAX_BATCH_ENTRIES,
  MAX_BATCH_RECEIPT_BYTES,
  type ReceiptBatch,
} from "../../src/protocol/types.ts";
import { makeParty, signerOf } from "../helpers/protocol-fixtures.ts";

const LONGEST_PARTY = "INT-ABCDEFGHIJKL-ABCDEFGHIJKLMNOP";
const LONGEST_SENT_AT = "2026-11-30T12:00:00.123456789Z";
const LONGEST_TYP = "application/liaison-receipt-batch+jws" as JwsTyp;

function longestBatch(n: number): ReceiptBatch {
  return {
    id: randomUUID(),
    type: "receipt.batch",
    schemaVersion: 1,
    from: LONGEST_PARTY,
    to: `${LONGEST_PARTY.slice(0, -1)}Q`,
    sentAt: LONGEST_SENT_AT,
    accepted: Array.from({ length: n }, () => ({
      messageId: randomUUID(),
      digest: { alg: "sha-256", value: "f".repeat(64) },
    })),
  };
}

describe("batch receipt size", () => {
  it("keeps the schema's maxItems and the bound the code uses in step", () => {
    const schema = JSON.parse(
      readFileSync(new URL("../../schemas/receipt-batch.v1.json", import.meta.url), "utf8"),
    );
    expect(schema.properties.accepted.maxItems).toBe(MAX_BATCH_ENTRIES);
    expect(MAX_BATCH_RECEIPT_BYTES).toBe(65_536);
  });

  it.each(["EdDSA", "ES256"] as const)(
    "fits a batch of maxItems entries with the longest members into 65,536 bytes (%s), and one more than the arithmetic allows does not fit",
    async (alg) => {
      const party = await makeParty(LONGEST_PARTY, { alg });
      expect(party.signing.kid).toHaveLength(43);
      const full = longestBatch(MAX_BATCH_ENTRIES);
      expect(full.from).toHaveLength(33);
      expect(full.to).toHaveLength(33);
      expect(full.sentAt).toHaveLength(30);
      expect(loadSchemaRegistry().validateReceiptBatch(full)).toEqual({ ok: true });
      const jws = await signCompact(full, party.signing, LONGEST_TYP);
      // The schema description's arithmetic, exactly: 151 + 1 + 62,300 + 1 + 86.
      expect(jws.length).toBe(62_539);
      expect(Buffer.byteLength(jws)).toBeLessThanOrEqual(MAX_BATCH_RECEIPT_BYTES);
      const over = await signCompact(longestBatch(315), party.signing, LONGEST_TYP);
      expect(over.length).toBeGreaterThan(MAX_BATCH_RECEIPT_BYTES);
    },
  );

  it("issues as few batches as maxItems allows, each within the bound", async () => {
    const laocai = await makeParty("VN-BGC-LAOCAI");
    const issuer = new ReceiptIssuer(
      laocai.id,
      signerOf(laocai),
      () => new Date("2026-11-30T12:00:00Z"),
      randomUUID,
    );
    const accepted = Array.from({ length: 2 * MAX_BATCH_ENTRIES + 50 }, () => ({
      messageId: randomUUID(),
      digest: "e".repeat(64),
    }));
    const batches = await issuer.issueBatches("CN-MPS-HEKOU", accepted);
    expect(batches.map((b) => b.batch.accepted.length)).toEqual([
      MAX_BATCH_ENTRIES,
      MAX_BATCH_ENTRIES,
      50,
    ]);
    expect(batches.flatMap((b) => b.batch.accepted.map((e) => e.messageId))).toEqual(
      accepted.map((a) => a.messageId),
    );
    for (const b of batches) expect(b.jws.length).toBeLessThanOrEqual(MAX_BATCH_RECEIPT_BYTES);
  });

  it("lets a gateway declare receiptBatches only when its size limit is at least 65,536 bytes", () => {
    expect(acceptsBatchReceipts(65_535)).toBe(false);
    expect(acceptsBatchReceipts(65_536)).toBe(true);
    expect(acceptsBatchReceipts(262_144)).toBe(true);
    expect(acceptsBatchReceipts(1024)).toBe(false);
  });
});
