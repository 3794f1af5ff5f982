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
  importJWK,
  type JSONWebKeySet,
  type JWK,
} from "jose";
import { describe, expect, it } from "vitest";
import { loadSchemaRegistry } from "../../src/config/schema-files.ts";
import {
  COMPACT_JWS,
  MESSAGE_TYP,
  RECEIPT_TYP,
  type SigningAlg,
} from "../../src/protocol/jws-profile.ts";
import type { Envelope, KeyResolver, Receipt, RegisteredKey } from "../../src/protocol/types.ts";
import { type VerifyContext, verifyInbound } from "../../src/protocol/verify-inbound.ts";
import { parsePartyDocument } from "../../src/registry/party-document.ts";

const dir = new URL("../../docs/examples/", import.meta.url);
const bytesOf = (name: string): Buffer => readFileSync(new URL(name, dir));
const jsonOf = <T>(name: string): T => JSON.parse(bytesOf(name).toString("utf8")) as T;

type PublishedKey = JWK & {
  kid: string;
  alg: SigningAlg;
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

const schemas = loadSchemaRegistry();
const decoder = new TextDecoder();
const CHECKED_AT = new Date("2026-11-24T08:01:00Z");

/** A KeyResolver as a partner registry would build it from a published party document. */
async function resolverFrom(doc: PartyDocument): Promise<KeyResolver> {
  const keys = new Map<string, RegisteredKey>();
  for (const jwk of doc.keys) {
    keys.set(jwk.kid, {
      kid: jwk.kid,
      partyId: doc.party.id,
      alg: jwk.alg,
      key: (await importJWK(jwk, jwk.alg)) as CryptoKey,
      validFrom: new Date(jwk.validFrom),
      validUntil: jwk.validUntil === undefined ? null : new Date(jwk.validUntil),
      revokedAt: jwk.revokedAt === undefined ? null : new Date(jwk.revokedAt),
    });
  }
  // The examples publish no encryption keys.
  return {
    hasParty: (id) => id === doc.party.id,
    keyById: (kid) => keys.get(kid),
    encryptionKeyOf: () => undefined,
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
    for (const jws of [message, receipt]) {
      expect(jws).toMatch(COMPACT_JWS);
      expect(jws.endsWith("\n")).toBe(false);
    }
  });

  it("publishes party documents whose kids are RFC 7638 thumbprints and no private key", async () => {
    for (const [doc, id] of [
      [senderDoc, "CN-MPS-HEKOU"],
      [recipientDoc, "VN-BGC-LAOCAI"],
    ] as const) {
      expect(doc.party.id).toBe(id);
      expect(doc.party.inboundSubject).toBe(`liaison.inbox.${id}`);
      for (const key of doc.keys) {
        expect(key).not.toHaveProperty("d");
        expect(key).toMatchObject({ kty: "OKP", crv: "Ed25519", alg: "EdDSA", use: "sig" });
        expect(key.kid).toBe(await calculateJwkThumbprint(key, "sha256"));
      }
      // The gateway's own importer (`liaison partners add`, POST /v1/partners) accepts it.
      const parsed = await parsePartyDocument(doc);
      expect(parsed.party.id).toBe(id);
      expect(parsed.keys.map((k) => k.kid)).toEqual(doc.keys.map((k) => k.kid));
    }
    // No private key member anywhere in the examples.
    for (const name of readdirSync(dir).filter((f) => f.endsWith(".json"))) {
      expect(bytesOf(name).toString("utf8")).not.toMatch(/"d"\s*:/);
    }
  });

  it("the message verifies with jose against the sender's JWKS, header exactly {alg, kid, typ}", async () => {
    const { payload, protectedHeader } = await compactVerify(
      message,
      createLocalJWKSet(senderDoc),
      { algorithms: ["EdDSA"] },
    );
    expect(Object.keys(protectedHeader).sort()).toEqual(["alg", "kid", "typ"]);
    expect(protectedHeader).toEqual({
      alg: "EdDSA",
      kid: senderDoc.keys[0]?.kid,
      typ: MESSAGE_TYP,
    });
    expect(JSON.parse(decoder.decode(payload))).toEqual(messagePayload);
  });

  it("the receipt verifies with jose against the recipient's JWKS and names the message's digest", async () => {
    const { payload, protectedHeader } = await compactVerify(
      receipt,
      createLocalJWKSet(recipientDoc),
      { algorithms: ["EdDSA"] },
    );
    expect(Object.keys(protectedHeader).sort()).toEqual(["alg", "kid", "typ"]);
    expect(protectedHeader).toEqual({
      alg: "EdDSA",
      kid: recipientDoc.keys[0]?.kid,
      typ: RECEIPT_TYP,
    });
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
    expect(decodeProtectedHeader(message).kid).not.toBe(recipientDoc.keys[0]?.kid);
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
    expect(verdict.kid).toBe(senderDoc.keys[0]?.kid);
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
