/**
 * GET /docs/scalar.js: the browser build of @scalar/api-reference that GET /docs runs, served by
 * the gateway itself rather than fetched from a CDN (see get-api-reference.ts).
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { defineRoute } from "../route.ts";

export const BUNDLE_PATH = "/docs/scalar.js";

let bundle: string | undefined;
/** The UMD build of @scalar/api-reference, read once, on the first request. */
function scalarBundle(): string {
  if (bundle === undefined) {
    const entry = createRequire(import.meta.url).resolve("@scalar/api-reference");
    bundle = readFileSync(new URL("./browser/standalone.js", `file://${entry}`), "utf8");
  }
  return bundle;
}

export const getApiReferenceScript = defineRoute({
  operationId: "getApiReferenceScript",
  method: "get",
  path: BUNDLE_PATH,
  auth: "none",
  tags: ["documentation"],
  summary: "The script of the API reference page",
  description: "The browser build of @scalar/api-reference that GET /docs loads.",
  responses: {
    200: {
      description: "JavaScript.",
      contentType: "text/javascript",
      schema: { type: "string" },
    },
  },
  handler: (c) =>
    c.body(scalarBundle(), 200, {
      "content-type": "text/javascript; charset=utf-8",
      "cache-control": "public, max-age=86400",
    }),
});
