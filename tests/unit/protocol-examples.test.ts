/**
 * docs/examples/ is what a partner checks its JOSE library against: these tests check it with
 * jose directly (as any partner would), with the published schemas, and with the gateway's own
 * verification, so the examples and docs/protocol.md cannot drift from the code unnoticed.
 * Regenerate the examples with `npx tsx scripts/make-protocol-examples.ts`.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import {
  type CryptoKey,
  calculateJwkThumbprint,
  compactVerify,
  createLocalJWKSet,
  decodeProtectedHeader,
  flattenedDecrypt,
  flattenedVerify,
  importJWK,
  type JSONWebKeySet,
  type JWK,
} from "jose";
import { describe, expect, it } from "vitest";
import { loadSchemaRegistry } from "../../src/config/schema-files.ts";
import { type HandoverRecord, verifyHandoverRecord } from "../../src/protocol/handover-record.ts";
import {
  COMPACT_JWS,
  HANDOVER_RECORD_TYP,
  MESSAGE_TYP,
  RECEIPT_BATCH_TYP,
  RECEIPT_TYP,
  type SigningAlg,
} from "../../src/protocol/jws-profile.ts";
import {
  type EncryptedPersonalData,
  openPersonalData,
  PERSONAL_DATA_ALG,
  PERSONAL_DATA_ENC,
  profileViolation,
} from "../../src/protocol/personal-data.ts";
import type {
  Envelope,
  KeyResolver,
  Receipt,
  ReceiptBatch,
  RegisteredKey,
} from "../../src/protocol/types.ts";
import { type VerifyContext, verifyInbound } from "../../src/protocol/verify-inbound.ts";
import { parsePartyDocument } from "../../src/registry/party-document.ts";

const dir = new URL("../../docs/examples/", import.meta.url);
const bytesOf = (name: string): Buffer => readFileSync(new URL(name, dir));
const jsonOf = <T>(name: string): T => JSON.parse(bytesOf(name).toString("utf8")) as T;

type PublishedKey = JWK & {
  kid: string;
  alg: SigningAlg | typeof PERSONAL_DATA_ALG;
  use: "sig" | "enc";
  validFrom: string;
  validUntil?: string;
  revokedAt?: string;
};
interface PartyDocument extends JSONWebKeySet {
  party: { id: string; inboundSubject: string };
  keys: PublishedKey[];
}

const senderDoc = jsonOf<PartyDocument>("sender-public.jwks.json");
const recipientDoc = jsonOf<PartyDocument>("recipient-public.jwks.json");
const messageBytes = bytesOf("message.jws");
const receiptBytes = bytesOf("receipt.jws");
const message = messageBytes.toString("utf8");
const receipt = receiptBytes.toString("utf8");
const messagePayload = jsonOf<Envelope>("message.payload.json");
const receiptPayload = jsonOf<Receipt>("receipt.payload.json");
const victimBytes = bytesOf("victim-identified.jws");
const victim = victimBytes.toString("utf8");
const victimPayload = jsonOf<Envelope>("victim-identified.payload.json");
const victimPersonalData = jsonOf<Record<string, unknown>>("victim-identified.personal-data.json");
const recipientPrivateJwk = jsonOf<JWK & { kid: string }>("recipient-encryption-private.jwk.json");
const batchBytes = bytesOf("receipt-batch.jws");
const batchPayload = jsonOf<ReceiptBatch>("receipt-batch.payload.json");
const record = jsonOf<HandoverRecord>("handover-record.json");
const recordPayload = jsonOf<Record<string, unknown>>("handover-record.payload.json");

const schemas = loadSchemaRegistry();
const decoder = new TextDecoder();
const CHECKED_AT = new Date("2026-11-24T08:01:00Z");
const VICTIM_CHECKED_AT = new Date("2026-11-20T04:01:00Z");
const RECORD_CHECKED_AT = new Date("2026-12-15T03:00:00Z");

/** The one key of `use` in a party document (the examples publish one of each). */
function keyOf(doc: PartyDocument, use: "sig" | "enc"): PublishedKey {
  const keys = doc.keys.filter((k) => k.use === use);
  if (keys.length !== 1) throw new Error(`${doc.party.id} publishes ${keys.length} ${use} keys`);
  return keys[0] as PublishedKey;
}
const senderKid = keyOf(senderDoc, "sig").kid;
const recipientKid = keyOf(recipientDoc, "sig").kid;

