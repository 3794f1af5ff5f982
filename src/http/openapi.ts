/**
 * The OpenAPI 3.1 document of the HTTP API, generated from the route declarations. OpenAPI 3.1
 * schemas are JSON Schema 2020-12, so the declared schemas are used as they are, with one
 * rewrite: a `$ref` to a definition of `schemas/` (by its `$id`) is copied into
 * `components.schemas` and pointed to there, so that readers of the document need not fetch
 * (or know) the `$id`s.
 */
import { readFileSync } from "node:fs";
import { SCHEMA_ID_BASE } from "../schemas/schema-registry.ts";
import { API_SCHEMAS } from "./api-schemas.ts";
import { PROBLEM_SCHEMA, problemResponses } from "./problem.ts";
import type {
  JsonSchema,
  ParamDeclaration,
  ResponseDeclaration,
  RouteDeclaration,
} from "./route.ts";

type Json = Record<string, unknown>;

const VERSION = (
  JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  }
).version;

const COMPONENT = "#/components/schemas/";

const SECURITY_SCHEMES = {
  apiToken: {
    type: "http",
    scheme: "bearer",
    description: "LIAISON_API_TOKEN: the agency's own users and systems.",
  },
  adminToken: {
    type: "http",
    scheme: "bearer",
    description:
      "LIAISON_ADMIN_TOKEN: the operator, for partner registration only (the API token is not accepted there). While it is unset, partner registration over HTTP is off.",
  },
};

const TAGS = [
  {
    name: "messages",
    description: "Submit messages and follow them; read the log and quarantine.",
  },
  { name: "partners", description: "The partner registry and our own party document." },
  {
    name: "operations",
    description: "Health and readiness probes, metrics, and alerts of failing deliveries.",
  },
  { name: "documentation", description: "This document, its reference page and the error codes." },
];

/** Hono's `/v1/messages/:id` is OpenAPI's `/v1/messages/{id}`. */
export function openApiPath(honoPath: string): string {
  return honoPath.replace(/:([A-Za-z0-9_]+)/g, "{$1}");
}

function parameters(
  where: "path" | "query" | "header",
  declared: Record<string, ParamDeclaration> = {},
) {
  return Object.entries(declared).map(([name, p]) => ({
    name,
    in: where,
    required: where === "path",
    description: p.description,
    schema: p.schema,
  }));
}

function response(declared: ResponseDeclaration): Json {
  return {
    description: declared.description,
    ...(declared.headers === undefined ? {} : { headers: declared.headers }),
    content: {
      [declared.contentType]: declared.schema === undefined ? {} : { schema: declared.schema },
    },
  };
}

/** What the assembly adds to a route's own responses: 401 from its auth, 500 from onError. */
function responses(route: RouteDeclaration): Record<number, ResponseDeclaration> {
  const added: Record<number, ResponseDeclaration> = {};
  if (route.auth === "user") {
    Object.assign(
      added,
      problemResponses({ unauthorized: "no bearer token, or not the API token" }),
    );
  } else if (route.auth === "admin") {
    Object.assign(
      added,
      problemResponses({
        unauthorized:
          "no bearer token, or not the admin token; always while LIAISON_ADMIN_TOKEN is unset",
      }),
    );
  }
  Object.assign(
    added,
    problemResponses({ internal: "an unexpected error; see the gateway's log" }),
  );
  return { ...added, ...route.responses };
}

function operation(route: RouteDeclaration): Json {
  const params = [
    ...parameters("path", route.request?.params),
    ...parameters("query", route.request?.query),
    ...parameters("header", route.request?.headers),
  ];
  const body = route.request?.body;
  const answers = responses(route);
  return {
    operationId: route.operationId,
    tags: route.tags,
    summary: route.summary,
    description: route.description,
    ...(route.auth === "none"
      ? {}
      : { security: [{ [route.auth === "user" ? "apiToken" : "adminToken"]: [] }] }),
    ...(params.length === 0 ? {} : { parameters: params }),
    ...(body === undefined
      ? {}
      : {
          requestBody: {
            description: body.description,
            required: true,
            content: { [body.contentType]: { schema: body.schema } },
          },
        }),
    responses: Object.fromEntries(
      Object.keys(answers)
        .map(Number)
        .sort((a, b) => a - b)
        .map((status) => [String(status), response(answers[status] as ResponseDeclaration)]),
    ),
  };
}

