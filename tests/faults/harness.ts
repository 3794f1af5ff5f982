/**
 * The fault suite's harness: gateways as real child processes (`node --import tsx src/serve.ts`,
 * configured by environment, as an operator runs them), a load generator that submits case
 * notices through the HTTP API at a steady rate, and a checker that reads both parties'
 * databases at the end.
 *
 * No gateway outlives the suite: each is tracked with the devtools' exit guard (killed with
 * SIGKILL, which also ends a stopped process, when the test process exits or is interrupted),
 * the test process exits when vitest's main process is gone, and a gateway whose test process
 * died without running any handler (SIGKILL) kills itself (parent-watch.ts).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
} from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "nats";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { freePort } from "../../src/devtools/free-port.ts";
import { type Federation, startNatsFederation } from "../../src/devtools/nats-federation.ts";
import { type NatsServerHandle, startNatsServer } from "../../src/devtools/nats-server.ts";
import {
  type PostgresServerHandle,
  startPostgresServer,
} from "../../src/devtools/postgres-server.ts";
import { exitGuard } from "../../src/devtools/process-guard.ts";
import { generateEncryptionKeyFile, generateKeyFile } from "../../src/registry/key-files.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/databases.ts";
import { CASE_NOTICE_BODY } from "../helpers/protocol-fixtures.ts";

const REPO = fileURLToPath(new URL("../../", import.meta.url));

export const SENDER = "CN-MPS-HEKOU";
export const RECEIVER = "VN-BGC-LAOCAI";

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `probe` until it returns true; throws with `what` once `timeoutMs` passed. */
export async function waitUntil(
  what: string,
  probe: () => Promise<boolean> | boolean,
  timeoutMs = 60_000,
  everyMs = 200,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

// --- clocks -----------------------------------------------------------------------------------

/** libfaketime's multi-threaded library (Debian package `faketime`), or undefined. */
export function findFaketimeLibrary(): string | undefined {
  const dirs = ["/usr/lib/faketime", "/usr/local/lib/faketime"];
  try {
    for (const entry of readdirSync("/usr/lib")) dirs.push(join("/usr/lib", entry, "faketime"));
  } catch {
    // no /usr/lib: nothing to add
  }
  for (const dir of dirs) {
    const lib = join(dir, "libfaketimeMT.so.1");
    if (existsSync(lib)) return lib;
  }
  return undefined;
}

/**
 * The environment that shifts a process's wall clock by `offset` (libfaketime syntax, e.g.
 * `+5m`, `-5m`), leaving its monotonic clock alone so that timers keep their real length.
 */
function clockEnv(offset: string): Record<string, string> {
  const lib = findFaketimeLibrary();
  if (lib === undefined) {
    throw new Error(
      "libfaketime not found: install it with `bash scripts/ensure-system-deps.sh faketime` (as root) or `apt-get install faketime`",
    );
  }
  return { LD_PRELOAD: lib, FAKETIME: offset, FAKETIME_DONT_FAKE_MONOTONIC: "1" };
}

// --- gateway processes ------------------------------------------------------------------------

export interface GatewaySpec {
  /** Names the log file, e.g. `laocai-2`. */
  name: string;
  partyId: string;
  natsUrl: string;
  databaseUrl: string;
  /** Shared by the replicas of one party. */
  keysDir: string;
  logDir: string;
  apiToken: string;
  adminToken: string;
  /** More settings (LIAISON_*), on top of the defaults. */
  env?: Record<string, string>;
  /** Shifts the process's wall clock (libfaketime), e.g. `+5m`. */
  clockOffset?: string;
}

interface Tracked {
  child: ChildProcess;
}

const guard = exitGuard<Tracked>(({ child }) => {
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});

/** Directories of ours (work directories, nats stores), removed at exit if not before. */
const dirGuard = exitGuard<string>((dir) => rmSync(dir, { recursive: true, force: true }));

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirGuard.track(dir);
  return dir;
}

async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  dirGuard.untrack(dir);
}

// A test worker whose parent (vitest) died alone goes on running the case with nobody to
// report to; it exits at once instead, and the exit guards stop what it started.
process.once("disconnect", () => process.exit(1));

/** The gateway's preload that ends it when this process is gone (its stdin closes). */
const PARENT_WATCH = new URL("./parent-watch.ts", import.meta.url).href;

/** One gateway process; it keeps its HTTP port across restarts. */
export class GatewayProcess {
  readonly url: string;
  readonly logFile: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private tracked: Tracked | undefined;
  /** Set by kill9() and stop(): the next exit is ours. */
  private exitExpected = false;
  /** Exits nobody asked for (a crash), e.g. `code 1` or `signal SIGABRT`. */
  readonly crashes: string[] = [];

