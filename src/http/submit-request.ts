/**
 * The shape of `POST /v1/messages`, as JSON Schema compiled once with ajv. The body itself is
 * validated afterwards against the schema of its type (schemas/), not here.
 */
import { Ajv2020 } from "ajv/dist/2020.js";
import type { SubmitRequest } from "../delivery/submit-message.ts";
import { LiaisonError } from "../protocol/errors.ts";
import { PARTY_ID_PATTERN } from "../protocol/identifiers.ts";

export const SUBMIT_REQUEST_SCHEMA = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  type: "object",
  additionalProperties: false,
  required: ["type", "to", "caseRef", "body"],
  properties: {
    type: { type: "string", pattern: "^[a-z]+(?:\\.[a-z-]+)+$", maxLength: 64 },
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
  },
} as const;

const validate = new Ajv2020({ strict: true, allErrors: true }).compile(SUBMIT_REQUEST_SCHEMA);

export function parseSubmitRequest(value: unknown): SubmitRequest {
  if (validate(value)) return value as unknown as SubmitRequest;
  throw new LiaisonError("request_invalid", "the request does not match the submit schema", {
    issues: (validate.errors ?? []).map((e) => ({
      path: e.instancePath || "/",
      message: e.message ?? "is invalid",
    })),
  });
}
