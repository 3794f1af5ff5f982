/** GET /.well-known/jwks.json: our party document, for partners. */
import { buildPartyDocument } from "../../registry/party-document.ts";
import { ref } from "../api-schemas.ts";
import { defineRoute, jsonResponse } from "../route.ts";

export const getJwks = defineRoute({
  operationId: "getJwks",
  method: "get",
  path: "/.well-known/jwks.json",
  auth: "none",
  tags: ["partners"],
  summary: "This gateway's party document",
  description:
    "Where to reach us and all our public keys, old and revoked ones included, with their validFrom, validUntil and revokedAt, as in the key directory, which the gateway re-reads every 30 s. Partners register us from it (`liaison partners add`, or their POST /v1/partners).",
  responses: {
    200: jsonResponse("The party document.", ref("PartyDocument")),
  },
  handler: (c, _input, { deps }) =>
    c.json(buildPartyDocument(deps.self, deps.keyring.publicKeys())),
});
