/**
 * `npm run bench`: throughput, latency and memory of the whole path between two gateways on this
 * machine, and of a bare pipeline over the same NATS and PostgreSQL for comparison. It measures,
 * in one run:
 *
 *   (a) end-to-end throughput: case notices submitted over the HTTP API (in process:
 *       `app.request`, no socket) as fast as `--concurrency` submits in flight allow, until the
 *       partner's verified receipt for every one is applied at the sender (the delivery is
 *       `delivered`);
 *   (b) a bare pipeline over the same nats-server and PostgreSQL server doing the same writes and
 *       publishes, batched the same way, without HTTP, signing, verifying or validating (see
 *       `bare()` below);
 *   (c) latency at a fixed offered load (`--rate`, 500 msg/s): submits on an open-loop schedule,
 *       each timed from its scheduled start to its receipt applied at the sender
 *       (`deliveries.updated_at`), so a stalled gateway cannot hide its queue;
 *   (d) resident memory: the process's peak RSS while (a) and (c) ran.
 *
 * Both gateways (and the bench itself) run in this one Node process, as in the demo. The bench
 * starts its own nats-server and PostgreSQL server unless `--nats-url` / `--database-url` (a
 * server URL whose user may CREATE DATABASE; one new database per gateway and per bare side) are
 * given. It prints a table and ends with one line:
 *
 *   bench: e2e_msgs_per_s=… bare_msgs_per_s=… ratio=… p50_ms=… p99_ms=… rss_mb=… cpu_ratio=…
 *          cpu_ms_per_msg=…
 *
 * It asserts nothing. `--quick` finishes in under a minute; `--profile file.cpuprofile` writes a
 * CPU profile of phase (a) alone (node:inspector).
 *
 *   npm run bench -- [--quick] [--messages 5000] [--concurrency 64] [--rate 500] [--seconds 15]
 *                    [--store postgres|pglite] [--phases abc] [--nats-url nats://…]
 *                    [--database-url postgres://…] [--profile a.cpuprofile] [--body seed|small]
 *
 * `--body small` submits a case notice with only the members the schema requires, and short
 * strings (a 266-byte body: a summary, one offence, a count of victims, one requested action) instead of the seed's (4.5 kB), to show
 * how much of the cost is the size of what is signed, sent and kept.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { inArray, sql } from "drizzle-orm";
import { AckPolicy, connect, DeliverPolicy, type JsMsg, RetentionPolicy, StorageType } from "nats";
import { loadConfig } from "../src/config/config.ts";
import { type IssuedBatch, inboundKey, type SignedMessage } from "../src/delivery/ports.ts";
import { startNatsServer } from "../src/devtools/nats-server.ts";
import { startPostgresServer } from "../src/devtools/postgres-server.ts";
import { type Gateway, startGateway } from "../src/gateway.ts";
import type { Envelope, ReceiptBatch } from "../src/protocol/types.ts";
import { generateKeyFile } from "../src/registry/key-files.ts";
import { parsePartyDocument } from "../src/registry/party-document.ts";
import { openDatabase } from "../src/store/database.ts";
import { SqlDeliveryOutbox } from "../src/store/delivery-outbox.ts";
import { SqlInboundLog } from "../src/store/inbound-log.ts";
import { SqlOutboundLog } from "../src/store/outbound-log.ts";
import { SqlReceiptLog } from "../src/store/receipt-log.ts";
import { deliveries } from "../src/store/schema.ts";
import { createStore } from "../src/store/store.ts";
import { createTestDatabase } from "../tests/helpers/databases.ts";
import { CASE_NOTICE_BODY as SEED_CASE_NOTICE_BODY } from "../tests/helpers/protocol-fixtures.ts";

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    messages: { type: "string" },
    concurrency: { type: "string", default: "64" },
    rate: { type: "string", default: "500" },
    seconds: { type: "string" },
    store: { type: "string", default: "postgres" },
    phases: { type: "string", default: "abc" },
    "nats-url": { type: "string" },
    "database-url": { type: "string" },
    profile: { type: "string" },
    body: { type: "string", default: "seed" },
  },
});
if (values.store !== "pglite" && values.store !== "postgres")
  throw new Error("--store must be pglite or postgres");
if (values.body !== "seed" && values.body !== "small")
  throw new Error("--body must be seed or small");
/** A case notice body with only the members schemas/case.notice.v1.json requires, short strings. */
const SMALL_CASE_NOTICE_BODY = {
  summary: "Hekou border",
  incident: {
    offenceTypes: ["trafficking-for-forced-marriage"],
    occurredFrom: "2026-11-17T20:30:00Z",
    place: { country: "CN" },
  },
  victims: { count: 4, minorsCount: 1, nationalities: ["VN"] },
  requestedActions: [{ action: "identify-suspects" }],
};
const CASE_NOTICE_BODY = values.body === "small" ? SMALL_CASE_NOTICE_BODY : SEED_CASE_NOTICE_BODY;
const QUICK = values.quick === true;
const N = Number(values.messages ?? (QUICK ? 2000 : 5000));
const WARMUP = QUICK ? 300 : 600;
const CONCURRENCY = Number(values.concurrency);
const RATE = Number(values.rate);
const RATE_SECONDS = Number(values.seconds ?? (QUICK ? 6 : 15));
const PHASES = new Set(values.phases);
/** Gateways' batch sizes (src/gateway.ts), which the bare pipeline copies. */
const BATCH = 100;
const GROUP = 500;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

