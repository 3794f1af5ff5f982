/**
 * What one HTTP route declares: method, path, who may call it, what it takes and what it answers.
 * `app.ts` assembles the app from these declarations (auth middleware, body limit, input checks)
 * and `openapi.ts` publishes them: the declaration is the one source of both.
 *
 * Request schemas are compiled by the schema registry's ajv (the one instance of the gateway), so
 * they must be plain JSON Schema 2020-12 that stands alone or `$ref`s `schemas/` by `$id`.
 * Response schemas are documentation (and what the tests hold every answer to): they may also
 * `$ref` the API's shared shapes by `#/components/schemas/<name>` (see api-schemas.ts).
 */
import type { Context } from "hono";
import type { ErrorCode } from "../protocol/errors.ts";
import type { AppDeps } from "./app.ts";

export type JsonSchema = Record<string, unknown>;

/** none: public; user: LIAISON_API_TOKEN; admin: LIAISON_ADMIN_TOKEN (operator). */
export type AuthLevel = "none" | "user" | "admin";

export type HttpMethod = "get" | "post";

/** A path, query or header parameter: always a string on the wire, validated against `schema`. */
export interface ParamDeclaration {
  description: string;
  /**
   * `type: "integer"` parameters are converted with Number() before validation; `default`
   * stands in for an absent query parameter (and is not validated).
   */
  schema: JsonSchema;
  /** What a value that breaks the schema answers; `issue` adds `{path: <name>, message}`. */
  invalid: { code: ErrorCode; detail: string; issue?: string };
}

export interface BodyDeclaration {
  description: string;
  /**
   * The request's media type must be exactly this (compared case-insensitively; parameters
   * allowed, a `charset` only `utf-8`), else request_invalid. The body is read as strict UTF-8
   * JSON nested at most MAX_JSON_DEPTH levels (src/protocol/json-limits.ts), else request_invalid.
   */
  contentType: "application/json";
  schema: JsonSchema;
  /**
   * `schema`: the body is validated against `schema` before the handler runs, and a body that
   * breaks it answers request_invalid with `invalidDetail` and one issue per broken rule.
   * `handler`: the handler checks the body itself (checks JSON Schema cannot express, with
   * their own answers); `schema` then documents what it accepts and must not be stricter.
   */
  validation: { by: "schema"; invalidDetail: string } | { by: "handler" };
  /** The body limit (bytes) and the detail of the 413 above it. */
  maxBytes(deps: AppDeps): number;
  tooLarge(maxBytes: number): string;
}

export interface ResponseDeclaration {
  description: string;
  contentType: string;
  schema?: JsonSchema;
  headers?: Record<string, { description: string; schema: JsonSchema }>;
}

/** The checked input a handler receives. */
export interface RouteInput {
  params: Record<string, string>;
  /** Absent parameters without a default are absent; integer parameters are numbers. */
  query: Record<string, string | number | undefined>;
  /** Declared request headers, by their declared name; absent ones absent. */
  headers: Record<string, string | undefined>;
  body: unknown;
  /** The body's bytes as received (the body parsed from them is `body`). */
  bodyBytes?: Uint8Array;
}

export interface RouteContext {
  deps: AppDeps;
  /** The OpenAPI document of the assembled app (built once, when it is assembled). */
  openapi(): Record<string, unknown>;
}

export interface RouteDeclaration {
  /** Unique; also the OpenAPI operationId. */
  operationId: string;
  method: HttpMethod;
  /** Hono syntax: /v1/messages/:id */
  path: string;
  auth: AuthLevel;
  tags: string[];
  summary: string;
  description: string;
  request?: {
    params?: Record<string, ParamDeclaration>;
    /** Checked in this order; the first invalid one answers. */
    query?: Record<string, ParamDeclaration>;
    /**
     * Optional request headers, by name (matched case-insensitively), checked after the query
     * in this order; an invalid one answers what its declaration says, its issue naming the
     * header, never its value.
     */
    headers?: Record<string, ParamDeclaration>;
    body?: BodyDeclaration;
  };
  /**
   * Every status the route answers, except 401 (added for user and admin routes) and 500
   * `internal` (added to every route) unless declared here.
   */
  responses: Record<number, ResponseDeclaration>;
  handler(c: Context, input: RouteInput, ctx: RouteContext): Response | Promise<Response>;
}

/** Identity, for type checking a declaration where it is written. */
export function defineRoute(route: RouteDeclaration): RouteDeclaration {
  return route;
}

/** A JSON answer declared with its schema. */
export function jsonResponse(
  description: string,
  schema: JsonSchema,
  headers?: ResponseDeclaration["headers"],
): ResponseDeclaration {
  return {
    description,
    contentType: "application/json",
    schema,
    ...(headers === undefined ? {} : { headers }),
  };
}