/** The recipient's X25519 private key, as a partner imports the published file. */
const recipientDecryptionKey = async (): Promise<CryptoKey> =>
  (await importJWK(recipientPrivateJwk, PERSONAL_DATA_ALG)) as CryptoKey;

/** A KeyResolver as a partner registry would build it from published party documents. */
async function resolverFrom(...docs: PartyDocument[]): Promise<KeyResolver> {
  const keys = new Map<string, RegisteredKey>();
  const encryption = new Map<string, { kid: string; key: CryptoKey }>();
  for (const doc of docs) {
    for (const jwk of doc.keys) {
      const key = (await importJWK(jwk, jwk.alg)) as CryptoKey;
      // An encryption key verifies nothing: keyById never answers with one.
      if (jwk.use === "enc") {
        encryption.set(doc.party.id, { kid: jwk.kid, key });
        continue;
      }
      keys.set(jwk.kid, {
        kid: jwk.kid,
        partyId: doc.party.id,
        alg: jwk.alg as SigningAlg,
        key,
        validFrom: new Date(jwk.validFrom),
        validUntil: jwk.validUntil === undefined ? null : new Date(jwk.validUntil),
        revokedAt: jwk.revokedAt === undefined ? null : new Date(jwk.revokedAt),
      });
    }
  }
  return {
    hasParty: (id) => docs.some((d) => d.party.id === id),
    keyById: (kid) => keys.get(kid),
    encryptionKeyOf: (id) => encryption.get(id),
  };
}

async function context(
  self: string,
  doc: PartyDocument,
  overrides: Partial<VerifyContext> = {},
): Promise<VerifyContext> {
  return {
    self,
    keys: await resolverFrom(doc),
    schemas,
    now: CHECKED_AT,
    clockSkewMs: 300_000,
    decryptionKeys: [],
    maxBytes: 256 * 1024,
    ...overrides,
  };
}

