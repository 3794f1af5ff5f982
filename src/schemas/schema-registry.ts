/**
 * Compiles the partner-facing JSON Schemas once, at start, and exposes typed validators for
 * envelopes, receipts and message bodies, and for the two documents that travel inside bodies
 * but are not bodies: the decrypted personal data (`personal-data`) and the payload of a signed
 * handover record (`handover-record`).
 *
 * Owns: the schema file rules (`<name>.v<major>.json`, an `$id` that follows the published
 * convention), and turning ajv errors into {@link ValidationIssue}s that never carry the
 * offending value — a body may hold victims' personal data, and issues end up in logs,
 * quarantine rows, problem+json answers and negative receipts.
 *
 * Pure: it computes from the file names and parsed documents it is given. Reading the
 * top-level `schemas/` folder is the edge's job (src/config/schema-files.ts).
 */
import Ajv2020Module, { type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { stringLengthKeyword } from "./string-length.ts";

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
  /** The payload of a batch receipt (schemas/receipt-batch.v1.json, docs/protocol.md). */
  validateReceiptBatch(value: unknown): ValidationResult;
  /**
   * The plaintext of a `personalData` JWE (schemas/personal-data.v1.json): what a sender
   * encrypts, what a recipient decrypted. Issues never carry values: this is a victim's data.
   */
  validatePersonalData(value: unknown): ValidationResult;
  /** The decoded payload of a handover record JWS (schemas/handover-record.v1.json). */
  validateHandoverRecord(value: unknown): ValidationResult;
  /** undefined when the type/version pair is not known */
  validateBody(type: string, schemaVersion: number, body: unknown): ValidationResult | undefined;
  hasType(type: string, schemaVersion: number): boolean;
  types(): Array<{ type: string; schemaVersion: number }>;
  /** raw schema documents by $id, for publishing */
  documents(): Record<string, unknown>;
  /**
   * Compiles a further schema (an HTTP route's request shape) with the same ajv instance, so it
   * may `$ref` the shared schemas by their `$id`. Compile once, at start, and keep the function.
   * Its issues are ajv's errors one for one (no merging of repeats), as the API has always
   * answered them.
   */
  compile(schema: Record<string, unknown>): (value: unknown) => ValidationResult;
}

/** Every `$id` is `${SCHEMA_ID_BASE}<name>/v<major>.json`, for file `<name>.v<major>.json`. */
export const SCHEMA_ID_BASE = "https://liaison-gateway.example/schemas/";

const FILE_NAME = /^([a-z]+(?:[.-][a-z]+)*)\.v([1-9][0-9]{0,2})\.json$/;
/** Same rule as the envelope's `type` pattern (schemas/envelope.v1.json). */
const BODY_TYPE = /^[a-z][a-z-]*(?:\.[a-z-]+)+$/;
/**
 * Schemas that are not message types: the shared definitions, the two signed payloads, and the
 * documents carried inside bodies (the personal data plaintext, the handover record payload).
 */
const NON_BODY = new Set([
  "common",
  "envelope",
  "receipt",
  "receipt-batch",
  "personal-data",
  "handover-record",
]);

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

/** One schema file as read: its file name (no directory) and its parsed JSON. */
export interface SchemaFileInput {
  file: string;
  document: unknown;
}

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

/**
 * Checks each file's name, shape and `$id`, in file-name order (a directory's order, whatever
 * order the files are given in). Documents are copied: the caller keeps its own objects.
 */
function checkSchemaFiles(inputs: readonly SchemaFileInput[]): SchemaFile[] {
  const sorted = [...inputs].sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  return sorted.map(({ file, document }, index) => {
    if (index > 0 && sorted[index - 1]?.file === file) {
      throw new Error(`schema registry: ${file}: given more than once`);
    }
    const match = FILE_NAME.exec(file);
    if (match === null || match[1] === undefined || match[2] === undefined) {
      throw new Error(`schema registry: ${file}: file name must be <name>.v<major>.json`);
    }
    const name = match[1];
    const major = Number(match[2]);
    if (typeof document !== "object" || document === null || Array.isArray(document)) {
      throw new Error(`schema registry: ${file}: a schema must be a JSON object`);
    }
    const id = schemaId(name, major);
    const declared = (document as Record<string, unknown>).$id;
    if (declared !== id) {
      throw new Error(`schema registry: ${file}: $id must be ${id}`);
    }
    return {
      file,
      name,
      major,
      id,
      document: structuredClone(document) as Record<string, unknown>,
    };
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

/**
 * Compiles the given schema files: `common`, `envelope`, `receipt`, `receipt-batch`,
 * `personal-data` and `handover-record` (v1) must be among them, every other file is the body
 * schema of the message type it is named after. `source` names where the files came from in error messages (the
 * directory they were read from).
 */
export function createSchemaRegistry(
  files: readonly SchemaFileInput[],
  options: { source?: string } = {},
): SchemaRegistry {
  const source = options.source ?? "the schema files given";
  const schemas = checkSchemaFiles(files);
  const ajv = new Ajv2020({ strict: true, allErrors: true });
  addFormats(ajv);
  ajv.removeKeyword("maxLength").removeKeyword("minLength").addKeyword(stringLengthKeyword);

  for (const schema of schemas) {
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
    const found = schemas.find((f) => f.name === name && f.major === 1);
    if (found === undefined) {
      throw new Error(`schema registry: ${name}.v1.json missing in ${source}`);
    }
    return found;
  };
  // common has nothing to validate but is compiled too, so that a broken shared definition
  // is reported against its own file.
  compile(ajv, byName("common"));
  const envelope = compile(ajv, byName("envelope"));
  const receipt = compile(ajv, byName("receipt"));
  const receiptBatch = compile(ajv, byName("receipt-batch"));
  const personalData = compile(ajv, byName("personal-data"));
  const handoverRecord = compile(ajv, byName("handover-record"));

  const bodies = new Map<string, ValidateFunction>();
  const typeList: Array<{ type: string; schemaVersion: number }> = [];
  for (const schema of schemas) {
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
  for (const schema of schemas) documents[schema.id] = schema.document;

  return {
    validateEnvelope: (value) => run(envelope, value),
    validateReceipt: (value) => run(receipt, value),
    validateReceiptBatch: (value) => run(receiptBatch, value),
    validatePersonalData: (value) => run(personalData, value),
    validateHandoverRecord: (value) => run(handoverRecord, value),
    validateBody(type, schemaVersion, body) {
      const validate = bodies.get(bodyKey(type, schemaVersion));
      return validate === undefined ? undefined : run(validate, body);
    },
    hasType: (type, schemaVersion) => bodies.has(bodyKey(type, schemaVersion)),
    types: () => typeList.map((t) => ({ ...t })),
    documents: () => structuredClone(documents),
    compile(schema) {
      const validate = ajv.compile(schema);
      return (value) =>
        validate(value)
          ? { ok: true }
          : {
              ok: false,
              issues: (validate.errors ?? []).map((e) => ({
                path: e.instancePath,
                message: e.message ?? `must pass "${e.keyword}"`,
              })),
            };
    },
  };
}
