/**
 * The gateway's own private signing keys, one JSON file per key in the keys directory:
 * `<kid>.jwk.json`, mode 0600, in a directory of mode 0700. They are read once at start and
 * imported into non-extractable CryptoKeys; they are never logged and never stored in the
 * database. `kid` is the RFC 7638 JWK thumbprint of the public key.
 */
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  type CryptoKey,
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JWK,
} from "jose";
import { LiaisonError } from "../protocol/errors.ts";
import type { SigningAlg } from "../protocol/jws-profile.ts";
import type { SigningKey } from "../protocol/types.ts";

export interface PublicKeyInfo {
  kid: string;
  alg: SigningAlg;
  publicJwk: JWK;
  validFrom: Date;
  validUntil: Date | null;
}

export interface OwnKey extends PublicKeyInfo {
  revokedAt: Date | null;
  signing: SigningKey;
}

interface KeyFile {
  kid: string;
  alg: SigningAlg;
  validFrom: string;
  validUntil?: string;
  /** Set by `liaison keys revoke`: published to partners, and the key no longer signs. */
  revokedAt?: string;
  privateJwk: JWK;
}

const SUFFIX = ".jwk.json";

export async function generateKeyFile(
  dir: string,
  opts: { alg?: SigningAlg; validFrom?: Date; validUntil?: Date } = {},
): Promise<PublicKeyInfo> {
  const alg = opts.alg ?? "EdDSA";
  const { privateKey, publicKey } = await generateKeyPair(alg, {
    crv: alg === "EdDSA" ? "Ed25519" : undefined,
    extractable: true,
  });
  const publicJwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwk, "sha256");
  const privateJwk = await exportJWK(privateKey);
  const validFrom = opts.validFrom ?? new Date();
  const file: KeyFile = { kid, alg, validFrom: validFrom.toISOString(), privateJwk };
  if (opts.validUntil !== undefined) file.validUntil = opts.validUntil.toISOString();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const path = join(dir, `${kid}${SUFFIX}`);
  writeFileSync(path, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600, flag: "wx" });
  return {
    kid,
    alg,
    publicJwk: { ...publicJwk, kid, alg, use: "sig" },
    validFrom,
    validUntil: opts.validUntil ?? null,
  };
}

/** Loads and imports every key file once. Refuses files that others can read, like ssh does. */
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
    const { d: _private, ...publicJwk } = file.privateJwk;
    const kid = await calculateJwkThumbprint(publicJwk, "sha256");
    if (kid !== file.kid || name !== `${kid}${SUFFIX}`) {
      throw new LiaisonError(
        "key_store_invalid",
        `key file ${name}: kid does not match the key's thumbprint`,
      );
    }
    const key = (await importJWK(file.privateJwk, file.alg, { extractable: false })) as CryptoKey;
    keys.push({
      kid,
      alg: file.alg,
      publicJwk: { ...publicJwk, kid, alg: file.alg, use: "sig" },
      validFrom: new Date(file.validFrom),
      validUntil: file.validUntil === undefined ? null : new Date(file.validUntil),
      revokedAt: file.revokedAt === undefined ? null : new Date(file.revokedAt),
      signing: { kid, alg: file.alg, key },
    });
  }
  return keys;
}

/** The newest key valid now signs; older ones stay published so old messages still verify. */
export function currentSigningKey(keys: OwnKey[], now: Date): OwnKey | undefined {
  return keys
    .filter(
      (k) =>
        k.validFrom.getTime() <= now.getTime() &&
        (k.validUntil === null || k.validUntil.getTime() > now.getTime()) &&
        (k.revokedAt === null || k.revokedAt.getTime() > now.getTime()),
    )
    .sort((a, b) => b.validFrom.getTime() - a.validFrom.getTime())[0];
}

/**
 * Marks one of our keys revoked from `at` (default now): the gateway stops signing with it and
 * publishes `revokedAt`, and partners stop accepting messages claimed to be sent from then on.
 * The file stays: messages signed before stay verifiable. Returns false when no such key.
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
