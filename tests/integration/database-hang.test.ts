/**
 * A PostgreSQL server that stops answering (issue 12, part 3): its processes stopped with SIGSTOP,
 * as a hung server (stuck storage, a frozen machine) is. Its kernel still accepts and
 * acknowledges TCP, so nothing below the driver ever gives up: unpatched, a query in flight, the
 * queries queued behind it and a query sent on an idle connection waited for ever (tried: still
 * pending after 60 s, with one server and with a standby promoted meanwhile). The patched
 * postgres.js's `query_timeout` (patches/README.md, item 6; openDatabase sets it) gives a
 * connection up once the server has sent nothing for that long while queries wait on it: they
 * fail `QUERY_TIMEOUT` (store unavailable, a `503` at the HTTP API), and the pool's next query
 * reconnects, to the promoted standby when DATABASE_URL names it. A transaction on the given-up
 * connection is never committed half. At the gateway, a submit answers `503 store_unavailable`
 * after 15 s (unpatched: no answer).
 *
 * The pair of servers (a primary and a streaming standby) is this file's own
 * (startPostgresReplicaPair in src/devtools/postgres-server.ts). The tests run in order; the last
 * one promotes the standby.
 */
import { execFileSync } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { type AddressInfo, createConnection, createServer, type Socket } from "node:net";
import { dirname, join } from "node:path";
import { finished } from "node:stream/promises";
import { sql as drizzleSql, type SQL } from "drizzle-orm";
import postgres from "postgres";
import { describe, expect, inject, it } from "vitest";
import {
  findPostgresBinaries,
  pauseServer,
  resumeServer,
  withClient,
} from "../../src/devtools/postgres-server.ts";
import {
  CONNECT_TIMEOUT_SECONDS,
  type Database,
  isStoreUnavailable,
  openDatabase,
  QUERY_TIMEOUT_SECONDS,
  STATEMENT_TIMEOUT_MS,
} from "../../src/store/database.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/databases.ts";
import { call, startPair, waitFor } from "../helpers/network.ts";
import { describeError } from "../helpers/process-faults.ts";
import { CASE_NOTICE_BODY } from "../helpers/protocol-fixtures.ts";
import {
  fileReplicaPair,
  READY_FOR_QUERY,
  rejectionOf,
  type Settled,
  settleWithin,
} from "../helpers/replica-pair.ts";

/** The driver-level tests' query_timeout (seconds). */
const DEADLINE_S = 2;
/** Slack for a loaded machine between the deadline and the rejection observed. */
const SLACK_MS = 4_000;
/** How long a test waits for a promise before calling it pending (hung). */
const PENDING_MS = 15_000;

/** Data directories of servers this file stopped and has not resumed. */
const stopped = new Set<string>();

const { thePair, expectNoProcessFaults } = fileReplicaPair({
  started: (pair) =>
    withClient(pair.primary.url, (sql) => sql`CREATE TABLE hang_probe (tag text, n int)`),
  stopping: () => {
    for (const dataDir of stopped) resume(dataDir);
  },
});

/** Stops the server in `dataDir` (pauseServer) and remembers it, for afterAll. */
function hang(dataDir: string): void {
  stopped.add(dataDir);
  pauseServer(dataDir);
}

function resume(dataDir: string): void {
  resumeServer(dataDir);
  stopped.delete(dataDir);
}

type Outcome = (Exclude<Settled, "pending"> & { ms: number }) | "pending";

/** How a promise settles within `ms` and when (ms since `since`), or "pending". */
function outcome(promise: Promise<unknown>, since: number, ms = PENDING_MS): Promise<Outcome> {
  let settledAt = 0;
  const timed = promise.finally(() => {
    settledAt = performance.now();
  });
  return settleWithin(timed, ms).then(
    (result): Outcome => (result === "pending" ? result : { ...result, ms: settledAt - since }),
  );
}

/** The error of a rejected outcome and when it came (the test fails on any other outcome). */
function rejection(result: Outcome): { error: unknown; ms: number } {
  const error = rejectionOf(result);
  return { error, ms: (result as { ms: number }).ms };
}

/** The driver's QUERY_TIMEOUT, store unavailable. */
function expectQueryTimeout(error: unknown): void {
  expect(error, describeError(error)).toMatchObject({ code: "QUERY_TIMEOUT" });
  expect(isStoreUnavailable(error)).toBe(true);
}

