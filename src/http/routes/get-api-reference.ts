/**
 * GET /docs: the interactive API reference (Scalar), reading GET /openapi.json. The page loads
 * Scalar's script from its CDN in the reader's browser; without it, read /openapi.json.
 */
import { Scalar } from "@scalar/hono-api-reference";
import { defineRoute } from "../route.ts";

const reference = Scalar({ url: "/openapi.json", pageTitle: "Liaison gateway API" });

export const getApiReference = defineRoute({
  operationId: "getApiReference",
  method: "get",
  path: "/docs",
  auth: "none",
  tags: ["documentation"],
  summary: "Interactive API reference",
  description: "An HTML page rendering /openapi.json (Scalar API Reference).",
  responses: {
    200: { description: "HTML.", contentType: "text/html", schema: { type: "string" } },
  },
  handler: async (c) => (await reference(c, async () => {})) ?? c.notFound(),
});
