/**
 * Verification of one inbound wire message (a message or a receipt), pure apart from the
 * WebCrypto call: the bytes, the registry cache, the schemas and the time come in; a verdict
 * comes out. The checks run in the order of docs/protocol.md "Verification order"; the first
 * failing check decides the code.
 */
import { compactVerify } from "jose";
import { type SchemaRegistry, underBody } from "../schemas/schema-registry.ts";
import { sha256Hex } from "./digest.ts";
import type { ErrorIssue, WireErrorCode } from "./errors.ts";
import { verifyHandoverRecord } from "./handover-record.ts";
import { checkJsonValue, MAX_JSON_DEPTH, parseJsonText } from "./json-limits.ts";
import {
  ALLOWED_ALGS,
  COMPACT_JWS,
  MESSAGE_TYP,
  RECEIPT_BATCH_TYP,
  RECEIPT_TYP,
} from "./jws-profile.ts";
import { openPersonalData, type PersonalDataKey } from "./personal-data.ts";
import type {
  Envelope,
  KeyResolver,
  PartyId,
  Receipt,
  ReceiptBatch,
  RegisteredKey,
} from "./types.ts";

export interface VerifyContext {
  self: PartyId;
  keys: KeyResolver;
  schemas: SchemaRegistry;
  now: Date;
  /** Tolerated difference between the sender's clock and ours, both ways. */
  clockSkewMs: number;
  maxBytes: number;
  /** Our encryption private keys, old ones included: personal data is decrypted to validate it. */
  decryptionKeys: PersonalDataKey[];
}

interface Verified {
  ok: true;
  jws: string;
  digest: string;
  kid: string;
}
export type VerifiedMessage = Verified & { kind: "message"; envelope: Envelope };
export type VerifiedReceipt = Verified & { kind: "receipt"; receipt: Receipt };
/**
 * A batch receipt that passed steps 1-23, B1 (addressed to us) and B2 (no message id twice);
 * B3 and B4 need the store (docs/protocol.md, Batch receipts).
 */
export type VerifiedReceiptBatch = Verified & { kind: "receipt-batch"; batch: ReceiptBatch };

export interface Rejection {
  ok: false;
  code: WireErrorCode;
  /** Field names and reasons only, never values. */
  detail: string;
  issues: ErrorIssue[];
  digest: string;
  /** A batch receipt is a receipt here: never answered. */
  kind: "message" | "receipt" | "unknown";
  /** The claimed sender, only when it is a registered party: where a negative receipt goes. */
  claimedFrom: PartyId | null;
  /** The claimed message id when the payload could be read. */
  messageId: string | null;
}

export type InboundVerdict = VerifiedMessage | VerifiedReceipt | VerifiedReceiptBatch | Rejection;

const decoder = new TextDecoder("utf-8", { fatal: true });
const HEADER_MEMBERS = new Set(["alg", "kid", "typ"]);

/** RFC 7515 §4.1.9: typ is compared case-insensitively, with an optional "application/" prefix. */
function normaliseTyp(typ: string): string {
  const lower = typ.toLowerCase();
  return lower.startsWith("application/") ? lower.slice("application/".length) : lower;
}
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The segment's JSON value; refused unread when nested deeper than MAX_JSON_DEPTH. */
function decodeSegment(segment: string): ReturnType<typeof parseJsonText> {
  let text: string;
  try {
    text = decoder.decode(Buffer.from(segment, "base64url"));
  } catch {
    return { ok: false, reason: "not_json" };
  }
  return parseJsonText(text, MAX_JSON_DEPTH);
}

/** A message may live at most this long: bounds what a stolen key's backdated message can claim. */
export const MAX_LIFETIME_MS = 366 * 86_400_000;

