/**
 * POST /v1/messages: a local user submits a message. The request's shape is checked here; the
 * body is then checked by the submitter against the schema of its type (schemas/).
 */
import { IDEMPOTENCY_KEY_HEADER, type SubmitRequest } from "../../delivery/submitter.ts";
import { requestFingerprint } from "../../protocol/digest.ts";
import { PARTY_ID_PATTERN } from "../../protocol/identifiers.ts";
import type { Envelope } from "../../protocol/types.ts";
import { shared } from "../api-schemas.ts";
import { problemResponses, STORE_UNAVAILABLE } from "../problem.ts";
import { defineRoute, jsonResponse } from "../route.ts";

export const SUBMIT_REQUEST_SCHEMA = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  type: "object",
  additionalProperties: false,
  required: ["type", "to", "caseRef", "body"],
  properties: {
    type: { type: "string", pattern: "^[a-z][a-z-]*(?:\\.[a-z-]+)+$", maxLength: 64 },
    schemaVersion: { type: "integer", minimum: 1 },
    to: {
      oneOf: [
        { type: "string", pattern: PARTY_ID_PATTERN },
        {
          type: "array",
          items: { type: "string", pattern: PARTY_ID_PATTERN },
          minItems: 1,
          maxItems: 64,
          uniqueItems: true,
        },
      ],
    },
    caseRef: { type: "string", pattern: "^[A-Z]{2,3}-[A-Z0-9]+(?:-[A-Z0-9]+)*$", maxLength: 64 },
    inReplyTo: {
      type: "string",
      pattern: "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    },
    handling: {
      type: "object",
      additionalProperties: false,
      required: ["classification", "onwardDissemination"],
      properties: {
        classification: { enum: ["official", "restricted", "confidential", "secret"] },
        onwardDissemination: { enum: ["forbidden", "with-originator-consent", "allowed"] },
      },
    },
    body: { type: "object" },
    personalData: {
      type: "object",
      description:
        "Personal data of the person the case is about, in clear (schemas/personal-data.v1.json): the gateway validates it, encrypts it to every recipient and to itself, and puts the JWE into body.personalData. Only for types whose body has personalData. Alternatively, a local system that encrypts itself sets body.personalData to the JWE (docs/protocol.md, Personal data), with an entry for every addressee and for this gateway, and leaves this member out.",
    },
    handoverRecord: {
      type: "object",
      description:
        "For the first handover.completed of a case: the handover record's payload (schemas/handover-record.v1.json), which the gateway signs into body.record. Absent when answering the other side's signed record: the gateway countersigns the record named by inReplyTo.",
    },
  },
} as const;

