/**
 * postgres.js (patched, patches/postgres+3.4.9.patch) with a DATABASE_URL naming several servers
 * (`target_session_attrs=primary`, what a failover needs): a query always settles, and a
 * connection never goes into service on a standby. The driver's multi-host code is only reached
 * while a connection is being made, so each test makes its connection fail at a chosen step:
 *
 * - its first query's backend terminated (a crash, a failover, `pg_terminate_backend`): 3.4.9
 *   and the patch's first version dropped the error while the connection was still "connecting"
 *   and another server was left, and the query never settled (with one server it rejects);
 * - the first server closing the connection with `FATAL 57P01` during its array-type query (a
 *   proxy in front of the primary): the error reached the next server's session, failed the query
 *   there and skipped the `target_session_attrs` check, and the connection served queries on the
 *   standby;
 * - a first server that accepts TCP and never answers: `CONNECT_TIMEOUT` failed the query without
 *   trying the next server;
 * - a first server refusing connections while it starts (`FATAL 57P03`, a stand-in server): the
 *   query failed without trying the next server, and in a pool every other new connection's
 *   first query failed.
 *
 * The pair of servers (a primary and a streaming standby, always in recovery here) is this
 * file's own (startPostgresReplicaPair in src/devtools/postgres-server.ts).
 */
import { once } from "node:events";
import {
  type AddressInfo,
  createConnection,
  createServer,
  type Server,
  type Socket,
} from "node:net";
import postgres from "postgres";
import { describe, expect, it } from "vitest";
import {
  CONNECT_TIMEOUT_SECONDS,
  isStoreUnavailable,
  openDatabase,
} from "../../src/store/database.ts";
import { waitFor } from "../helpers/network.ts";
import { describeError } from "../helpers/process-faults.ts";
import {
  fileReplicaPair,
  READY_FOR_QUERY,
  rejectionOf as rejection,
  type Settled,
  settleWithin,
} from "../helpers/replica-pair.ts";

/** A query whose connection failed must settle within this (it settles within a second here). */
const SETTLE_MS = 5_000;

let admin: postgres.Sql | undefined;
const servers: Server[] = [];

const { thePair, expectNoProcessFaults } = fileReplicaPair({
  started: async (pair) => {
    admin = postgres(pair.primary.url, { max: 1, onnotice: () => {} });
  },
  stopping: async () => {
    for (const server of servers) server.close();
    await admin?.end({ timeout: 1 });
  },
});

/** A URL naming two servers on 127.0.0.1, in this order, with `target_session_attrs=primary`. */
function twoServers(firstPort: number, secondPort: number): string {
  return `postgres://postgres@127.0.0.1:${firstPort},127.0.0.1:${secondPort}/postgres?target_session_attrs=primary`;
}

/** Both servers' URL with `target_session_attrs=primary`, the first one replaced by `first`. */
function urlWithFirst(firstPort: number): string {
  return twoServers(firstPort, thePair().standby.port);
}

/** A URL naming one server on 127.0.0.1. */
function oneServer(port: number): string {
  return `postgres://postgres@127.0.0.1:${port}/postgres`;
}

/** How a promise settles within SETTLE_MS, or "pending". */
function outcome(promise: Promise<unknown>): Promise<Settled> {
  return settleWithin(promise, SETTLE_MS);
}