describe("docs/examples", () => {
  it("holds compact JWS files with exactly the bytes sent (no trailing newline)", () => {
    for (const jws of [message, receipt, victim]) {
      expect(jws).toMatch(COMPACT_JWS);
      expect(jws.endsWith("\n")).toBe(false);
    }
  });

  it("publishes party documents with a signing and an encryption key each, kids RFC 7638 thumbprints", async () => {
    for (const [doc, id] of [
      [senderDoc, "CN-MPS-HEKOU"],
      [recipientDoc, "VN-BGC-LAOCAI"],
    ] as const) {
      expect(doc.party.id).toBe(id);
      expect(doc.party.inboundSubject).toBe(`liaison.inbox.${id}`);
      expect(doc.keys.map((k) => k.use)).toEqual(["sig", "enc"]);
      expect(keyOf(doc, "sig")).toMatchObject({ kty: "OKP", crv: "Ed25519", alg: "EdDSA" });
      expect(keyOf(doc, "enc")).toMatchObject({
        kty: "OKP",
        crv: "X25519",
        alg: "ECDH-ES+A256KW",
      });
      for (const key of doc.keys) {
        expect(key).not.toHaveProperty("d");
        expect(key.kid).toBe(await calculateJwkThumbprint(key, "sha256"));
      }
      // The gateway's own importer (`liaison partners add`, POST /v1/partners) accepts it.
      const parsed = await parsePartyDocument(doc);
      expect(parsed.party.id).toBe(id);
      expect(parsed.keys.map((k) => [k.kid, k.use])).toEqual(doc.keys.map((k) => [k.kid, k.use]));
    }
  });

  it("publishes one private key, on purpose: the recipient's X25519 key, and no other", async () => {
    const published = keyOf(recipientDoc, "enc");
    expect(recipientPrivateJwk).toEqual({
      kty: "OKP",
      crv: "X25519",
      x: published.x,
      d: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
      kid: published.kid,
      alg: "ECDH-ES+A256KW",
      use: "enc",
    });
    expect(await calculateJwkThumbprint(recipientPrivateJwk, "sha256")).toBe(published.kid);
    // No private key member anywhere else in the examples.
    for (const name of readdirSync(dir).filter((f) => f.endsWith(".json"))) {
      if (name === "recipient-encryption-private.jwk.json") continue;
      expect(bytesOf(name).toString("utf8"), name).not.toMatch(/"d"\s*:/);
    }
  });

  it("the message verifies with jose against the sender's JWKS, header exactly {alg, kid, typ}", async () => {
    const { payload, protectedHeader } = await compactVerify(
      message,
      createLocalJWKSet(senderDoc),
      { algorithms: ["EdDSA"] },
    );
    expect(Object.keys(protectedHeader).sort()).toEqual(["alg", "kid", "typ"]);
    expect(protectedHeader).toEqual({ alg: "EdDSA", kid: senderKid, typ: MESSAGE_TYP });
    expect(JSON.parse(decoder.decode(payload))).toEqual(messagePayload);
  });

  it("the receipt verifies with jose against the recipient's JWKS and names the message's digest", async () => {
    const { payload, protectedHeader } = await compactVerify(
      receipt,
      createLocalJWKSet(recipientDoc),
      { algorithms: ["EdDSA"] },
    );
    expect(Object.keys(protectedHeader).sort()).toEqual(["alg", "kid", "typ"]);
    expect(protectedHeader).toEqual({ alg: "EdDSA", kid: recipientKid, typ: RECEIPT_TYP });
    expect(JSON.parse(decoder.decode(payload))).toEqual(receiptPayload);
    const digest = createHash("sha256").update(messageBytes).digest("hex");
    expect(receiptPayload).toMatchObject({
      type: "receipt",
      from: "VN-BGC-LAOCAI",
      to: "CN-MPS-HEKOU",
      messageId: messagePayload.id,
      digest: { alg: "sha-256", value: digest },
      status: "accepted",
      errors: [],
    });
  });

  it("a key from the other party's document does not verify (kid selects the key)", async () => {
    await expect(
      compactVerify(message, createLocalJWKSet(recipientDoc), { algorithms: ["EdDSA"] }),
    ).rejects.toThrow();
    expect(decodeProtectedHeader(message).kid).not.toBe(recipientKid);
  });

  it("the payloads validate against the published schemas", () => {
    expect(schemas.validateEnvelope(messagePayload)).toEqual({ ok: true });
    expect(
      schemas.validateBody(messagePayload.type, messagePayload.schemaVersion, messagePayload.body),
    ).toEqual({ ok: true });
    expect(schemas.validateReceipt(receiptPayload)).toEqual({ ok: true });
    expect(messagePayload).toMatchObject({
      id: "01a20c91-a000-7c4e-9a51-3f6d2b8e0c17",
      type: "case.notice",
      from: "CN-MPS-HEKOU",
      to: ["VN-BGC-LAOCAI"],
      sentAt: "2026-11-24T08:00:00.000Z",
      expiresAt: "2027-11-24T08:00:00.000Z",
    });
  });

  it("the gateway accepts the message at VN-BGC-LAOCAI a minute after it was sent", async () => {
    const verdict = await verifyInbound(messageBytes, await context("VN-BGC-LAOCAI", senderDoc));
    if (!verdict.ok) throw new Error(`rejected: ${verdict.code} ${verdict.detail}`);
    expect(verdict.kind).toBe("message");
    expect(verdict.digest).toBe(receiptPayload.digest.value);
    expect(verdict.kid).toBe(senderKid);
  });

  it("the gateway accepts the receipt at CN-MPS-HEKOU", async () => {
    const verdict = await verifyInbound(receiptBytes, await context("CN-MPS-HEKOU", recipientDoc));
    if (!verdict.ok) throw new Error(`rejected: ${verdict.code} ${verdict.detail}`);
    expect(verdict.kind).toBe("receipt");
  });

  // The limits docs/protocol.md states, checked on the example itself.
  it.each([
    ["2026-11-24T07:55:00Z", true, undefined],
    ["2026-11-24T07:54:59.999Z", false, "clock_skew"],
    ["2027-11-24T08:05:00Z", true, undefined],
    ["2027-11-24T08:05:00.001Z", false, "expired"],
  ])("at %s the verdict is ok=%s %s", async (now, ok, code) => {
    const verdict = await verifyInbound(
      messageBytes,
      await context("VN-BGC-LAOCAI", senderDoc, { now: new Date(now) }),
    );
    expect(verdict.ok).toBe(ok);
    if (!verdict.ok) expect(verdict.code).toBe(code);
  });

  it("rejects the example for another recipient, when tampered with, or above the size limit", async () => {
    const misaddressed = await verifyInbound(messageBytes, await context("TH-RTP-ATPD", senderDoc));
    expect(misaddressed.ok ? "ok" : misaddressed.code).toBe("misaddressed");

    const [h, p, s = ""] = message.split(".");
    const flipped = `${h}.${p}.${s.startsWith("A") ? "B" : "A"}${s.slice(1)}`;
    const tampered = await verifyInbound(
      new TextEncoder().encode(flipped),
      await context("VN-BGC-LAOCAI", senderDoc),
    );
    expect(tampered.ok ? "ok" : tampered.code).toBe("signature_invalid");

    const tooLarge = await verifyInbound(
      messageBytes,
      await context("VN-BGC-LAOCAI", senderDoc, { maxBytes: messageBytes.byteLength - 1 }),
    );
    expect(tooLarge.ok ? "ok" : tooLarge.code).toBe("payload_too_large");
  });
});

