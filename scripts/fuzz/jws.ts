/**
 * Raw JWS building for the fuzzer: any header text, any payload bytes, signed for real with
 * WebCrypto (Ed25519, or ECDSA P-256 giving R || S) or given a random signature, plus the
 * ES256 re-encoding R || (n − S). Keys derived from the seed, so a run is reproducible up to the
 * randomness of ECDSA signatures and of the gateways' own keys.
 */
import { createECDH, createHash, createPrivateKey } from "node:crypto";
import { type CryptoKey, calculateJwkThumbprint, importJWK, type JWK } from "jose";
import type { SigningAlg } from "../../src/protocol/jws-profile.ts";
import type { PartyRecord, SigningKey } from "../../src/protocol/types.ts";

export interface FuzzKey {
  signing: SigningKey;
  publicJwk: JWK;
}

const encoder = new TextEncoder();
export const utf8 = (text: string): Uint8Array => encoder.encode(text);
export const b64u = (data: Uint8Array | string): string =>
  Buffer.from(typeof data === "string" ? utf8(data) : data).toString("base64url");

/** The order of P-256. */
const P256_N = BigInt("0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");

/** A key pair derived from (seed, label): the same seed gives the same kids. */
export async function deterministicKey(
  seed: number,
  label: string,
  alg: SigningAlg,
): Promise<FuzzKey> {
  const d = createHash("sha256").update(`liaison-fuzz:${seed}:${label}`).digest();
  let jwk: JWK;
  if (alg === "EdDSA") {
    const pkcs8 = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), d]);
    jwk = createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" }).export({
      format: "jwk",
    }) as JWK;
  } else {
    const ecdh = createECDH("prime256v1");
    ecdh.setPrivateKey(d);
    const pub = ecdh.getPublicKey();
    jwk = {
      kty: "EC",
      crv: "P-256",
      x: b64u(pub.subarray(1, 33)),
      y: b64u(pub.subarray(33, 65)),
      d: b64u(d),
    };
  }
  const { d: _private, ...publicJwk } = jwk;
  const kid = await calculateJwkThumbprint(publicJwk, "sha256");
  const key = (await importJWK(jwk, alg)) as CryptoKey;
  return { signing: { kid, alg, key }, publicJwk };
}

/** A party document (JWK Set + `party`) for keys we hold. */
export function partyDocument(
  party: PartyRecord,
  keys: FuzzKey[],
  validFrom = "2020-01-01T00:00:00.000Z",
): { party: PartyRecord; keys: Array<Record<string, unknown>> } {
  return {
    party,
    keys: keys.map((k) => ({
      ...k.publicJwk,
      kid: k.signing.kid,
      alg: k.signing.alg,
      use: "sig",
      validFrom,
    })),
  };
}

/** Signs `signingInput` (ASCII) with the key; the base64url signature. */
export async function signInput(signingInput: string, key: SigningKey): Promise<string> {
  const params =
    key.alg === "EdDSA" ? { name: "Ed25519" } : { name: "ECDSA", hash: { name: "SHA-256" } };
  const sig = await crypto.subtle.sign(params, key.key, utf8(signingInput));
  return b64u(new Uint8Array(sig));
}

/**
 * A compact JWS of exactly this header text and these payload bytes; signed with `key`, or with
 * 64 bytes derived from `fakeSeed` when key is null.
 */
export async function compact(
  headerText: string,
  payload: string | Uint8Array,
  key: SigningKey | null,
  fakeSeed = 0,
): Promise<string> {
  const input = `${b64u(headerText)}.${b64u(payload)}`;
  if (key !== null) return `${input}.${await signInput(input, key)}`;
  return `${input}.${b64u(createHash("sha512").update(`fake:${fakeSeed}`).digest())}`;
}

/** The other valid encoding of an ES256 signature: R || (n − S). */
export function malleate(jws: string): string {
  const cut = jws.lastIndexOf(".");
  const sig = Buffer.from(jws.slice(cut + 1), "base64url");
  if (sig.length !== 64) return jws;
  const s = BigInt(`0x${sig.subarray(32).toString("hex")}`);
  const flipped = Buffer.from((P256_N - s).toString(16).padStart(64, "0"), "hex");
  return `${jws.slice(0, cut + 1)}${b64u(Buffer.concat([sig.subarray(0, 32), flipped]))}`;
}
