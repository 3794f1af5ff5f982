/**
 * The handover record: one JSON payload signed by both countries of a handover, the handing-over
 * (identifying) party first, the receiving (origin) party second, as a JWS in General JSON
 * Serialization (RFC 7515 §7.2.1):
 *
 *   { "payload": B64(record), "signatures": [ { "protected": B64(header), "signature": B64 }, … ] }
 *
 * with exactly these members (no unprotected `header`), and each protected header exactly
 * `{ alg, kid, typ: "liaison-handover-record+jws" }`. Each signature is over
 * ASCII(protected || "." || payload) (RFC 7515 §5.1) with the one shared payload segment.
 *
 * Pure: values in, values out. Which signers a record needs (one, or both parties of the case)
 * and whether the payload matches schemas/handover-record.v1.json are the caller's decisions.
 */
import { FlattenedSign, flattenedVerify } from "jose";
import { LiaisonError } from "./errors.ts";
import { checkJsonValue, MAX_JSON_DEPTH, parseJsonText } from "./json-limits.ts";
import { ALLOWED_ALGS, HANDOVER_RECORD_TYP, type SigningAlg } from "./jws-profile.ts";
import type { KeyResolver, PartyId, SigningKey } from "./types.ts";
import { keyValidityAt } from "./verify-inbound.ts";

export { HANDOVER_RECORD_TYP };

/** One signature of a record: its protected header and its signature, both base64url. */
export interface HandoverSignature {
  protected: string;
  signature: string;
}

/** A handover record as it travels (General JSON Serialization, RFC 7515 §7.2.1). */
export interface HandoverRecord {
  payload: string;
  signatures: HandoverSignature[];
}

export type HandoverRecordVerdict =
  | {
      ok: true;
      payload: Record<string, unknown>;
      /** In signature order: the handing-over party first, the countersigner second. */
      signers: Array<{ partyId: PartyId; kid: string }>;
    }
  | { ok: false; code: "handover_record_invalid"; detail: string };

/** A record carries the handing-over party's signature and, once countersigned, the other's. */
const MAX_SIGNATURES = 2;
const RECORD_MEMBERS = ["payload", "signatures"];
const SIGNATURE_MEMBERS = ["protected", "signature"];
const HEADER_MEMBERS = ["alg", "kid", "typ"];
const BASE64URL = /^[A-Za-z0-9_-]+$/;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function hasExactly(value: Record<string, unknown>, members: readonly string[]): boolean {
  const keys = Object.keys(value);
  return keys.length === members.length && members.every((m) => Object.hasOwn(value, m));
}

/**
 * Lenient decoders ignore the unused low bits of the last base64url character (and padding):
 * only the one canonical spelling of each byte string is accepted, so that one signature never
 * stands for two records.
 */
function isCanonicalBase64url(segment: unknown): segment is string {
  return (
    typeof segment === "string" &&
    BASE64URL.test(segment) &&
    Buffer.from(segment, "base64url").toString("base64url") === segment
  );
}

/** RFC 7515 §4.1.9: typ is compared case-insensitively, with an optional "application/" prefix. */
function normaliseTyp(typ: string): string {
  const lower = typ.toLowerCase();
  return lower.startsWith("application/") ? lower.slice("application/".length) : lower;
}

type Read<T> = { ok: true; value: T } | { ok: false; detail: string };

/** A base64url segment holding UTF-8 JSON, within the depth and string limits of json-limits. */
function decodeJsonSegment(segment: string, what: string): Read<Record<string, unknown>> {
  let text: string;
  try {
    text = decoder.decode(Buffer.from(segment, "base64url"));
  } catch {
    return { ok: false, detail: `${what} is not UTF-8` };
  }
  const parsed = parseJsonText(text, MAX_JSON_DEPTH);
  if (!parsed.ok) {
    return {
      ok: false,
      detail:
        parsed.reason === "too_deep"
          ? `${what} nests deeper than ${MAX_JSON_DEPTH} levels`
          : `${what} is not JSON`,
    };
  }
  if (!isRecord(parsed.value)) return { ok: false, detail: `${what} is not a JSON object` };
  if (checkJsonValue(parsed.value, MAX_JSON_DEPTH) !== null) {
    return { ok: false, detail: `${what} holds U+0000 or a lone surrogate` };
  }
  return { ok: true, value: parsed.value };
}

