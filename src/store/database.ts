/**
 * Opens the store: postgres.js when a DATABASE_URL is configured, PGlite (a data directory)
 * otherwise. Both give the same drizzle `PgDatabase`, and migrations from drizzle/ run at open.
 */
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import { LiaisonError } from "../protocol/errors.ts";
import * as schema from "./schema.ts";

export type Schema = typeof schema;
export type Db = PgDatabase<PgQueryResultHKT, Schema>;

export interface Database {
  db: Db;
  driver: "postgres" | "pglite";
  close(): Promise<void>;
}

export const MIGRATIONS_FOLDER = fileURLToPath(new URL("../../drizzle", import.meta.url));

export type DatabaseTarget = { url: string } | { dataDir: string } | { inMemory: true };

/**
 * Seconds a closed connection of the postgres.js pool waits before it reconnects, after
 * `failures` connections in a row ended in an error: none after a clean close, then 0.1 s,
 * doubling, at most 1 s. (postgres.js's default grows to 20 s after a handful of refused
 * connections, so a gateway would stay unable to reach a database for up to 20 s after the
 * database came back from a restart, and a request meanwhile would wait as long for its 503.) The pool reconnects lazily: a query on a closed connection
 * opens it again, and a query that fails meanwhile rejects (store unavailable) for the caller to
 * retry: the dispatcher on its next pass, the inbox by a redelivery, the HTTP client after
 * `Retry-After`.
 */
export function reconnectBackoffSeconds(failures: number): number {
  return failures <= 0 ? 0 : Math.min(0.05 * 2 ** failures, 1);
}

/**
 * A DATABASE_URL may name several servers (`postgres://u@h1:5432,h2:5432/db`) for a failover:
 * with `target_session_attrs=primary` postgres.js connects only to the one that is not in
 * recovery, trying them in turn. Any other value is refused, and so is a list without it: the
 * gateway writes, and postgres.js 3.4.9 takes a hot standby for `read-write` (it checks
 * `default_transaction_read_only`, which is off on a standby, not `in_hot_standby`), while
 * without the parameter it connects to whichever server it tries first.
 */
function checkTargetSessionAttrs(url: string, env = process.env): void {
  // Read as postgres.js 3.4.9 reads it (parseUrl and its options): the hosts follow the first
  // `@` of the authority, percent-decoded; an empty parameter gives way to the environment's.
  const authority = url.slice(url.indexOf("://") + 3).split(/[/?]/)[0] ?? "";
  let hosts: string;
  try {
    hosts = decodeURIComponent(authority.slice(authority.indexOf("@") + 1));
  } catch {
    throw new LiaisonError("config_invalid", INVALID_URL);
  }
  const query = url.includes("?") ? url.slice(url.indexOf("?") + 1) : "";
  const attrs =
    new URLSearchParams(query).get("target_session_attrs") || env.PGTARGETSESSIONATTRS || "";
  if (attrs !== "" && attrs !== "primary") {
    throw new LiaisonError(
      "config_invalid",
      "DATABASE_URL: target_session_attrs must be primary (the gateway writes to the database)",
    );
  }
  if (hosts.includes(",") && attrs !== "primary") {
    throw new LiaisonError(
      "config_invalid",
      "DATABASE_URL names several servers: add target_session_attrs=primary, or the gateway may connect to a standby",
    );
  }
}

/** Names the setting and the rule, never the value: the URL holds the password. */
const INVALID_URL =
  "DATABASE_URL is not a valid postgres:// URL (percent-encode reserved characters in the user name and password)";

/**
 * postgres.js with the gateway's options. A URL it cannot parse is a typed error naming the
 * setting: the driver's own (Node's ERR_INVALID_URL) carries the whole URL, password included,
 * as its `input`, which Node prints for an uncaught error.
 */
function postgresClient(url: string, options: postgres.Options<Record<string, never>>) {
  try {
    return postgres(url, options);
  } catch (err) {
    if ((err as { code?: unknown }).code === "ERR_INVALID_URL") {
      throw new LiaisonError("config_invalid", INVALID_URL);
    }
    throw err;
  }
}

/** postgres.js `connect_timeout` (its default: 30 s); openDatabase says why. */
export const CONNECT_TIMEOUT_SECONDS = 5;