function isCanonicalBase64url(segment: string): boolean {
  return Buffer.from(segment, "base64url").toString("base64url") === segment;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export async function verifyInbound(
  bytes: Uint8Array,
  ctx: VerifyContext,
): Promise<InboundVerdict> {
  const digest = sha256Hex(bytes);
  let kind: Rejection["kind"] = "unknown";
  let claimedFrom: PartyId | null = null;
  let messageId: string | null = null;
  const reject = (code: WireErrorCode, detail: string, issues: ErrorIssue[] = []): Rejection => ({
    ok: false,
    code,
    detail,
    issues,
    digest,
    kind,
    claimedFrom,
    messageId,
  });

  if (bytes.byteLength > ctx.maxBytes) {
    return reject("payload_too_large", `message exceeds ${ctx.maxBytes} bytes`);
  }
  let jws: string;
  try {
    jws = decoder.decode(bytes);
  } catch {
    return reject("malformed", "bytes are not UTF-8");
  }
  if (!COMPACT_JWS.test(jws)) return reject("malformed", "not a compact JWS");
  // Lenient decoders ignore the unused low bits of the last base64url character, so two byte
  // strings with other digests would carry one signature: only the canonical form is accepted.
  if (!jws.split(".").every(isCanonicalBase64url)) {
    return reject("malformed", "a segment is not canonical base64url");
  }
  const [headerPart = "", payloadPart = ""] = jws.split(".");

  // The depth is measured on the text before it is parsed, so that no nesting can exhaust the
  // stack of anything that walks the value later (this module, ajv, jose, the store).
  const headerJson = decodeSegment(headerPart);
  if (!headerJson.ok) {
    return reject(
      "malformed",
      headerJson.reason === "too_deep"
        ? `protected header nests deeper than ${MAX_JSON_DEPTH} levels`
        : "protected header is not base64url JSON",
    );
  }
  const payloadJson = decodeSegment(payloadPart);
  if (!payloadJson.ok) {
    return reject(
      "malformed",
      payloadJson.reason === "too_deep"
        ? `payload nests deeper than ${MAX_JSON_DEPTH} levels`
        : "payload is not base64url JSON",
    );
  }
  const header = headerJson.value;
  const payload = payloadJson.value;
  if (!isRecord(header)) return reject("malformed", "protected header is not a JSON object");
  if (!isRecord(payload)) return reject("malformed", "payload is not a JSON object");
  // JSON admits U+0000 and unpaired surrogates (as escapes) in strings; PostgreSQL's text and
  // jsonb refuse them, so such a message could never be logged and would come back forever.
  // (No issues: the payload is unverified, and malformed bytes are never answered.)
  if (checkJsonValue(header) !== null || checkJsonValue(payload) !== null) {
    return reject("malformed", "a string holds U+0000 or a lone surrogate");
  }

  const typ = typeof header.typ === "string" ? normaliseTyp(header.typ) : undefined;
  // A batch receipt is a receipt for every rule that tells messages from receipts (it is never
  // answered); only the schema of step 19 and the checks after step 23 differ.
  const batch = typ === RECEIPT_BATCH_TYP;
  if (typ === MESSAGE_TYP) kind = "message";
  else if (typ === RECEIPT_TYP || batch) kind = "receipt";
  if (typeof payload.id === "string" && UUID.test(payload.id)) messageId = payload.id.toLowerCase();
  const from = typeof payload.from === "string" ? payload.from : undefined;
  if (from !== undefined && ctx.keys.hasParty(from)) claimedFrom = from;

  if (kind === "unknown") {
    return reject(
      "jws_header_invalid",
      `typ must be "${MESSAGE_TYP}", "${RECEIPT_TYP}" or "${RECEIPT_BATCH_TYP}"`,
    );
  }
  if (typeof header.alg !== "string" || !(ALLOWED_ALGS as readonly string[]).includes(header.alg)) {
    return reject("jws_header_invalid", `alg must be one of ${ALLOWED_ALGS.join(", ")}`);
  }
  if (typeof header.kid !== "string" || header.kid.length === 0) {
    return reject("jws_header_invalid", "kid is missing");
  }
  const extra = Object.keys(header).filter((k) => !HEADER_MEMBERS.has(k));
  if (extra.length > 0) {
    return reject("jws_header_invalid", "the protected header must hold exactly alg, kid and typ");
  }
  if (from === undefined) return reject("envelope_invalid", "from is missing");
  if (claimedFrom === null) return reject("sender_unknown", "the claimed sender is not registered");

  const key = ctx.keys.keyById(header.kid);
  if (key === undefined || key.partyId !== claimedFrom) {
    return reject("key_unknown", "kid names no key registered for the claimed sender");
  }
  if (key.alg !== header.alg) return reject("jws_header_invalid", "alg does not match the key");

  try {
    await compactVerify(jws, key.key, { algorithms: [key.alg] });
  } catch {
    return reject("signature_invalid", "signature does not verify with the registered key");
  }

  const shape =
    kind === "message"
      ? ctx.schemas.validateEnvelope(payload)
      : batch
        ? ctx.schemas.validateReceiptBatch(payload)
        : ctx.schemas.validateReceipt(payload);
  if (!shape.ok) {
    return reject("envelope_invalid", "payload does not match its schema", shape.issues);
  }

  // RFC 3339 admits a leap second (:60) that Date cannot represent; every time check below
  // would then compare NaN and pass, so an unrepresentable time is refused here.
  const sentAt = new Date(payload.sentAt as string);
  const expiresAtMs = kind === "message" ? Date.parse(payload.expiresAt as string) : 0;
  if (Number.isNaN(sentAt.getTime()) || Number.isNaN(expiresAtMs)) {
    return reject("envelope_invalid", "a time is not representable (leap second?)", [
      {
        path: Number.isNaN(sentAt.getTime()) ? "/sentAt" : "/expiresAt",
        message: "must be a representable date-time",
      },
    ]);
  }
  const keyProblem = keyValidityAt(key, sentAt, ctx.now);
  if (keyProblem !== null) return reject(keyProblem.code, keyProblem.detail);
  if (sentAt.getTime() > ctx.now.getTime() + ctx.clockSkewMs) {
    return reject(
      "clock_skew",
      "sentAt is ahead of the receiver's clock beyond the tolerated skew",
    );
  }

  if (batch) {
    const receiptBatch = payload as unknown as ReceiptBatch;
    if (receiptBatch.to !== ctx.self) {
      return reject("misaddressed", "batch receipt is not addressed to this party");
    }
    const named = new Set<string>();
    for (const [i, entry] of receiptBatch.accepted.entries()) {
      if (named.has(entry.messageId)) {
        return reject("envelope_invalid", "a message id occurs twice in accepted", [
          { path: `/accepted/${i}/messageId`, message: "must not repeat an earlier entry's" },
        ]);
      }
      named.add(entry.messageId);
    }
    return { ok: true, kind: "receipt-batch", batch: receiptBatch, jws, digest, kid: key.kid };
  }

  if (kind === "receipt") {
    const receipt = payload as unknown as Receipt;
    if (receipt.to !== ctx.self)
      return reject("misaddressed", "receipt is not addressed to this party");
    return { ok: true, kind: "receipt", receipt, jws, digest, kid: key.kid };
  }

  const envelope = payload as unknown as Envelope;
  if (envelope.type === "receipt")
    return reject("envelope_invalid", "a receipt must use the receipt typ");
  if (!envelope.to.includes(ctx.self))
    return reject("misaddressed", "message is not addressed to this party");
  const expiresAt = new Date(envelope.expiresAt);
  if (expiresAt.getTime() <= sentAt.getTime()) {
    return reject("envelope_invalid", "expiresAt is not after sentAt", [
      { path: "/expiresAt", message: "must be after sentAt" },
    ]);
  }
  if (expiresAt.getTime() - sentAt.getTime() > MAX_LIFETIME_MS) {
    return reject("envelope_invalid", "expiresAt is more than 366 days after sentAt", [
      { path: "/expiresAt", message: "must be at most 366 days after sentAt" },
    ]);
  }
  if (expiresAt.getTime() + ctx.clockSkewMs < ctx.now.getTime()) {
    return reject("expired", "the message expired before it was received");
  }
  const body = ctx.schemas.validateBody(envelope.type, envelope.schemaVersion, envelope.body);
  if (body === undefined) {
    return reject(
      "type_unknown",
      `type ${envelope.type} v${envelope.schemaVersion} is not supported`,
    );
  }
  if (!body.ok)
    return reject(
      "schema_invalid",
      `body does not match ${envelope.type} v${envelope.schemaVersion}`,
      underBody(body.issues),
    );
  // Personal data: decrypted to check it is ours and valid, then dropped; the JWE is what is
  // kept. Nothing of the plaintext goes into a detail or an issue (ajv's messages name rules).
  if (envelope.body.personalData !== undefined) {
    const opened = await openPersonalData(envelope.body.personalData, ctx.decryptionKeys);
    if (!opened.ok) return reject(opened.code, opened.detail);
    const content = ctx.schemas.validatePersonalData(opened.content);
    if (!content.ok) {
      return reject(
        "personal_data_invalid",
        "the personal data does not match personal-data v1",
        content.issues.map((i) => ({ path: `/personalData${i.path}`, message: i.message })),
      );
    }
  }
  // The handover record: every signature verifies with its registered key; whether the signers
  // are the right parties of the case, and the right number, is the case's rule (src/cases).
  if (envelope.type === "handover.completed") {
    const record = await verifyHandoverRecord(envelope.body.record, ctx.keys, ctx.now, {
      signedBy: sentAt,
      self: ctx.self,
    });
    if (!record.ok) return reject(record.code, record.detail);
    const shape = ctx.schemas.validateHandoverRecord(record.payload);
    if (!shape.ok) {
      return reject(
        "handover_record_invalid",
        "the record's payload does not match handover-record v1",
        shape.issues.map((i) => ({ path: `/body/record/payload${i.path}`, message: i.message })),
      );
    }
  }
  return { ok: true, kind: "message", envelope, jws, digest, kid: key.kid };
}

/**
 * A key verifies messages claimed to be sent inside [validFrom, validUntil), so messages signed
 * before a rotation still verify. A revoked key verifies nothing new once its revocation time
 * has passed, whatever sentAt claims: whoever stole it could backdate sentAt. (Messages logged
 * before the revocation stay logged, and their retries are still recognised.)
 */
export function keyValidityAt(
  key: RegisteredKey,
  at: Date,
  now: Date,
): { code: "key_not_valid" | "key_revoked"; detail: string } | null {
  const t = at.getTime();
  if (
    key.revokedAt !== null &&
    (t >= key.revokedAt.getTime() || now.getTime() >= key.revokedAt.getTime())
  ) {
    return { code: "key_revoked", detail: "the key is revoked" };
  }
  if (t < key.validFrom.getTime() || (key.validUntil !== null && t >= key.validUntil.getTime())) {
    return { code: "key_not_valid", detail: "the key is not valid at the claimed sentAt" };
  }
  return null;
}
