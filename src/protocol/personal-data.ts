/**
 * Victims' personal data inside a signed message body (`body.personalData`): a JWE (RFC 7516)
 * in General JSON Serialization (§7.2.1), content encrypted once with A256GCM, its key wrapped
 * for each addressee, and for the sender itself, with ECDH-ES+A256KW (RFC 7518 §4.6) on X25519
 * keys (RFC 8037). docs/protocol.md, "Personal data", is the contract; this module is its one
 * implementation on both sides.
 *
 * The profile is exact, and anything else is refused before a key is touched:
 *
 *   { "protected": b64url({"enc":"A256GCM","cty":"liaison-personal-data+json"}),
 *     "recipients": [ { "header": { "alg": "ECDH-ES+A256KW", "kid": "<thumbprint>",
 *                                   "epk": {"kty":"OKP","crv":"X25519","x":"…"} },
 *                       "encrypted_key": "…" }, … ],
 *     "iv": "…", "ciphertext": "…", "tag": "…" }
 *
 * Pure: keys come in as CryptoKeys, nothing is read or written. Refusals name the rule that
 * failed, never any of the plaintext (not even a member name of it).
 */
import {
  base64url,
  type CryptoKey,
  type FlattenedJWE,
  flattenedDecrypt,
  GeneralEncrypt,
  generateKeyPair,
} from "jose";
import { LiaisonError } from "./errors.ts";
import { checkJsonValue, MAX_JSON_DEPTH, parseJsonText } from "./json-limits.ts";

export const PERSONAL_DATA_ALG = "ECDH-ES+A256KW";
export const PERSONAL_DATA_ENC = "A256GCM";
export const PERSONAL_DATA_CTY = "liaison-personal-data+json";

/** The public part of an X25519 key as it travels in `epk`. */
export interface X25519PublicJwk {
  kty: "OKP";
  crv: "X25519";
  x: string;
}

export interface PersonalDataRecipient {
  header: { alg: typeof PERSONAL_DATA_ALG; kid: string; epk: X25519PublicJwk };
  encrypted_key: string;
}

/** `body.personalData`: exactly these members, in General JSON Serialization. */
export interface EncryptedPersonalData {
  protected: string;
  recipients: PersonalDataRecipient[];
  iv: string;
  ciphertext: string;
  tag: string;
}

/** A key named by its kid (the RFC 7638 SHA-256 thumbprint of its public JWK). */
export interface PersonalDataKey {
  kid: string;
  key: CryptoKey;
}

export type OpenedPersonalData =
  | { ok: true; content: unknown; kid: string }
  | {
      ok: false;
      code: "personal_data_not_for_us" | "personal_data_undecryptable";
      detail: string;
    };

const encoder = new TextEncoder();
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** RFC 7638 SHA-256 thumbprints and X25519 public keys are both 32 bytes: 43 characters. */
const B64URL_32_BYTES = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;
const B64URL = /^[A-Za-z0-9_-]+$/;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Exactly these member names, in any order. */
function hasExactly(value: Record<string, unknown>, names: readonly string[]): boolean {
  const keys = Object.keys(value);
  return keys.length === names.length && names.every((n) => Object.hasOwn(value, n));
}

/** Base64url without padding whose decoding encodes back to the very same text. */
function canonicalBytes(value: unknown): Uint8Array | undefined {
  if (typeof value !== "string" || !B64URL.test(value)) return undefined;
  let bytes: Uint8Array;
  try {
    bytes = base64url.decode(value);
  } catch {
    return undefined;
  }
  return base64url.encode(bytes) === value ? bytes : undefined;
}

function isX25519PublicKey(key: CryptoKey): boolean {
  return key.type === "public" && key.algorithm.name === "X25519";
}

function isX25519PrivateKey(key: CryptoKey): boolean {
  return key.type === "private" && key.algorithm.name === "X25519";
}

/**
 * Encrypts `content` (a JSON object) to every recipient, one entry per distinct kid, in the
 * order given. Throws LiaisonError: `request_invalid` when there is no recipient or the content
 * breaks the JSON limits a receiver holds it to (the issue names the place, not the value);
 * `internal` when a key is not an X25519 public key.
 */
