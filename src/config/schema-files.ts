/**
 * The edge of the schema registry: reads the partner-facing JSON Schemas from disk and hands
 * them, as values, to the pure {@link createSchemaRegistry} (src/schemas/schema-registry.ts),
 * which checks and compiles them.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createSchemaRegistry, type SchemaRegistry } from "../schemas/schema-registry.ts";

/** The repository's top-level `schemas/` folder. */
const DEFAULT_DIR = fileURLToPath(new URL("../../schemas/", import.meta.url));

/** Every `*.json` of `dir`, in file-name order, parsed; the name rules are checked later. */
export function readSchemaFiles(dir: string): Array<{ file: string; document: unknown }> {
  let entries: string[];
  try {
    entries = readdirSync(dir).filter((f) => f.endsWith(".json"));
  } catch (cause) {
    throw new Error(`schema registry: cannot read schema directory ${dir}`, { cause });
  }
  return entries.sort().map((file) => {
    let document: unknown;
    try {
      document = JSON.parse(readFileSync(join(dir, file), "utf8"));
    } catch (cause) {
      throw new Error(`schema registry: ${file}: not valid JSON`, { cause });
    }
    return { file, document };
  });
}

/** Reads and compiles every `*.json` of `dir` (default: the repository's `schemas/`). */
export function loadSchemaRegistry(dir: string = DEFAULT_DIR): SchemaRegistry {
  return createSchemaRegistry(readSchemaFiles(dir), { source: dir });
}
