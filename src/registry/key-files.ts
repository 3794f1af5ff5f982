/**
 * The gateway's own private keys, one JSON file per key in the keys directory:
 * `<kid>.jwk.json`, mode 0600, in a directory of mode 0700. They are read at start (and re-read
 * by the keyring) and imported into non-extractable CryptoKeys; they are never logged and never
 * stored in the database. `kid` is the RFC 7638 JWK thumbprint of the public key.
 *
 * Two kinds share the directory: signing keys (`use: "sig"`, EdDSA or ES256), which sign our
 * messages and receipts, and encryption keys (`use: "enc"`, X25519 for ECDH-ES+A256KW), which
 * partners encrypt personal data to. A file without `use` is a signing key (files written before
 * encryption keys existed).
 */
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  type CryptoKey,
  calculateJwkThumbprint,
  exportJWK,
  type GenerateKeyPairResult,
  generateKeyPair,
  importJWK,
  type JWK,
} from "jose";
import { LiaisonError } from "../protocol/errors.ts";
import { ALLOWED_ALGS, type SigningAlg } from "../protocol/jws-profile.ts";
import { PERSONAL_DATA_ALG } from "../protocol/personal-data.ts";
import type { SigningKey } from "../protocol/types.ts";

export type EncryptionAlg = typeof PERSONAL_DATA_ALG;

/** A new signing key as `generateKeyFile` made it. */
export interface PublicKeyInfo {
  kid: string;
  alg: SigningAlg;
  publicJwk: JWK;
  validFrom: Date;
  validUntil: Date | null;
}

/** A new encryption key as `generateEncryptionKeyFile` made it. */
export interface EncryptionKeyInfo {
  kid: string;
  alg: EncryptionAlg;
  publicJwk: JWK;
  validFrom: Date;
  validUntil: Date | null;
}

/** One of our signing keys, imported to sign. */
export interface OwnSigningKey extends PublicKeyInfo {
  use: "sig";
  revokedAt: Date | null;
  signing: SigningKey;
}

/** One of our encryption keys: the public half for our own recipient entry, the private to open. */
export interface OwnEncryptionKey extends EncryptionKeyInfo {
  use: "enc";
  revokedAt: Date | null;
  /** X25519 public key: personal data we send is encrypted to it too, so we can read it back. */
  publicKey: CryptoKey;
  /** X25519 private key, non-extractable. */
  decryption: CryptoKey;
}

/** Any key of the directory. */
export type OwnKey = OwnSigningKey | OwnEncryptionKey;

interface KeyFile {
  kid: string;
  /** Absent in files written before encryption keys: "sig". */
  use?: "sig" | "enc";
  alg: SigningAlg | EncryptionAlg;
  validFrom: string;
  validUntil?: string;
  /** Set by `liaison keys revoke`: published to partners, and the key is no longer used. */
  revokedAt?: string;
  privateJwk: JWK;
}

const SUFFIX = ".jwk.json";

interface Validity {
  validFrom?: Date;
  validUntil?: Date;
}

async function writeKeyFile(
  dir: string,
  use: "sig" | "enc",
  alg: SigningAlg | EncryptionAlg,
  { privateKey, publicKey }: GenerateKeyPairResult,
  opts: Validity,
): Promise<{ kid: string; publicJwk: JWK; validFrom: Date; validUntil: Date | null }> {
  const publicJwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwk, "sha256");
  const privateJwk = await exportJWK(privateKey);
  const validFrom = opts.validFrom ?? new Date();
  const file: KeyFile = { kid, use, alg, validFrom: validFrom.toISOString(), privateJwk };
  if (opts.validUntil !== undefined) file.validUntil = opts.validUntil.toISOString();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const path = join(dir, `${kid}${SUFFIX}`);
  writeFileSync(path, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600, flag: "wx" });
  return {
    kid,
    publicJwk: { ...publicJwk, kid, alg, use },
    validFrom,
    validUntil: opts.validUntil ?? null,
  };
}

/** Writes a new signing key (Ed25519 by default) to the directory. */
export async function generateKeyFile(
  dir: string,
  opts: { alg?: SigningAlg } & Validity = {},
): Promise<PublicKeyInfo> {
  const alg = opts.alg ?? "EdDSA";
  const pair = await generateKeyPair(alg, {
    crv: alg === "EdDSA" ? "Ed25519" : undefined,
    extractable: true,
  });
  return { alg, ...(await writeKeyFile(dir, "sig", alg, pair, opts)) };
}

/** Writes a new X25519 encryption key (ECDH-ES+A256KW) to the directory. */
export async function generateEncryptionKeyFile(
  dir: string,
  opts: Validity = {},
): Promise<EncryptionKeyInfo> {
  const pair = await generateKeyPair(PERSONAL_DATA_ALG, { crv: "X25519", extractable: true });
  return {
    alg: PERSONAL_DATA_ALG,
    ...(await writeKeyFile(dir, "enc", PERSONAL_DATA_ALG, pair, opts)),
  };
}

function storeInvalid(name: string, why: string): never {
  throw new LiaisonError("key_store_invalid", `key file ${name}: ${why}`);
}

/**
 * Loads and imports every key file once, both kinds. Refuses files that others can read, like
 * ssh does, and files whose kid, use, alg or key do not fit together.
 */