/** Peak resident set size while `on` is true, sampled every 100 ms. */
const rss = {
  on: false,
  peak: 0,
  sample() {
    if (this.on) this.peak = Math.max(this.peak, process.memoryUsage.rss());
  },
};
setInterval(() => rss.sample(), 100).unref();

/**
 * CPU seconds (user + system) used so far by this process, and by the PostgreSQL server
 * (postmaster and its backends) and the nats-server the bench started: CPU per message is what
 * other load on a shared machine disturbs least. Linux /proc; zero where unavailable.
 */
function cpuSeconds(servers: { pgDataDir?: string; natsStoreDir?: string }): CpuSeconds {
  const tick = 100; // USER_HZ on Linux
  const stat = (pid: string) => {
    try {
      const f = readFileSync(`/proc/${pid}/stat`, "utf8");
      const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
      return {
        ppid: rest[1] as string,
        cpu: (Number(rest[11]) + Number(rest[12])) / tick,
        // Children that exited and were reaped (cutime + cstime).
        reaped: (Number(rest[13]) + Number(rest[14])) / tick,
      };
    } catch {
      return undefined;
    }
  };
  const pids = readdirSync("/proc").filter((d) => /^\d+$/.test(d));
  let postgres = 0;
  let nats = 0;
  if (servers.pgDataDir !== undefined) {
    try {
      const master = readFileSync(join(servers.pgDataDir, "postmaster.pid"), "utf8").split("\n")[0];
      for (const pid of pids) {
        const st = stat(pid);
        if (st === undefined) continue;
        // The postmaster, its live children, and the children that exited since it started
        // (autovacuum workers, closed backends): else a worker ending inside the measured
        // window would take its CPU out of the sum.
        if (pid === master) postgres += st.cpu + st.reaped;
        else if (st.ppid === master) postgres += st.cpu;
      }
    } catch {}
  }
  if (servers.natsStoreDir !== undefined) {
    for (const pid of pids) {
      try {
        if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(servers.natsStoreDir))
          nats += stat(pid)?.cpu ?? 0;
      } catch {}
    }
  }
  const own = process.cpuUsage();
  return { node: (own.user + own.system) / 1e6, postgres, nats };
}

/** CPU of this process, the PostgreSQL server and the nats-server: seconds, or ms per message. */
interface CpuSeconds {
  node: number;
  postgres: number;
  nats: number;
}

function cpuMsPerMsg(before: CpuSeconds, after: CpuSeconds, messages: number): CpuSeconds {
  const per = (k: keyof CpuSeconds) => ((after[k] - before[k]) * 1000) / messages;
  return { node: per("node"), postgres: per("postgres"), nats: per("nats") };
}