/**
 * The patched postgres.js's `query_timeout` for the pool (patches/README.md, item 6): how long
 * the server may send nothing while a query of the gateway waits on a connection before that
 * connection is given up, its queries failing (QUERY_TIMEOUT, store unavailable: `503` with
 * `Retry-After`) and the pool reconnecting it, to the next server named in DATABASE_URL if any.
 * Without it a server that stops answering (its processes hung or stopped, stuck storage) held
 * the query, the queries behind it and the request waiting for them for ever (tried: still
 * pending after 60 s): a stopped server's kernel still acknowledges TCP, so neither keepalive nor
 * the operating system gives up. The gateway's statements are short and batched (milliseconds; a
 * commit adds a round trip to a synchronous standby, a case lock waits for one short
 * transaction), so 15 s of silence is not a slow statement but a server not working for the
 * gateway, with room left for a loaded server's I/O stalls; it stays under the 30 s at which HTTP
 * clients and proxies commonly give up, so a request waiting on such a server gets its 503. Not a
 * setting: it bounds the gateway's own statements, which an operator does not choose. The
 * migrations at start are exempt (openDatabase).
 */
export const QUERY_TIMEOUT_SECONDS = 15;

/**
 * The pool's `statement_timeout` (PostgreSQL's own, in the connection's startup parameters): a
 * second below QUERY_TIMEOUT_SECONDS, so that a server that is slow but working (a statement
 * waiting for a lock, a long statement) cancels the statement itself before the client's
 * deadline gives the connection up. Given up, the connection is closed without a cancel request
 * and the server runs what it had received to the end: an autocommit insert was committed after
 * its caller had been told it failed (tried: a lock held 4 s, the deadline 2 s). Cancelled by
 * the server, the statement fails with SQLSTATE 57014 (store unavailable, 503), its transaction
 * is rolled back, and the connection stays in service. It does not bound a COMMIT waiting for a
 * synchronous standby (PostgreSQL stops the timer before committing): there the client's
 * deadline still decides. The migrations are exempt, as from query_timeout (openDatabase).
 */
export const STATEMENT_TIMEOUT_MS = QUERY_TIMEOUT_SECONDS * 1000 - 1000;

export async function openDatabase(target: DatabaseTarget): Promise<Database> {
  if ("url" in target) {
    checkTargetSessionAttrs(target.url);
    const options = {
      onnotice: () => {},
      backoff: reconnectBackoffSeconds,
      // How long a new connection may take to be ready (TCP, TLS, authentication) before it
      // gives up on that server: the next one named in DATABASE_URL (patched driver), else the
      // query fails (CONNECT_TIMEOUT, store unavailable). A server that accepts connections and
      // never answers (stopped, or its machine gone behind a firewall that drops packets) held
      // each new connection, and the request waiting for it, 30 s with postgres.js's default.
      // Measured on a shared 2-core test machine: 20 ms for a connection alone, at most 0.2 s
      // for 10 at once and 1 s for 40 at once; 5 s leaves room for a loaded server.
      connect_timeout: CONNECT_TIMEOUT_SECONDS,
      // The hot path's statements are prepared (set-sql.ts) and take a batch as one JSON or
      // array parameter: a generic plan, which PostgreSQL switches to after five executions,
      // cannot see the batch and was measured to more than double PostgreSQL's CPU per message.
      // Plan each execution for its parameters; the parse is still saved.
      connection: { plan_cache_mode: "force_custom_plan" },
    } satisfies postgres.Options<Record<string, never>>;
    // The migrations run on a connection of their own, without query_timeout or
    // statement_timeout: how long one
    // takes depends on the data (a statement rewriting the message log takes as long as the
    // table is big), so no bound fits every installation. A server that stops answering during
    // the migrations stalls the start, before the gateway listens; its next start connects anew.
    const migrator = postgresClient(target.url, { ...options, max: 1 });
    try {
      await migratePostgres(drizzlePostgres({ client: migrator, schema }), {
        migrationsFolder: MIGRATIONS_FOLDER,
      });
    } finally {
      await migrator.end({ timeout: 5 });
    }
    const client = postgresClient(target.url, {
      ...options,
      max: 10,
      query_timeout: QUERY_TIMEOUT_SECONDS,
      connection: { ...options.connection, statement_timeout: STATEMENT_TIMEOUT_MS },
    });
    const db = drizzlePostgres({ client, schema });
    return { db: db as unknown as Db, driver: "postgres", close: () => client.end({ timeout: 5 }) };
  }
  let client: PGlite;
  if ("dataDir" in target) {
    mkdirSync(target.dataDir, { recursive: true, mode: 0o700 });
    client = await PGlite.create(target.dataDir);
  } else {
    client = await PGlite.create();
  }
  const db = drizzlePglite({ client, schema });
  try {
    await migratePglite(db, { migrationsFolder: MIGRATIONS_FOLDER });
  } catch (err) {
    await client.close();
    throw err;
  }
  return { db: db as unknown as Db, driver: "pglite", close: () => client.close() };
}