export const postMessage = defineRoute({
  operationId: "postMessage",
  method: "post",
  path: "/v1/messages",
  auth: "user",
  tags: ["messages"],
  summary: "Submit a message",
  description:
    "Checks the request (type known, body valid against the schema of its type, recipients registered), builds the envelope, signs it and logs it with one delivery per recipient; the dispatcher publishes it. `schemaVersion` defaults to the newest known version of `type`, `handling` to restricted / forbidden; `to` is a party id or an array of them. Follow the message at `statusUrl`.",
  request: {
    headers: {
      [IDEMPOTENCY_KEY_HEADER]: {
        description:
          "Optional; 1-128 visible ASCII characters (%x21-7E), compared exactly (case-sensitive); a new random value (a UUID) per message, never made from the message's content (the key is stored in the clear). The first request with a key that is accepted makes the message, and the key stays with it for as long as the message is logged. The same key again with the same request (the same body bytes, compared by an HMAC keyed by the API token) stores and sends nothing and is answered as the first was (202, the same id and members, `Idempotency-Replayed: true`), also while the first is still being committed; with another body, `409 idempotency_key_reused`. Send one with every submit, and send it again with the same bytes after a 503, a 500 or an answer that never came: the message is then made once. A request without a key that is sent again after such an answer may make a second message (a new id) with the same content.",
        schema: { type: "string", pattern: "^[\\x21-\\x7E]{1,128}$" },
        invalid: {
          code: "request_invalid",
          detail: `the ${IDEMPOTENCY_KEY_HEADER} header must be 1-128 visible ASCII characters`,
          issue: "must be 1-128 characters from %x21-7E (visible ASCII, no spaces)",
        },
      },
    },
    body: {
      description: "The message to send: `{type, to, caseRef, body}` and optional members.",
      contentType: "application/json",
      schema: SUBMIT_REQUEST_SCHEMA,
      validation: { by: "schema", invalidDetail: "the request does not match the submit schema" },
      maxBytes: (deps) => deps.maxRequestBytes,
      tooLarge: (maxBytes) => `request body exceeds ${maxBytes} bytes`,
    },
  },
  responses: {
    202: jsonResponse(
      "Queued: logged, signed, and waiting for the dispatcher.",
      {
        type: "object",
        additionalProperties: false,
        required: ["id", "status", "statusUrl", "sentAt", "expiresAt"],
        properties: {
          id: shared("common/v1", "/$defs/messageId", "the message id"),
          status: { const: "queued" },
          statusUrl: { type: "string", description: "/v1/messages/{id}" },
          sentAt: shared("common/v1", "/$defs/timestamp", "the envelope's sentAt"),
          expiresAt: shared("common/v1", "/$defs/timestamp", "the envelope's expiresAt"),
        },
      },
      {
        Location: { description: "the statusUrl", schema: { type: "string" } },
        "Idempotency-Replayed": {
          description:
            "`true` when the answer is that of an earlier request with the same Idempotency-Key and body: nothing was made now. Absent otherwise.",
          schema: { const: "true" },
        },
      },
    ),
    ...problemResponses({
      request_invalid:
        "the request is not application/json, not UTF-8, not JSON, nested deeper than 32 levels, does not match the submit schema, or is addressed to this gateway itself; or its Idempotency-Key header is not 1-128 visible ASCII characters (issue path `Idempotency-Key`)",
      idempotency_key_reused:
        "the Idempotency-Key was used before for another request (other body bytes): nothing was made; use a new key for a new message",
      payload_too_large:
        "the request body exceeds LIAISON_MAX_MESSAGE_BYTES, or the signed message would (base64url makes it about a third larger than the body)",
      type_unknown: "no schema for this type (and version)",
      schema_invalid:
        "the body does not match the schema of its type, or a string in it holds U+0000 or a lone surrogate (which partners refuse); issues point into /body",
      recipient_unknown:
        "a recipient is not a registered partner, or (personal data) has no encryption key valid now",
      key_store_invalid:
        "no signing (or, for personal data, encryption) key of this gateway is valid now",
      personal_data_invalid:
        "personalData (or, encrypted by the caller, body.personalData once decrypted) does not match schemas/personal-data.v1.json; issues point into /personalData",
      personal_data_not_for_us:
        "body.personalData, encrypted by the caller, has no recipient entry for this gateway, or none for an addressee's current encryption key (issue /to/<i>)",
      personal_data_undecryptable:
        "body.personalData, encrypted by the caller, breaks the JWE profile or does not decrypt with this gateway's key",
      transition_not_allowed:
        "a step of a victim's case that the case does not allow now (state, sender or addressee); see GET /v1/cases/{ref}",
      reply_unmatched: "a reply that does not name the case's open request in inReplyTo",
      handover_record_invalid:
        "handoverRecord does not match schemas/handover-record.v1.json, or the record does not fit the case",
      shutting_down:
        "the gateway is stopping (SIGTERM, SIGINT) and takes no new submissions; submit again to another replica, or once it is back",
      internal: "an unexpected error; see the gateway's log",
      store_unavailable: STORE_UNAVAILABLE,
    }),
  },
  async handler(c, input, { deps }) {
    const request = input.body as SubmitRequest;
    const key = input.headers[IDEMPOTENCY_KEY_HEADER];
    let envelope: Envelope;
    if (key === undefined) {
      envelope = await deps.submitter.submit(request);
    } else {
      // "The same request" is the same body bytes, as received. Kept as an HMAC under the API
      // token, never in the database, not a plain hash: the bytes may hold personal data.
      const requestDigest = requestFingerprint(deps.apiToken, input.bodyBytes ?? new Uint8Array());
      const submitted = await deps.submitter.submitWithKey(request, { key, requestDigest });
      envelope = submitted.envelope;
      if (submitted.replayed) c.header("idempotency-replayed", "true");
    }
    const statusUrl = `/v1/messages/${envelope.id}`;
    c.header("location", statusUrl);
    return c.json(
      {
        id: envelope.id,
        status: "queued",
        statusUrl,
        sentAt: envelope.sentAt,
        expiresAt: envelope.expiresAt,
      },
      202,
    );
  },
});