interface Figures {
  /** CPU milliseconds per message during (a) and during (b): this process, PostgreSQL, nats. */
  cpuMsPerMsg?: CpuSeconds;
  bareCpuMsPerMsg?: CpuSeconds;
  submitPerS?: number;
  e2ePerS?: number;
  e2eSeconds?: number;
  barePerS?: number;
  bareSeconds?: number;
  latency?: { n: number; lost: number; p50: number; p90: number; p99: number; max: number };
  achievedRate?: number;
  jwsBytes?: number;
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "liaison-bench-"));
  const started = performance.now();
  const nats = values["nats-url"] === undefined ? await startNatsServer() : undefined;
  const natsUrl = values["nats-url"] ?? (nats?.url as string);
  const pgServer =
    values.store === "postgres" && values["database-url"] === undefined
      ? await startPostgresServer()
      : undefined;
  const pgUrl = values["database-url"] ?? pgServer?.url;
  const newDatabase = async () => {
    if (pgUrl === undefined) throw new Error("no PostgreSQL server");
    return (await createTestDatabase(pgUrl)).url;
  };
  const gateways: Array<{ gateway: Gateway; token: string }> = [];
  const figures: Figures = {};
  try {
    if (PHASES.has("a") || PHASES.has("c")) {
      for (const id of ["CN-MPS-HEKOU", "VN-BGC-LAOCAI"]) {
        const dbUrl = values.store === "postgres" ? await newDatabase() : undefined;
        const dataDir = join(work, id);
        await generateKeyFile(join(dataDir, "keys"));
        const token = randomBytes(24).toString("base64url");
        const config = loadConfig({
          LIAISON_PARTY_ID: id,
          LIAISON_HTTP_PORT: "0",
          LIAISON_NATS_URL: natsUrl,
          LIAISON_DATA_DIR: dataDir,
          LIAISON_API_TOKEN: token,
          LIAISON_LOG_LEVEL: "error",
          LIAISON_RETRY_BASE_MS: "30000",
          ...(dbUrl === undefined ? {} : { DATABASE_URL: dbUrl }),
        });
        gateways.push({ gateway: await startGateway(config), token });
      }
      const [a, b] = gateways as [(typeof gateways)[0], (typeof gateways)[0]];
      for (const [x, y] of [
        [a, b],
        [b, a],
      ] as const) {
        const { party, keys } = await parsePartyDocument(
          await (await fetch(`${y.gateway.url}/.well-known/jwks.json`)).json(),
        );
        await x.gateway.registry.add(party, keys);
      }
      console.log(
        `bench: case notices CN-MPS-HEKOU -> VN-BGC-LAOCAI, stores ${a.gateway.database.driver}/${b.gateway.database.driver}, both gateways in this process${QUICK ? ", quick" : ""}${values.body === "small" ? ", the smallest case notice body (--body small)" : ""}`,
      );
      const sender = new Sender(a.gateway, a.token);
      // Warm-up (JIT, connection pools, the broker's streams): not measured.
      await sender.closedLoop(WARMUP, CONCURRENCY);
      await sender.waitDelivered(120_000);
      rss.on = true;
      if (PHASES.has("a")) {
        const session = values.profile === undefined ? undefined : new Session();
        if (session !== undefined) {
          session.connect();
          await session.post("Profiler.enable");
          await session.post("Profiler.setSamplingInterval", { interval: 200 });
          await session.post("Profiler.start");
        }
        const servers = { pgDataDir: pgServer?.dataDir, natsStoreDir: nats?.storeDir };
        const cpu0 = cpuSeconds(servers);
        const t0 = performance.now();
        await sender.closedLoop(N, CONCURRENCY);
        figures.submitPerS = N / ((performance.now() - t0) / 1000);
        await sender.waitDelivered(600_000);
        figures.e2eSeconds = (performance.now() - t0) / 1000;
        figures.e2ePerS = N / figures.e2eSeconds;
        figures.cpuMsPerMsg = cpuMsPerMsg(cpu0, cpuSeconds(servers), N);
        if (session !== undefined && values.profile !== undefined) {
          const { profile } = await session.post("Profiler.stop");
          writeFileSync(values.profile, JSON.stringify(profile));
          session.disconnect();
        }
        figures.jwsBytes = await sender.averageJwsBytes();
      }
      if (PHASES.has("c")) {
        await sleep(500);
        const { latencies, lost, achieved } = await sender.openLoop(RATE, RATE_SECONDS);
        figures.achievedRate = achieved;
        figures.latency = {
          n: latencies.length,
          lost,
          p50: percentile(latencies, 50),
          p90: percentile(latencies, 90),
          p99: percentile(latencies, 99),
          max: latencies.at(-1) ?? Number.NaN,
        };
      }
      rss.sample();
      rss.on = false;
      for (const g of gateways.splice(0)) await g.gateway.stop();
    }
    if (PHASES.has("b")) {
      if (pgUrl === undefined) throw new Error("the bare pipeline needs PostgreSQL");
      const servers = { pgDataDir: pgServer?.dataDir, natsStoreDir: nats?.storeDir };
      if (figures.jwsBytes === undefined) {
        // The gateways' JWS length is read from their log in (a).
        console.log("bench: (b) without (a): messages of 1500 bytes, not the gateways' length");
      }
      const { seconds: t, cpuMsPerMsg: bareCpu } = await bare({
        natsUrl,
        dbA: await newDatabase(),
        dbB: await newDatabase(),
        n: N,
        warmup: WARMUP,
        concurrency: CONCURRENCY,
        jwsBytes: figures.jwsBytes ?? 1500,
        cpu: () => cpuSeconds(servers),
      });
      figures.bareCpuMsPerMsg = bareCpu;
      figures.barePerS = N / t;
      figures.bareSeconds = t;
    }
    report(figures, (performance.now() - started) / 1000);
  } finally {
    for (const g of gateways) await g.gateway.stop();
    await nats?.stop();
    await pgServer?.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

/** Submits through the sender's HTTP API and reads back what its store recorded. */
class Sender {
  private readonly request = JSON.stringify({
    type: "case.notice",
    to: "VN-BGC-LAOCAI",
    caseRef: "CN-HEKOU-2026-0042",
    body: CASE_NOTICE_BODY,
  });

  private readonly requestBytes = Buffer.byteLength(this.request);

  constructor(
    private readonly gateway: Gateway,
    private readonly token: string,
  ) {}

  async submit(): Promise<string> {
    const res = await this.gateway.app.request("/v1/messages", {
      method: "POST",
      // With its Content-Length, as any HTTP client sends a body of known length (without it,
      // the body limit reads the body through a stream of its own to count it).
      headers: {
        authorization: `Bearer ${this.token}`,
        "content-type": "application/json",
        "content-length": String(this.requestBytes),
      },
      body: this.request,
    });
    if (res.status !== 202) throw new Error(`submit answered ${res.status}`);
    return ((await res.json()) as { id: string }).id;
  }

  /** `n` submits, `concurrency` in flight. */
  async closedLoop(n: number, concurrency: number): Promise<void> {
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < n) {
          next += 1;
          await this.submit();
        }
      }),
    );
  }

  /**
   * Until every delivery submitted so far is closed by its receipt (or failed). Polls the count
   * of open deliveries, which the outbox's partial index answers without reading closed rows:
   * the poll must not cost the database more than the work it watches.
   */
  async waitDelivered(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const result = (await this.gateway.database.db.execute(
        sql`select count(*)::int as open from deliveries where status in ('queued', 'sent')`,
      )) as unknown;
      const [row] = (Array.isArray(result) ? result : (result as { rows: unknown[] }).rows) as [
        { open: number },
      ];
      if (Number(row.open) === 0) return;
      if (performance.now() > deadline) throw new Error(`${row.open} deliveries still open`);
      await sleep(10);
    }
  }

  async averageJwsBytes(): Promise<number> {
    const [row] = await this.gateway.queries.listMessages({ direction: "outbound", limit: 1 });
    return row === undefined ? 1500 : Buffer.byteLength(row.jws);
  }

  /**
   * Submits at `rate` per second for `seconds` on a fixed schedule (not waiting for answers),
   * then the latency of each from its scheduled start to its receipt applied at the sender.
   */
  async openLoop(
    rate: number,
    seconds: number,
  ): Promise<{ latencies: number[]; lost: number; achieved: number }> {
    const total = Math.round(rate * seconds);
    const wallOffset = Date.now() - performance.now();
    const scheduled = new Map<string, number>();
    const inFlight: Promise<void>[] = [];
    const t0 = performance.now() + 20;
    let i = 0;
    while (i < total) {
      const now = performance.now();
      // Fire every submit whose time has come (catching up after a late timer).
      while (i < total && t0 + (i * 1000) / rate <= now) {
        const at = t0 + (i * 1000) / rate;
        inFlight.push(
          this.submit().then((id) => {
            scheduled.set(id, at + wallOffset);
          }),
        );
        i += 1;
      }
      const wait = t0 + (i * 1000) / rate - performance.now();
      if (wait > 0) await sleep(wait);
    }
    await Promise.all(inFlight);
    const achieved = total / ((performance.now() - t0) / 1000);
    let lost = 0;
    try {
      await this.waitDelivered(120_000);
    } catch {
      lost = -1;
    }
    const ids = [...scheduled.keys()];
    const closed = new Map<string, number>();
    for (let k = 0; k < ids.length; k += 1000) {
      const rows = await this.gateway.database.db
        .select({ id: deliveries.messageId, at: deliveries.updatedAt, status: deliveries.status })
        .from(deliveries)
        .where(inArray(deliveries.messageId, ids.slice(k, k + 1000)));
      for (const r of rows) if (r.status === "delivered") closed.set(r.id, r.at.getTime());
    }
    const latencies: number[] = [];
    for (const [id, at] of scheduled) {
      const done = closed.get(id);
      if (done === undefined) lost += 1;
      else latencies.push(done - at);
    }
    latencies.sort((x, y) => x - y);
    return { latencies, lost: Math.max(0, lost), achieved };
  }
}