/** Node's socket errors that mean the database server cannot be reached (now). */
const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
]);

/** Node's TLS client, the connection closed before the handshake ended (_tls_wrap onConnectEnd). */
const TLS_HANDSHAKE_CUT = "Client network socket disconnected before secure TLS connection";

/** postgres.js's own connection errors (`Errors.connection`: `code` and `errno` both the name). */
const DRIVER_CODES = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  // The patched driver's query_timeout (QUERY_TIMEOUT_SECONDS): the server stopped answering.
  "QUERY_TIMEOUT",
]);

/**
 * SQLSTATEs of a server going away or not taking connections: class 08 (connection exception,
 * but not 08P01, a protocol violation: a bug), 57P01 admin_shutdown (a fast shutdown or
 * restart), 57P02 crash_shutdown, 57P03 cannot_connect_now (starting up, shutting down, in
 * recovery), 53300 too_many_connections; and 25006 read_only_sql_transaction, a server not
 * taking writes now (the gateway never opens a read-only transaction): a standby still in
 * recovery, as when a name or address moves to it before its promotion ended (its sessions take
 * writes once it is promoted), or a server set read-only; and 57014 query_canceled: the pool's
 * statement_timeout (STATEMENT_TIMEOUT_MS), a server too slow for the gateway now (a lock held
 * by another session, an overloaded server), the statement rolled back (the gateway sends no
 * cancel request of its own; an administrator's pg_cancel_backend is the same answer).
 */
const SQLSTATES = new Set([
  "25006",
  "08000",
  "08001",
  "08003",
  "08004",
  "08006",
  "57P01",
  "57P02",
  "57P03",
  "53300",
  "57014",
]);

/** PGlite's errors once the embedded database was closed (the gateway is stopping). */
const PGLITE_MESSAGES = new Set(["PGlite is closed", "PGlite is closing"]);

/**
 * Whether `err` says the store cannot be reached right now — the database server restarting,
 * failing over, down or unreachable, or the embedded database closed — rather than that the
 * request or the data is wrong. Such a failure is transient: the same work succeeds once the
 * database is back (HTTP answers `503 store_unavailable` with `Retry-After`). The one place that
 * classifies them; it looks through `cause` chains (drizzle wraps a failed query's error in a
 * DrizzleQueryError whose message quotes the SQL and its parameters) and AggregateErrors.
 */
export function isStoreUnavailable(err: unknown): boolean {
  const seen = new Set<unknown>();
  const pending: unknown[] = [err];
  while (pending.length > 0) {
    const e = pending.pop();
    if (typeof e !== "object" || e === null || seen.has(e) || seen.size > 20) continue;
    seen.add(e);
    if (unavailable(e)) return true;
    if ("cause" in e) pending.push(e.cause);
    if (e instanceof AggregateError) pending.push(...e.errors);
  }
  return false;
}

function unavailable(e: object): boolean {
  const { code, errno, syscall, name, message } = e as {
    code?: unknown;
    errno?: unknown;
    syscall?: unknown;
    name?: unknown;
    message?: unknown;
  };
  if (typeof code === "string") {
    // A Node socket error (it names its system call), not another library's code of that name.
    if (NETWORK_CODES.has(code) && typeof syscall === "string") return true;
    // A server reached over a Unix socket removes the socket's file while it is down.
    if (code === "ENOENT" && syscall === "connect") return true;
    // A server going away during the TLS handshake (sslmode=require): Node's TLS client says so
    // in an ECONNRESET without a syscall (an HTTP client's abort has another message).
    if (
      code === "ECONNRESET" &&
      typeof message === "string" &&
      message.startsWith(TLS_HANDSHAKE_CUT)
    ) {
      return true;
    }
    // A write to a socket the server has ended (net's writeAfterFIN, "This socket has been ended
    // by the other party"): an EPIPE without a syscall; with one, a write the kernel refused.
    // Only sockets and pipes break; no library the store path calls uses the code otherwise.
    if (code === "EPIPE") return true;
    // postgres.js's connection errors; nats.js has a CONNECTION_CLOSED of its own, without errno.
    if (DRIVER_CODES.has(code) && errno === code) return true;
    if (name === "PostgresError" && SQLSTATES.has(code)) return true;
  }
  return e instanceof Error && typeof message === "string" && PGLITE_MESSAGES.has(message);
}