interface ParsedSignature {
  segments: HandoverSignature;
  alg: SigningAlg;
  kid: string;
}

interface ParsedRecord {
  payloadSegment: string;
  payload: Record<string, unknown>;
  signatures: ParsedSignature[];
}

/** The protected header of signature `n` (1-based, for details), held to the header profile. */
function readHeader(segment: string, n: number): Read<{ alg: SigningAlg; kid: string }> {
  const header = decodeJsonSegment(segment, `signature ${n}: the protected header`);
  if (!header.ok) return header;
  const { alg, kid, typ } = header.value;
  if (!hasExactly(header.value, HEADER_MEMBERS)) {
    return {
      ok: false,
      detail: `signature ${n}: the protected header must hold exactly alg, kid and typ`,
    };
  }
  if (typeof typ !== "string" || normaliseTyp(typ) !== HANDOVER_RECORD_TYP) {
    return { ok: false, detail: `signature ${n}: typ must be "${HANDOVER_RECORD_TYP}"` };
  }
  if (typeof alg !== "string" || !(ALLOWED_ALGS as readonly string[]).includes(alg)) {
    return { ok: false, detail: `signature ${n}: alg must be one of ${ALLOWED_ALGS.join(", ")}` };
  }
  if (typeof kid !== "string" || kid.length === 0) {
    return { ok: false, detail: `signature ${n}: kid is missing` };
  }
  return { ok: true, value: { alg: alg as SigningAlg, kid } };
}

/** Everything about a record that needs no key: its members, segments, payload and headers. */
function readRecord(record: unknown): Read<ParsedRecord> {
  if (!isRecord(record) || !hasExactly(record, RECORD_MEMBERS)) {
    return {
      ok: false,
      detail: "the record must be an object holding exactly payload and signatures",
    };
  }
  const { payload: payloadSegment, signatures } = record;
  if (!isCanonicalBase64url(payloadSegment)) {
    return { ok: false, detail: "payload is not canonical base64url" };
  }
  if (!Array.isArray(signatures) || signatures.length < 1 || signatures.length > MAX_SIGNATURES) {
    return {
      ok: false,
      detail: `signatures must be an array of 1 to ${MAX_SIGNATURES} signatures`,
    };
  }
  const payload = decodeJsonSegment(payloadSegment, "payload");
  if (!payload.ok) return payload;
  const parsed: ParsedSignature[] = [];
  for (const [i, entry] of signatures.entries()) {
    const n = i + 1;
    if (!isRecord(entry) || !hasExactly(entry, SIGNATURE_MEMBERS)) {
      return {
        ok: false,
        detail: `signature ${n} must hold exactly protected and signature (no unprotected header)`,
      };
    }
    if (!isCanonicalBase64url(entry.protected) || !isCanonicalBase64url(entry.signature)) {
      return { ok: false, detail: `signature ${n}: a segment is not canonical base64url` };
    }
    const header = readHeader(entry.protected, n);
    if (!header.ok) return header;
    parsed.push({
      segments: { protected: entry.protected, signature: entry.signature },
      ...header.value,
    });
  }
  return { ok: true, value: { payloadSegment, payload: payload.value, signatures: parsed } };
}

function invalid(detail: string): LiaisonError {
  return new LiaisonError("handover_record_invalid", detail);
}

/** One signature over `payloadBytes`: its protected header and signature segments. */
async function signOnce(
  payloadBytes: Uint8Array,
  key: SigningKey,
): Promise<{ payload: string; sig: HandoverSignature }> {
  const jws = await new FlattenedSign(payloadBytes)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: HANDOVER_RECORD_TYP })
    .sign(key.key);
  if (jws.protected === undefined) throw invalid("the signature has no protected header");
  return { payload: jws.payload, sig: { protected: jws.protected, signature: jws.signature } };
}

/**
 * The handing-over party's record: the payload as UTF-8 JSON, one signature. The payload is held
 * to the limits a verifier applies (a JSON object, MAX_JSON_DEPTH, no U+0000 or lone
 * surrogate), so that no partner is ever handed a record it must refuse.
 */