/**
 * (b) The bare pipeline: two sides, each with its own database (the gateway's schema) and NATS
 * connection, doing the gateway's writes and publishes with its batching and the gateway's own
 * store statements (src/store: the same SQL, parameters and connection settings), and no HTTP,
 * envelope, signing, verifying or validating:
 *
 *  - sender: concurrent "submits" share group commits (up to 500: the message rows and their
 *    delivery rows, leased, one statement, `SqlOutboundLog.insert`); once committed the group is
 *    published from memory, in flight together with Nats-Msg-Id, and marked sent (the gateways'
 *    prompt path);
 *  - receiver: reads its durable consumer in batches of up to 100; per batch, as the inbox does
 *    with new messages from a sender that accepts batch receipts (the gateways both do), one
 *    transaction logs the messages (`SqlInboundLog.insertAnswered`, nothing looked up first) and
 *    one batch receipt for those it logged (leased, `SqlReceiptLog.insertIssuedBatches`: the
 *    batch row and an entry row per message); then the batch is published from memory, once,
 *    and marked published, and each message acked;
 *  - sender again: reads the batch receipts as they come, looks up what it sent to their entries,
 *    logs each batch and closes its deliveries in one statement
 *    (`SqlReceiptLog.insertReceivedBatch`), acks.
 *
 * The messages are JSON as long as the gateways' signed messages, with the rest of their bytes
 * compressing as a JWS does; the digest is SHA-256. Returns the seconds from the first submit
 * until the last delivery was closed.
 */
