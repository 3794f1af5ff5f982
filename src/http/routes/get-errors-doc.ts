/** GET /docs/errors.md: the error documentation every problem `type` links to. */
import { readFileSync } from "node:fs";
import { ERRORS_DOC } from "../problem.ts";
import { defineRoute } from "../route.ts";

const errorsDoc = readFileSync(new URL("../../../docs/errors.md", import.meta.url), "utf8");

export const getErrorsDoc = defineRoute({
  operationId: "getErrorsDoc",
  method: "get",
  path: ERRORS_DOC,
  auth: "none",
  tags: ["documentation"],
  summary: "The error codes",
  description:
    "docs/errors.md of this gateway's version: a section per code, which the `type` of every problem answer links to (`/docs/errors.md#<code>`).",
  responses: {
    200: { description: "Markdown.", contentType: "text/markdown", schema: { type: "string" } },
  },
  handler: (c) => c.body(errorsDoc, 200, { "content-type": "text/markdown; charset=utf-8" }),
});