export async function signHandoverRecord(
  payload: Record<string, unknown>,
  key: SigningKey,
): Promise<HandoverRecord> {
  const text = JSON.stringify(payload);
  const bytes = encoder.encode(text);
  const checked = decodeJsonSegment(Buffer.from(bytes).toString("base64url"), "payload");
  if (!checked.ok) throw invalid(checked.detail);
  const { payload: segment, sig } = await signOnce(bytes, key);
  return { payload: segment, signatures: [sig] };
}

/**
 * The receiving party's countersignature, appended over the exact same payload segment; the
 * first signature is kept byte for byte. Refused when the record is malformed, already holds two
 * signatures, or was signed with this key already. A SigningKey does not name its party, so a
 * second key of the same party is only caught by verifyHandoverRecord ("signed twice"): verify
 * the record you received before you countersign it.
 */
export async function countersignHandoverRecord(
  record: HandoverRecord,
  key: SigningKey,
): Promise<HandoverRecord> {
  const read = readRecord(record);
  if (!read.ok) throw invalid(read.detail);
  const { payloadSegment, signatures } = read.value;
  if (signatures.length >= MAX_SIGNATURES) {
    throw invalid(`the record already holds ${MAX_SIGNATURES} signatures`);
  }
  if (signatures.some((s) => s.kid === key.kid)) {
    throw invalid("the record is already signed with this key");
  }
  const { payload, sig } = await signOnce(Buffer.from(payloadSegment, "base64url"), key);
  // Canonical base64url round-trips, so this holds; checked because it is the whole point.
  if (payload !== payloadSegment) throw invalid("the countersignature would change the payload");
  return { payload: payloadSegment, signatures: [...signatures.map((s) => s.segments), sig] };
}

/**
 * Verifies a handover record: its exact shape, each protected header, each key, and EACH
 * signature on its own (a general-JSON verify that accepts the record when any one signature
 * verifies would let one valid signature carry a forged one). A key must be valid
 * ([validFrom, validUntil)) at `opts.signedBy` — by default `now` — and not revoked by `now`
 * (revocation is checked against the receiver's clock too, as for messages: a thief could
 * backdate). The gateway passes the sentAt of the message that carries the record, which was
 * held to its own clock; see `opts.self` for the receiver's own signatures.
 */
export async function verifyHandoverRecord(
  record: unknown,
  keys: KeyResolver,
  now: Date,
  opts: {
    /**
     * When the record's signatures were made, at the latest: the sentAt of the message that
     * carries it (checked against the receiver's clock). Keys must be valid then (default: now).
     */
    signedBy?: Date;
    /**
     * The receiving party: a signature by one of its own keys is checked for the signature
     * alone, not for the key's validity or revocation — the receiver made it, and the case
     * requires it to be byte for byte the one it logged (a countersigned record that comes back
     * after we rotated or revoked the key that signed it first is still ours).
     */
    self?: PartyId;
  } = {},
): Promise<HandoverRecordVerdict> {
  const fail = (detail: string): HandoverRecordVerdict => ({
    ok: false,
    code: "handover_record_invalid",
    detail,
  });
  const read = readRecord(record);
  if (!read.ok) return fail(read.detail);
  const { payloadSegment, payload, signatures } = read.value;

  const signers: Array<{ partyId: PartyId; kid: string }> = [];
  for (const [i, { segments, alg, kid }] of signatures.entries()) {
    const n = i + 1;
    const key = keys.keyById(kid);
    if (key === undefined) return fail(`signature ${n}: kid names no registered key`);
    if (key.alg !== alg) return fail(`signature ${n}: alg does not match the key`);
    const problem =
      opts.self !== undefined && key.partyId === opts.self
        ? null
        : keyValidityAt(key, opts.signedBy ?? now, now);
    if (problem !== null) {
      return fail(
        problem.code === "key_revoked"
          ? `signature ${n}: the key is revoked`
          : `signature ${n}: the key is not valid when the record was sent`,
      );
    }
    if (signers.some((s) => s.partyId === key.partyId)) {
      return fail(`signature ${n}: its party signed the record already`);
    }
    try {
      await flattenedVerify(
        { payload: payloadSegment, protected: segments.protected, signature: segments.signature },
        key.key,
        { algorithms: [key.alg] },
      );
    } catch {
      return fail(`signature ${n} does not verify with the registered key`);
    }
    signers.push({ partyId: key.partyId, kid: key.kid });
  }
  return { ok: true, payload, signers };
}