async function bare(opts: {
  natsUrl: string;
  dbA: string;
  dbB: string;
  n: number;
  warmup: number;
  concurrency: number;
  jwsBytes: number;
  /** CPU seconds so far (cpuSeconds), sampled around the timed run. */
  cpu: () => CpuSeconds;
}): Promise<{ seconds: number; cpuMsPerMsg: CpuSeconds }> {
  const A = "XA-BARE-SENDER";
  const B = "XB-BARE-RECEIVER";
  const sides = await Promise.all(
    [
      { party: A, url: opts.dbA },
      { party: B, url: opts.dbB },
    ].map(async ({ party, url }) => {
      // The gateways' store: their connection settings, and below their own statements
      // (src/store), so that PostgreSQL does exactly the work it does for the gateways.
      const database = await openDatabase({ url });
      const nc = await connect({ servers: opts.natsUrl, name: `bench bare ${party}` });
      const subject = `bench.bare.${party}`;
      const stream = `BENCH_BARE_${party.replaceAll("-", "_")}`;
      const jsm = await nc.jetstreamManager();
      await jsm.streams.add({
        name: stream,
        subjects: [subject],
        retention: RetentionPolicy.Workqueue,
        storage: StorageType.File,
        duplicate_window: 10 * 60 * 1e9,
      });
      await jsm.consumers.add(stream, {
        durable_name: "bare",
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: 60 * 1e9,
        max_ack_pending: 1000,
      });
      for (const id of [A, B]) {
        await database.db.execute(sql`insert into parties (id, name, country, kind, inbound_subject,
            receipt_batches)
          values (${id}, ${id}, 'XX', 'border-police', ${`bench.bare.${id}`}, true)`);
      }
      return {
        party,
        database,
        outbound: new SqlOutboundLog(database.db),
        outbox: new SqlDeliveryOutbox(database.db),
        inbound: new SqlInboundLog(database.db),
        receipts: new SqlReceiptLog(database.db),
        store: createStore(database.db),
        nc,
        js: nc.jetstream(),
        stream,
        subject,
      };
    }),
  );
  const [sa, sb] = sides as [(typeof sides)[0], (typeof sides)[0]];
  // A message's bytes compress as a JWS does (PostgreSQL compresses and stores out of line what
  // a case notice's JWS is; a run of one letter it would store inline in a few bytes): the
  // base64url of a case notice, repeated to the length of the gateways' JWS.
  const b64 = Buffer.from(JSON.stringify({ type: "case.notice", body: CASE_NOTICE_BODY })).toString(
    "base64url",
  );
  const padLength = Math.max(0, opts.jwsBytes - 260);
  const pad = b64.repeat(Math.ceil(padLength / b64.length)).slice(0, padLength);
  let stopped = false;
  let delivered = 0;
  let onDelivered: (() => void) | undefined;

  /** Publishes under way (the gateways' prompt path: published from memory after the commit). */
  const inFlight = new Set<Promise<void>>();
  const track = (work: Promise<void>) => {
    const t: Promise<void> = work.finally(() => inFlight.delete(t));
    inFlight.add(t);
  };
  const LEASE_MS = 30_000;
  const digestOf = (bytes: string | Uint8Array) => createHash("sha256").update(bytes).digest("hex");

  /**
   * A message as the store takes it: the envelope's columns, unsigned; its "JWS" is JSON the
   * receiver reads the id from, padded to the gateways' JWS length.
   */
  function makeMessage(id: string, jws: string, at: Date): SignedMessage {
    const envelope = {
      id,
      type: "case.notice",
      schemaVersion: 1,
      from: A,
      to: [B],
      caseRef: "CN-HEKOU-2026-0042",
      sentAt: at.toISOString(),
      expiresAt: new Date(at.getTime() + 86_400_000).toISOString(),
      handling: { classification: "restricted" },
    } as unknown as Envelope;
    return { envelope, kid: "bench", jws, digest: digestOf(jws) };
  }

  // Sender: group commit of concurrent submits, written leased to this process (one statement:
  // the message rows and their deliveries), then published from memory once committed.
  let queue: Array<{ message: SignedMessage; resolve: () => void }> = [];
  let flushing = false;
  const flush = async () => {
    flushing = true;
    while (queue.length > 0) {
      const group = queue.slice(0, GROUP);
      queue = queue.slice(GROUP);
      const messages = group.map((g) => g.message);
      await sa.outbound.insert(messages, { until: new Date(Date.now() + LEASE_MS) });
      for (const g of group) g.resolve();
      track(publishMessages(messages));
    }
    flushing = false;
  };
  const submit = () => {
    const id = randomUUID();
    const message = makeMessage(
      id,
      JSON.stringify({ id, from: A, to: [B], type: "case.notice", pad }),
      new Date(),
    );
    return new Promise<void>((resolve) => {
      queue.push({ message, resolve });
      if (!flushing) void flush();
    });
  };

  const publishMessages = async (messages: SignedMessage[]) => {
    await Promise.all(
      messages.map((m) => sa.js.publish(sb.subject, Buffer.from(m.jws), { msgID: m.digest })),
    );
    await sa.outbox.markSent(
      messages.map((m) => ({ messageId: m.envelope.id, recipient: B })),
      new Date(),
    );
  };

  const publishBatches = async (issued: IssuedBatch[]) => {
    await Promise.all(
      issued.map((b) => sb.js.publish(sa.subject, Buffer.from(b.jws), { msgID: b.digest })),
    );
    await sb.receipts.markPublished(
      issued.map((b) => b.batch.id),
      new Date(),
    );
  };

  /** Reads a side's consumer in batches of up to BATCH, as the transport does. */
  const consume = async (
    side: typeof sa,
    handle: (batch: Array<{ msg: JsMsg; text: string }>) => Promise<void>,
  ) => {
    const consumer = await side.js.consumers.get(side.stream, "bare");
    const messages = await consumer.consume({ max_messages: 512 });
    const queued: JsMsg[] = [];
    let wake: (() => void) | undefined;
    const worker = (async () => {
      while (!stopped || queued.length > 0) {
        if (queued.length === 0) {
          await new Promise<void>((r) => {
            wake = r;
          });
          wake = undefined;
          continue;
        }
        const batch = queued.splice(0, BATCH);
        await handle(batch.map((msg) => ({ msg, text: Buffer.from(msg.data).toString() })));
        for (const m of batch) m.ack();
      }
    })();
    void (async () => {
      for await (const msg of messages) {
        queued.push(msg);
        wake?.();
      }
    })();
    return async () => {
      messages.stop();
      wake?.();
      await worker;
    };
  };

  // Receiver: as the inbox does with a batch of new messages from a sender that accepts batch
  // receipts: the log rows (inserted first, nothing looked up before), then one batch receipt for
  // what was logged, in one transaction, leased; then the batch is published.
  const stopReceiver = await consume(sb, async (batch) => {
    const now = new Date();
    const messages = batch.map(({ text }) => {
      const { id } = JSON.parse(text) as { id: string };
      return makeMessage(id, text, now);
    });
    const lease = { until: new Date(now.getTime() + LEASE_MS) };
    const issued = await sb.store.transaction(async (tx) => {
      const stored = await tx.inbound.insertAnswered(
        messages.map((message) => ({ message })),
        lease,
      );
      const accepted = messages.filter((m) => stored.has(inboundKey(A, m.envelope.id)));
      if (accepted.length === 0) return [];
      const receipt: ReceiptBatch = {
        id: randomUUID(),
        type: "receipt.batch",
        schemaVersion: 1,
        from: B,
        to: A,
        sentAt: now.toISOString(),
        accepted: accepted.map((m) => ({
          messageId: m.envelope.id,
          digest: { alg: "sha-256", value: m.digest },
        })),
      };
      // As long as its signed JWS (the base64url of the payload, a header and a signature), and
      // padded as the messages are, with base64url of the payload rather than a run of one
      // letter, which PostgreSQL would compress to a few bytes.
      const json = JSON.stringify(receipt);
      const b64json = Buffer.from(json).toString("base64url");
      const padLength = Math.ceil(json.length / 3) + 200;
      const jws = JSON.stringify({
        ...receipt,
        pad: b64json.repeat(Math.ceil(padLength / b64json.length)).slice(0, padLength),
      });
      const answer = { batch: receipt, jws, digest: digestOf(jws) };
      await tx.receipts.insertIssuedBatches([answer], lease);
      return [answer];
    });
    track(publishBatches(issued));
  });

  // Sender: each batch receipt matched against what was sent, logged, and closing the
  // deliveries of its entries (one statement), as the inbox does with a batch receipt.
  const stopSender = await consume(sa, async (batch) => {
    for (const { text } of batch) {
      const receipt = JSON.parse(text) as ReceiptBatch;
      await sa.outbound.sentDigests(receipt.accepted.map((e) => e.messageId));
      const { closed } = await sa.receipts.insertReceivedBatch(
        { batch: receipt, jws: text, digest: digestOf(text) },
        new Date(),
      );
      delivered += closed.length;
    }
    onDelivered?.();
  });

  const run = async (n: number, concurrency: number) => {
    const target = delivered + n;
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < n) {
          next += 1;
          await submit();
        }
      }),
    );
    if (process.env.BENCH_DEBUG)
      console.log(
        `bare submits done ${((performance.now() - t0) / 1000).toFixed(2)} s, delivered ${delivered - target + n}`,
      );
    while (delivered < target) {
      await new Promise<void>((r) => {
        onDelivered = r;
        setTimeout(r, 100);
      });
    }
    return (performance.now() - t0) / 1000;
  };
  try {
    await run(opts.warmup, opts.concurrency);
    const cpu0 = opts.cpu();
    const seconds = await run(opts.n, opts.concurrency);
    return { seconds, cpuMsPerMsg: cpuMsPerMsg(cpu0, opts.cpu(), opts.n) };
  } finally {
    stopped = true;
    await Promise.all(inFlight);
    await Promise.all([stopReceiver(), stopSender()]);
    for (const s of sides) {
      await s.nc.drain();
      await s.database.close();
    }
  }
}

