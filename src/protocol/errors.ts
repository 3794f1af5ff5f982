/**
 * The closed set of error codes. Wire codes travel in negative receipts and are stored in
 * quarantine rows; local codes never cross a border: they appear in HTTP problem+json answers,
 * CLI output and the gateway's log (`delivery_failed` only ever in the log).
 * Every code has an entry in docs/errors.md (the problem `type` links to it);
 * tests/unit/error-codes.test.ts keeps this list, schemas/common.v1.json and the doc in step.
 */
export const WIRE_ERROR_CODES = [
  "malformed",
  "jws_header_invalid",
  "sender_unknown",
  "key_unknown",
  "key_not_valid",
  "key_revoked",
  "signature_invalid",
  "envelope_invalid",
  "misaddressed",
  "expired",
  "clock_skew",
  "type_unknown",
  "schema_invalid",
  "duplicate_conflict",
  "message_unknown",
  "digest_mismatch",
  "payload_too_large",
  "processing_failed",
  "personal_data_not_for_us",
  "personal_data_undecryptable",
  "personal_data_invalid",
  "transition_not_allowed",
  "reply_unmatched",
  "handover_record_invalid",
  "handover_record_incomplete",
] as const;
export type WireErrorCode = (typeof WIRE_ERROR_CODES)[number];

export const LOCAL_ERROR_CODES = [
  "unauthorized",
  "not_found",
  "request_invalid",
  "recipient_unknown",
  "config_invalid",
  "key_store_invalid",
  "not_ready",
  /** A submission while the gateway stops (SIGTERM, SIGINT): submit again elsewhere or later. */
  "shutting_down",
  /**
   * The database cannot be reached right now (restarting, failing over, down): retry after the
   * answer's Retry-After. Classified by `isStoreUnavailable` (src/store/database.ts).
   */
  "store_unavailable",
  /**
   * A submit's Idempotency-Key was used before for another request (other body bytes); the
   * message made under it is not this request's.
   */
  "idempotency_key_reused",
  "internal",
  /**
   * A delivery ended without the partner's receipt (no receipt within the retry budget, or the
   * message expired before it was delivered). Logged as `code`; never an HTTP answer, never on
   * the wire.
   */
  "delivery_failed",
] as const;
export type LocalErrorCode = (typeof LOCAL_ERROR_CODES)[number];

export type ErrorCode = WireErrorCode | LocalErrorCode;

export interface ErrorIssue {
  /** JSON pointer into the offending document; never the offending value. */
  path: string;
  message: string;
}

/**
 * The one error type of the gateway. Callers and tests branch on `code`, never on `message`.
 * Messages must never contain personal data: they name fields, not values.
 */
export class LiaisonError extends Error {
  readonly code: ErrorCode;
  readonly issues: ErrorIssue[];

  constructor(
    code: ErrorCode,
    message: string,
    options?: { issues?: ErrorIssue[]; cause?: unknown },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "LiaisonError";
    this.code = code;
    this.issues = options?.issues ?? [];
  }
}

export function isWireErrorCode(code: string): code is WireErrorCode {
  return (WIRE_ERROR_CODES as readonly string[]).includes(code);
}
