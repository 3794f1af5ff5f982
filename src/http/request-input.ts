/**
 * Turns a route's declared parameters and body into checks, compiled once when the app is
 * assembled with the schema registry's ajv (no second validator instance). A value that breaks
 * its schema answers what the declaration says; issues name parameters and fields, never values.
 */
import type { Context } from "hono";
import { LiaisonError } from "../protocol/errors.ts";
import type { SchemaRegistry, ValidationResult } from "../schemas/schema-registry.ts";
import type { ParamDeclaration, RouteDeclaration, RouteInput } from "./route.ts";

export type InputReader = (c: Context) => Promise<RouteInput>;

interface CompiledParam {
  name: string;
  declaration: ParamDeclaration;
  validate: (value: unknown) => ValidationResult;
}

function compileParams(
  declared: Record<string, ParamDeclaration> | undefined,
  schemas: SchemaRegistry,
): CompiledParam[] {
  return Object.entries(declared ?? {}).map(([name, declaration]) => ({
    name,
    declaration,
    validate: schemas.compile(declaration.schema),
  }));
}

function checkParam(param: CompiledParam, raw: string | undefined): string | number | undefined {
  const { name, declaration, validate } = param;
  if (raw === undefined) return declaration.schema.default as string | number | undefined;
  const value = declaration.schema.type === "integer" ? Number(raw) : raw;
  if (validate(value).ok) return value;
  const { code, detail, issue } = declaration.invalid;
  throw new LiaisonError(
    code,
    detail,
    issue === undefined ? undefined : { issues: [{ path: name, message: issue }] },
  );
}

export function compileInput(route: RouteDeclaration, schemas: SchemaRegistry): InputReader {
  const params = compileParams(route.request?.params, schemas);
  const query = compileParams(route.request?.query, schemas);
  const body = route.request?.body;
  const bodyCheck =
    body?.validation.by === "schema"
      ? { validate: schemas.compile(body.schema), detail: body.validation.invalidDetail }
      : undefined;

  return async (c) => {
    const input: RouteInput = { params: {}, query: {}, body: undefined };
    for (const param of params) {
      input.params[param.name] = String(checkParam(param, c.req.param(param.name)));
    }
    for (const param of query) {
      const value = checkParam(param, c.req.query(param.name));
      if (value !== undefined) input.query[param.name] = value;
    }
    if (body === undefined) return input;
    if (
      body.checkContentType &&
      !(c.req.header("content-type") ?? "").startsWith(body.contentType)
    ) {
      throw new LiaisonError("request_invalid", `content-type must be ${body.contentType}`);
    }
    try {
      input.body = await c.req.json();
    } catch {
      throw new LiaisonError("request_invalid", "the request body is not JSON");
    }
    if (bodyCheck !== undefined) {
      const result = bodyCheck.validate(input.body);
      if (!result.ok) {
        throw new LiaisonError("request_invalid", bodyCheck.detail, {
          issues: result.issues.map((i) => ({ path: i.path || "/", message: i.message })),
        });
      }
    }
    return input;
  };
}