/** The error a new pool (`options`) on `url` fails its first query with; the pool ended after. */
async function firstQueryFailure(
  url: string,
  options: postgres.Options<Record<string, never>>,
): Promise<unknown> {
  const sql = postgres(url, options);
  try {
    return rejection(await outcome(sql`SELECT 1`));
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** A TCP server on 127.0.0.1, closed after the file's tests. */
async function listen(onConnection: (socket: Socket) => void): Promise<number> {
  const server = createServer(onConnection);
  servers.push(server);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return (server.address() as AddressInfo).port;
}

/** PostgreSQL's ErrorResponse, severity FATAL, with SQLSTATE `code` and `message`. */
function fatalError(code: string, message: string): Buffer {
  const fields = Buffer.from(`SFATAL\0VFATAL\0C${code}\0M${message}\0\0`, "utf8");
  const head = Buffer.alloc(5);
  head.write("E", 0);
  head.writeUInt32BE(fields.length + 4, 1);
  return Buffer.concat([head, fields]);
}

/** PostgreSQL's ErrorResponse FATAL 57P01 admin_shutdown, as a fast shutdown sends it. */
function fatalAdminShutdown(): Buffer {
  return fatalError("57P01", "terminating connection due to administrator command");
}

describe("postgres.js with several servers: a new connection's first query whose backend is terminated", () => {
  it.each([
    ["one server (the primary)", () => thePair().primary.url],
    ["both servers, primary first", () => thePair().url],
  ])("%s: the query settles (store unavailable) and the next one runs", async (_, url) => {
    const sql = postgres(url(), { max: 1, onnotice: () => {}, backoff: () => 0.1 });
    try {
      // The pool's connection is opened for this query: it is the connection's first, sent
      // once the connection has its server's state and array types, while the pool still counts
      // it as connecting.
      const tag = `first_query_${Math.random().toString(36).slice(2)}`;
      const first = sql.unsafe(`SELECT pg_sleep(60) AS ${tag}`);
      // postgres.js sends a query once something waits on it.
      first.catch(() => {});
      const killed = await waitFor("the first query running", async () => {
        const rows = await (admin as postgres.Sql)<{ terminated: boolean }[]>`
          SELECT pg_terminate_backend(pid) AS terminated FROM pg_stat_activity
          WHERE state = 'active' AND query LIKE ${`%${tag}%`} AND pid <> pg_backend_pid()`;
        return rows.length > 0 ? rows : undefined;
      });
      expect(killed).toEqual([{ terminated: true }]);
      // Patch before this fix, both servers: still pending after 5 s (and for ever).
      const failed = rejection(await outcome(first));
      expect(failed, describeError(failed)).toMatchObject({ code: "CONNECTION_CLOSED" });
      expect(isStoreUnavailable(failed)).toBe(true);

      const next = await outcome(
        sql<{ recovery: boolean }[]>`SELECT pg_is_in_recovery() AS recovery`,
      );
      expect(next).toEqual({ resolved: [{ recovery: false }] });

      // The same query once the connection is in service: it rejected before the fix too.
      const later = sql.unsafe(`SELECT pg_sleep(60) AS ${tag}_later`);
      later.catch(() => {});
      await waitFor("the later query running", async () => {
        const rows = await (admin as postgres.Sql)`
          SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE state = 'active' AND query LIKE ${`%${tag}_later%`} AND pid <> pg_backend_pid()`;
        return rows.length > 0 ? true : undefined;
      });
      const laterFailed = rejection(await outcome(later));
      expect(laterFailed, describeError(laterFailed)).toMatchObject({ code: "CONNECTION_CLOSED" });
      expect(await outcome(sql`SELECT 1 AS one`)).toEqual({ resolved: [{ one: 1 }] });
    } finally {
      await sql.end({ timeout: 1 });
    }
    expectNoProcessFaults();
  });
});

describe("postgres.js with several servers: the first server closes the connection while it starts", () => {
  it("the next server's session does not inherit the first one's error: the standby is refused, never used", async () => {
    // A proxy to the primary that lets the connection's startup through, then answers the
    // client's next message (the array-type query postgres.js runs before the first query) with
    // FATAL 57P01, as a server shutting down does, and closes.
    const cuts: number[] = [];
    const proxyPort = await listen((client) => {
      const server = createConnection(thePair().primary.port, "127.0.0.1");
      let ready = false;
      let cut = false;
      server.on("data", (data: Buffer) => {
        if (cut) return;
        client.write(data);
        if (data.includes(READY_FOR_QUERY)) ready = true;
      });
      client.on("data", (data: Buffer) => {
        if (cut) return;
        if (!ready) {
          server.write(data);
          return;
        }
        cut = true;
        cuts.push(Date.now());
        client.end(fatalAdminShutdown());
        server.destroy();
      });
      client.on("error", () => {});
      server.on("error", () => {});
      client.on("close", () => server.destroy());
    });
    const sql = postgres(urlWithFirst(proxyPort), {
      max: 1,
      onnotice: () => {},
      backoff: () => 0.1,
    });
    try {
      // No server is a primary that works: the proxy fails every connection, the standby is
      // in recovery. Each query must fail (store unavailable). Before the fix the first failed
      // with the proxy's 57P01, received in the standby's session, and the connection then served
      // the next queries on the standby (recovery true; writes 25006).
      const results: Settled[] = [];
      for (let i = 0; i < 3; i++) {
        results.push(
          await outcome(sql<{ recovery: boolean }[]>`SELECT pg_is_in_recovery() AS recovery`),
        );
      }
      expect(results.filter((result) => result === "pending" || "resolved" in result)).toEqual([]);
      for (const result of results) {
        const failed = rejection(result);
        expect(failed, describeError(failed)).toMatchObject({ code: "CONNECTION_DESTROYED" });
        expect(isStoreUnavailable(failed)).toBe(true);
      }
      // The proxy really cut connections during their array-type query.
      expect(cuts.length).toBeGreaterThan(0);
    } finally {
      await sql.end({ timeout: 1 });
    }
    expectNoProcessFaults();
  });
});

describe("postgres.js with several servers: a server that accepts connections and never answers", () => {
  it("after connect_timeout the next server is tried; with none left the query fails with CONNECT_TIMEOUT", async () => {
    // A hung or stopped server (SIGSTOP): the kernel still accepts its connections.
    const silentPort = await listen(() => {});
    const otherSilentPort = await listen(() => {});
    const primaryPort = thePair().primary.port;
    const options = { max: 1, onnotice: () => {}, backoff: () => 0.1, connect_timeout: 1 };

    const silentThenPrimary = postgres(twoServers(silentPort, primaryPort), options);
    try {
      // Before the fix: rejected with CONNECT_TIMEOUT after 1 s, the primary never tried.
      const result = await outcome(
        silentThenPrimary<{ recovery: boolean }[]>`SELECT pg_is_in_recovery() AS recovery`,
      );
      expect(result).toEqual({ resolved: [{ recovery: false }] });
    } finally {
      await silentThenPrimary.end({ timeout: 1 });
    }

    // Neither answers: each tried once, then the query fails.
    const bothSilent = await firstQueryFailure(twoServers(silentPort, otherSilentPort), options);
    expect(bothSilent, describeError(bothSilent)).toMatchObject({ code: "CONNECT_TIMEOUT" });
    expect(isStoreUnavailable(bothSilent)).toBe(true);

    // One server: unchanged, CONNECT_TIMEOUT.
    const single = await firstQueryFailure(oneServer(silentPort), options);
    expect(single, describeError(single)).toMatchObject({ code: "CONNECT_TIMEOUT" });
    expectNoProcessFaults();
  });
});

/** PostgreSQL's ErrorResponse FATAL 57P03 cannot_connect_now, as a server starting up sends it. */
function fatalCannotConnectNow(): Buffer {
  return fatalError("57P03", "the database system is starting up");
}

/** A stand-in server answering every connection's startup with FATAL 57P03, counting them. */
async function refusing(): Promise<{ port: number; connections: () => number }> {
  let connections = 0;
  const port = await listen((socket) => {
    connections++;
    socket.once("data", () => socket.end(fatalCannotConnectNow()));
    socket.on("error", () => {});
  });
  return { port, connections: () => connections };
}

describe("postgres.js with several servers: a server that refuses connections while it starts (57P03)", () => {
  it("the next server is tried; with every server refusing, each is tried once and the query fails 57P03", async () => {
    const starting = await refusing();
    const primaryPort = thePair().primary.port;
    const options = { max: 1, onnotice: () => {}, backoff: () => 0.1 };

    // Each a new connection whose first attempt is the refusing server (a new pool starts with
    // the first server named). Before the fix: each rejected 57P03, the primary never tried.
    for (let i = 0; i < 3; i++) {
      const sql = postgres(twoServers(starting.port, primaryPort), options);
      try {
        const result = await outcome(sql<{ port: number }[]>`SELECT inet_server_port() AS port`);
        expect(result).toEqual({ resolved: [{ port: primaryPort }] });
      } finally {
        await sql.end({ timeout: 1 });
      }
    }
    expect(starting.connections()).toBe(3);

    // Both refuse: each tried once for the query, then it fails with the last one's error.
    const other = await refusing();
    const before = starting.connections();
    const bothRefusing = await firstQueryFailure(twoServers(starting.port, other.port), options);
    expect(bothRefusing, describeError(bothRefusing)).toMatchObject({ code: "57P03" });
    expect(isStoreUnavailable(bothRefusing)).toBe(true);
    expect([starting.connections() - before, other.connections()]).toEqual([1, 1]);

    // One server: unchanged, 57P03 at once.
    const single = await firstQueryFailure(oneServer(starting.port), options);
    expect(single, describeError(single)).toMatchObject({ code: "57P03" });
    expectNoProcessFaults();
  });

  it("a pool whose first server refuses no longer fails every other new connection's first query", async () => {
    const starting = await refusing();
    const primaryPort = thePair().primary.port;
    let closes = 0;
    const sql = postgres(twoServers(starting.port, primaryPort), {
      max: 1,
      onnotice: () => {},
      backoff: () => 0.1,
      onclose: () => closes++,
    });
    try {
      // Each round's connection is terminated once its query ran, so the next query is a new
      // connection's first, whose attempts start with the server after the one last tried.
      // Before the fix: resolved and 57P03 in turn.
      const results: Settled[] = [];
      for (let i = 0; i < 4; i++) {
        const result = await outcome(
          sql<{ pid: number; port: number }[]>`
            SELECT pg_backend_pid() AS pid, inet_server_port() AS port`,
        );
        results.push(result);
        const pid = result !== "pending" && "resolved" in result ? result.resolved : undefined;
        const [row] = (pid ?? []) as { pid: number }[];
        if (row === undefined) continue;
        const closed = closes;
        await (admin as postgres.Sql)`SELECT pg_terminate_backend(${row.pid})`;
        await waitFor("the pool to see its connection closed", async () =>
          closes > closed ? true : undefined,
        );
      }
      expect(results.map((r) => (r !== "pending" && "resolved" in r ? "resolved" : r))).toEqual([
        "resolved",
        "resolved",
        "resolved",
        "resolved",
      ]);
      expect(starting.connections()).toBeGreaterThan(0);
    } finally {
      await sql.end({ timeout: 1 });
    }
    expectNoProcessFaults();
  });
});

describe("openDatabase: a first server that never answers", () => {
  it(`costs a new connection ${CONNECT_TIMEOUT_SECONDS} s (connect_timeout), not postgres.js's 30 s, before the next server`, async () => {
    const silentPort = await listen(() => {});
    const started = performance.now();
    // The migrations run on the primary, the second server named.
    const database = await openDatabase({
      url: twoServers(silentPort, thePair().primary.port),
    });
    const elapsedMs = performance.now() - started;
    await database.close();
    // With postgres.js's default (30 s) it took more than 30 s.
    expect(elapsedMs).toBeGreaterThanOrEqual(CONNECT_TIMEOUT_SECONDS * 1000 - 100);
    expect(elapsedMs).toBeLessThan(20_000);
  }, 60_000);
});