/** Copies what `$ref`s into `schemas/` name into `components`, and points the refs there. */
class Bundler {
  constructor(
    private readonly documents: Record<string, unknown>,
    readonly components: Record<string, unknown>,
  ) {}

  /** `base`: the `$id` of the schema document `node` was copied from, for its `#/...` refs. */
  rewrite(node: unknown, base?: string): unknown {
    if (Array.isArray(node)) return node.map((n) => this.rewrite(n, base));
    if (typeof node !== "object" || node === null) return node;
    const out: Json = {};
    for (const [key, value] of Object.entries(node)) {
      out[key] =
        key === "$ref" && typeof value === "string"
          ? this.target(value, base)
          : this.rewrite(value, base);
    }
    return out;
  }

  private target(ref: string, base: string | undefined): string {
    if (ref.startsWith(COMPONENT) && base === undefined) return ref;
    const absolute = ref.startsWith("#") && base !== undefined ? `${base}${ref}` : ref;
    if (!absolute.startsWith(SCHEMA_ID_BASE)) {
      throw new Error(`openapi: cannot resolve $ref ${ref}`);
    }
    const [doc = "", pointer = ""] = absolute.split("#", 2);
    const segments = pointer
      .split("/")
      .slice(1)
      .map((s) => s.replaceAll("~1", "/").replaceAll("~0", "~"));
    const name = [
      doc
        .slice(SCHEMA_ID_BASE.length)
        .replace(/\.json$/, "")
        .replaceAll("/", "."),
      ...segments.filter((s) => s !== "$defs" && s !== "properties"),
    ].join(".");
    if (!(name in this.components)) {
      let found: unknown = this.documents[doc];
      for (const segment of segments) {
        found = (found as Json | undefined)?.[segment];
      }
      if (typeof found !== "object" || found === null) {
        throw new Error(`openapi: $ref ${ref} names nothing in schemas/`);
      }
      this.components[name] = {}; // taken, should the definition refer to itself
      const { $id: _id, $schema: _schema, ...schema } = found as Json;
      this.components[name] = this.rewrite(schema, doc);
    }
    return `${COMPONENT}${name}`;
  }
}

/** Every `#/components/schemas/<name>` of the document must be defined. */
function checkRefs(node: unknown, components: Record<string, unknown>): void {
  if (typeof node !== "object" || node === null) return;
  for (const [key, value] of Object.entries(node)) {
    if (key === "$ref" && typeof value === "string") {
      if (!(value.startsWith(COMPONENT) && value.slice(COMPONENT.length) in components)) {
        throw new Error(`openapi: $ref ${value} is not defined in the document`);
      }
    } else {
      checkRefs(value, components);
    }
  }
}

/**
 * The document for `routes`; `documents` are the schema registry's documents by `$id`
 * (SchemaRegistry.documents()).
 */
export function buildOpenApiDocument(
  routes: readonly RouteDeclaration[],
  documents: Record<string, unknown>,
): Json {
  const components: Record<string, unknown> = {};
  const bundler = new Bundler(documents, components);
  const own: Record<string, JsonSchema> = { Problem: PROBLEM_SCHEMA, ...API_SCHEMAS };
  for (const [name, schema] of Object.entries(own)) components[name] = bundler.rewrite(schema);

  const paths: Record<string, Json> = {};
  for (const route of routes) {
    const path = openApiPath(route.path);
    const item = paths[path] ?? {};
    if (route.method in item) throw new Error(`openapi: ${route.method} ${path} declared twice`);
    item[route.method] = bundler.rewrite(operation(route));
    paths[path] = item;
  }
  const document = {
    openapi: "3.1.0",
    info: {
      title: "Liaison gateway: local HTTP API",
      version: VERSION,
      description:
        "For the agency's own users and systems, plus the public party document partners register us from. Errors are application/problem+json with a stable `code`, documented at /docs/errors.md. Lists are paged with an opaque `cursor` (pass the previous page's `nextCursor`). Guide: docs/api.md.",
    },
    tags: TAGS,
    paths,
    components: {
      schemas: Object.fromEntries(Object.entries(components).sort(([a], [b]) => (a < b ? -1 : 1))),
      securitySchemes: SECURITY_SCHEMES,
    },
  };
  checkRefs(document, components);
  return document;
}
