/**
 * The shapes the HTTP API answers with, shared by several routes (OpenAPI `components.schemas`).
 * They are defined here, beside the routes, because the API's objects are not the protocol's:
 * the protocol's own definitions (party id, message id, timestamps, error codes, the receipt's
 * errors) are reused from `schemas/` by `$ref` to their `$id`, and openapi.ts copies what they
 * name into the document so that every reader of it can resolve them.
 *
 * Objects the gateway builds with a fixed set of members are closed (`additionalProperties:
 * false`), so that an answer drifting from its documentation fails the tests.
 */

import { ALLOWED_ALGS } from "../protocol/jws-profile.ts";
import { PERSONAL_DATA_ALG } from "../protocol/personal-data.ts";
import { SCHEMA_ID_BASE } from "../schemas/schema-registry.ts";
import { ALERT_KINDS, DELIVERY_STATUSES } from "../store/schema.ts";
import type { JsonSchema } from "./route.ts";

/** A definition of `schemas/<file>` by JSON pointer, e.g. shared("common/v1", "/$defs/partyId"). */
export function shared(file: string, pointer: string, description?: string): JsonSchema {
  return {
    ...(description === undefined ? {} : { description }),
    $ref: `${SCHEMA_ID_BASE}${file}.json#${pointer}`,
  };
}

/** One of the components below (openapi.ts refuses a name that is not one). */
export function ref(name: string): JsonSchema {
  return { $ref: `#/components/schemas/${name}` };
}

const partyId = (description?: string) => shared("common/v1", "/$defs/partyId", description);
const messageId = (description?: string) => shared("common/v1", "/$defs/messageId", description);
const timestamp = (description: string) =>
  shared("common/v1", "/$defs/timestamp", `${description} (UTC, milliseconds)`);
const nullable = (schema: JsonSchema, description: string): JsonSchema => ({
  description,
  anyOf: [schema, { type: "null" }],
});
const sha256 = (description: string): JsonSchema => ({
  description,
  type: "string",
  pattern: "^[0-9a-f]{64}$",
});
const compactJws = (description: string): JsonSchema => ({
  description,
  type: "string",
  pattern: "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$",
});

/** `optional`: members the object may leave out. */
const closed = (
  properties: Record<string, JsonSchema>,
  description?: string,
  optional: Record<string, JsonSchema> = {},
): JsonSchema => ({
  type: "object",
  ...(description === undefined ? {} : { description }),
  additionalProperties: false,
  required: Object.keys(properties),
  properties: { ...properties, ...optional },
});

const MESSAGE_SUMMARY: Record<string, JsonSchema> = {
  id: messageId("the message id (lower case)"),
  direction: {
    description: "`outbound`: we sent it; `inbound`: we received it",
    enum: ["inbound", "outbound"],
  },
  type: shared("envelope/v1", "/properties/type", "the message type, e.g. case.notice"),
  schemaVersion: shared(
    "envelope/v1",
    "/properties/schemaVersion",
    "the body schema's major version",
  ),
  from: partyId("the sender"),
  to: shared("envelope/v1", "/properties/to", "the recipients"),
  caseRef: shared("common/v1", "/$defs/caseRef", "the case reference"),
  inReplyTo: nullable(messageId(), "the id of the message this one answers, or null"),
  sentAt: timestamp("the envelope's sentAt"),
  expiresAt: timestamp("the envelope's expiresAt"),
  classification: shared(
    "envelope/v1",
    "/properties/handling/properties/classification",
    "the envelope's handling.classification",
  ),
  loggedAt: timestamp("when this gateway logged the message"),
};

