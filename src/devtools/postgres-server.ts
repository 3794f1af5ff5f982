/**
 * Starts a throw-away PostgreSQL server (fresh `initdb` cluster in a temp dir) for tests and
 * local development. It listens on 127.0.0.1 on a free port with `trust` auth, and is stopped
 * with `handle.stop()`, which also deletes the cluster; `shutdown()`, `start()` and `restart()`
 * take it down and bring it back on the same port and data directory, for tests of a database
 * outage; `crash()` is an immediate shutdown (what `pg_ctl stop -m immediate` does: no checkpoint,
 * crash recovery at the next start). `startPostgresReplicaPair()` starts a primary with a
 * streaming-replication standby (`pg_basebackup -R` from the primary), asynchronous or
 * synchronous, whose standby can be promoted, for tests of a failover. Servers still running when
 * the Node process exits (or receives SIGINT/SIGTERM/SIGHUP) are shut down so they never outlive
 * it.
 *
 * `initdb` and `postgres` refuse to run as root: when uid is 0 they are spawned with the uid/gid
 * of the `postgres` system user (Node's `spawn({ uid, gid })`), which owns the temp dir. We do
 * not go through `runuser`: its watching parent ignores SIGINT (no fast shutdown) and turns
 * SIGTERM into SIGTERM + SIGKILL after 2 s, so stop() could not control the server.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readdirSync, readFileSync, realpathSync, rmSync, statSync } from "node:fs";
import { chmod, chown, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, parse as parsePath } from "node:path";
import postgres from "postgres";
import { freePort } from "./free-port.ts";
import {
  captureOutput,
  type ExitInfo,
  exitGuard,
  isExecutable,
  PortInUseError,
  sleep,
  startupFailure,
} from "./process-guard.ts";

export interface PostgresServerHandle {
  /** `postgres://postgres@127.0.0.1:<port>/postgres` (trust auth, superuser). */
  url: string;
  port: number;
  /** The cluster's data directory (inside a temp dir removed by stop()). */
  dataDir: string;
  /**
   * Fast shutdown (SIGINT: open sessions get `57P01 admin_shutdown`, then the server exits),
   * keeping the cluster: start() brings it back. For tests of a database outage.
   */
  shutdown(): Promise<void>;
  /** Starts the server again after shutdown(), on the same port and data directory. */
  start(): Promise<void>;
  /** shutdown() then start(): what `pg_ctl restart -m fast` does. */
  restart(): Promise<void>;
  /**
   * Immediate shutdown (SIGQUIT, what `pg_ctl stop -m immediate` does: every process of the
   * server exits at once, without a checkpoint; a WAL sender sends nothing more), keeping the
   * cluster: start() brings it back through crash recovery. For tests of a crash.
   */
  crash(): Promise<void>;
  /** Fast shutdown (SIGINT), waits for exit, removes the temp dir. */
  stop(): Promise<void>;
}

export interface PostgresBinaries {
  initdb: string;
  postgres: string;
}

const READY_TIMEOUT_MS = 15_000;
const INITDB_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 10_000;
const MAX_START_ATTEMPTS = 3;
/** How long start() after shutdown() waits for its port, should another process hold it. */
const RESTART_PORT_WAIT_MS = 10_000;
/** Unix socket paths are limited to ~107 bytes; leave room for `/.s.PGSQL.<port>`. */
const MAX_SOCKET_DIR_LENGTH = 80;

const MISSING_BINARIES_MESSAGE =
  "PostgreSQL server binaries (initdb, postgres) not found on PATH or in /usr/lib/postgresql/*/bin. " +
  "Install them with `bash scripts/ensure-system-deps.sh postgres` (as root) or " +
  "`apt-get install postgresql`, or set LIAISON_TEST_DATABASE_URL to an existing server.";

/** Finds initdb + postgres of one installation: PATH first, then the highest /usr/lib/postgresql/<v>/bin. */
export function findPostgresBinaries(): PostgresBinaries | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    const initdb = join(dir, "initdb");
    if (!isExecutable(initdb)) continue;
    // Prefer the `postgres` next to initdb's real location (PATH entries are often symlinks).
    const realDir = dirname(safeRealpath(initdb));
    for (const candidate of [join(realDir, "postgres"), join(dir, "postgres")]) {
      if (isExecutable(candidate)) return { initdb, postgres: candidate };
    }
  }
  const root = "/usr/lib/postgresql";
  let versions: string[] = [];
  try {
    versions = readdirSync(root);
  } catch {
    return undefined;
  }
  versions.sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a));
  for (const version of versions) {
    const bin = join(root, version, "bin");
    const found = { initdb: join(bin, "initdb"), postgres: join(bin, "postgres") };
    if (isExecutable(found.initdb) && isExecutable(found.postgres)) return found;
  }
  return undefined;
}

