/**
 * Set-based statements for the hot path, the same on postgres.js and PGlite: a batch travels as
 * one parameter — a JSON document (`json_array_elements`) or a PostgreSQL array literal
 * (`unnest`, `= any`) — so a statement's text does not depend on the batch's size. The server
 * then prepares it once per connection, and drizzle only wraps a short `sql` template instead of
 * building a query from column objects for every row (which the profile showed costing more
 * than the signing).
 *
 * Raw results differ by driver (postgres.js returns the rows, PGlite `{ rows }`), and timestamps
 * come back as text from both under drizzle: `rowsOf` and `new Date(text)` smooth that over.
 */
import type { SQL } from "drizzle-orm";
import type { Db } from "./database.ts";

/** What verifyInbound and the schemas let through as an id; anything else cannot be logged. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function uuidsOnly(ids: Iterable<string>): string[] {
  return [...new Set(ids)].filter((id) => UUID.test(id));
}

/**
 * A PostgreSQL array literal of text elements (`{"a","b"}`), every element quoted: cast it in
 * the statement (`::uuid[]`, `::text[]`).
 */
export function pgArray(values: readonly string[]): string {
  return `{${values.map((v) => `"${v.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`).join(",")}}`;
}

/** Runs a raw statement and returns its rows, whichever driver is underneath. */
export async function rows<T>(db: Db, query: SQL): Promise<T[]> {
  const result = (await db.execute(query)) as unknown;
  return (Array.isArray(result) ? result : (result as { rows: T[] }).rows) as T[];
}
