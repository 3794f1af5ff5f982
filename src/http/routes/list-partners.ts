/** GET /v1/partners: the partner registry. */
import { ref } from "../api-schemas.ts";
import { defineRoute, jsonResponse } from "../route.ts";

export const listPartners = defineRoute({
  operationId: "listPartners",
  method: "get",
  path: "/v1/partners",
  auth: "user",
  tags: ["partners"],
  summary: "Registered parties",
  description: "Every registered party, this gateway's own party included.",
  responses: {
    200: jsonResponse("The parties.", {
      type: "object",
      additionalProperties: false,
      required: ["items"],
      properties: { items: { type: "array", items: ref("Party") } },
    }),
  },
  handler: (c, _input, { deps }) => c.json({ items: deps.registry.listParties() }),
});