describe("docs/examples: batch receipt", () => {
  it("verifies with jose against the recipient's JWKS and accepts both example messages by digest", async () => {
    const { payload, protectedHeader } = await compactVerify(
      batchBytes.toString("utf8"),
      createLocalJWKSet(recipientDoc),
      { algorithms: ["EdDSA"] },
    );
    expect(protectedHeader).toEqual({ alg: "EdDSA", kid: recipientKid, typ: RECEIPT_BATCH_TYP });
    expect(JSON.parse(decoder.decode(payload))).toEqual(batchPayload);
    const digest = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");
    expect(batchPayload).toEqual({
      id: "01a20c91-abb8-7c3a-9e27-4b8d1f6a2c05",
      type: "receipt.batch",
      schemaVersion: 1,
      from: "VN-BGC-LAOCAI",
      to: "CN-MPS-HEKOU",
      sentAt: "2026-11-24T08:00:03.000Z",
      accepted: [
        { messageId: victimPayload.id, digest: { alg: "sha-256", value: digest(victimBytes) } },
        { messageId: messagePayload.id, digest: { alg: "sha-256", value: digest(messageBytes) } },
      ],
    });
    expect(schemas.validateReceiptBatch(batchPayload)).toEqual({ ok: true });
  });

  it("the gateway accepts it at CN-MPS-HEKOU, and both parties declare they accept batch receipts", async () => {
    const verdict = await verifyInbound(batchBytes, await context("CN-MPS-HEKOU", recipientDoc));
    if (!verdict.ok) throw new Error(`rejected: ${verdict.code} ${verdict.detail}`);
    expect(verdict.kind).toBe("receipt-batch");
    for (const doc of [senderDoc, recipientDoc]) {
      expect((await parsePartyDocument(doc)).party.receiptBatches).toBe(true);
    }
  });
});

