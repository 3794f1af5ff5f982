/**
 * Compiles the partner-facing JSON Schemas of the top-level `schemas/` folder once, at start,
 * and exposes typed validators for envelopes, receipts and message bodies.
 *
 * Owns: discovering schema files, checking their `$id` follows the published convention,
 * and turning ajv errors into {@link ValidationIssue}s that never carry the offending value —
 * a body may hold victims' personal data, and issues end up in logs, quarantine rows,
 * problem+json answers and negative receipts.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Ajv2020Module, { type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";

export interface ValidationIssue {
  /** JSON pointer (RFC 6901) into the validated document; "" is the document itself. */
  path: string;
  /** ajv's message: names the rule broken (and a missing property), never the value. */
  message: string;
}

export type ValidationResult = { ok: true } | { ok: false; issues: ValidationIssue[] };

/** Body issues are relative to the body; this makes them pointers into the envelope or request. */
export function underBody(issues: ValidationIssue[]): ValidationIssue[] {
  return issues.map((issue) => ({ path: `/body${issue.path}`, message: issue.message }));
}

export interface SchemaRegistry {
  validateEnvelope(value: unknown): ValidationResult;
  validateReceipt(value: unknown): ValidationResult;
  /** undefined when the type/version pair is not known */
  validateBody(type: string, schemaVersion: number, body: unknown): ValidationResult | undefined;
  hasType(type: string, schemaVersion: number): boolean;
  types(): Array<{ type: string; schemaVersion: number }>;
  /** raw schema documents by $id, for publishing */
  documents(): Record<string, unknown>;
  /**
   * Compiles a further schema (an HTTP route's request shape) with the same ajv instance, so it
   * may `$ref` the shared schemas by their `$id`. Compile once, at start, and keep the function.
   */
  compile(schema: Record<string, unknown>): (value: unknown) => ValidationResult;
}

/** Every `$id` is `${SCHEMA_ID_BASE}<name>/v<major>.json`, for file `<name>.v<major>.json`. */
export const SCHEMA_ID_BASE = "https://liaison-gateway.example/schemas/";

const FILE_NAME = /^([a-z]+(?:[.-][a-z]+)*)\.v([1-9][0-9]{0,2})\.json$/;
/** Same rule as the envelope's `type` pattern (schemas/envelope.v1.json). */
const BODY_TYPE = /^[a-z]+(?:\.[a-z-]+)+$/;
const NON_BODY = new Set(["common", "envelope", "receipt"]);

const DEFAULT_DIR = fileURLToPath(new URL("../../schemas/", import.meta.url));

// ajv and ajv-formats are CommonJS modules whose `module.exports` is the class/plugin itself
// with a `.default` alias. TypeScript (NodeNext) types the default import as the module object,
// so the value is on `.default`; other loaders may hand over the class directly.
type Ajv2020Class = typeof Ajv2020Module.default;
type AddFormats = typeof addFormatsModule.default;
const Ajv2020: Ajv2020Class =
  (Ajv2020Module as unknown as { default?: Ajv2020Class }).default ??
  (Ajv2020Module as unknown as Ajv2020Class);
const addFormats: AddFormats =
  (addFormatsModule as unknown as { default?: AddFormats }).default ??
  (addFormatsModule as unknown as AddFormats);

interface SchemaFile {
  file: string;
  name: string;
  major: number;
  id: string;
  document: Record<string, unknown>;
}

function schemaId(name: string, major: number): string {
  return `${SCHEMA_ID_BASE}${name}/v${major}.json`;
}

function bodyKey(type: string, schemaVersion: number): string {
  return `${type}@${schemaVersion}`;
}

function readSchemaFiles(dir: string): SchemaFile[] {
  let entries: string[];
  try {
    entries = readdirSync(dir).filter((f) => f.endsWith(".json"));
  } catch (cause) {
    throw new Error(`schema registry: cannot read schema directory ${dir}`, { cause });
  }
  return entries.sort().map((file) => {
    const match = FILE_NAME.exec(file);
    if (match === null || match[1] === undefined || match[2] === undefined) {
      throw new Error(`schema registry: ${file}: file name must be <name>.v<major>.json`);
    }
    const name = match[1];
    const major = Number(match[2]);
    let document: unknown;
    try {
      document = JSON.parse(readFileSync(join(dir, file), "utf8"));
    } catch (cause) {
      throw new Error(`schema registry: ${file}: not valid JSON`, { cause });
    }
    if (typeof document !== "object" || document === null || Array.isArray(document)) {
      throw new Error(`schema registry: ${file}: a schema must be a JSON object`);
    }
    const id = schemaId(name, major);
    const declared = (document as Record<string, unknown>).$id;
    if (declared !== id) {
      throw new Error(`schema registry: ${file}: $id must be ${id}`);
    }
    return { file, name, major, id, document: document as Record<string, unknown> };
  });
}

