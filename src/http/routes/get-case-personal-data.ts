/**
 * GET /v1/cases/:ref/personal-data: the personal data of a case, decrypted now, on request. It
 * is its own route so that it can be restricted and audited on its own: every call is logged
 * (case reference and message ids, never the data).
 */
import { LiaisonError } from "../../protocol/errors.ts";
import { openPersonalData } from "../../protocol/personal-data.ts";
import { shared } from "../api-schemas.ts";
import { problemResponses, STORE_UNAVAILABLE } from "../problem.ts";
import { defineRoute, jsonResponse } from "../route.ts";
import { CASE_REF_PARAM } from "./get-case.ts";

export const getCasePersonalData = defineRoute({
  operationId: "getCasePersonalData",
  method: "get",
  path: "/v1/cases/:ref/personal-data",
  auth: "user",
  tags: ["cases"],
  summary: "The personal data of a case, decrypted",
  description:
    "Every message of the case that carries personal data, in the fold's order, with the content decrypted with this gateway's encryption keys (schemas/personal-data.v1.json). Messages are logged encrypted; this route is the only place the gateway decrypts them for a reader, and each call is written to the gateway's log (case reference, message ids, no content). A message that cannot be decrypted is listed with `error`.",
  request: { params: { ref: CASE_REF_PARAM } },
  responses: {
    200: jsonResponse("The personal data.", {
      type: "object",
      additionalProperties: false,
      required: ["caseRef", "items"],
      properties: {
        caseRef: shared("common/v1", "/$defs/caseRef", "the case reference"),
        items: {
          type: "array",
          items: {
            type: "object",
            additionalProperties: false,
            required: ["messageId", "type", "from", "sentAt"],
            properties: {
              messageId: shared("common/v1", "/$defs/messageId", "the message"),
              type: { type: "string" },
              from: shared("common/v1", "/$defs/partyId", "its sender"),
              sentAt: { type: "string", format: "date-time" },
              personalData: shared("personal-data/v1", "", "the decrypted content"),
              error: { type: "string", description: "the error code when it does not decrypt" },
            },
          },
        },
      },
    }),
    ...problemResponses({
      not_found: "no victim.identified opened a case with this reference",
      store_unavailable: STORE_UNAVAILABLE,
    }),
  },
  async handler(c, input, { deps }) {
    const ref = input.params.ref ?? "";
    const file = await deps.caseFiles.read(ref);
    if (file === null) throw new LiaisonError("not_found", "no case with this reference");
    const keys = deps.caseKeys.decryptionKeys();
    const items = [];
    for (const { message } of file.messages) {
      if (message.body.personalData === undefined) continue;
      const opened = await openPersonalData(message.body.personalData, keys);
      items.push({
        messageId: message.id,
        type: message.type,
        from: message.from,
        sentAt: new Date(message.sentAt).toISOString(),
        ...(opened.ok ? { personalData: opened.content } : { error: opened.code }),
      });
    }
    // At warn, so that no log level short of error silences the audit trail.
    deps.log.warn(
      { caseRef: ref, messageIds: items.map((i) => i.messageId), audit: "personal_data_read" },
      "personal data read",
    );
    return c.json({ caseRef: ref, items });
  },
});