describe("docs/examples: personal data (victim-identified)", () => {
  const personalData = victimPayload.body.personalData as EncryptedPersonalData;
  const recipientEncKid = keyOf(recipientDoc, "enc").kid;
  const senderEncKid = keyOf(senderDoc, "enc").kid;

  it("verifies with jose against the sender's JWKS and equals its payload file", async () => {
    const { payload, protectedHeader } = await compactVerify(victim, createLocalJWKSet(senderDoc), {
      algorithms: ["EdDSA"],
    });
    expect(protectedHeader).toEqual({ alg: "EdDSA", kid: senderKid, typ: MESSAGE_TYP });
    expect(JSON.parse(decoder.decode(payload))).toEqual(victimPayload);
  });

  it("validates against the envelope and victim.identified schemas, with the README's facts", () => {
    expect(schemas.validateEnvelope(victimPayload)).toEqual({ ok: true });
    expect(
      schemas.validateBody(victimPayload.type, victimPayload.schemaVersion, victimPayload.body),
    ).toEqual({ ok: true });
    expect(victimPayload).toMatchObject({
      id: "01a1f71c-7600-7b3e-8d41-6c2a9e5f1b08",
      type: "victim.identified",
      from: "CN-MPS-HEKOU",
      to: ["VN-BGC-LAOCAI"],
      caseRef: "CN-HEKOU-2026-0107",
      sentAt: "2026-11-20T04:00:00.000Z",
      expiresAt: "2027-11-20T04:00:00.000Z",
    });
    // The body is messages/01's, with the JWE the gateway made in place of the clear text.
    const submitted = JSON.parse(
      readFileSync(new URL("messages/01-victim.identified.json", dir), "utf8"),
    ) as { body: Record<string, unknown>; personalData: unknown };
    const { personalData: _jwe, ...clear } = victimPayload.body;
    expect(clear).toEqual(submitted.body);
    expect(victimPersonalData).toEqual(submitted.personalData);
  });

  it("follows the profile, one entry for the recipient then one for the sender, by kid", () => {
    expect(profileViolation(personalData)).toBeNull();
    expect(personalData.recipients.map((r) => r.header.kid)).toEqual([
      recipientEncKid,
      senderEncKid,
    ]);
    expect(JSON.parse(Buffer.from(personalData.protected, "base64url").toString("utf8"))).toEqual({
      enc: "A256GCM",
      cty: "liaison-personal-data+json",
    });
  });

  it("the recipient's entry decrypts with jose and the published private key to the expected plaintext", async () => {
    const entry = personalData.recipients.find((r) => r.header.kid === recipientPrivateJwk.kid);
    if (entry === undefined) throw new Error("no entry for the recipient's key");
    const { plaintext, protectedHeader } = await flattenedDecrypt(
      {
        protected: personalData.protected,
        header: entry.header,
        encrypted_key: entry.encrypted_key,
        iv: personalData.iv,
        ciphertext: personalData.ciphertext,
        tag: personalData.tag,
      },
      await recipientDecryptionKey(),
      {
        keyManagementAlgorithms: [PERSONAL_DATA_ALG],
        contentEncryptionAlgorithms: [PERSONAL_DATA_ENC],
      },
    );
    expect(protectedHeader).toEqual({ enc: "A256GCM", cty: "liaison-personal-data+json" });
    const content = JSON.parse(decoder.decode(plaintext)) as unknown;
    expect(content).toEqual(victimPersonalData);
    expect(schemas.validatePersonalData(content)).toEqual({ ok: true });
    expect(schemas.validatePersonalData(victimPersonalData)).toEqual({ ok: true });

    // The gateway's own opening agrees; the sender's entry is not the recipient's to open.
    const opened = await openPersonalData(personalData, [
      { kid: recipientPrivateJwk.kid, key: await recipientDecryptionKey() },
    ]);
    expect(opened).toEqual({ ok: true, content: victimPersonalData, kid: recipientEncKid });
    const other = personalData.recipients.find((r) => r.header.kid === senderEncKid);
    await expect(
      flattenedDecrypt(
        {
          protected: personalData.protected,
          header: other?.header,
          encrypted_key: other?.encrypted_key ?? "",
          iv: personalData.iv,
          ciphertext: personalData.ciphertext,
          tag: personalData.tag,
        },
        await recipientDecryptionKey(),
      ),
    ).rejects.toThrow();
  });

  it("the gateway accepts it at VN-BGC-LAOCAI with the published key, and only with it", async () => {
    const key = { kid: recipientPrivateJwk.kid, key: await recipientDecryptionKey() };
    const verdict = await verifyInbound(
      victimBytes,
      await context("VN-BGC-LAOCAI", senderDoc, {
        now: VICTIM_CHECKED_AT,
        decryptionKeys: [key],
      }),
    );
    if (!verdict.ok) throw new Error(`rejected: ${verdict.code} ${verdict.detail}`);
    expect(verdict).toMatchObject({ kind: "message", kid: senderKid });

    const without = await verifyInbound(
      victimBytes,
      await context("VN-BGC-LAOCAI", senderDoc, { now: VICTIM_CHECKED_AT }),
    );
    expect(without.ok ? "ok" : without.code).toBe("personal_data_not_for_us");
  });

  it.each([
    ["2026-11-20T03:55:00Z", true, undefined],
    ["2026-11-20T03:54:59.999Z", false, "clock_skew"],
  ])("at %s the verdict is ok=%s %s", async (now, ok, code) => {
    const key = { kid: recipientPrivateJwk.kid, key: await recipientDecryptionKey() };
    const verdict = await verifyInbound(
      victimBytes,
      await context("VN-BGC-LAOCAI", senderDoc, { now: new Date(now), decryptionKeys: [key] }),
    );
    expect(verdict.ok).toBe(ok);
    if (!verdict.ok) expect(verdict.code).toBe(code);
  });
});