/**
 * ajv's `instancePath` is already a JSON pointer. Because every schema closes its objects with
 * `additionalProperties: false` and uses no `patternProperties`, its segments are schema-defined
 * property names and array indices only. `params` (which may hold an unexpected property name
 * taken from the data) and `data` are deliberately dropped.
 */
function toIssues(errors: ErrorObject[] | null | undefined): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  const seen = new Set<string>();
  for (const error of errors ?? []) {
    // `must match "then" schema` only repeats what the errors inside `then` already say.
    if (error.keyword === "if") continue;
    const issue = {
      path: error.instancePath,
      message: error.message ?? `must pass "${error.keyword}"`,
    };
    const key = `${issue.path}\u0000${issue.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    issues.push(issue);
  }
  return issues;
}

function run(validate: ValidateFunction, value: unknown): ValidationResult {
  if (validate(value)) return { ok: true };
  return { ok: false, issues: toIssues(validate.errors) };
}

function compile(ajv: InstanceType<Ajv2020Class>, schema: SchemaFile): ValidateFunction {
  try {
    const validate = ajv.getSchema(schema.id);
    if (validate === undefined) throw new Error(`no schema registered under ${schema.id}`);
    return validate;
  } catch (cause) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    throw new Error(`schema registry: ${schema.file} does not compile: ${reason}`, { cause });
  }
}

/** Reads and compiles every `*.json` of `dir` (default: the repository's `schemas/`). */
export function loadSchemaRegistry(dir: string = DEFAULT_DIR): SchemaRegistry {
  const files = readSchemaFiles(dir);
  const ajv = new Ajv2020({ strict: true, allErrors: true });
  addFormats(ajv);

  for (const schema of files) {
    try {
      ajv.addSchema(schema.document);
    } catch (cause) {
      const reason = cause instanceof Error ? cause.message : String(cause);
      throw new Error(`schema registry: ${schema.file} is not a valid schema: ${reason}`, {
        cause,
      });
    }
  }

  const byName = (name: string): SchemaFile => {
    const found = files.find((f) => f.name === name && f.major === 1);
    if (found === undefined) throw new Error(`schema registry: ${name}.v1.json missing in ${dir}`);
    return found;
  };
  // common has nothing to validate but is compiled too, so that a broken shared definition
  // is reported against its own file.
  compile(ajv, byName("common"));
  const envelope = compile(ajv, byName("envelope"));
  const receipt = compile(ajv, byName("receipt"));

  const bodies = new Map<string, ValidateFunction>();
  const typeList: Array<{ type: string; schemaVersion: number }> = [];
  for (const schema of files) {
    if (NON_BODY.has(schema.name)) continue;
    if (!BODY_TYPE.test(schema.name)) {
      throw new Error(
        `schema registry: ${schema.file}: ${schema.name} is not a valid message type (${BODY_TYPE.source})`,
      );
    }
    bodies.set(bodyKey(schema.name, schema.major), compile(ajv, schema));
    typeList.push({ type: schema.name, schemaVersion: schema.major });
  }
  typeList.sort((a, b) =>
    a.type === b.type ? a.schemaVersion - b.schemaVersion : a.type < b.type ? -1 : 1,
  );

  const documents: Record<string, unknown> = {};
  for (const schema of files) documents[schema.id] = schema.document;

  return {
    validateEnvelope: (value) => run(envelope, value),
    validateReceipt: (value) => run(receipt, value),
    validateBody(type, schemaVersion, body) {
      const validate = bodies.get(bodyKey(type, schemaVersion));
      return validate === undefined ? undefined : run(validate, body);
    },
    hasType: (type, schemaVersion) => bodies.has(bodyKey(type, schemaVersion)),
    types: () => typeList.map((t) => ({ ...t })),
    documents: () => structuredClone(documents),
    compile(schema) {
      const validate = ajv.compile(schema);
      return (value) => run(validate, value);
    },
  };
}