export async function startPostgresServer(): Promise<PostgresServerHandle> {
  const binaries = findPostgresBinaries();
  if (binaries === undefined) throw new Error(MISSING_BINARIES_MESSAGE);
  const runAs = process.getuid?.() === 0 ? lookupUser("postgres") : undefined;
  return startCluster(binaries, runAs, [], (dataDir, rootDir, tracked) =>
    initdb(binaries, dataDir, rootDir, runAs, tracked),
  );
}

/**
 * A temp dir handed to the server's user, a data directory made in it by `make` (initdb, or
 * pg_basebackup for a standby), and a postmaster on a free port with the `settings` (`name=value`
 * each, given as `-c`) on top of ours.
 */
async function startCluster(
  binaries: PostgresBinaries,
  runAs: RunAs | undefined,
  settings: string[],
  make: (dataDir: string, rootDir: string, tracked: Tracked) => Promise<void>,
): Promise<PostgresServerHandle> {
  const rootDir = await mkdtemp(join(tempBase(runAs), "liaison-pg-"));
  // Tracked from here on, so that an exit during initdb also cleans up.
  const tracked: Tracked = { child: undefined, rootDir };
  track(tracked);
  try {
    if (runAs !== undefined) {
      // mkdtemp makes the dir 0700 root: hand it over to the postgres user.
      await chown(rootDir, runAs.uid, runAs.gid);
      await chmod(rootDir, 0o700);
    }
    const dataDir = join(rootDir, "data");
    await make(dataDir, rootDir, tracked);
    const socketDir = rootDir.length <= MAX_SOCKET_DIR_LENGTH ? rootDir : "";
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const cluster = { rootDir, dataDir, socketDir, port, runAs, settings };
      try {
        const first = await launch(binaries, cluster, tracked);
        return serverHandle(binaries, cluster, tracked, first);
      } catch (err) {
        if (err instanceof PortInUseError && attempt < MAX_START_ATTEMPTS) continue;
        throw err;
      }
    }
  } catch (err) {
    untrack(tracked);
    await rm(rootDir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * glibc malloc settings for the PostgreSQL server (docs/operations.md, "PostgreSQL on a virtual
 * machine"): allocations up to 32 MiB come from the heap, not from mmap, and the heap keeps up to
 * 256 MiB free at its top instead of giving it back to the kernel. A batch of 100 messages is a
 * 700 kB Bind message, parsed into arrays of as much; by default each such allocation is mapped
 * and unmapped again, and on this machine kind every page of it then costs a page fault of about
 * 16 µs when first touched.
 */
export const POSTGRES_MALLOC_ENV = {
  MALLOC_MMAP_THRESHOLD_: String(32 * 1024 * 1024),
  MALLOC_TRIM_THRESHOLD_: String(256 * 1024 * 1024),
};

interface RunAs {
  uid: number;
  gid: number;
}

function spawnAs(command: string, args: string[], cwd: string, runAs: RunAs | undefined) {
  const child = spawn(command, args, {
    cwd,
    stdio: ["ignore", "pipe", "pipe"],
    // LC_ALL=C keeps server messages (which we match and show) in English.
    env: {
      ...process.env,
      LC_ALL: "C",
      LANG: "C",
      ...POSTGRES_MALLOC_ENV,
    },
    ...(runAs ?? {}),
  });
  const output = captureOutput(child);
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once("error", (error) => resolve({ code: null, signal: null, error }));
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
  return { child, output, exited };
}

async function initdb(
  binaries: PostgresBinaries,
  dataDir: string,
  cwd: string,
  runAs: RunAs | undefined,
  tracked: Tracked,
): Promise<void> {
  const args = [
    "-D",
    dataDir,
    "-U",
    "postgres",
    "--auth=trust",
    "-E",
    "UTF8",
    "--no-locale",
    "--no-sync",
  ];
  await runToEnd("initdb", binaries.initdb, args, cwd, runAs, tracked, INITDB_TIMEOUT_MS);
}

/** Runs one of PostgreSQL's tools to its end (killed after `timeoutMs`); throws unless it exits 0. */
async function runToEnd(
  name: string,
  binary: string,
  args: string[],
  cwd: string,
  runAs: RunAs | undefined,
  tracked: Tracked,
  timeoutMs: number,
): Promise<void> {
  const { child, output, exited } = spawnAs(binary, args, cwd, runAs);
  tracked.child = child;
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const { code, signal, error } = await exited;
  clearTimeout(timer);
  if (error !== undefined || code !== 0) {
    const why = error ? error.message : `exit code ${code}, signal ${signal}`;
    throw new Error(
      `${name} failed (${binary} ${args.join(" ")}): ${why}\n--- last output ---\n${output.tail()}`,
    );
  }
}

interface Cluster {
  rootDir: string;
  dataDir: string;
  socketDir: string;
  port: number;
  runAs: RunAs | undefined;
  /** More server settings, `name=value` each (`-c`). */
  settings: string[];
}

/** One run of the postmaster, accepting connections. */
interface Postmaster {
  /** Fast shutdown (SIGINT), then SIGQUIT and SIGKILL if it lingers; resolves once it exited. */
  shutdown(): Promise<void>;
  /** Immediate shutdown (SIGQUIT), then SIGKILL if it lingers; resolves once it exited. */
  crash(): Promise<void>;
}

/**
 * The handle over the cluster's successive postmasters: shutdown()/start() stop it and bring it
 * back on the same port and data directory; stop() ends the last one and removes the cluster.
 */
function serverHandle(
  binaries: PostgresBinaries,
  cluster: Cluster,
  tracked: Tracked,
  first: Postmaster,
): PostgresServerHandle {
  let running: Postmaster | undefined = first;
  // One change of state at a time: a start() and a shutdown() never overlap.
  let busy: Promise<void> = Promise.resolve();
  const serial = (step: () => Promise<void>): Promise<void> => {
    const next = busy.then(step);
    busy = next.catch(() => {});
    return next;
  };
  let removed = false;

  const shutdown = (): Promise<void> =>
    serial(async () => {
      const postmaster = running;
      running = undefined;
      await postmaster?.shutdown();
    });

  const crash = (): Promise<void> =>
    serial(async () => {
      const postmaster = running;
      running = undefined;
      await postmaster?.crash();
    });

  const start = (): Promise<void> =>
    serial(async () => {
      if (removed) throw new Error("postgres: start() after stop()");
      if (running !== undefined) return;
      // The port was ours a moment ago; should another process have taken it meanwhile, retry
      // for a few seconds rather than move (the URL must stay the same).
      const deadline = Date.now() + RESTART_PORT_WAIT_MS;
      for (;;) {
        try {
          running = await launch(binaries, cluster, tracked);
          return;
        } catch (err) {
          if (!(err instanceof PortInUseError) || Date.now() > deadline) throw err;
          await sleep(200);
        }
      }
    });

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= serial(async () => {
      removed = true;
      const postmaster = running;
      running = undefined;
      await postmaster?.shutdown();
      untrack(tracked);
      await rm(cluster.rootDir, { recursive: true, force: true });
    });
    return stopping;
  };

  return {
    url: `postgres://postgres@127.0.0.1:${cluster.port}/postgres`,
    port: cluster.port,
    dataDir: cluster.dataDir,
    shutdown,
    start,
    restart: async () => {
      await shutdown();
      await start();
    },
    crash,
    stop,
  };
}

/**
 * Starts the postmaster on the cluster and waits until it accepts connections. On failure the
 * postmaster is gone and the error says why (PortInUseError: try another port); the cluster
 * stays, still tracked, for the caller to retry or remove.
 */
async function launch(
  binaries: PostgresBinaries,
  o: Cluster,
  tracked: Tracked,
): Promise<Postmaster> {
  const args = [
    "-D",
    o.dataDir,
    "-p",
    String(o.port),
    "-c",
    "listen_addresses=127.0.0.1",
    "-c",
    `unix_socket_directories=${o.socketDir}`,
    "-c",
    "fsync=off",
    "-c",
    "max_connections=200",
    ...o.settings.flatMap((setting) => ["-c", setting]),
  ];
  const { child, output, exited } = spawnAs(binaries.postgres, args, o.rootDir, o.runAs);
  tracked.child = child;

  let exitInfo: ExitInfo | undefined;
  void exited.then((info) => {
    exitInfo = info;
  });

  let stopping: Promise<void> | undefined;
  const shutdown = (): Promise<void> => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
        child.kill("SIGINT"); // fast shutdown
        const quit = setTimeout(() => child.kill("SIGQUIT"), STOP_GRACE_MS); // immediate shutdown
        const kill = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS + 5_000);
        await exited;
        clearTimeout(quit);
        clearTimeout(kill);
      } else {
        await exited;
      }
    })();
    return stopping;
  };

  const crash = (): Promise<void> => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
        child.kill("SIGQUIT"); // immediate shutdown
        const kill = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
        await exited;
        clearTimeout(kill);
      } else {
        await exited;
      }
    })();
    return stopping;
  };

  const url = `postgres://postgres@127.0.0.1:${o.port}/postgres`;
  const describe = (why: string): string =>
    `postgres (${binaries.postgres} ${args.join(" ")}) ${why}\n--- last output ---\n${output.tail()}`;
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastError = "";
  for (;;) {
    if (exitInfo !== undefined) {
      // Still tracked: the caller retries on another port or untracks and removes the dir.
      throw startupFailure(exitInfo, describe, output.tail());
    }
    const result = await trySelectOne(url);
    if (result === true) break;
    lastError = result;
    if (Date.now() > deadline) {
      await shutdown();
      throw new Error(
        describe(`did not accept connections within ${READY_TIMEOUT_MS} ms (last: ${lastError})`),
      );
    }
    await sleep(100);
  }

  return { shutdown, crash };
}

