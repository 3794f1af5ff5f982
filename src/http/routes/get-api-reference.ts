/**
 * GET /docs: the interactive API reference (Scalar), rendering GET /openapi.json, and
 * GET /docs/scalar.js, the Scalar bundle it runs, served by the gateway itself.
 *
 * Nothing on the page leaves this gateway: the script is served from the installed
 * @scalar/api-reference package instead of a CDN (gateways run in offices with poor or no
 * internet, and the page handles bearer tokens); telemetry, web fonts, the AI agent, the MCP
 * generator and the developer tools are off; and the "try it" client has no proxy URL, so its
 * requests go to the gateway itself (the browser build's default proxy URL is Scalar's hosted
 * proxy; it skips it for localhost, which is how it was checked, but a gateway served under
 * another host name would send its requests, bearer token included, through it).
 */
import { Scalar } from "@scalar/hono-api-reference";
import { defineRoute } from "../route.ts";
import { BUNDLE_PATH } from "./get-api-reference-script.ts";

const reference = Scalar({
  url: "/openapi.json",
  pageTitle: "Liaison gateway API",
  cdn: BUNDLE_PATH,
  proxyUrl: "",
  telemetry: false,
  withDefaultFonts: false,
  agent: { disabled: true },
  mcp: { disabled: true },
  showDeveloperTools: "never",
});

export const getApiReference = defineRoute({
  operationId: "getApiReference",
  method: "get",
  path: "/docs",
  auth: "none",
  tags: ["documentation"],
  summary: "Interactive API reference",
  description: `An HTML page rendering /openapi.json (Scalar API Reference), with its script from ${BUNDLE_PATH}.`,
  responses: {
    200: { description: "HTML.", contentType: "text/html", schema: { type: "string" } },
  },
  handler: async (c) => (await reference(c, async () => {})) ?? c.notFound(),
});