export async function sealPersonalData(
  content: Record<string, unknown>,
  recipients: PersonalDataKey[],
): Promise<EncryptedPersonalData> {
  if (!isRecord(content)) {
    throw new LiaisonError("request_invalid", "personal data must be a JSON object");
  }
  const limits = checkJsonValue(content, MAX_JSON_DEPTH);
  if (limits !== null) {
    throw new LiaisonError("request_invalid", `personal data ${limits.message}`, {
      issues: [{ path: limits.path, message: limits.message }],
    });
  }
  const distinct = new Map<string, CryptoKey>();
  for (const { kid, key } of recipients) {
    if (!B64URL_32_BYTES.test(kid)) {
      throw new LiaisonError("internal", "a personal data recipient's kid is not a thumbprint");
    }
    if (!isX25519PublicKey(key)) {
      throw new LiaisonError("internal", `the key of ${kid} is not an X25519 public key`);
    }
    if (!distinct.has(kid)) distinct.set(kid, key);
  }
  if (distinct.size === 0) {
    throw new LiaisonError("request_invalid", "personal data needs at least one recipient");
  }

  const jwe = new GeneralEncrypt(encoder.encode(JSON.stringify(content))).setProtectedHeader({
    enc: PERSONAL_DATA_ENC,
    cty: PERSONAL_DATA_CTY,
  });
  for (const [kid, key] of distinct) {
    jwe.addRecipient(key).setUnprotectedHeader({ alg: PERSONAL_DATA_ALG, kid });
  }
  // jose writes a lone recipient's key management parameters (its `epk`) into the protected
  // header, where the profile has none: a throwaway second recipient keeps every `epk` in its
  // own recipient header, and its entry is dropped (entries are independent of each other).
  const lone = distinct.size === 1;
  if (lone) {
    const { publicKey } = await generateKeyPair(PERSONAL_DATA_ALG, { crv: "X25519" });
    jwe.addRecipient(publicKey).setUnprotectedHeader({ alg: PERSONAL_DATA_ALG, kid: "-" });
  }
  const sealed = await jwe.encrypt();
  const entries = lone ? sealed.recipients.slice(0, 1) : sealed.recipients;
  const result = {
    protected: sealed.protected,
    recipients: entries.map((r) => ({ header: r.header, encrypted_key: r.encrypted_key })),
    iv: sealed.iv,
    ciphertext: sealed.ciphertext,
    tag: sealed.tag,
  };
  // What jose emitted is held to the profile a receiver applies, so a jose change that moved
  // a member would fail here rather than at every partner.
  const violation = profileViolation(result);
  if (violation !== null) {
    throw new LiaisonError("internal", `sealed personal data breaks the profile: ${violation}`);
  }
  return result as EncryptedPersonalData;
}

/**
 * The first rule of the profile that `jwe` breaks, as a detail naming the rule (never a value),
 * or null when it follows the profile exactly.
 */
export function profileViolation(jwe: unknown): string | null {
  if (!isRecord(jwe)) return "personalData is not a JSON object";
  for (const name of Object.keys(jwe)) {
    if (!["protected", "recipients", "iv", "ciphertext", "tag"].includes(name)) {
      // Named only when it is a JWE member: another name would be sender-chosen text.
      return ["unprotected", "aad", "header", "encrypted_key"].includes(name)
        ? `personalData must not have the member ${name}`
        : "personalData has a member other than protected, recipients, iv, ciphertext and tag";
    }
  }
  for (const name of ["protected", "recipients", "iv", "ciphertext", "tag"]) {
    if (!Object.hasOwn(jwe, name)) return `personalData.${name} is missing`;
  }

  const protectedBytes = canonicalBytes(jwe.protected);
  if (protectedBytes === undefined) return "personalData.protected is not canonical base64url";
  let protectedText: string;
  try {
    protectedText = utf8.decode(protectedBytes);
  } catch {
    return "personalData.protected is not UTF-8";
  }
  const parsed = parseJsonText(protectedText, 1);
  const header = parsed.ok ? parsed.value : undefined;
  if (!isRecord(header)) return "personalData.protected is not a JSON object";
  if (!hasExactly(header, ["enc", "cty"])) {
    return "the protected header must hold exactly enc and cty";
  }
  if (header.enc !== PERSONAL_DATA_ENC)
    return `the protected header's enc must be ${PERSONAL_DATA_ENC}`;
  if (header.cty !== PERSONAL_DATA_CTY)
    return `the protected header's cty must be ${PERSONAL_DATA_CTY}`;

  const iv = canonicalBytes(jwe.iv);
  if (iv === undefined || iv.byteLength !== 12) {
    return "personalData.iv must be 12 bytes of canonical base64url";
  }
  const ciphertext = canonicalBytes(jwe.ciphertext);
  if (ciphertext === undefined) return "personalData.ciphertext is not canonical base64url";
  const tag = canonicalBytes(jwe.tag);
  if (tag === undefined || tag.byteLength !== 16) {
    return "personalData.tag must be 16 bytes of canonical base64url";
  }

  const { recipients } = jwe;
  if (!Array.isArray(recipients) || recipients.length === 0) {
    return "personalData.recipients must be a non-empty array";
  }
  const kids = new Set<string>();
  for (const [i, entry] of recipients.entries()) {
    const at = `personalData.recipients[${i}]`;
    if (!isRecord(entry)) return `${at} is not a JSON object`;
    if (!hasExactly(entry, ["header", "encrypted_key"])) {
      return `${at} must hold exactly header and encrypted_key`;
    }
    const key = canonicalBytes(entry.encrypted_key);
    // A256KW wraps the 32-byte content key into 40 bytes (RFC 3394).
    if (key === undefined || key.byteLength !== 40) {
      return `${at}.encrypted_key must be 40 bytes of canonical base64url`;
    }
    const h = entry.header;
    if (!isRecord(h)) return `${at}.header is not a JSON object`;
    if (!hasExactly(h, ["alg", "kid", "epk"]))
      return `${at}.header must hold exactly alg, kid and epk`;
    if (h.alg !== PERSONAL_DATA_ALG) return `${at}.header.alg must be ${PERSONAL_DATA_ALG}`;
    if (typeof h.kid !== "string" || !B64URL_32_BYTES.test(h.kid)) {
      return `${at}.header.kid must be an RFC 7638 SHA-256 thumbprint`;
    }
    if (kids.has(h.kid)) return `${at}.header.kid repeats the kid of an earlier recipient`;
    kids.add(h.kid);
    const epk = h.epk;
    if (!isRecord(epk) || !hasExactly(epk, ["kty", "crv", "x"])) {
      return `${at}.header.epk must hold exactly kty, crv and x`;
    }
    if (epk.kty !== "OKP" || epk.crv !== "X25519") {
      return `${at}.header.epk must be an OKP key on X25519`;
    }
    if (typeof epk.x !== "string" || !B64URL_32_BYTES.test(epk.x)) {
      return `${at}.header.epk.x must be 32 bytes of canonical base64url`;
    }
  }
  return null;
}