function report(f: Figures, seconds: number): void {
  const fmt = (x: number | undefined, digits = 0) =>
    x === undefined || Number.isNaN(x) ? "n/a" : x.toFixed(digits);
  const ratio =
    f.e2ePerS !== undefined && f.barePerS !== undefined ? f.e2ePerS / f.barePerS : undefined;
  // The same ratio from the CPU each phase spent per message (all processes): what the bare
  // pipeline costs over what the gateways cost. Other load on the machine moves it far less than
  // the wall-clock ratio, whose two phases run at different moments.
  const cpuTotal = (c: CpuSeconds | undefined) =>
    c === undefined ? undefined : c.node + c.postgres + c.nats;
  const e2eCpu = cpuTotal(f.cpuMsPerMsg);
  const bareCpu = cpuTotal(f.bareCpuMsPerMsg);
  const cpuRatio = e2eCpu !== undefined && bareCpu !== undefined ? bareCpu / e2eCpu : undefined;
  const rssMb = rss.peak === 0 ? undefined : rss.peak / 2 ** 20;
  const l = f.latency;
  const rows: Array<[string, string, string]> = [
    ["(a) submit (HTTP, validate, sign, log + outbox)", fmt(f.submitPerS), "msg/s"],
    [
      `(a) end to end, ${N} msgs, ${CONCURRENCY} in flight: submit to receipt applied`,
      fmt(f.e2ePerS),
      `msg/s (${fmt(f.e2eSeconds, 2)} s)`,
    ],
    [
      `(b) bare pipeline, ${N} msgs, same NATS + PostgreSQL`,
      fmt(f.barePerS),
      `msg/s (${fmt(f.bareSeconds, 2)} s)`,
    ],
    [
      "(a) CPU per message: node / PostgreSQL / nats-server",
      `${fmt(f.cpuMsPerMsg?.node, 2)} / ${fmt(f.cpuMsPerMsg?.postgres, 2)} / ${fmt(f.cpuMsPerMsg?.nats, 2)}`,
      "ms",
    ],
    [
      "(b) CPU per message: node / PostgreSQL / nats-server",
      `${fmt(f.bareCpuMsPerMsg?.node, 2)} / ${fmt(f.bareCpuMsPerMsg?.postgres, 2)} / ${fmt(f.bareCpuMsPerMsg?.nats, 2)}`,
      "ms",
    ],
    ["(a)/(b) ratio", fmt(ratio, 2), ""],
    ["(b)/(a) CPU per message (the ratio, from CPU)", fmt(cpuRatio, 2), ""],
    [
      `(c) offered ${RATE} msg/s for ${RATE_SECONDS} s (achieved)`,
      fmt(f.achievedRate),
      `msg/s, ${l?.n ?? 0} timed, ${l?.lost ?? 0} not delivered`,
    ],
    [
      "(c) latency p50 / p90 / p99 / max",
      `${fmt(l?.p50)} / ${fmt(l?.p90)} / ${fmt(l?.p99)} / ${fmt(l?.max)}`,
      "ms",
    ],
    ["(d) peak RSS during (a) and (c), one process", fmt(rssMb), "MiB"],
    [
      "machine",
      `${cpus().length} cpus, ${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
      `node ${process.version}`,
    ],
    ["bench wall time", fmt(seconds, 1), "s"],
  ];
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  for (const [k, v, u] of rows) console.log(`${k.padEnd(w0)}  ${v.padStart(w1)}  ${u}`);
  console.log(
    `bench: e2e_msgs_per_s=${fmt(f.e2ePerS)} bare_msgs_per_s=${fmt(f.barePerS)} ratio=${fmt(ratio, 2)} p50_ms=${fmt(l?.p50)} p99_ms=${fmt(l?.p99)} rss_mb=${fmt(rssMb)} cpu_ratio=${fmt(cpuRatio, 2)} cpu_ms_per_msg=${fmt(f.cpuMsPerMsg?.node, 2)}+${fmt(f.cpuMsPerMsg?.postgres, 2)}+${fmt(f.cpuMsPerMsg?.nats, 2)}`,
  );
}

await main();