// --- a primary with a streaming-replication standby ---------------------------------------------

export interface PostgresStandbyHandle extends PostgresServerHandle {
  /**
   * Ends recovery: the standby becomes a primary (`pg_promote()`, waiting until it is), which
   * accepts writes. With synchronous replication it first resets `synchronous_standby_names`
   * (ALTER SYSTEM, reload), which it has as the primary has: the promoted server has no standby,
   * and with the setting each of its commits would wait for one for ever (wait event `SyncRep`).
   */
  promote(): Promise<void>;
}

export interface PostgresReplicaPair {
  primary: PostgresServerHandle;
  standby: PostgresStandbyHandle;
  /**
   * Both servers, primary first, with `target_session_attrs=primary`: postgres.js connects to
   * whichever of them is the primary (`postgres://postgres@127.0.0.1:<p1>,127.0.0.1:<p2>/postgres`).
   */
  url: string;
  /** The same for another database on the pair. */
  urlFor(database: string): string;
  /**
   * Waits until the standby streams from the primary again (after primary.start() or
   * standby.start()), and with synchronous replication is its synchronous standby.
   */
  waitForStandby(): Promise<void>;
  /** Stops both servers and removes their clusters. */
  stop(): Promise<void>;
}

export interface PostgresReplicaPairOptions {
  /**
   * Synchronous replication: the primary's commits wait for the standby
   * (`synchronous_standby_names = '*'`) to have flushed (`on`) or applied (`remote_apply`) their
   * WAL. Set with ALTER SYSTEM on both servers, as an operator keeps one configuration for
   * either role. Absent: asynchronous replication (a commit does not wait for the standby).
   */
  synchronousCommit?: "on" | "remote_apply";
}

