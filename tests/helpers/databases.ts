import { randomBytes } from "node:crypto";
import { withClient } from "../../src/devtools/postgres-server.ts";
import { type Database, type Db, openDatabase } from "../../src/store/database.ts";
import { SqlPartyStore } from "../../src/store/party-store.ts";

export interface TestDatabase {
  /** URL of the new database (same server, user and options as serverUrl). */
  url: string;
  /** Terminates the connections to the database and drops it. Idempotent. */
  drop(): Promise<void>;
}

/**
 * Creates a fresh, empty database with a random name (`t_<hex>`) on the server behind
 * `serverUrl` (whose user needs CREATEDB), so that test files can run in parallel.
 */
export async function createTestDatabase(serverUrl: string): Promise<TestDatabase> {
  const name = `t_${randomBytes(8).toString("hex")}`;
  await withClient(serverUrl, async (sql) => {
    // CREATE DATABASE fails with 55006 while another session is connected to the template.
    for (let attempt = 1; ; attempt++) {
      try {
        await sql`CREATE DATABASE ${sql(name)}`;
        return;
      } catch (err) {
        if (errorCode(err) !== "55006" || attempt >= 10) throw err;
        await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
      }
    }
  });

  const url = new URL(serverUrl);
  url.pathname = `/${name}`;

  let dropping: Promise<void> | undefined;
  const drop = (): Promise<void> => {
    dropping ??= withClient(serverUrl, async (sql) => {
      await sql`
        SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = ${name} AND pid <> pg_backend_pid()`;
      await sql`DROP DATABASE IF EXISTS ${sql(name)} WITH (FORCE)`;
    });
    return dropping;
  };

  return { url: url.toString(), drop };
}

function errorCode(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err ? String(err.code) : undefined;
}

/**
 * Registers each party id as a border-police liaison office without keys, its country the id's
 * first two letters, its inbound subject `liaison.inbox.<id>`: the partners a store test needs.
 */
export async function registerParties(db: Db, ids: readonly string[]): Promise<void> {
  const parties = new SqlPartyStore(db);
  for (const id of ids) {
    await parties.register(
      {
        id,
        name: id,
        country: id.slice(0, 2),
        kind: "border-police-liaison-office",
        inboundSubject: `liaison.inbox.${id}`,
      },
      [],
    );
  }
}

/**
 * The store on `driver`, for tests that run on both: a new database on the suite's PostgreSQL
 * server (`serverUrl`), dropped by `drop()`, or an in-memory PGlite (`drop()` does nothing).
 */
export async function openDriverDatabase(
  driver: "postgres" | "pglite",
  serverUrl: string,
): Promise<{ database: Database; drop: () => Promise<void> }> {
  if (driver === "pglite") {
    return { database: await openDatabase({ inMemory: true }), drop: async () => {} };
  }
  const db = await createTestDatabase(serverUrl);
  return { database: await openDatabase({ url: db.url }), drop: db.drop };
}
