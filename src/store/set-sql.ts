/**
 * Set-based statements for the hot path, the same on postgres.js and PGlite: a batch travels as
 * one parameter per kind of column — a JSON document (`json_to_recordset`) for the short ones, a
 * PostgreSQL array literal (`unnest`, `= any`) for ids and for the signed bytes (message-row.ts)
 * — so a statement's text does not depend on the batch's size, and drizzle
 * only wraps a short `sql` template instead of building a query from column objects for every
 * row (which the profile showed costing more than the signing).
 *
 * On postgres.js these statements run as named prepared statements (`rows`, `run`): parsed once
 * per connection, then one Bind/Execute per call (each execution is still planned for its
 * parameters: plan_cache_mode, see database.ts). drizzle's own `execute` passes
 * `prepare: false` for any statement it was not given a name for, and postgres.js then sends
 * every call as Parse + Describe, waits for the parameter types, and only then binds and
 * executes: two round trips and a new parse per call. Only statements of constant text may go
 * through here (each distinct text stays prepared for the connection's life).
 *
 * Raw results differ by driver (postgres.js returns the rows, PGlite `{ rows }`), and timestamps
 * come back as text from both under drizzle: `rows` and `new Date(text)` smooth that over.
 */
import type { SQL } from "drizzle-orm";
import { PgDialect } from "drizzle-orm/pg-core";
import { PostgresJsSession } from "drizzle-orm/postgres-js";
import type { Db } from "./database.ts";

const dialect = new PgDialect();

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
  // Built by appending (a rope, flattened once when the driver encodes it): mapping each value
  // to a quoted string and joining them cost 1.7 times as much for a batch of 6.6 kB JWS.
  let literal = "{";
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as string;
    const escaped =
      v.indexOf('"') < 0 && v.indexOf("\\") < 0
        ? v
        : v.replaceAll("\\", "\\\\").replaceAll('"', '\\"');
    literal += i === 0 ? `"${escaped}"` : `,"${escaped}"`;
  }
  return `${literal}}`;
}

/**
 * Runs a raw statement of constant text and returns its rows, whichever driver is underneath
 * (`db` may be a transaction): a prepared statement on postgres.js, drizzle's `execute` on PGlite.
 */
export async function rows<T>(db: Db, query: SQL): Promise<T[]> {
  const session: unknown = db._.session;
  if (session instanceof PostgresJsSession) {
    const { sql: text, params } = dialect.sqlToQuery(query);
    return (await session.client.unsafe(text, params as never[], { prepare: true })) as T[];
  }
  const result = (await db.execute(query)) as unknown;
  return (Array.isArray(result) ? result : (result as { rows: T[] }).rows) as T[];
}

/** `rows`, for a statement whose rows nobody reads. */
export async function run(db: Db, query: SQL): Promise<void> {
  await rows(db, query);
}
