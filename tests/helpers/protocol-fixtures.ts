/** Real Ed25519 keys and envelopes for protocol tests: no mocks of crypto anywhere. */
import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { type CryptoKey, calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from "jose";
import type { Signer } from "../../src/delivery/ports.ts";
import { buildEnvelope } from "../../src/protocol/build-envelope.ts";
import type { SigningAlg } from "../../src/protocol/jws-profile.ts";
import { signCompact } from "../../src/protocol/sign.ts";
import type { Envelope, KeyResolver, RegisteredKey, SigningKey } from "../../src/protocol/types.ts";

export interface TestParty {
  id: string;
  signing: SigningKey;
  registered: RegisteredKey;
  /** The party's X25519 encryption key, when it has one (withEncryptionKey). */
  encryption?: TestEncryptionKey;
}

/** An X25519 key pair for personal data (ECDH-ES+A256KW), kid its RFC 7638 thumbprint. */
export interface TestEncryptionKey {
  kid: string;
  publicKey: CryptoKey;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export async function makeEncryptionKey(): Promise<TestEncryptionKey> {
  const { privateKey, publicKey } = await generateKeyPair("ECDH-ES+A256KW", {
    crv: "X25519",
    extractable: true,
  });
  const publicJwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwk, "sha256");
  return { kid, publicKey, privateKey, publicJwk };
}

/** The party with a (new) encryption key, which resolverOf then answers encryptionKeyOf with. */
export async function withEncryptionKey(party: TestParty): Promise<TestParty> {
  return { ...party, encryption: await makeEncryptionKey() };
}

export async function makeParty(
  id: string,
  opts: {
    alg?: SigningAlg;
    validFrom?: Date;
    validUntil?: Date | null;
    revokedAt?: Date | null;
  } = {},
): Promise<TestParty> {
  const alg = opts.alg ?? "EdDSA";
  const { privateKey, publicKey } = await generateKeyPair(
    alg,
    alg === "EdDSA" ? { crv: "Ed25519" } : {},
  );
  const kid = await calculateJwkThumbprint(await exportJWK(publicKey), "sha256");
  return {
    id,
    signing: { kid, alg, key: privateKey },
    registered: {
      kid,
      partyId: id,
      alg,
      key: publicKey,
      validFrom: opts.validFrom ?? new Date("2020-01-01T00:00:00Z"),
      validUntil: opts.validUntil ?? null,
      revokedAt: opts.revokedAt ?? null,
    },
  };
}

export function resolverOf(...parties: TestParty[]): KeyResolver {
  const keys = new Map(parties.map((p) => [p.registered.kid, p.registered]));
  const ids = new Set(parties.map((p) => p.id));
  const encryption = new Map(
    parties.flatMap((p) => (p.encryption === undefined ? [] : [[p.id, p.encryption] as const])),
  );
  return {
    hasParty: (id) => ids.has(id),
    keyById: (kid) => keys.get(kid),
    encryptionKeyOf: (id) => {
      const key = encryption.get(id);
      return key === undefined ? undefined : { kid: key.kid, key: key.publicKey };
    },
  };
}

const SEEDS = new URL("../../seeds/messages/", import.meta.url);

/** The body of the first example case notice in seeds/messages. */
export const CASE_NOTICE_BODY: Record<string, unknown> = (() => {
  for (const file of readdirSync(SEEDS).sort()) {
    const seed = JSON.parse(readFileSync(new URL(file, SEEDS), "utf8")) as {
      type: string;
      body: Record<string, unknown>;
    };
    if (seed.type === "case.notice") return seed.body;
  }
  throw new Error("seeds/messages holds no case.notice");
})();

export function envelopeAt(
  from: string,
  to: string[],
  sentAt: Date,
  overrides: Partial<Envelope> = {},
): Envelope {
  return {
    ...buildEnvelope(
      {
        type: "case.notice",
        schemaVersion: 1,
        to,
        caseRef: "CN-HEKOU-2026-0042",
        handling: { classification: "restricted", onwardDissemination: "forbidden" },
        body: CASE_NOTICE_BODY,
      },
      { self: from, clock: () => sentAt, ids: randomUUID, ttlMs: 86_400_000 },
    ),
    ...overrides,
  };
}

/** The party's key as the delivery core's Signer port. */
export function signerOf(party: TestParty): Signer {
  return {
    sign: async (payload, typ) => ({
      jws: await signCompact(payload, party.signing, typ),
      kid: party.signing.kid,
    }),
    canSignWith: (kid) => kid === party.signing.kid,
  };
}

/**
 * The same ES256 JWS under the other valid encoding of its signature: ECDSA signatures are
 * r || s, and (r, n − s) verifies too (n: the order of P-256).
 */
export function reencodeEs256(jws: string): string {
  const [header, payload, signature = ""] = jws.split(".");
  const raw = Buffer.from(signature, "base64url");
  const n = BigInt("0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");
  const s = BigInt(`0x${raw.subarray(32).toString("hex")}`);
  const flipped = Buffer.concat([
    raw.subarray(0, 32),
    Buffer.from((n - s).toString(16).padStart(64, "0"), "hex"),
  ]);
  return `${header}.${payload}.${flipped.toString("base64url")}`;
}

/** The default deadlines (hours as in docs/operations.md), for tests that build a CaseBook. */
export const DEADLINES = {
  verificationAnswerMs: 168 * 3_600_000,
  repatriationAnswerMs: 336 * 3_600_000,
  handoverConfirmationLeadMs: 24 * 3_600_000,
  countersignatureMs: 24 * 3_600_000,
};