export async function loadKeyFiles(dir: string): Promise<OwnKey[]> {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith(SUFFIX));
  } catch {
    return [];
  }
  const keys: OwnKey[] = [];
  for (const name of names.sort()) {
    const path = join(dir, name);
    if ((statSync(path).mode & 0o077) !== 0) {
      throw new LiaisonError(
        "key_store_invalid",
        `key file ${name} is readable by group or others; chmod 600 it`,
      );
    }
    let file: KeyFile;
    try {
      file = JSON.parse(readFileSync(path, "utf8")) as KeyFile;
    } catch {
      throw new LiaisonError("key_store_invalid", `key file ${name} is not valid JSON`);
    }
    if (typeof file !== "object" || file === null || typeof file.privateJwk !== "object") {
      storeInvalid(name, "not a key file");
    }
    const { d: _private, ...publicJwk } = file.privateJwk;
    const kid = await calculateJwkThumbprint(publicJwk, "sha256").catch(() =>
      storeInvalid(name, "privateJwk is not a JWK"),
    );
    if (kid !== file.kid || name !== `${kid}${SUFFIX}`) {
      storeInvalid(name, "kid does not match the key's thumbprint");
    }
    const validity = {
      validFrom: new Date(file.validFrom),
      validUntil: file.validUntil === undefined ? null : new Date(file.validUntil),
      revokedAt: file.revokedAt === undefined ? null : new Date(file.revokedAt),
    };
    const use = file.use ?? "sig";
    if (use === "enc") {
      if (file.alg !== PERSONAL_DATA_ALG || publicJwk.kty !== "OKP" || publicJwk.crv !== "X25519") {
        storeInvalid(name, `an encryption key must be an X25519 key for ${PERSONAL_DATA_ALG}`);
      }
      const decryption = (await importJWK(file.privateJwk, PERSONAL_DATA_ALG, {
        extractable: false,
      })) as CryptoKey;
      const publicKey = (await importJWK(publicJwk, PERSONAL_DATA_ALG)) as CryptoKey;
      keys.push({
        kid,
        use: "enc",
        alg: PERSONAL_DATA_ALG,
        publicJwk: { ...publicJwk, kid, alg: PERSONAL_DATA_ALG, use: "enc" },
        ...validity,
        publicKey,
        decryption,
      });
    } else if (use === "sig") {
      const alg = file.alg as SigningAlg;
      if (!(ALLOWED_ALGS as readonly string[]).includes(alg)) {
        storeInvalid(name, `a signing key's alg must be one of ${ALLOWED_ALGS.join(", ")}`);
      }
      const key = (await importJWK(file.privateJwk, alg, { extractable: false })) as CryptoKey;
      keys.push({
        kid,
        use: "sig",
        alg,
        publicJwk: { ...publicJwk, kid, alg, use: "sig" },
        ...validity,
        signing: { kid, alg, key },
      });
    } else {
      storeInvalid(name, 'use must be "sig" or "enc"');
    }
  }
  return keys;
}

function validAt(key: OwnKey, now: Date): boolean {
  return (
    key.validFrom.getTime() <= now.getTime() &&
    (key.validUntil === null || key.validUntil.getTime() > now.getTime()) &&
    (key.revokedAt === null || key.revokedAt.getTime() > now.getTime())
  );
}

/** Whether `kid` is one of our signing keys, valid now and not revoked. */
export function signingKeyValid(keys: readonly OwnKey[], kid: string, now: Date): boolean {
  return keys.some((k) => k.use === "sig" && k.kid === kid && validAt(k, now));
}

/** The newest of `keys` valid now, by validFrom. */
function newest<K extends OwnKey>(keys: K[], now: Date): K | undefined {
  return keys
    .filter((k) => validAt(k, now))
    .sort((a, b) => b.validFrom.getTime() - a.validFrom.getTime())[0];
}

/**
 * The newest signing key valid now signs; older ones stay published so old messages still
 * verify. Never an encryption key.
 */
export function currentSigningKey(keys: readonly OwnKey[], now: Date): OwnSigningKey | undefined {
  return newest(
    keys.filter((k): k is OwnSigningKey => k.use === "sig"),
    now,
  );
}

/**
 * The newest encryption key valid now and not revoked: what partners should encrypt to, and
 * what our own recipient entry uses. Older ones stay for decryption.
 */
export function currentEncryptionKey(
  keys: readonly OwnKey[],
  now: Date,
): OwnEncryptionKey | undefined {
  return newest(
    keys.filter((k): k is OwnEncryptionKey => k.use === "enc"),
    now,
  );
}

/**
 * Marks one of our keys, of either kind, revoked from `at` (default now): the gateway stops
 * using it (a signing key no longer signs, an encryption key is no longer offered to partners)
 * and publishes `revokedAt`, and partners stop accepting messages signed with it that claim to
 * be sent from then on. The file stays: messages signed before stay verifiable, and personal data
 * encrypted to it stays readable. Returns false when no such key.
 */
export function revokeKeyFile(dir: string, kid: string, at: Date): boolean {
  const path = join(dir, `${kid}${SUFFIX}`);
  let file: KeyFile;
  try {
    file = JSON.parse(readFileSync(path, "utf8")) as KeyFile;
  } catch {
    return false;
  }
  // A revocation only ever moves earlier, as in the partner registry.
  if (file.revokedAt === undefined || at.getTime() < Date.parse(file.revokedAt))
    file.revokedAt = at.toISOString();
  writeFileSync(path, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
  return true;
}
