/** GET /readyz: readiness. */
import { problem, problemResponses } from "../problem.ts";
import { defineRoute, jsonResponse } from "../route.ts";

export const readyz = defineRoute({
  operationId: "readyz",
  method: "get",
  path: "/readyz",
  auth: "none",
  tags: ["operations"],
  summary: "The gateway can do its work",
  description:
    "Ready when the database answers, the NATS connection is not closed and has not been down (disconnected, reconnecting) for longer than LIAISON_BROKER_UNREACHABLE_SECONDS, and one of our signing keys is valid now.",
  responses: {
    200: jsonResponse("Ready.", {
      type: "object",
      additionalProperties: false,
      required: ["status"],
      properties: { status: { const: "ready" } },
    }),
    ...problemResponses({ not_ready: "a check failed" }),
  },
  handler: async (c, _input, { deps }) =>
    (await deps.readiness.isReady())
      ? c.json({ status: "ready" })
      : problem(c, "not_ready", "database or NATS not reachable, or no signing key valid now"),
});