describe("docs/examples: handover record", () => {
  it("verifies with the two party documents' keys, signed by Hekou then countersigned by Lao Cai", async () => {
    const verdict = await verifyHandoverRecord(
      record,
      await resolverFrom(senderDoc, recipientDoc),
      RECORD_CHECKED_AT,
    );
    if (!verdict.ok) throw new Error(`refused: ${verdict.detail}`);
    expect(verdict.signers).toEqual([
      { partyId: "CN-MPS-HEKOU", kid: senderKid },
      { partyId: "VN-BGC-LAOCAI", kid: recipientKid },
    ]);
    expect(verdict.payload).toEqual(recordPayload);
  });

  it("each signature verifies on its own with jose, with the key its kid names", async () => {
    expect(Object.keys(record).sort()).toEqual(["payload", "signatures"]);
    expect(record.signatures).toHaveLength(2);
    const docs = [senderDoc, recipientDoc];
    for (const [i, signature] of record.signatures.entries()) {
      expect(Object.keys(signature).sort()).toEqual(["protected", "signature"]);
      const header = JSON.parse(Buffer.from(signature.protected, "base64url").toString("utf8"));
      expect(header).toEqual({
        alg: "EdDSA",
        kid: i === 0 ? senderKid : recipientKid,
        typ: HANDOVER_RECORD_TYP,
      });
      const jwk = docs[i]?.keys.find((k) => k.kid === header.kid);
      expect(jwk?.use).toBe("sig");
      const { payload } = await flattenedVerify(
        { payload: record.payload, ...signature },
        (await importJWK(jwk as JWK, "EdDSA")) as CryptoKey,
        { algorithms: ["EdDSA"] },
      );
      expect(JSON.parse(decoder.decode(payload))).toEqual(recordPayload);
      // And not with the other party's key.
      const other = keyOf(docs[1 - i] as PartyDocument, "sig");
      await expect(
        flattenedVerify(
          { payload: record.payload, ...signature },
          (await importJWK(other, "EdDSA")) as CryptoKey,
        ),
      ).rejects.toThrow();
    }
  });

  it("its payload validates against the schema and names the two parties and a real proposal id", () => {
    expect(JSON.parse(Buffer.from(record.payload, "base64url").toString("utf8"))).toEqual(
      recordPayload,
    );
    expect(schemas.validateHandoverRecord(recordPayload)).toEqual({ ok: true });
    expect(recordPayload).toMatchObject({
      caseRef: "CN-HEKOU-2026-0107",
      proposalId: "01a2532a-2280-7d19-a6c4-2e8b7f3d9a50",
      handedOverBy: "CN-MPS-HEKOU",
      receivedBy: "VN-BGC-LAOCAI",
    });
  });

  it("a forged second signature or a missing key is refused; the first signature alone verifies", async () => {
    const keys = await resolverFrom(senderDoc, recipientDoc);
    const [first, second] = record.signatures as [
      HandoverRecord["signatures"][number],
      HandoverRecord["signatures"][number],
    ];
    const forged = {
      ...record,
      signatures: [first, { ...second, signature: first.signature }],
    };
    const refused = await verifyHandoverRecord(forged, keys, RECORD_CHECKED_AT);
    expect(refused.ok ? "ok" : refused.detail).toBe(
      "signature 2 does not verify with the registered key",
    );
    const senderOnly = await verifyHandoverRecord(
      record,
      await resolverFrom(senderDoc),
      RECORD_CHECKED_AT,
    );
    expect(senderOnly.ok ? "ok" : senderOnly.detail).toBe(
      "signature 2: kid names no registered key",
    );
    const signedOnly = await verifyHandoverRecord(
      { payload: record.payload, signatures: [first] },
      keys,
      RECORD_CHECKED_AT,
    );
    expect(signedOnly.ok && signedOnly.signers.map((s) => s.partyId)).toEqual(["CN-MPS-HEKOU"]);
  });
});