/** How long the pair's setup waits for the standby to stream (and be synchronous). */
const REPLICATION_TIMEOUT_MS = 30_000;
const BASEBACKUP_TIMEOUT_MS = 60_000;
/**
 * A standby whose primary is gone retries its WAL source every wal_retrieve_retry_interval
 * (5 s by default), and a promotion requested meanwhile took as long (measured: 0.2 s right after
 * the primary's crash, 5.1 s two seconds later); 200 ms keeps a test's failover short.
 */
const PAIR_SETTINGS = ["wal_retrieve_retry_interval=200ms"];

/**
 * Starts a primary (a fresh cluster) and a standby made from it with
 * `pg_basebackup --write-recovery-conf --create-slot` (a replication slot, `standby.signal` and
 * `primary_conninfo`), each on a free port and a temp dir of its own, and waits until the standby
 * streams (and, with `synchronousCommit`, is the synchronous standby). `primary.crash()` then
 * `standby.promote()` is a failover; `stop()` removes both.
 */
export async function startPostgresReplicaPair(
  options: PostgresReplicaPairOptions = {},
): Promise<PostgresReplicaPair> {
  const binaries = findPostgresBinaries();
  if (binaries === undefined) throw new Error(MISSING_BINARIES_MESSAGE);
  const basebackup = join(dirname(binaries.postgres), "pg_basebackup");
  if (!isExecutable(basebackup)) {
    throw new Error(`pg_basebackup not found next to ${binaries.postgres}`);
  }
  const runAs = process.getuid?.() === 0 ? lookupUser("postgres") : undefined;
  const primary = await startCluster(binaries, runAs, PAIR_SETTINGS, (dataDir, rootDir, tracked) =>
    initdb(binaries, dataDir, rootDir, runAs, tracked),
  );
  let standby: PostgresServerHandle | undefined;
  try {
    standby = await startCluster(
      binaries,
      runAs,
      PAIR_SETTINGS,
      async (dataDir, rootDir, tracked) => {
        const args = [
          ...["-D", dataDir, "-h", "127.0.0.1", "-p", String(primary.port), "-U", "postgres"],
          ...["--wal-method=stream", "--write-recovery-conf", "--create-slot", "--slot=standby"],
          ...["--checkpoint=fast", "--no-sync"],
        ];
        await runToEnd(
          "pg_basebackup",
          basebackup,
          args,
          rootDir,
          runAs,
          tracked,
          BASEBACKUP_TIMEOUT_MS,
        );
      },
    );
    await waitForReplication(primary.url, "async");
    const commit = options.synchronousCommit;
    if (commit !== undefined) {
      for (const server of [primary, standby]) {
        await withClient(server.url, async (sql) => {
          await sql`ALTER SYSTEM SET synchronous_standby_names = '*'`;
          await sql.unsafe(`ALTER SYSTEM SET synchronous_commit = '${commit}'`);
          await sql`SELECT pg_reload_conf()`;
        });
      }
      await waitForReplication(primary.url, "sync");
    }
  } catch (err) {
    await standby?.stop();
    await primary.stop();
    throw err;
  }
  const replica = standby;

  const promote = async (): Promise<void> => {
    await withClient(replica.url, async (sql) => {
      if (options.synchronousCommit !== undefined) {
        await sql`ALTER SYSTEM RESET synchronous_standby_names`;
        await sql`SELECT pg_reload_conf()`;
      }
      const [row] = await sql<{ promoted: boolean }[]>`SELECT pg_promote(true, 60) AS promoted`;
      if (row?.promoted !== true) throw new Error("postgres: pg_promote() did not end recovery");
    });
  };

  const hosts = `127.0.0.1:${primary.port},127.0.0.1:${replica.port}`;
  const urlFor = (database: string): string =>
    `postgres://postgres@${hosts}/${encodeURIComponent(database)}?target_session_attrs=primary`;
  return {
    primary,
    standby: { ...replica, promote },
    url: urlFor("postgres"),
    urlFor,
    waitForStandby: () =>
      waitForReplication(primary.url, options.synchronousCommit === undefined ? "async" : "sync"),
    stop: async () => {
      await Promise.all([primary.stop(), replica.stop()]);
    },
  };
}