/**
 * Rejected with the driver's QUERY_TIMEOUT (store unavailable), `deadlineMs` after `since`
 * (`earlyMs` before it at the earliest: the server's last bytes may have come before `since`).
 */
function expectTimedOut(result: Outcome, deadlineMs: number, earlyMs = 50): void {
  const { error, ms } = rejection(result);
  expectQueryTimeout(error);
  expect(ms).toBeGreaterThanOrEqual(deadlineMs - earlyMs);
  expect(ms).toBeLessThan(deadlineMs + SLACK_MS);
}

/** A tag unique to one test's hang_probe rows. */
function uniqueTag(prefix: string): string {
  return `${prefix}_${Math.random().toString(36).slice(2)}`;
}

/** The backend pid of the session `sql` runs on. */
async function backendPid(sql: postgres.Sql | postgres.TransactionSql): Promise<number> {
  return (await sql<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`)[0]?.pid ?? 0;
}

/**
 * Runs a test's `body` on the driver `sql`; whatever happens, then resumes the primary (when
 * `resumePrimary`) and ends `sql`. Once the body passed, nothing may have been thrown where no
 * caller could catch it.
 */
async function runOn(sql: postgres.Sql, body: () => Promise<void>, resumePrimary = true) {
  try {
    await body();
  } finally {
    if (resumePrimary) resume(thePair().primary.dataDir);
    await sql.end({ timeout: 1 });
  }
  expectNoProcessFaults();
}

/**
 * Runs `body` with a database of its own on the primary, opened as the gateway opens its store
 * (openDatabase); closes and drops it after.
 */
async function withOpenDatabase(
  body: (database: Database, testDb: TestDatabase) => Promise<void>,
): Promise<void> {
  const testDb = await createTestDatabase(thePair().primary.url);
  const database = await openDatabase({ url: testDb.url });
  try {
    await body(database, testDb);
  } finally {
    await database.close();
    await testDb.drop();
  }
}

/** How a query on openDatabase's pool settles (timed from now, pending after its deadline). */
function poolOutcome(database: Database, query: SQL): Promise<Outcome> {
  const sentAt = performance.now();
  return outcome(database.db.execute(query), sentAt, QUERY_TIMEOUT_SECONDS * 1000 + PENDING_MS);
}

/**
 * Rejected, store unavailable, with the driver's error `code` as the cause (drizzle wraps it),
 * `fromMs` after it was sent at the earliest (less 50 ms) and before `beforeMs`.
 */
function expectPoolFailure(result: Outcome, code: string, fromMs: number, beforeMs: number) {
  const { error, ms } = rejection(result);
  expect((error as Error).cause, describeError(error)).toMatchObject({ code });
  expect(isStoreUnavailable(error), describeError(error)).toBe(true);
  expect(ms).toBeGreaterThanOrEqual(fromMs - 50);
  expect(ms).toBeLessThan(beforeMs);
}

/** Rows of hang_probe with `tag`, read once the backend `pid` is gone (its work ended). */
async function probeRows(tag: string, pid: number): Promise<number[]> {
  return withClient(thePair().primary.url, async (sql) => {
    await waitFor("the transaction's backend to exit", async () => {
      const rows = await sql`SELECT 1 FROM pg_stat_activity WHERE pid = ${pid}`;
      return rows.length === 0 ? true : undefined;
    });
    const rows = await sql<{ n: number }[]>`SELECT n FROM hang_probe WHERE tag = ${tag} ORDER BY n`;
    return rows.map((r) => r.n);
  });
}

/** How often a ticking statement sends the client a notice (ms). */
const TICK_MS = 100;

/**
 * A statement that runs for `seconds` and sends the client a notice every TICK_MS, so that the
 * driver's deadline (2 s) never expires while the server works: its query can only time out if
 * the server stops. `label` names it in pg_stat_activity (a comment in its text). Resolves `[]`.
 */
function ticking(sql: postgres.Sql, label: string, seconds = 30) {
  return sql.unsafe(
    `DO $$ BEGIN /* ${label} */ FOR i IN 1..${(seconds * 1000) / TICK_MS} LOOP ` +
      `RAISE NOTICE 'tick'; PERFORM pg_sleep(${TICK_MS / 1000}); END LOOP; END $$`,
  );
}

/** Waits until a statement labelled `label` (ticking) runs on the primary. */
function runningOnPrimary(label: string): Promise<true> {
  return waitFor(`${label} running`, async () => {
    const rows = await withClient(
      thePair().primary.url,
      (admin) => admin`SELECT 1 FROM pg_stat_activity WHERE query LIKE ${`%/* ${label} */%`}
        AND state = 'active' AND pid <> pg_backend_pid()`,
    );
    return rows.length > 0 ? true : undefined;
  });
}

function driver(url: string, more: postgres.Options<Record<string, never>> = {}) {
  return postgres(url, {
    max: 1,
    onnotice: () => {},
    backoff: () => 0.1,
    connect_timeout: 2,
    query_timeout: DEADLINE_S,
    ...more,
  });
}

describe("one server that stops answering", () => {
  it("a query in flight and the queries queued behind it fail QUERY_TIMEOUT at the deadline, as does a query sent on an idle connection; resumed, the server serves the next query", async () => {
    const { primary } = thePair();
    const sql = driver(primary.url);
    await runOn(sql, async () => {
      expect(await sql`SELECT 1 AS one`).toEqual([{ one: 1 }]);

      // Running (30 s) when the server is stopped, however long that takes on a loaded machine,
      // and never silent for the deadline while the server runs: only the stop can time it out.
      const inFlight = ticking(sql, "in_flight");
      inFlight.catch(() => {});
      await runningOnPrimary("in_flight");
      hang(primary.dataDir);
      const stoppedAt = performance.now();
      // Sent on the same connection, behind the one in flight (max: 1).
      const queued = [sql`SELECT 2 AS two`, sql`SELECT 3 AS three`];
      const results = await Promise.all(
        [inFlight, ...queued].map((query) => outcome(query, stoppedAt)),
      );
      // Unpatched (or without query_timeout): all three still pending after 15 s. The server not
      // stopped: the first still running, the others behind it pending.
      for (const result of results) expectTimedOut(result, DEADLINE_S * 1000, TICK_MS + 400);

      // While it is stopped its kernel still takes connections: a new one gives up after
      // connect_timeout (2 s here), as before.
      const reconnectAt = performance.now();
      const reconnecting = rejection(await outcome(sql`SELECT 4 AS four`, reconnectAt));
      expect(reconnecting.error, describeError(reconnecting.error)).toMatchObject({
        code: "CONNECT_TIMEOUT",
      });

      resume(primary.dataDir);
      expect(await outcome(sql`SELECT 5 AS five`, performance.now())).toMatchObject({
        resolved: [{ five: 5 }],
      });

      // The pool's connection idle, the server stops: the next query on it fails at the
      // deadline (its bytes wait in the stopped server's socket), the one after runs once the
      // server is back.
      hang(primary.dataDir);
      const idleAt = performance.now();
      expectTimedOut(await outcome(sql`SELECT 6 AS six`, idleAt), DEADLINE_S * 1000);
      resume(primary.dataDir);
      expect(await outcome(sql`SELECT 7 AS seven`, performance.now())).toMatchObject({
        resolved: [{ seven: 7 }],
      });
    });
  }, 60_000);

  it("a transaction whose server stops before its COMMIT fails QUERY_TIMEOUT and commits nothing, not even the statements the server had answered", async () => {
    const { primary } = thePair();
    const sql = driver(primary.url);
    const tag = uniqueTag("before_commit");
    let pid = 0;
    await runOn(sql, async () => {
      const startedAt = performance.now();
      let stoppedAt = 0;
      const transaction = sql.begin(async (tx) => {
        pid = await backendPid(tx);
        await tx`INSERT INTO hang_probe VALUES (${tag}, 1)`;
        hang(primary.dataDir);
        stoppedAt = performance.now();
        await tx`INSERT INTO hang_probe VALUES (${tag}, 2)`;
      });
      const result = await outcome(transaction, startedAt);
      // Unpatched: still pending after 15 s.
      const { error, ms } = rejection(result);
      expectQueryTimeout(error);
      expect(ms - (stoppedAt - startedAt)).toBeLessThan(DEADLINE_S * 1000 + SLACK_MS);

      // Resumed, the server reads the second insert, then the closed socket: it rolls back.
      resume(primary.dataDir);
      expect(pid).toBeGreaterThan(0);
      expect(await probeRows(tag, pid)).toEqual([]);
      // The pool reconnected: the client goes on.
      expect(await sql`SELECT count(*)::int AS n FROM hang_probe WHERE tag = ${tag}`).toEqual([
        { n: 0 },
      ]);
    });
  }, 60_000);

  it("a transaction whose server stops once its COMMIT was sent fails QUERY_TIMEOUT, and the server, resumed, commits it whole (the ambiguity of a crash at commit)", async () => {
    const { primary } = thePair();
    const tag = uniqueTag("at_commit");
    let atCommit = false;
    // postgres.js calls `debug` as it builds a query, before the bytes are written: the server
    // is stopped with the COMMIT on its way, and reads it when resumed.
    const sql = driver(primary.url, {
      debug: (_connection, query) => {
        if (atCommit && query.trim().toLowerCase() === "commit") {
          atCommit = false;
          hang(primary.dataDir);
        }
      },
    });
    let pid = 0;
    await runOn(sql, async () => {
      const startedAt = performance.now();
      const transaction = sql.begin(async (tx) => {
        pid = await backendPid(tx);
        await tx`INSERT INTO hang_probe VALUES (${tag}, 1)`;
        await tx`INSERT INTO hang_probe VALUES (${tag}, 2)`;
        atCommit = true;
      });
      const { error } = rejection(await outcome(transaction, startedAt));
      expectQueryTimeout(error);
      expect(stopped.has(primary.dataDir)).toBe(true);

      resume(primary.dataDir);
      expect(await probeRows(tag, pid)).toEqual([1, 2]);
    });
  }, 60_000);

  it(`openDatabase: a query on a stopped server fails QUERY_TIMEOUT (store unavailable) after ${QUERY_TIMEOUT_SECONDS} s`, async () => {
    const { primary } = thePair();
    await withOpenDatabase(async (database) => {
      try {
        await database.db.execute(drizzleSql`SELECT 1`);
        hang(primary.dataDir);
        const result = await poolOutcome(database, drizzleSql`SELECT 2`);
        // Without the pool's query_timeout: pending.
        expectPoolFailure(
          result,
          "QUERY_TIMEOUT",
          QUERY_TIMEOUT_SECONDS * 1000,
          QUERY_TIMEOUT_SECONDS * 1000 + SLACK_MS,
        );
        resume(primary.dataDir);
        expect(await database.db.execute(drizzleSql`SELECT 3 AS three`)).toMatchObject([
          { three: 3 },
        ]);
      } finally {
        resume(primary.dataDir);
      }
    });
    expectNoProcessFaults();
  }, 90_000);
});

/** psql next to the server binaries (the test's own synchronous client), else on PATH. */
function psqlPath(): string {
  const postgresBin = findPostgresBinaries()?.postgres;
  const next = postgresBin === undefined ? undefined : join(dirname(postgresBin), "psql");
  return next !== undefined && existsSync(next) ? next : "psql";
}

/**
 * Blocks this process's event loop (synchronously) for at least `ms`, and, when `tag` is given,
 * until the primary has committed a hang_probe row with that tag (read with psql, a child process
 * run synchronously): then the server's answer to the insert is on its way, or already in the
 * driver's socket, unread. Returns the rows seen; throws after 30 s without one.
 */
function blockEventLoop(ms: number, tag?: string): number {
  const start = performance.now();
  let rows = 0;
  for (;;) {
    if (tag !== undefined && rows === 0) {
      rows = Number(
        execFileSync(psqlPath(), [
          thePair().primary.url,
          "-Atc",
          `SELECT count(*) FROM hang_probe WHERE tag = '${tag}'`,
        ])
          .toString()
          .trim(),
      );
    }
    const elapsed = performance.now() - start;
    if (elapsed >= ms && (tag === undefined || rows > 0)) return rows;
    if (elapsed > 30_000) throw new Error(`no row ${tag} committed within 30 s`);
  }
}

/**
 * A driver whose socket calls `onWrite` around each write: `before` (synchronously, the bytes
 * not written yet) or `after` (in a microtask once the driver's write callback has returned,
 * before the event loop reads any socket).
 */
function driverWithWriteHook(
  url: string,
  port: number,
  onWrite: { before?: () => void; after?: () => void },
) {
  // postgres.js's `socket` option (its README, "Custom socket") is missing from its types.
  const socket = async (): Promise<Socket> => {
    const connection = createConnection(port, "127.0.0.1");
    await once(connection, "connect");
    const write = connection.write.bind(connection) as (...args: unknown[]) => boolean;
    connection.write = ((...args: unknown[]) => {
      onWrite.before?.();
      const written = write(...args);
      if (onWrite.after !== undefined) queueMicrotask(onWrite.after);
      return written;
    }) as Socket["write"];
    return connection;
  };
  return driver(url, { socket } as unknown as postgres.Options<Record<string, never>>);
}

describe("what the deadline does not count: the gateway's own stall", () => {
  it("the event loop blocked longer than the deadline once the insert went out, its answer waiting unread in the socket: the insert resolves, committed once; a stopped server still fails at the deadline", async () => {
    const { primary } = thePair();
    const tag = uniqueTag("stall_after");
    let armed = false;
    let seenDuringBlock = 0;
    const sql = driverWithWriteHook(primary.url, primary.port, {
      after: () => {
        if (!armed) return;
        armed = false;
        seenDuringBlock = blockEventLoop(DEADLINE_S * 1000 + 1_000, tag);
      },
    });
    await runOn(sql, async () => {
      // The same statement, prepared: the insert below is one write (Bind, Execute, Sync).
      await sql`INSERT INTO hang_probe VALUES (${"warm"}, ${0})`;
      armed = true;
      const sentAt = performance.now();
      // Before the fix: Node ran the expired deadline's timer before it read the socket, and the
      // insert failed QUERY_TIMEOUT although the server had committed it and answered.
      expect(
        await outcome(sql`INSERT INTO hang_probe VALUES (${tag}, ${1})`, sentAt),
      ).toMatchObject({ resolved: [] });
      expect(seenDuringBlock).toBe(1);
      expect(await sql`SELECT n FROM hang_probe WHERE tag = ${tag}`).toEqual([{ n: 1 }]);

      hang(primary.dataDir);
      expectTimedOut(await outcome(sql`SELECT 1`, performance.now()), DEADLINE_S * 1000);
    });
  }, 60_000);

  it("the event loop blocked longer than the deadline before the insert's bytes were written: the deadline counts from the write, the insert resolves, committed once", async () => {
    const { primary } = thePair();
    const tag = uniqueTag("stall_before");
    let armed = false;
    const sql = driverWithWriteHook(primary.url, primary.port, {
      before: () => {
        if (!armed) return;
        armed = false;
        blockEventLoop(DEADLINE_S * 1000 + 1_000);
      },
    });
    await runOn(
      sql,
      async () => {
        // The same statement, prepared: the insert below is one write (Bind, Execute, Sync). It
        // takes the server 0.5 s, far longer than a turn of the event loop.
        const insert = (t: string, n: number, sleep: number) =>
          sql`INSERT INTO hang_probe SELECT ${t}, ${n}::int FROM pg_sleep(${sleep}::float8)`;
        await insert("warm", 0, 0);
        armed = true;
        // Before the fix: the deadline ran from when the query was handed to the connection, and
        // the insert failed QUERY_TIMEOUT once its bytes were out and the event loop had read the
        // sockets once.
        expect(await outcome(insert(tag, 1, 0.5), performance.now())).toMatchObject({
          resolved: [],
        });
        expect(armed).toBe(false);
        expect(await sql`SELECT n FROM hang_probe WHERE tag = ${tag}`).toEqual([{ n: 1 }]);
      },
      false,
    );
  }, 60_000);
});

describe("a live server slower than the deadline: openDatabase's statement_timeout", () => {
  it(`an insert waiting on a lock held past the pool's statement_timeout (${STATEMENT_TIMEOUT_MS} ms) fails 57014 (store unavailable) before the client's deadline, and nothing of it is committed once the lock is released`, async () => {
    await withOpenDatabase(async (database, testDb) => {
      const holder = postgres(testDb.url, { max: 1, onnotice: () => {} });
      const tag = uniqueTag("locked");
      let release = (): void => {};
      const released = new Promise<void>((resolve) => {
        release = resolve;
      });
      try {
        await database.db.execute(drizzleSql`CREATE TABLE lock_probe (tag text)`);
        let locked = (): void => {};
        const isLocked = new Promise<void>((resolve) => {
          locked = resolve;
        });
        const held = holder.begin(async (tx) => {
          await tx`LOCK TABLE lock_probe IN ACCESS EXCLUSIVE MODE`;
          locked();
          await released;
        });
        await isLocked;
        // Without parameters, so that the whole statement (Parse to Sync) is sent at once and waits
        // for the lock in its execution (a parameter would have the driver ask the server for its
        // type first, and the parse wait for the lock).
        const result = await poolOutcome(
          database,
          drizzleSql.raw(`INSERT INTO lock_probe VALUES ('${tag}')`),
        );
        release();
        await held;
        // Without the pool's statement_timeout: QUERY_TIMEOUT after 15 s, the connection given up
        // without a cancel request, and the insert, still waiting on the server, committed once
        // the lock was released.
        expectPoolFailure(result, "57014", STATEMENT_TIMEOUT_MS, QUERY_TIMEOUT_SECONDS * 1000);

        await waitFor("no insert into lock_probe running", async () => {
          const rows = await holder`SELECT 1 FROM pg_stat_activity
            WHERE query LIKE '%INSERT INTO lock_probe%' AND state = 'active'
            AND pid <> pg_backend_pid()`;
          return rows.length === 0 ? true : undefined;
        });
        // The same pool connection, still in service, reads the table: nothing of the insert.
        expect(
          await database.db.execute(
            drizzleSql`SELECT count(*)::int AS n FROM lock_probe WHERE tag = ${tag}`,
          ),
        ).toMatchObject([{ n: 0 }]);
      } finally {
        release();
        await holder.end({ timeout: 1 });
      }
    });
    expectNoProcessFaults();
  }, 90_000);
});

describe("what the deadline does not count: the client's own turn", () => {
  it("a cursor whose callback takes longer than query_timeout, and a COPY written more slowly, end normally", async () => {
    const { primary } = thePair();
    const sql = driver(primary.url);
    const tag = uniqueTag("client_turn");
    const slower = (): Promise<void> =>
      new Promise((resolve) => setTimeout(resolve, DEADLINE_S * 1000 + 1_000));
    try {
      const seen: number[] = [];
      await sql<{ n: number }[]>`SELECT generate_series(1, 2) AS n`.cursor(1, async ([row]) => {
        seen.push(row?.n ?? 0);
        if (seen.length === 1) await slower();
      });
      expect(seen).toEqual([1, 2]);

      const copy = await sql`COPY hang_probe (tag, n) FROM STDIN`.writable();
      copy.write(`${tag}\t1\n`);
      await slower();
      copy.write(`${tag}\t2\n`);
      copy.end();
      await finished(copy);
      expect(await sql`SELECT n FROM hang_probe WHERE tag = ${tag} ORDER BY n`).toEqual([
        { n: 1 },
        { n: 2 },
      ]);
    } finally {
      await sql.end({ timeout: 1 });
    }
  }, 60_000);
});

/**
 * A proxy to the primary that forwards both ways until `freeze()`: from then on it forwards
 * nothing on the connections open then (to the client, a server that stopped answering), while
 * a closed client closes its server connection (the server then ends that session).
 */
async function freezingProxy(): Promise<{ port: number; freeze(): void; close(): void }> {
  const frozen = new Set<{ frozen: boolean }>();
  const server = createServer((client) => {
    const state = { frozen: false };
    frozen.add(state);
    const upstream = createConnection(thePair().primary.port, "127.0.0.1");
    upstream.on("data", (data: Buffer) => {
      if (!state.frozen) client.write(data);
    });
    client.on("data", (data: Buffer) => {
      if (!state.frozen) upstream.write(data);
    });
    client.on("error", () => {});
    upstream.on("error", () => {});
    client.on("close", () => {
      upstream.destroy();
      frozen.delete(state);
    });
    upstream.on("close", () => client.destroy());
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    port: (server.address() as AddressInfo).port,
    freeze: () => {
      for (const state of frozen) state.frozen = true;
    },
    close: () => server.close(),
  };
}

describe("a COPY FROM STDIN whose server stops answering once the client ended it", () => {
  it("finishing the stream fails QUERY_TIMEOUT at the deadline (not finished by the next session's first answer), and nothing is committed", async () => {
    const proxy = await freezingProxy();
    const sql = driver(`postgres://postgres@127.0.0.1:${proxy.port}/postgres`);
    const tag = uniqueTag("copy_ended");
    try {
      const pid = await backendPid(sql);
      const copy = await sql`COPY hang_probe (tag, n) FROM STDIN`.writable();
      // Timed from the row's write, the last bytes before the silence may begin: the deadline
      // may run from there, and polling for the row to leave the buffer took up to 52 ms under
      // load, which timed from copy.end() read as a timeout that came too early.
      const writtenAt = performance.now();
      copy.write(`${tag}\t1\n`);
      await waitFor("the COPY's row sent", async () =>
        copy.writableLength === 0 ? true : undefined,
      );
      proxy.freeze();
      copy.end();
      // Before the fix: pending (until the pool's next session answered its first statement,
      // whose CommandComplete then reported this COPY finished).
      const ended = await outcome(finished(copy), writtenAt, DEADLINE_S * 1000 + SLACK_MS);
      expectTimedOut(ended, DEADLINE_S * 1000);

      expect(await sql`SELECT 1 AS one`).toEqual([{ one: 1 }]);
      expect(pid).toBeGreaterThan(0);
      expect(await probeRows(tag, pid)).toEqual([]);
    } finally {
      await sql.end({ timeout: 1 });
      proxy.close();
    }
    expectNoProcessFaults();
  }, 60_000);
});

