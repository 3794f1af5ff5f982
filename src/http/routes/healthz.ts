/** GET /healthz: liveness. */
import { defineRoute, jsonResponse } from "../route.ts";

export const healthz = defineRoute({
  operationId: "healthz",
  method: "get",
  path: "/healthz",
  auth: "none",
  tags: ["operations"],
  summary: "The process is up",
  description: "Answers as long as the process serves HTTP; checks nothing else.",
  responses: {
    200: jsonResponse("Up.", {
      type: "object",
      additionalProperties: false,
      required: ["status"],
      properties: { status: { const: "ok" } },
    }),
  },
  handler: (c) => c.json({ status: "ok" }),
});