/** Waits until the primary at `url` has a standby streaming, with `syncState`. */
async function waitForReplication(url: string, syncState: "async" | "sync"): Promise<void> {
  const deadline = Date.now() + REPLICATION_TIMEOUT_MS;
  await withClient(url, async (sql) => {
    for (;;) {
      const rows = await sql<{ state: string; sync_state: string }[]>`
        SELECT state, sync_state FROM pg_stat_replication`;
      if (rows.some((r) => r.state === "streaming" && r.sync_state === syncState)) return;
      if (Date.now() > deadline) {
        throw new Error(
          `postgres: no standby streaming (${syncState}) within ${REPLICATION_TIMEOUT_MS} ms: ${JSON.stringify(rows)}`,
        );
      }
      await sleep(50);
    }
  });
}

/** Runs `fn` on a connection of its own to `url`, closed afterwards. */
export async function withClient<T>(
  url: string,
  fn: (sql: postgres.Sql) => Promise<T>,
): Promise<T> {
  const sql = postgres(url, { max: 1, connect_timeout: 5, onnotice: () => {} });
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 5 }).catch(() => {});
  }
}

/** true when `SELECT 1` works, else the error message. */
async function trySelectOne(url: string): Promise<true | string> {
  const sql = postgres(url, { max: 1, connect_timeout: 2, idle_timeout: 1, onnotice: () => {} });
  try {
    await sql`SELECT 1`;
    return true;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  } finally {
    await sql.end({ timeout: 0 }).catch(() => {});
  }
}

