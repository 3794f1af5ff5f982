/**
 * Turns a route's declared parameters and body into checks, compiled once when the app is
 * assembled with the schema registry's ajv (no second validator instance). A value that breaks
 * its schema answers what the declaration says; issues name parameters and fields, never values.
 *
 * A body is read as bytes (the app's body limit has already applied), decoded as strict UTF-8
 * (never repaired), measured for depth before it is parsed, and only then parsed and validated.
 */
import type { Context } from "hono";
import { LiaisonError } from "../protocol/errors.ts";
import { MAX_JSON_DEPTH, parseJsonText } from "../protocol/json-limits.ts";
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

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** RFC 9110 §5.6.2 token. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** RFC 9110 §8.3.1: `OWS ";" OWS [ token "=" ( token / quoted-string ) ]`, from `lastIndex`. */
const PARAMETER =
  /[ \t]*;[ \t]*(?:([!#$%&'*+.^_`|~0-9A-Za-z-]+)=([!#$%&'*+.^_`|~0-9A-Za-z-]+|"(?:[\t\x20-\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"))?/y;

interface MediaType {
  /** `type/subtype` in lower case. */
  essence: string;
  /** Parameter names in lower case; values unquoted, as sent. */
  parameters: Map<string, string>;
}

/**
 * A Content-Type value (RFC 9110 §8.3): `type/subtype` with optional parameters; null when the
 * value is not a media type (a parameter named twice included: which one would count?). Type,
 * subtype and parameter names are case-insensitive.
 */
function parseMediaType(value: string): MediaType | null {
  const text = value.replace(/^[ \t]+|[ \t]+$/g, "");
  const semicolon = text.indexOf(";");
  const essence = (semicolon === -1 ? text : text.slice(0, semicolon)).replace(/[ \t]+$/, "");
  const [type = "", subtype = "", ...more] = essence.split("/");
  if (more.length > 0 || !TOKEN.test(type) || !TOKEN.test(subtype)) return null;
  const parameters = new Map<string, string>();
  let at = semicolon === -1 ? text.length : semicolon;
  while (at < text.length) {
    PARAMETER.lastIndex = at;
    const match = PARAMETER.exec(text);
    if (match === null) return null;
    const [, name, raw] = match;
    if (name !== undefined && raw !== undefined) {
      if (parameters.has(name.toLowerCase())) return null;
      const unquoted = raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, "$1") : raw;
      parameters.set(name.toLowerCase(), unquoted);
    }
    at = PARAMETER.lastIndex;
  }
  return { essence: `${type}/${subtype}`.toLowerCase(), parameters };
}

/** The media type must be exactly `expected` (parameters allowed); a charset must be UTF-8. */
function checkContentType(header: string | undefined, expected: string): void {
  const media = parseMediaType(header ?? "");
  if (media === null || media.essence !== expected) {
    throw new LiaisonError("request_invalid", `content-type must be ${expected}`);
  }
  const charset = media.parameters.get("charset");
  if (charset !== undefined && charset.toLowerCase() !== "utf-8") {
    throw new LiaisonError("request_invalid", "the content-type charset must be utf-8");
  }
}

/** The body's bytes and JSON value: strict UTF-8, at most MAX_JSON_DEPTH deep, then parsed. */
async function readJsonBody(c: Context): Promise<{ bytes: Uint8Array; value: unknown }> {
  let bytes: ArrayBuffer;
  try {
    bytes = await c.req.arrayBuffer();
  } catch {
    throw new LiaisonError("request_invalid", "the request body could not be read");
  }
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new LiaisonError("request_invalid", "the request body is not UTF-8");
  }
  const parsed = parseJsonText(text, MAX_JSON_DEPTH);
  if (parsed.ok) return { bytes: new Uint8Array(bytes), value: parsed.value };
  throw new LiaisonError(
    "request_invalid",
    parsed.reason === "too_deep"
      ? `the request body nests deeper than ${MAX_JSON_DEPTH} levels`
      : "the request body is not JSON",
  );
}

export function compileInput(route: RouteDeclaration, schemas: SchemaRegistry): InputReader {
  const params = compileParams(route.request?.params, schemas);
  const query = compileParams(route.request?.query, schemas);
  const headers = compileParams(route.request?.headers, schemas);
  const body = route.request?.body;
  const bodyCheck =
    body?.validation.by === "schema"
      ? { validate: schemas.compile(body.schema), detail: body.validation.invalidDetail }
      : undefined;

  return async (c) => {
    const input: RouteInput = { params: {}, query: {}, headers: {}, body: undefined };
    for (const param of params) {
      input.params[param.name] = String(checkParam(param, c.req.param(param.name)));
    }
    for (const param of query) {
      const value = checkParam(param, c.req.query(param.name));
      if (value !== undefined) input.query[param.name] = value;
    }
    for (const header of headers) {
      const value = checkParam(header, c.req.header(header.name));
      if (value !== undefined) input.headers[header.name] = String(value);
    }
    if (body === undefined) return input;
    checkContentType(c.req.header("content-type"), body.contentType);
    const read = await readJsonBody(c);
    input.body = read.value;
    input.bodyBytes = read.bytes;
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
