/**
 * RFC 9457 problem details: every error answer of the HTTP API is `application/problem+json`
 * with a stable `code` (the same closed set as receipts and quarantine) and a `type` linking to
 * its entry in docs/errors.md. `detail` names fields and reasons, never submitted values.
 */
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { ErrorCode, ErrorIssue } from "../protocol/errors.ts";
import type { JsonSchema, ResponseDeclaration } from "./route.ts";

/** Served by the gateway itself (GET /docs/errors.md), so the link resolves against any gateway. */
export const ERRORS_DOC = "/docs/errors.md";

const STATUS: Record<ErrorCode, ContentfulStatusCode> = {
  unauthorized: 401,
  not_found: 404,
  request_invalid: 400,
  recipient_unknown: 422,
  type_unknown: 422,
  schema_invalid: 422,
  payload_too_large: 413,
  not_ready: 503,
  shutting_down: 503,
  store_unavailable: 503,
  idempotency_key_reused: 409,
  config_invalid: 500,
  key_store_invalid: 500,
  internal: 500,
  // Only ever in the gateway's log (a delivery that ended without a receipt); never served.
  delivery_failed: 502,
  malformed: 400,
  jws_header_invalid: 400,
  sender_unknown: 422,
  key_unknown: 422,
  key_not_valid: 422,
  key_revoked: 422,
  signature_invalid: 422,
  envelope_invalid: 422,
  misaddressed: 422,
  expired: 422,
  clock_skew: 422,
  duplicate_conflict: 409,
  message_unknown: 404,
  // Only ever in the quarantine (bytes that failed processing on every delivery); never served.
  processing_failed: 500,
  digest_mismatch: 422,
  personal_data_not_for_us: 422,
  personal_data_undecryptable: 422,
  personal_data_invalid: 422,
  transition_not_allowed: 409,
  reply_unmatched: 409,
  handover_record_invalid: 422,
  handover_record_incomplete: 422,
};

const TITLES: Partial<Record<ErrorCode, string>> = {
  unauthorized: "Missing or wrong bearer token",
  not_found: "No such resource",
  request_invalid: "The request is not valid",
  recipient_unknown: "Unknown recipient",
  type_unknown: "Unsupported message type",
  schema_invalid: "The body does not match its schema",
  payload_too_large: "The request is too large",
  not_ready: "The gateway is not ready",
  shutting_down: "The gateway is shutting down",
  store_unavailable: "The database is unavailable",
  idempotency_key_reused: "The Idempotency-Key was used for another request",
  internal: "Internal error",
  personal_data_invalid: "The personal data does not match its schema",
  transition_not_allowed: "The case does not allow this step now",
  reply_unmatched: "The message answers nothing the case awaits",
};

/**
 * Codes of a transient condition: their answers carry `Retry-After` (seconds), when to try the
 * same request again.
 */
export const RETRY_AFTER_SECONDS: Partial<Record<ErrorCode, number>> = {
  // A PostgreSQL restart or failover takes seconds; the pool reconnects within 1 s of its end.
  store_unavailable: 5,
};

export function problem(
  c: Context,
  code: ErrorCode,
  detail: string,
  issues: ErrorIssue[] = [],
): Response {
  const status = STATUS[code];
  const retryAfter = RETRY_AFTER_SECONDS[code];
  const body = {
    type: `${ERRORS_DOC}#${code}`,
    title: TITLES[code] ?? code,
    status,
    code,
    detail,
    instance: c.req.path,
    ...(issues.length > 0 ? { issues } : {}),
  };
  return c.newResponse(JSON.stringify(body), status, {
    "content-type": "application/problem+json",
    ...(retryAfter === undefined ? {} : { "retry-after": String(retryAfter) }),
  });
}

/** The shape of every problem answer (OpenAPI component `Problem`). */
export const PROBLEM_SCHEMA: JsonSchema = {
  type: "object",
  description:
    "RFC 9457 problem details. Branch on `code`; `detail` names fields and reasons, never submitted values.",
  additionalProperties: false,
  required: ["type", "title", "status", "code", "detail", "instance"],
  properties: {
    type: {
      type: "string",
      description: `${ERRORS_DOC}#<code>: the code's entry in the error documentation`,
      pattern: `^${ERRORS_DOC.replaceAll(".", "\\.")}#[a-z_]+$`,
    },
    title: { type: "string" },
    status: { type: "integer", minimum: 400, maximum: 599 },
    // Every code the API can answer with: not config_invalid (the gateway does not run),
    // delivery_failed (only ever logged) nor processing_failed (only ever in the quarantine).
    code: {
      type: "string",
      enum: Object.keys(STATUS).filter(
        (c) => !["config_invalid", "delivery_failed", "processing_failed"].includes(c),
      ),
    },
    detail: { type: "string" },
    instance: { type: "string", description: "the request path" },
    issues: {
      type: "array",
      minItems: 1,
      items: {
        type: "object",
        additionalProperties: false,
        required: ["path", "message"],
        properties: {
          path: { type: "string", description: "JSON pointer (or parameter name)" },
          message: { type: "string" },
        },
      },
    },
  },
};

/** What `store_unavailable` means on every route that reads or writes the database. */
export const STORE_UNAVAILABLE =
  "the database cannot be reached right now (restarting, failing over, down): try the same request again after Retry-After seconds";

/**
 * Problem responses of a route, one per status: each code with what it means there. The codes
 * of one status are listed in its schema, so an answer with another code is documentation drift.
 */
export function problemResponses(
  meanings: Partial<Record<ErrorCode, string>>,
): Record<number, ResponseDeclaration> {
  const byStatus = new Map<number, Array<[ErrorCode, string]>>();
  for (const [code, meaning] of Object.entries(meanings) as Array<[ErrorCode, string]>) {
    const status = STATUS[code];
    byStatus.set(status, [...(byStatus.get(status) ?? []), [code, meaning]]);
  }
  const responses: Record<number, ResponseDeclaration> = {};
  for (const [status, entries] of byStatus) {
    const retrying = entries.filter(([code]) => RETRY_AFTER_SECONDS[code] !== undefined);
    responses[status] = {
      description: entries.map(([code, meaning]) => `\`${code}\`: ${meaning}`).join("; "),
      contentType: "application/problem+json",
      ...(retrying.length === 0
        ? {}
        : {
            headers: {
              "Retry-After": {
                description: `seconds after which the same request may be tried again (with ${retrying.map(([code]) => `\`${code}\``).join(", ")})`,
                schema: { type: "string", pattern: "^[0-9]+$" },
              },
            },
          }),
      schema: {
        type: "object",
        allOf: [{ $ref: "#/components/schemas/Problem" }],
        properties: {
          status: { const: status },
          code: { enum: entries.map(([code]) => code) },
        },
      },
    };
  }
  return responses;
}