export const API_SCHEMAS = {
  Party: closed(
    {
      id: partyId(),
      name: { type: "string" },
      country: { type: "string", description: "ISO 3166-1 alpha-2, or INT" },
      kind: { type: "string", description: "e.g. border-police-liaison-office" },
      inboundSubject: { type: "string", description: "the NATS subject the party receives on" },
    },
    "A party: one agency office with a gateway.",
    {
      natsDomain: {
        type: "string",
        pattern: "^[A-Za-z0-9_-]{1,32}$",
        description:
          "the JetStream domain of the party's own nats-server when its country is federated (docs/protocol.md, Federation); absent: it receives by direct publish to inboundSubject",
      },
      receiptBatches: {
        type: "boolean",
        description:
          "the party accepts batch receipts: one signed receipt answering several accepted messages (docs/protocol.md, Batch receipts); absent: false",
      },
    },
  ),
  PublicKey: {
    type: "object",
    description:
      "A public key as a JWK (RFC 7517) with its validity as extra members (RFC 3339), which JOSE libraries ignore: a signing key (`use: sig`, EdDSA or ES256) or an encryption key for personal data (`use: enc`, X25519, `ECDH-ES+A256KW`). The kid is the key's RFC 7638 SHA-256 thumbprint.",
    additionalProperties: false,
    required: ["kty", "kid", "alg", "use", "validFrom"],
    properties: {
      kty: { type: "string" },
      crv: { type: "string" },
      x: { type: "string" },
      y: { type: "string" },
      n: { type: "string" },
      e: { type: "string" },
      kid: { type: "string" },
      alg: { enum: [...ALLOWED_ALGS, PERSONAL_DATA_ALG] },
      use: { enum: ["sig", "enc"] },
      validFrom: timestamp("the key is valid from"),
      validUntil: timestamp("the key is valid until (absent: no end)"),
      revokedAt: timestamp("the key was revoked at (absent: not revoked)"),
    },
  },
  PartyDocument: closed(
    {
      party: ref("Party"),
      keys: { type: "array", items: ref("PublicKey") },
    },
    "A party document: the JWK Set (RFC 7517 §5) a gateway publishes, with its `party`.",
  ),
  MessageSummary: closed(MESSAGE_SUMMARY, "A message of the log."),
  Delivery: closed(
    {
      recipient: partyId(),
      status: { enum: [...DELIVERY_STATUSES] },
      attempts: { type: "integer", minimum: 0 },
      lastError: { type: ["string", "null"], description: "why the last attempt failed" },
      receiptId: nullable(
        messageId(),
        "the recipient's receipt, once it arrived (a batch receipt's own id when one answered it)",
      ),
      updatedAt: timestamp("last change"),
    },
    "One recipient of an outbound message.",
  ),
  Receipt: closed(
    {
      id: messageId("the receipt's id (of a batch receipt: the batch's id)"),
      from: partyId("the party that issued the receipt"),
      to: partyId("the party the receipt answers"),
      status: { enum: ["accepted", "rejected"] },
      errors: shared("receipt/v1", "/properties/errors", "why the message was rejected"),
      jws: compactJws(
        "the receipt's exact compact JWS (of a batch receipt: the batch's, which accepts this message among others)",
      ),
      digest: sha256("SHA-256 of the bytes of `jws`"),
      messageDigest: sha256("the digest of the message bytes the receipt names"),
    },
    "A signed receipt, or this message's entry of a batch receipt (docs/protocol.md, Batch receipts): always accepted, shown with the batch's id and bytes.",
  ),
  MessageDetail: closed(
    {
      ...MESSAGE_SUMMARY,
      status: {
        description:
          "outbound: the least advanced of its deliveries, in the order queued, sent, failed, rejected, delivered (delivered only when every delivery is); inbound: accepted",
        enum: ["queued", "sent", "failed", "rejected", "delivered", "accepted"],
      },
      deliveries: {
        description: "outbound: one per recipient, by recipient; inbound: empty",
        type: "array",
        items: ref("Delivery"),
      },
      receipts: {
        description:
          "outbound: the partners' receipts naming this message's digest; inbound: every receipt we issued that names this id, oldest first (receipts for copies under another signature encoding, negative receipts for rejected bytes claiming this id such as duplicate_conflict, and receipts for another sender's message with the same id: compare `to` and `messageDigest`)",
        type: "array",
        items: ref("Receipt"),
      },
      jws: compactJws("the message's exact compact JWS, as published or received"),
      digest: sha256("SHA-256 of the bytes of `jws`, the value a receipt must name"),
    },
    "One message with its deliveries and receipts.",
  ),
  QuarantineItem: closed(
    {
      seq: { type: "integer", minimum: 1 },
      receivedAt: timestamp("when the bytes arrived"),
      subject: { type: "string", description: "the NATS subject they arrived on" },
      code: shared("common/v1", "/$defs/errorCode", "why they were not accepted"),
      detail: { type: "string" },
      issues: {
        type: "array",
        description: "JSON pointers into the payload, with the rule broken",
        items: closed({ path: { type: "string" }, message: { type: "string" } }),
      },
      kind: {
        enum: ["message", "receipt", "unknown"],
        description:
          "what the bytes claim to be (their JWS typ): a message, a receipt (a batch receipt included), or unknown (no known typ could be read, or processing failed)",
      },
      claimedFrom: {
        type: ["string", "null"],
        description: "the sender the bytes claim (not verified)",
      },
      messageId: {
        type: ["string", "null"],
        description: "the message id the bytes claim (not verified)",
      },
      digest: sha256("SHA-256 of the exact bytes"),
      bytes: { type: "integer", minimum: 0, description: "their size" },
      receiptId: nullable(messageId(), "the negative receipt answering them, if one was sent"),
    },
    "Inbound bytes that were not accepted, once per distinct byte string.",
  ),
  Alert: closed(
    {
      id: { type: "integer", minimum: 1 },
      kind: {
        enum: [...ALERT_KINDS],
        description:
          "`delivery_failed`: deliveries to the partner failed (no receipt within the retry budget, or expired) and none got a receipt since",
      },
      partner: partyId("the partner the failed deliveries were for"),
      active: { type: "boolean", description: "true until the alert is resolved" },
      since: timestamp("the first failure of the episode"),
      lastFailureAt: timestamp("the latest failure of the episode"),
      count: { type: "integer", minimum: 1, description: "failed deliveries in the episode" },
      resolvedAt: nullable(
        shared("common/v1", "/$defs/timestamp"),
        "when a later delivery to the partner closed with its receipt; null while active",
      ),
    },
    "An episode of failed deliveries to one partner; at most one active per kind and partner.",
  ),
} satisfies Record<string, JsonSchema>;