  private constructor(
    readonly spec: GatewaySpec,
    readonly port: number,
  ) {
    this.url = `http://127.0.0.1:${port}`;
    this.logFile = join(spec.logDir, `${spec.name}.log`);
  }

  static async create(spec: GatewaySpec): Promise<GatewayProcess> {
    return new GatewayProcess(spec, await freePort());
  }

  get running(): boolean {
    const child = this.child;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  /** Starts the process and waits until GET /readyz answers 200. */
  async start(readyTimeoutMs = 60_000): Promise<void> {
    if (this.running) throw new Error(`${this.spec.name} is already running`);
    const { spec } = this;
    // Only what a process needs from ours: no LIAISON_* or DATABASE_URL of the test run.
    const inherited: Record<string, string> = {};
    for (const name of ["PATH", "HOME", "TMPDIR", "LANG", "TZ"]) {
      const value = process.env[name];
      if (value !== undefined) inherited[name] = value;
    }
    const env = {
      ...inherited,
      LIAISON_PARTY_ID: spec.partyId,
      LIAISON_API_TOKEN: spec.apiToken,
      LIAISON_ADMIN_TOKEN: spec.adminToken,
      LIAISON_HTTP_HOST: "127.0.0.1",
      LIAISON_HTTP_PORT: String(this.port),
      LIAISON_NATS_URL: spec.natsUrl,
      DATABASE_URL: spec.databaseUrl,
      LIAISON_DATA_DIR: spec.logDir,
      LIAISON_KEYS_DIR: spec.keysDir,
      ...spec.env,
      ...(spec.clockOffset === undefined ? {} : clockEnv(spec.clockOffset)),
    };
    const out = openSync(this.logFile, "a");
    let child: ChildProcess;
    try {
      child = spawn(
        process.execPath,
        ["--import", "tsx", "--import", PARENT_WATCH, "src/serve.ts"],
        { cwd: REPO, env, stdio: ["pipe", out, out] },
      );
    } finally {
      closeSync(out);
    }
    const tracked = { child };
    guard.track(tracked);
    this.child = child;
    this.tracked = tracked;
    this.exitExpected = false;
    this.exited = new Promise<void>((resolve) => {
      child.once("exit", (code, signal) => {
        if (!this.exitExpected)
          this.crashes.push(signal === null ? `code ${code}` : `signal ${signal}`);
        resolve();
      });
      child.once("error", (err) => {
        this.crashes.push(err.message);
        resolve();
      });
    });
    void this.exited.then(() => guard.untrack(tracked));

    const deadline = Date.now() + readyTimeoutMs;
    for (;;) {
      if (!this.running) {
        throw new Error(`${spec.name} exited while starting\n--- log ---\n${this.logTail()}`);
      }
      if (await this.ready()) return;
      if (Date.now() > deadline) {
        throw new Error(
          `${spec.name} was not ready within ${readyTimeoutMs} ms\n--- log ---\n${this.logTail()}`,
        );
      }
      await sleep(100);
    }
  }

  private async ready(): Promise<boolean> {
    try {
      const res = await fetch(`${this.url}/readyz`, { signal: AbortSignal.timeout(2000) });
      await res.body?.cancel();
      return res.status === 200;
    } catch {
      return false;
    }
  }

  /** Sends a signal; for SIGKILL and SIGTERM, waits until the process is gone. */
  async signal(signal: "SIGKILL" | "SIGTERM" | "SIGSTOP" | "SIGCONT"): Promise<void> {
    const child = this.child;
    if (child === undefined || !this.running) throw new Error(`${this.spec.name} is not running`);
    if (signal === "SIGKILL" || signal === "SIGTERM") this.exitExpected = true;
    child.kill(signal);
    if (signal === "SIGKILL" || signal === "SIGTERM") await this.exited;
  }

  kill9(): Promise<void> {
    return this.signal("SIGKILL");
  }

  pause(): Promise<void> {
    return this.signal("SIGSTOP");
  }

  resume(): Promise<void> {
    return this.signal("SIGCONT");
  }

  /** SIGTERM (the gateway stops cleanly), SIGKILL after `graceMs`. */
  async stop(graceMs = 15_000): Promise<void> {
    const child = this.child;
    if (child === undefined || !this.running) return;
    this.exitExpected = true;
    child.kill("SIGCONT"); // a paused process could not act on SIGTERM
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(timer);
    if (this.tracked !== undefined) guard.untrack(this.tracked);
  }

  /** The last lines the process wrote (JSON log lines). */
  logTail(lines = 30): string {
    try {
      return readFileSync(this.logFile, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }

  /** The log lines (parsed) whose `msg` passes `match`. */
  logRecords(match: (msg: string) => boolean): Array<Record<string, unknown>> {
    let text: string;
    try {
      text = readFileSync(this.logFile, "utf8");
    } catch {
      return [];
    }
    const records: Array<Record<string, unknown>> = [];
    for (const line of text.split("\n")) {
      if (!line.startsWith("{")) continue;
      try {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        if (typeof parsed.msg === "string" && match(parsed.msg)) records.push(parsed);
      } catch {
        // a line cut by kill -9: not a record of anything
      }
    }
    return records;
  }

  /** Ids of the messages this process logged as accepted ("message accepted" log lines). */
  acceptedIds(): string[] {
    return this.logRecords((msg) => msg === "message accepted").map((r) => String(r.messageId));
  }

  /** Inbound messages this process recognised as already logged and answered again. */
  answeredAgain(): number {
    return this.logRecords((msg) => msg.includes("receipt sent again")).length;
  }
}

// --- nats-server ------------------------------------------------------------------------------

/** A case's own nats-server, restartable on the same port and store directory. */
export interface CaseNats {
  url: string;
  /** Stops the server (SIGTERM), then starts it again on the same port and store. */
  restart(downMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startCaseNats(): Promise<CaseNats> {
  const storeDir = tempDir("liaison-faults-nats-");
  let server: NatsServerHandle = await startNatsServer({ storeDir });
  const port = server.port;
  return {
    url: server.url,
    async restart(downMs = 0) {
      await server.stop();
      if (downMs > 0) await sleep(downMs);
      server = await startNatsServer({ storeDir, port });
    },
    async stop() {
      await server.stop();
      await removeDir(storeDir);
    },
  };
}

/** The inbound stream of a gateway: LIAISON_STREAM, or its default. */
function inboundStream(spec: GatewaySpec): string {
  return spec.env?.LIAISON_STREAM ?? `LIAISON_${spec.partyId.replaceAll("-", "_")}`;
}

/** The `gateway` consumer of a gateway's inbound stream, as the broker counts it. */
export async function consumerInfo(
  natsUrl: string,
  gateway: GatewayProcess,
): Promise<{ ackPending: number; pending: number; redelivered: number }> {
  const nc = await connect({ servers: natsUrl, reconnect: false, timeout: 5000 });
  try {
    const jsm = await nc.jetstreamManager();
    const info = await jsm.consumers.info(inboundStream(gateway.spec), "gateway");
    return {
      ackPending: info.num_ack_pending,
      pending: info.num_pending,
      // Every delivery, first or again, takes a consumer sequence; the first deliveries of the
      // inbound stream's messages (one subject, every message delivered to this consumer in
      // stream order from the first) took one each up to the last stream sequence delivered.
      // What is left is how many times the broker handed a message out again (after its ack
      // wait, or a nak). num_redelivered counts only those not yet acknowledged.
      redelivered: info.delivered.consumer_seq - info.delivered.stream_seq,
    };
  } finally {
    await nc.close();
  }
}

/**
 * Freezes a receiving process (SIGSTOP) while it holds messages, for certain: the broker goes on
 * handing the frozen process messages until its consumer counts at least `minHeld` delivered and
 * not acknowledged (or 10 s passed). The process stays paused. Returns the count the broker
 * showed (below `minHeld` when the wait timed out).
 */
export async function pauseWhileHolding(
  gateway: GatewayProcess,
  natsUrl: string,
  minHeld: number,
): Promise<number> {
  await gateway.pause();
  let held = 0;
  await waitUntil(
    `${gateway.spec.name} to hold ${minHeld} unacknowledged messages`,
    async () => {
      held = (await consumerInfo(natsUrl, gateway)).ackPending;
      return held >= minHeld;
    },
    10_000,
    50,
  ).catch(() => {
    // The caller decides; the count is printed.
  });
  return held;
}

/**
 * kill -9 of a receiving process mid-batch, for certain: frozen while it holds at least
 * `minHeld` messages (pauseWhileHolding), then killed, also when the wait timed out. Returns the
 * count the broker showed.
 */
export async function killWhileHolding(
  gateway: GatewayProcess,
  natsUrl: string,
  minHeld: number,
): Promise<number> {
  const held = await pauseWhileHolding(gateway, natsUrl, minHeld);
  await gateway.kill9();
  return held;
}

// --- the network --------------------------------------------------------------------------------

export interface PartySpec {
  /** The nats-server this party's gateways connect to (a country's own, with federation). */
  natsUrl: string;
  /** Processes sharing the party's database and durable consumer (default 1). */
  replicas?: number;
  env?: Record<string, string>;
  clockOffset?: string;
}

export interface Party {
  id: string;
  token: string;
  database: TestDatabase;
  /** A connection to the party's database, for the checker. */
  sql: postgres.Sql;
  replicas: GatewayProcess[];
}

export interface Network {
  sender: Party;
  receiver: Party;
  workDir: string;
  /**
   * Stops every process, drops the databases and removes the work directory (with the
   * processes' logs, unless keepLogs).
   */
  stop(opts?: { keepLogs?: boolean }): Promise<void>;
}

/**
 * Two parties, China's Hekou (the sender) and Vietnam's Lao Cai (the receiver), each on a
 * database of its own on the suite's PostgreSQL, with their replicas. The first replica of each
 * starts, each registers the other from the party document it publishes (POST /v1/partners),
 * then the other replicas start (and find the registration in their database).
 */
export async function startNetwork(opts: {
  name: string;
  databaseServerUrl: string;
  sender: PartySpec;
  receiver: PartySpec;
}): Promise<Network> {
  const workDir = tempDir(`liaison-faults-${opts.name}-`);
  const parties: Party[] = [];
  const stop = async (stopOpts: { keepLogs?: boolean } = {}): Promise<void> => {
    const all = parties.flatMap((p) => p.replicas);
    await Promise.allSettled(all.map((g) => g.stop()));
    for (const p of parties) {
      await p.sql.end({ timeout: 5 }).catch(() => {});
      await p.database.drop().catch(() => {});
    }
    if (stopOpts.keepLogs === true) {
      dirGuard.untrack(workDir);
      console.log(`faults: the logs of ${opts.name} are kept in ${workDir}`);
    } else {
      await removeDir(workDir);
    }
  };
  try {
    const make = async (id: string, short: string, spec: PartySpec): Promise<Party> => {
      const keysDir = join(workDir, short, "keys");
      const validFrom = new Date(Date.now() - 86_400_000);
      await generateKeyFile(keysDir, { validFrom });
      await generateEncryptionKeyFile(keysDir, { validFrom });
      const database = await createTestDatabase(opts.databaseServerUrl);
      const party: Party = {
        id,
        token: randomBytes(24).toString("base64url"),
        database,
        sql: postgres(database.url, { max: 2, onnotice: () => {} }),
        replicas: [],
      };
      parties.push(party);
      const adminToken = randomBytes(24).toString("base64url");
      for (let i = 1; i <= (spec.replicas ?? 1); i++) {
        party.replicas.push(
          await GatewayProcess.create({
            name: `${short}-${i}`,
            partyId: id,
            natsUrl: spec.natsUrl,
            databaseUrl: database.url,
            keysDir,
            logDir: join(workDir, short),
            apiToken: party.token,
            adminToken,
            ...(spec.env === undefined ? {} : { env: spec.env }),
            ...(spec.clockOffset === undefined ? {} : { clockOffset: spec.clockOffset }),
          }),
        );
      }
      return party;
    };
    const sender = await make(SENDER, "hekou", opts.sender);
    const receiver = await make(RECEIVER, "laocai", opts.receiver);
    const first = (p: Party) => p.replicas[0] as GatewayProcess;
    await Promise.all([first(sender).start(), first(receiver).start()]);
    await register(first(sender), first(receiver));
    await register(first(receiver), first(sender));
    await Promise.all(
      [...sender.replicas.slice(1), ...receiver.replicas.slice(1)].map((g) => g.start()),
    );
    return { sender, receiver, workDir, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Registers `partner` at `at` from the party document `partner` publishes. */
async function register(at: GatewayProcess, partner: GatewayProcess): Promise<void> {
  const doc = await (await fetch(`${partner.url}/.well-known/jwks.json`)).text();
  const res = await fetch(`${at.url}/v1/partners`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${at.spec.adminToken}`,
      "content-type": "application/json",
    },
    body: doc,
  });
  if (res.status !== 201) {
    throw new Error(
      `registering ${partner.spec.partyId} at ${at.spec.name}: ${res.status} ${await res.text()}`,
    );
  }
}

/** Inbound messages the receiver logged from the sender so far. */
export async function loggedAtReceiver(net: Network): Promise<number> {
  const [row] = await net.receiver.sql<Array<{ n: number }>>`
    SELECT count(*)::int AS n FROM messages
    WHERE direction = 'inbound' AND from_party = ${net.sender.id}`;
  return row?.n ?? 0;
}

// --- load ---------------------------------------------------------------------------------------

export interface LoadOptions {
  /** Messages the sender must accept (answer 202 for). */
  count: number;
  /** Submits started per second. */
  ratePerSecond: number;
  /** Submits waiting for their answer at most. */
  maxInFlight?: number;
  /** Gives up when `count` is not reached by then. */
  timeoutMs?: number;
}

/**
 * Submits `count` case notices from the sender to the receiver through the sender's HTTP API,
 * one every 1/rate seconds (spread over the sender's replicas), each under an `Idempotency-Key`
 * of its own (docs/api.md, "Submitting without duplicates"). A submit answered otherwise than
 * 202, or not at all (the sender killed, the database down), is counted as refused and sent
 * again, with the same key and the same bytes, before any new one, until it is answered 202: as a
 * client should. A refused submit that the gateway had committed all the same (a commit whose
 * answer was lost) is then answered with the message it made, so the receiver must log exactly
 * the messages answered 202 (`settle` counts any other as `extra`).
 */
export class Load {
  readonly accepted: string[] = [];
  refused = 0;
  /** Submits answered 202 with `Idempotency-Replayed: true` (their first attempt was refused). */
  replayed = 0;
  /** Keys refused, to be sent again before any new one. */
  private readonly again: string[] = [];
  private made = 0;
  /** Refusals by reason (HTTP status or the network error's code). */
  readonly refusals = new Map<string, number>();
  readonly done: Promise<void>;
  private inFlight = 0;
  /** By sender replica (its name, e.g. `hekou-2`): submits answered 202 by it. */
  readonly acceptedBy = new Map<string, number>();
  /** By sender replica: submits sent to it and not answered yet. */
  readonly inFlightTo = new Map<string, number>();
  /** By sender replica: every Idempotency-Key sent to it (some may be sent to another too). */
  readonly keysSentTo = new Map<string, Set<string>>();

  constructor(
    private readonly sender: Party,
    private readonly receiverId: string,
    private readonly opts: LoadOptions,
  ) {
    this.done = this.run();
  }

  private async run(): Promise<void> {
    const { count, ratePerSecond } = this.opts;
    const maxInFlight = this.opts.maxInFlight ?? 64;
    const deadline = Date.now() + (this.opts.timeoutMs ?? 240_000);
    const interval = 1000 / ratePerSecond;
    const running = new Set<Promise<void>>();
    let next = performance.now();
    let turn = 0;
    while (this.accepted.length < count) {
      if (Date.now() > deadline) {
        throw new Error(
          `load: only ${this.accepted.length} of ${count} submits accepted in time (refused ${this.refused}: ${this.describeRefusals()})`,
        );
      }
      // Every key is made once; a refused one is sent again before a new one is made.
      if ((this.again.length === 0 && this.made >= count) || this.inFlight >= maxInFlight) {
        await Promise.race([...running, sleep(50)]);
        continue;
      }
      const targets = this.sender.replicas;
      if (targets.every((g) => !g.running && g.crashes.length > 0)) {
        throw new Error(
          `load: the sender exited by itself (${targets.flatMap((g) => g.crashes).join(", ")}) after ${this.accepted.length} submits were accepted`,
        );
      }
      const wait = next - performance.now();
      if (wait > 0) await sleep(wait);
      // A steady rate: no burst to catch up after a stall.
      next = Math.max(next + interval, performance.now() - interval);
      // A replica whose process is gone (killed, not restarted) is skipped, as a client's load
      // balancer skips a dead backend; with none running (one replica, killed and restarting)
      // the submit goes to them all the same, is refused, and is sent again.
      const live = targets.filter((g) => g.running);
      const pool = live.length > 0 ? live : targets;
      const target = pool[turn++ % pool.length] as GatewayProcess;
      const key = this.again.shift() ?? `fault-load-${this.made++}-${randomUUID()}`;
      const submit = this.submit(target, key).finally(() => running.delete(submit));
      running.add(submit);
    }
    await Promise.all(running);
  }

  private async submit(target: GatewayProcess, key: string): Promise<void> {
    const name = target.spec.name;
    this.inFlight++;
    this.inFlightTo.set(name, (this.inFlightTo.get(name) ?? 0) + 1);
    if (!this.keysSentTo.has(name)) this.keysSentTo.set(name, new Set());
    this.keysSentTo.get(name)?.add(key);
    try {
      const res = await fetch(`${target.url}/v1/messages`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${this.sender.token}`,
          "content-type": "application/json",
          "idempotency-key": key,
        },
        // The same bytes for every submit, so a key sent again carries what it first carried.
        body: JSON.stringify({
          type: "case.notice",
          to: this.receiverId,
          caseRef: "CN-HEKOU-2026-0042",
          body: CASE_NOTICE_BODY,
        }),
        signal: AbortSignal.timeout(30_000),
      });
      if (res.status === 202) {
        const { id } = (await res.json()) as { id: string };
        this.accepted.push(id);
        this.acceptedBy.set(name, (this.acceptedBy.get(name) ?? 0) + 1);
        if (res.headers.get("idempotency-replayed") === "true") this.replayed++;
      } else {
        await res.body?.cancel();
        this.refuse(`http_${res.status}`, key);
      }
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      this.refuse(cause?.code ?? (err as Error).name, key);
    } finally {
      this.inFlight--;
      this.inFlightTo.set(name, (this.inFlightTo.get(name) ?? 1) - 1);
    }
  }

  private refuse(reason: string, key: string): void {
    this.again.push(key);
    this.refused++;
    this.refusals.set(reason, (this.refusals.get(reason) ?? 0) + 1);
  }

  describeRefusals(): string {
    return [...this.refusals].map(([reason, n]) => `${reason}=${n}`).join(" ") || "none";
  }
}

export function startLoad(net: Network, opts: LoadOptions): Load {
  return new Load(net.sender, net.receiver.id, opts);
}

// --- the checker --------------------------------------------------------------------------------

export interface Tally {
  /** Submits the sender answered 202 for. */
  sent: number;
  /** Of those, the ones whose delivery is `delivered` at the sender. */
  delivered: number;
  /** Of those, the ones the receiver never logged. */
  lost: number;
  /** duplicateIds + duplicateDigests + receiptsIssuedTwice + receiptsAppliedTwice. */
  duplicates: number;
  /** Rows in either party's quarantine. */
  quarantined: number;
  refused: number;
  /** Inbound rows at the receiver whose sender and id an earlier row had. */
  duplicateIds: number;
  /** Inbound rows at the receiver whose bytes (digest) an earlier row had. */
  duplicateDigests: number;
  /** Messages for which the receiver issued more than one receipt (the extra ones). */
  receiptsIssuedTwice: number;
  /** Messages for which the sender applied more than one receipt (the extra ones). */
  receiptsAppliedTwice: number;
  /** Every delivery at the sender (answered or not) that is not `delivered`, by status. */
  undelivered: Record<string, number>;
  /** Sent ids the sender has no delivery for. */
  missingAtSender: number;
  /**
   * Messages the receiver logged from the sender that no submit was answered 202 for: a message
   * made by a submit refused to the client (its commit's answer lost) and then made again.
   */
  extra: number;
  /** Quarantine rows by side and code, e.g. `receiver:clock_skew`. */
  quarantineCodes: Record<string, number>;
  /** Seconds from the start of the load to the end of the wait. */
  seconds: number;
}

/**
 * Waits (polling, up to `deadlineMs`) until the sender has no delivery left `queued` or
 * `sent` and holds a delivery for every sent id, then counts. Database errors while polling
 * (a database restarting) are retried until the deadline.
 */
export async function settle(
  net: Network,
  load: Load,
  opts: { deadlineMs?: number; startedAt?: number } = {},
): Promise<Tally> {
  const deadline = Date.now() + (opts.deadlineMs ?? 120_000);
  const sent = new Set(load.accepted);
  const { sender, receiver } = net;
  await waitUntil(
    "every delivery at the sender to end",
    async () => {
      try {
        const [row] = await sender.sql<Array<{ open: number; known: number }>>`
          SELECT count(*) FILTER (WHERE status IN ('queued', 'sent'))::int AS open,
                 count(*) FILTER (WHERE message_id = ANY(${[...sent]}::uuid[]))::int AS known
          FROM deliveries WHERE recipient = ${receiver.id}`;
        return row !== undefined && row.open === 0 && row.known === sent.size;
      } catch {
        return false;
      }
    },
    Math.max(0, deadline - Date.now()),
    500,
  ).catch(() => {
    // The counts below tell what did not end.
  });

  const deliveries = await sender.sql<Array<{ id: string; status: string }>>`
    SELECT message_id::text AS id, status FROM deliveries WHERE recipient = ${receiver.id}`;
  const statusOf = new Map(deliveries.map((d) => [d.id, d.status]));
  const undelivered: Record<string, number> = {};
  for (const d of deliveries) {
    if (d.status !== "delivered") undelivered[d.status] = (undelivered[d.status] ?? 0) + 1;
  }

  const inbound = await receiver.sql<Array<{ id: string; digest: string }>>`
    SELECT id::text AS id, digest FROM messages
    WHERE direction = 'inbound' AND from_party = ${sender.id} ORDER BY seq`;
  const seenIds = new Set<string>();
  const seenDigests = new Set<string>();
  let duplicateIds = 0;
  let duplicateDigests = 0;
  for (const row of inbound) {
    if (seenIds.has(row.id)) duplicateIds++;
    if (seenDigests.has(row.digest)) duplicateDigests++;
    seenIds.add(row.id);
    seenDigests.add(row.digest);
  }

  const extraReceipts = async (sql: postgres.Sql, direction: string): Promise<number> => {
    const [row] = await sql<Array<{ n: number }>>`
      SELECT coalesce(sum(n - 1), 0)::int AS n FROM (
        SELECT count(*) AS n FROM receipts
        WHERE direction = ${direction} AND message_id IS NOT NULL
        GROUP BY message_id HAVING count(*) > 1) extra`;
    return row?.n ?? 0;
  };
  const receiptsIssuedTwice = await extraReceipts(receiver.sql, "issued");
  const receiptsAppliedTwice = await extraReceipts(sender.sql, "received");

  const quarantineCodes: Record<string, number> = {};
  for (const [side, party] of [
    ["sender", sender],
    ["receiver", receiver],
  ] as const) {
    const rows = await party.sql<Array<{ code: string; n: number }>>`
      SELECT code, count(*)::int AS n FROM quarantine GROUP BY code`;
    for (const r of rows) quarantineCodes[`${side}:${r.code}`] = r.n;
  }

  let extra = 0;
  for (const id of seenIds) if (!sent.has(id)) extra++;
  let delivered = 0;
  let lost = 0;
  let missingAtSender = 0;
  for (const id of sent) {
    const status = statusOf.get(id);
    if (status === undefined) missingAtSender++;
    if (status === "delivered") delivered++;
    if (!seenIds.has(id)) lost++;
  }
  return {
    sent: sent.size,
    delivered,
    lost,
    duplicates: duplicateIds + duplicateDigests + receiptsIssuedTwice + receiptsAppliedTwice,
    quarantined: Object.values(quarantineCodes).reduce((a, b) => a + b, 0),
    refused: load.refused,
    duplicateIds,
    duplicateDigests,
    receiptsIssuedTwice,
    receiptsAppliedTwice,
    undelivered,
    missingAtSender,
    extra,
    quarantineCodes,
    seconds: opts.startedAt === undefined ? Number.NaN : (Date.now() - opts.startedAt) / 1000,
  };
}

/** The case's line: `faults: case=<name> sent=… delivered=… lost=… duplicates=… quarantined=…`. */
export function report(
  name: string,
  tally: Tally,
  extra: Record<string, string | number> = {},
): string {
  const fields: Record<string, string | number> = {
    sent: tally.sent,
    delivered: tally.delivered,
    lost: tally.lost,
    duplicates: tally.duplicates,
    quarantined: tally.quarantined,
    refused: tally.refused,
    ...extra,
    seconds: tally.seconds.toFixed(1),
  };
  const line = `faults: case=${name} ${Object.entries(fields)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ")}`;
  console.log(line);
  return line;
}

/** What every case asserts: each message answered 202 was logged once and ended delivered. */
export function problems(tally: Tally, minimum: number): string[] {
  const found: string[] = [];
  if (tally.sent < minimum) found.push(`only ${tally.sent} sent, fewer than ${minimum}`);
  if (tally.lost > 0) found.push(`${tally.lost} lost`);
  if (tally.missingAtSender > 0)
    found.push(`${tally.missingAtSender} answered 202 but unknown to the sender`);
  if (tally.delivered !== tally.sent) found.push(`${tally.sent - tally.delivered} not delivered`);
  if (tally.extra > 0)
    found.push(`${tally.extra} logged at the receiver that no submit was answered 202 for`);
  if (Object.keys(tally.undelivered).length > 0)
    found.push(`deliveries not delivered: ${JSON.stringify(tally.undelivered)}`);
  if (tally.duplicates > 0)
    found.push(
      `duplicates: ids=${tally.duplicateIds} digests=${tally.duplicateDigests} receipts issued twice=${tally.receiptsIssuedTwice} applied twice=${tally.receiptsAppliedTwice}`,
    );
  if (tally.quarantined > 0) found.push(`quarantined: ${JSON.stringify(tally.quarantineCodes)}`);
  return found;
}

/** Processes of the network that exited when nobody stopped or killed them. */
export function crashes(net: Network): string[] {
  return [...net.sender.replicas, ...net.receiver.replicas].flatMap((g) =>
    g.crashes.map((how) => `${g.spec.name} exited by itself (${how})`),
  );
}

/** The last log lines of every process of the network, for a failure's message. */
export function logTails(net: Network, lines = 15): string {
  return [...net.sender.replicas, ...net.receiver.replicas]
    .map((g) => `--- ${g.spec.name} (${g.logFile}) ---\n${g.logTail(lines)}`)
    .join("\n");
}

// --- a case ---------------------------------------------------------------------------------------

export interface CaseContext {
  net: Network;
  nats: CaseNats;
  /** The case's own PostgreSQL server, when it asked for one (ownDatabaseServer). */
  postgres: PostgresServerHandle | undefined;
  /**
   * With `federated`: each country's own nats-server (domains CN and VN) joined as leaf nodes of
   * a hub (src/devtools/nats-federation.ts); the gateways use those, not `nats`.
   */
  federation: Federation | undefined;
  load: Load;
}

export interface CaseCheck {
  fields?: Record<string, string | number>;
  problems?: string[];
}

export interface FaultCase {
  /** The name in the `faults:` line. */
  name: string;
  /** What the test says it checks. */
  title: string;
  /** Messages the sender must accept (default 2,000). */
  count?: number;
  /** Submits per second (default 100). */
  rate?: number;
  /** Settings of each party (its nats-server is the case's own unless given). */
  sender?: Partial<PartySpec>;
  receiver?: Partial<PartySpec>;
  /** A PostgreSQL server of the case's own (one it restarts) instead of the suite's. */
  ownDatabaseServer?: boolean;
  /** Each country on its own nats-server, federated (CaseContext.federation). */
  federated?: boolean;
  /** How long the checker waits for every delivery to end, after the load (default 120 s). */
  settleMs?: number;
  /**
   * The fault, injected once the receiver has logged a quarter of the messages (the load goes
   * on meanwhile). What it returns is printed in the case's line.
   */
  fault(ctx: CaseContext): Promise<Record<string, string | number> | undefined>;
  /**
   * Checks of the case's own, after the wait: `fields` are printed in the case's line,
   * `problems` (none when all is well) fail the case with the common ones.
   */
  check?(ctx: CaseContext): Promise<CaseCheck>;
}

/**
 * Defines one case as a describe block: a nats-server and a network of its own, the load, the
 * fault mid-flow, the wait, the `faults:` line, and the assertions every case makes — each
 * message answered 202 logged once at the receiver and `delivered` at the sender, every
 * delivery `delivered`, no duplicate (by id, by bytes, by receipt), nothing quarantined.
 */
export function defineFaultCase(spec: FaultCase): void {
  describe(spec.name, () => {
    let nats: CaseNats | undefined;
    let postgres: PostgresServerHandle | undefined;
    let net: Network | undefined;
    let federation: Federation | undefined;

    let setupSeconds = Number.NaN;
    let failed = false;

    beforeAll(async () => {
      const t0 = Date.now();
      nats = await startCaseNats();
      if (spec.ownDatabaseServer === true) postgres = await startPostgresServer();
      const country = (domain: "CN" | "VN", party: Partial<PartySpec> | undefined) => {
        const server = federation?.servers[domain];
        if (server === undefined) return { natsUrl: nats?.url ?? "", ...party };
        return {
          ...party,
          natsUrl: server.url,
          env: { ...party?.env, LIAISON_NATS_DOMAIN: domain },
        };
      };
      if (spec.federated === true) {
        federation = await startNatsFederation([
          { domain: "CN", parties: [SENDER] },
          { domain: "VN", parties: [RECEIVER] },
        ]);
      }
      net = await startNetwork({
        name: spec.name,
        databaseServerUrl: postgres?.url ?? inject("faultsDatabaseUrl"),
        sender: country("CN", spec.sender),
        receiver: country("VN", spec.receiver),
      });
      setupSeconds = (Date.now() - t0) / 1000;
    });

    afterAll(async () => {
      await net?.stop({ keepLogs: failed });
      await nats?.stop();
      await federation?.stop();
      await postgres?.stop();
    });

    it(spec.title, async () => {
      if (net === undefined || nats === undefined) throw new Error("the network did not start");
      const network = net;
      try {
        await runCase(spec, { net, nats, postgres, federation }, setupSeconds);
      } catch (err) {
        failed = true;
        const crashed = crashes(network);
        if (err instanceof Error) {
          err.message += `${crashed.length > 0 ? `\n${crashed.join("\n")}` : ""}\n${logTails(network)}`;
        }
        throw err;
      }
    });
  });
}

async function runCase(
  spec: FaultCase,
  { net, nats, postgres, federation }: Omit<CaseContext, "load">,
  setupSeconds: number,
): Promise<void> {
  const count = spec.count ?? 2000;
  const startedAt = Date.now();
  const load = startLoad(net, { count, ratePerSecond: spec.rate ?? 100 });
  const ctx: CaseContext = { net, nats, postgres, federation, load };
  await Promise.race([
    waitUntil("the receiver to log a quarter of the messages", async () => {
      return (await loggedAtReceiver(net)) >= count / 4;
    }),
    // A load that fails (the sender never answers) ends the wait early.
    load.done.then(() => {
      throw new Error("the load ended before the receiver logged a quarter of it");
    }),
  ]);
  const faultFields = (await spec.fault(ctx)) ?? {};
  await load.done;
  const tally = await settle(net, load, { startedAt, deadlineMs: spec.settleMs ?? 120_000 });
  const answeredAgain = net.receiver.replicas.reduce((n, g) => n + g.answeredAgain(), 0);
  const own = (await spec.check?.(ctx)) ?? {};
  report(spec.name, tally, {
    ...faultFields,
    again: answeredAgain,
    replayed: load.replayed,
    extra: tally.extra,
    ...own.fields,
    setup_seconds: setupSeconds.toFixed(1),
  });
  expect([...problems(tally, count), ...crashes(net), ...(own.problems ?? [])]).toEqual([]);
}