/** uid/gid of a system user, via getent (NSS) or /etc/passwd. */
function lookupUser(name: string): RunAs {
  let entry: string | undefined;
  try {
    entry = execFileSync("getent", ["passwd", name], { encoding: "utf8" }).trim();
  } catch {
    try {
      entry = readFileSync("/etc/passwd", "utf8")
        .split("\n")
        .find((line) => line.startsWith(`${name}:`));
    } catch {
      entry = undefined;
    }
  }
  const fields = entry?.split(":") ?? [];
  const uid = Number(fields[2]);
  const gid = Number(fields[3]);
  if (
    fields[2] === undefined ||
    fields[3] === undefined ||
    Number.isNaN(uid) ||
    Number.isNaN(gid)
  ) {
    throw new Error(
      `Running as root, but there is no '${name}' system user to run initdb/postgres as ` +
        "(PostgreSQL refuses to run as root). Install the postgresql package, which creates it, " +
        "or run the tests as a non-root user.",
    );
  }
  return { uid, gid };
}

/**
 * os.tmpdir(), unless we must hand the dir to another user and one of its ancestors is not
 * traversable by others (e.g. TMPDIR=/root/tmp): then /tmp.
 */
function tempBase(runAs: RunAs | undefined): string {
  const base = tmpdir();
  if (runAs === undefined) return base;
  let dir = base;
  const { root } = parsePath(dir);
  for (;;) {
    try {
      const st = statSync(dir);
      const traversable =
        (st.mode & 0o001) !== 0 ||
        (st.uid === runAs.uid && (st.mode & 0o100) !== 0) ||
        (st.gid === runAs.gid && (st.mode & 0o010) !== 0);
      if (!traversable) return "/tmp";
    } catch {
      return "/tmp";
    }
    if (dir === root) return base;
    dir = dirname(dir);
  }
}

function safeRealpath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

// --- make sure no server outlives this process -------------------------------------------------

interface Tracked {
  /** initdb while it runs, then the postmaster. */
  child: ChildProcess | undefined;
  rootDir: string;
}

/**
 * Synchronous, for process 'exit': immediate shutdown (SIGQUIT makes the postmaster stop its
 * backends and exit), a bounded wait for the postmaster to go, then delete the cluster.
 */
const { track, untrack } = exitGuard<Tracked>(({ child, rootDir }) => {
  if (child !== undefined && child.exitCode === null && child.signalCode === null) {
    child.kill("SIGQUIT");
    const deadline = Date.now() + 3_000;
    while (child.pid !== undefined && !processGone(child.pid) && Date.now() < deadline)
      sleepSync(20);
    if (child.pid !== undefined && !processGone(child.pid)) child.kill("SIGKILL");
  }
  rmSync(rootDir, { recursive: true, force: true, maxRetries: 3 });
});

/** True when pid no longer runs (absent, or a zombie waiting to be reaped by us). */
function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state === "Z" || state === "X";
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return true;
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

// --- a server that stops answering --------------------------------------------------------------

/** The postmaster of the cluster in `dataDir` (postmaster.pid's first line) and its children. */
export function serverProcesses(dataDir: string): number[] {
  const postmaster = Number(readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
  const children: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // gone meanwhile
    }
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (ppid === postmaster) children.push(Number(entry));
  }
  return [postmaster, ...children];
}

/**
 * Stops the server in `dataDir` as a hung server is (stuck storage, a frozen machine): SIGSTOP to
 * its postmaster, then to its backends and auxiliary processes (listed once the postmaster can
 * fork no more). It stops answering while its kernel still accepts and acknowledges TCP.
 */
export function pauseServer(dataDir: string): void {
  const [postmaster] = serverProcesses(dataDir);
  process.kill(postmaster as number, "SIGSTOP");
  for (const pid of serverProcesses(dataDir).slice(1)) {
    try {
      process.kill(pid, "SIGSTOP");
    } catch {
      // exited meanwhile
    }
  }
}

/** SIGCONT to every process of the server pauseServer stopped, children first. */
export function resumeServer(dataDir: string): void {
  for (const pid of serverProcesses(dataDir).reverse()) {
    try {
      process.kill(pid, "SIGCONT");
    } catch {
      // exited meanwhile
    }
  }
}