/**
 * Opens `body.personalData` with one of our X25519 private keys: the profile is checked first
 * (`personal_data_undecryptable`), then the entry for one of `ours` is looked for
 * (`personal_data_not_for_us`), then that entry alone is decrypted and its plaintext must be the
 * UTF-8 JSON of an object within the JSON limits (`personal_data_undecryptable`). Whether the
 * object follows schemas/personal-data.v1.json is the caller's check (`personal_data_invalid`).
 */
export async function openPersonalData(
  jwe: unknown,
  ours: PersonalDataKey[],
): Promise<OpenedPersonalData> {
  const undecryptable = (detail: string): OpenedPersonalData => ({
    ok: false,
    code: "personal_data_undecryptable",
    detail,
  });
  const violation = profileViolation(jwe);
  if (violation !== null) return undecryptable(violation);
  const valid = jwe as EncryptedPersonalData;

  const keys = new Map<string, CryptoKey>();
  for (const { kid, key } of ours) if (isX25519PrivateKey(key)) keys.set(kid, key);
  const entry = valid.recipients.find((r) => keys.has(r.header.kid));
  const key = entry === undefined ? undefined : keys.get(entry.header.kid);
  if (entry === undefined || key === undefined) {
    return {
      ok: false,
      code: "personal_data_not_for_us",
      detail: "no recipient entry of the personal data names one of our encryption keys",
    };
  }
  const kid = entry.header.kid;

  const flattened: FlattenedJWE = {
    protected: valid.protected,
    header: entry.header,
    encrypted_key: entry.encrypted_key,
    iv: valid.iv,
    ciphertext: valid.ciphertext,
    tag: valid.tag,
  };
  let plaintext: Uint8Array;
  try {
    ({ plaintext } = await flattenedDecrypt(flattened, key, {
      keyManagementAlgorithms: [PERSONAL_DATA_ALG],
      contentEncryptionAlgorithms: [PERSONAL_DATA_ENC],
    }));
  } catch {
    // jose's reason (unwrap failed, tag mismatch, bad epk) says no more than this, and an
    // oracle telling them apart would help nobody but an attacker.
    return undecryptable("the personal data does not decrypt with our encryption key");
  }

  let text: string;
  try {
    text = utf8.decode(plaintext);
  } catch {
    return undecryptable("the plaintext is not UTF-8");
  }
  const parsed = parseJsonText(text, MAX_JSON_DEPTH);
  if (!parsed.ok) {
    return undecryptable(
      parsed.reason === "too_deep"
        ? `the plaintext nests deeper than ${MAX_JSON_DEPTH} levels`
        : "the plaintext is not JSON",
    );
  }
  if (!isRecord(parsed.value)) return undecryptable("the plaintext is not a JSON object");
  const limits = checkJsonValue(parsed.value, MAX_JSON_DEPTH);
  if (limits !== null) {
    // Not limits.path: it is made of the plaintext's member names.
    return undecryptable(
      limits.kind === "depth"
        ? `the plaintext nests deeper than ${MAX_JSON_DEPTH} levels`
        : "the plaintext holds U+0000 or a lone surrogate",
    );
  }
  return { ok: true, content: parsed.value, kid };
}