/**
 * A proxy to the primary that lets a connection's startup through, then forwards nothing the
 * client sends (postgres.js's array-type query, which it runs before a new connection's first
 * query): to the client, a server that stopped answering while the connection starts.
 */
async function silentAfterStartup(): Promise<{ port: number; close(): void }> {
  const server = createServer((client) => {
    const upstream = createConnection(thePair().primary.port, "127.0.0.1");
    let ready = false;
    upstream.on("data", (data: Buffer) => {
      if (ready) return;
      client.write(data);
      if (data.includes(READY_FOR_QUERY)) ready = true;
    });
    client.on("data", (data: Buffer) => {
      if (!ready) upstream.write(data);
    });
    client.on("error", () => {});
    upstream.on("error", () => {});
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { port: (server.address() as AddressInfo).port, close: () => server.close() };
}

describe("a server that stops answering while a connection starts", () => {
  it("one server: the query waiting for the connection fails QUERY_TIMEOUT; two: it runs on the next server", async () => {
    const proxy = await silentAfterStartup();
    const { primary } = thePair();
    const alone = driver(`postgres://postgres@127.0.0.1:${proxy.port}/postgres`);
    const withPrimary = driver(
      `postgres://postgres@127.0.0.1:${proxy.port},127.0.0.1:${primary.port}/postgres?target_session_attrs=primary`,
    );
    try {
      const sentAt = performance.now();
      // Unpatched: pending (the connect timer ends at the startup's ReadyForQuery).
      expectTimedOut(await outcome(alone`SELECT 1 AS one`, sentAt), DEADLINE_S * 1000);

      const nextAt = performance.now();
      const next = await outcome(withPrimary`SELECT inet_server_port() AS port`, nextAt);
      expect(next).toMatchObject({ resolved: [{ port: primary.port }] });
      expect((next as { ms: number }).ms).toBeGreaterThanOrEqual(DEADLINE_S * 1000 - 50);

      // The connection, now in service on the primary, keeps nothing of the attempt given up: a
      // later query whose backend is terminated fails CONNECTION_CLOSED, not QUERY_TIMEOUT.
      // Ticking: never silent for the deadline, however long the terminate takes to land.
      const later = ticking(withPrimary, "later_on_primary");
      later.catch(() => {});
      await waitFor("the later query running, then terminated", async () => {
        const rows = await withClient(
          primary.url,
          (admin) => admin`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE query LIKE '%/* later_on_primary */%' AND state = 'active'
            AND pid <> pg_backend_pid()`,
        );
        return rows.length > 0 ? true : undefined;
      });
      const { error: closed } = rejection(await outcome(later, performance.now()));
      expect(closed, describeError(closed)).toMatchObject({ code: "CONNECTION_CLOSED" });
    } finally {
      await alone.end({ timeout: 1 });
      await withPrimary.end({ timeout: 1 });
      proxy.close();
    }
    expectNoProcessFaults();
  }, 60_000);
});

describe("a gateway whose database server stops answering", () => {
  it(`a submit answers 503 store_unavailable, /readyz 503 not_ready, within ${QUERY_TIMEOUT_SECONDS} s and a connect timeout; resumed, the next submit is accepted and delivered`, async () => {
    const { primary } = thePair();
    const hekouDb = await createTestDatabase(primary.url);
    // Lao Cai on its embedded store: only Hekou's database server stops.
    const gateways = await startPair(inject("natsUrl"), { hekou: { databaseUrl: hekouDb.url } });
    const { hekou } = gateways;
    const submit = () =>
      call(hekou, "/v1/messages", {
        json: {
          type: "case.notice",
          to: "VN-BGC-LAOCAI",
          caseRef: "CN-HEKOU-2026-0042",
          body: CASE_NOTICE_BODY,
        },
      });
    try {
      const warm = await submit();
      expect(warm.status, JSON.stringify(warm.body)).toBe(202);

      hang(primary.dataDir);
      const sentAt = performance.now();
      // At most: a query on a pool connection waits QUERY_TIMEOUT_SECONDS; one that found every
      // connection waiting (the dispatcher's, the inbox's) waits for the first to be given up,
      // then for a new connection to the stopped server, which gives up after connect_timeout.
      const boundMs = (QUERY_TIMEOUT_SECONDS + CONNECT_TIMEOUT_SECONDS) * 1000 + SLACK_MS;
      const [during, ready] = await Promise.all([
        outcome(submit(), sentAt, boundMs + PENDING_MS),
        outcome(call(hekou, "/readyz"), sentAt, boundMs + PENDING_MS),
      ]);
      // Unpatched: both pending.
      for (const answer of [during, ready]) {
        if (answer === "pending" || !("resolved" in answer)) {
          throw new Error(`expected an answer, got ${JSON.stringify(answer)}`);
        }
        expect(answer.ms).toBeLessThan(boundMs);
      }
      expect(during).toMatchObject({
        resolved: { status: 503, body: { code: "store_unavailable" } },
      });
      expect(ready).toMatchObject({ resolved: { status: 503, body: { code: "not_ready" } } });

      resume(primary.dataDir);
      const after = await waitFor("a submit accepted once the server resumed", async () => {
        const answer = await submit();
        return answer.status === 202 ? answer : undefined;
      });
      await waitFor(
        "the accepted message delivered",
        async () => {
          const rows = await withClient(
            hekouDb.url,
            (sql) => sql`SELECT 1 FROM deliveries
              WHERE message_id = ${after.body.id as string}::uuid AND status = 'delivered'`,
          );
          return rows.length > 0 ? true : undefined;
        },
        30_000,
      );
    } finally {
      resume(primary.dataDir);
      await gateways.stop();
      await hekouDb.drop();
    }
    expectNoProcessFaults();
  }, 120_000);
});

describe("both servers named, the primary stops answering and the standby is promoted", () => {
  it("the query in flight fails QUERY_TIMEOUT at the deadline, and the next query runs on the promoted standby", async () => {
    const { primary, standby, url } = thePair();
    const sql = driver(url);
    await runOn(
      sql,
      async () => {
        expect(await sql`SELECT inet_server_port() AS port`).toEqual([{ port: primary.port }]);
        // Ticking: only the primary's stop can time it out (see the first test).
        const inFlight = ticking(sql, "in_flight_pair");
        inFlight.catch(() => {});
        await runningOnPrimary("in_flight_pair");
        hang(primary.dataDir);
        const settled = outcome(inFlight, performance.now());
        await standby.promote();
        // Unpatched: still pending after 15 s (tried: 60 s), and the next query behind it too.
        expectTimedOut(await settled, DEADLINE_S * 1000, TICK_MS + 400);
        const next = await outcome(
          sql<{ port: number; recovery: boolean }[]>`
          SELECT inet_server_port() AS port, pg_is_in_recovery() AS recovery`,
          performance.now(),
        );
        expect(next).toMatchObject({ resolved: [{ port: standby.port, recovery: false }] });
      },
      false,
    );
  }, 60_000);
});
