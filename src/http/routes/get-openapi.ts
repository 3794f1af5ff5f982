/** GET /openapi.json: the OpenAPI 3.1 document of this API, generated from the route declarations. */
import { defineRoute } from "../route.ts";

export const getOpenApi = defineRoute({
  operationId: "getOpenApi",
  method: "get",
  path: "/openapi.json",
  auth: "none",
  tags: ["documentation"],
  summary: "This document",
  description: "The OpenAPI 3.1 description of every route this gateway serves.",
  responses: {
    200: {
      description: "An OpenAPI 3.1 document.",
      contentType: "application/json",
      schema: {
        type: "object",
        required: ["openapi", "info", "paths"],
        properties: { openapi: { const: "3.1.0" } },
      },
    },
  },
  handler: (c, _input, { openapi }) => c.json(openapi()),
});
