/**
 * POST /v1/partners: registers or updates a partner from its party document (the JWK Set it
 * publishes), at run time. Operator token only: it decides whose keys are trusted and where our
 * messages go.
 */
import { LiaisonError } from "../../protocol/errors.ts";
import { parsePartyDocument } from "../../registry/party-document.ts";
import { ref, shared } from "../api-schemas.ts";
import { problemResponses, STORE_UNAVAILABLE } from "../problem.ts";
import { defineRoute, jsonResponse } from "../route.ts";

const MAX_PARTY_DOCUMENT = 64 * 1024;

/** What parsePartyDocument accepts at most; it checks much more (see the route's description). */
const PARTY_DOCUMENT_REQUEST = {
  type: "object",
  required: ["party", "keys"],
  properties: {
    party: {
      type: "object",
      required: ["id", "name", "country", "kind", "inboundSubject"],
      properties: {
        id: shared("common/v1", "/$defs/partyId"),
        name: { type: "string", minLength: 1 },
        country: {
          type: "string",
          description: "the party id's country prefix (ISO 3166-1 alpha-2, or INT)",
          minLength: 1,
        },
        kind: { type: "string", minLength: 1 },
        inboundSubject: {
          type: "string",
          description: "a literal NATS subject (no wildcards or spaces)",
          minLength: 1,
        },
        natsDomain: {
          type: "string",
          description:
            "the JetStream domain of the party's own nats-server, when its country is federated (letters, digits, _ or -, up to 32)",
          minLength: 1,
        },
        receiptBatches: {
          type: "boolean",
          description:
            "the party accepts batch receipts (docs/protocol.md, Batch receipts): the accepted messages of one inbound batch from it are answered by one signed batch receipt of at most 65,536 bytes instead of one receipt each; absent: false. Registering the document again updates it.",
        },
      },
    },
    keys: {
      type: "array",
      description:
        'Public JWKs with `kid` (the RFC 7638 SHA-256 thumbprint), `alg` and `validFrom`, optional `validUntil` and `revokedAt` (RFC 3339 with a zone): signing keys (`use: "sig"` or no `use`) and encryption keys (`use: "enc"`, X25519, `ECDH-ES+A256KW`), at least one signing key.',
      minItems: 1,
      maxItems: 64,
      items: { type: "object" },
    },
  },
};

export const postPartner = defineRoute({
  operationId: "postPartner",
  method: "post",
  path: "/v1/partners",
  auth: "admin",
  tags: ["partners"],
  summary: "Register or update a partner",
  description:
    "**Operator token** (LIAISON_ADMIN_TOKEN). Registers or updates a partner from its party document (docs/protocol.md, registration is explicit), a JSON body of at most 64 KiB, nested at most 32 levels deep. Every kid must be the thumbprint of its key, no private key may be present, no string may hold U+0000 or a lone surrogate, every time must lie in the years 0001 to 9999 (UTC), validUntil must follow validFrom, and every key must import for its alg. Party and keys are stored in one transaction: a refused document registers nothing. Updating a registered key can only set or bring forward its revokedAt and validUntil, never lift or postpone them. This gateway's own keys come from its key directory, never from here.",
  request: {
    body: {
      description: "The partner's party document.",
      contentType: "application/json",
      schema: PARTY_DOCUMENT_REQUEST,
      validation: { by: "handler" },
      maxBytes: () => MAX_PARTY_DOCUMENT,
      tooLarge: () => "a party document is at most 64 KiB",
    },
  },
  responses: {
    201: jsonResponse(
      "Registered (also for an update); `kids` lists the document's keys, signing and encryption.",
      {
        type: "object",
        additionalProperties: false,
        required: ["party", "kids"],
        properties: { party: ref("Party"), kids: { type: "array", items: { type: "string" } } },
      },
    ),
    ...problemResponses({
      request_invalid:
        "the body is not application/json, not UTF-8, not JSON, nested deeper than 32 levels, not a valid party document, or this gateway's own",
      payload_too_large: "the body exceeds 64 KiB",
      store_unavailable: STORE_UNAVAILABLE,
    }),
  },
  async handler(c, input, { deps }) {
    const { party, keys } = await parsePartyDocument(input.body);
    if (party.id === deps.self.id) {
      throw new LiaisonError(
        "request_invalid",
        "this gateway's own keys come from its key directory",
      );
    }
    await deps.registry.add(party, keys);
    deps.log.info({ partyId: party.id, keys: keys.length }, "partner registered");
    return c.json({ party, kids: keys.map((k) => k.kid) }, 201);
  },
});
