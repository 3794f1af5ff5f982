/**
 * `npm run fuzz`: property-based fuzzing (fast-check) of a real two-gateway network through the
 * inbound wire path and the HTTP API. Starts its own nats-server and two gateways in this
 * process, as bench.ts does (PGlite, or `--store postgres` on its own PostgreSQL server):
 * Hekou (the sender, HTTP target) and Lao Cai (the receiver, wire target). Lao Cai also knows a
 * fuzz partner whose Ed25519 and ES256 keys we hold; an unregistered key pair and Hekou's real
 * key are kept too, so signed inputs pass the signature check and reach the later checks.
 *
 *   npm run fuzz -- [--inputs 100000] [--seed N] [--store pglite|postgres] [--examples 5]
 *
 * About 60 % of the inputs go over the wire (scripts/fuzz/wire-inputs.ts), 40 % over HTTP
 * (scripts/fuzz/http-inputs.ts); plans are drawn with fc.sample in chunks seeded from --seed
 * (printed), so the same seed gives the same inputs (up to ECDSA signatures, the gateways' own
 * keys, ids the gateways assign and times, which follow the clock). The last stdout line is
 *
 *   fuzz: inputs=N crashes=C server_errors=S unquarantined=U stuck=K
 *
 * and the exit code is non-zero when any of C, S, U, K is. What they count:
 * - crashes: uncaught exceptions and unhandled rejections in this process, and each time a
 *   gateway stopped answering GET /healthz (probed every 2 s, 15 s timeout);
 * - server_errors: HTTP answers with status >= 500 or none at all; 4xx answers that are not
 *   application/problem+json with a `code`; 2xx answers to requests the API must refuse (wrong
 *   or missing token, a submit whose content-type is not application/json, a string holding
 *   U+0000 or a lone surrogate, which no partner accepts), 4xx to canonical requests; and, on the
 *   wire, each receipt a gateway issued to its own party id (its answer to bytes claiming to
 *   come from itself);
 * - unquarantined: published wire inputs (distinct byte strings: the same bytes twice count
 *   once) whose SHA-256 is, after the receiver's inbox drained (or the wait for it ended), in
 *   none of the receiver's `messages.digest`, `quarantine.digest`, `receipts.message_digest` of
 *   issued receipts (an ES256 re-encoding of a logged message is answered by a receipt naming
 *   its digest, not logged) or `receipts.digest` of received receipts (a partner's receipt is
 *   logged there). An exact replay of a logged message has its digest, so it is found; a copy
 *   of a logged receipt with the same signed content under another ES256 signature is
 *   recognised by the gateway and dropped (as a re-sent receipt is): it counts as logged by its
 *   first copy, and a note says how many there were (a receipt with a logged receipt's id but
 *   other content is not excused). Also counted: messages the sender accepted over HTTP and
 *   published to the receiver that the receiver neither logged nor quarantined;
 * - stuck: after the fuzz, of 20 valid case notices sent each way through the HTTP API, those
 *   not `delivered` within 10 s.
 * Before the last line: per non-zero counter, up to five (--examples) kinds of finding with an
 * example each (generator and what went wrong, never raw inputs), then notes (gateway error
 * logs, the inbox).
 */
import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import { and, eq } from "drizzle-orm";
import { deliveries } from "../src/store/schema.ts";
import { CASE_NOTICE_BODY } from "../tests/helpers/protocol-fixtures.ts";
import { Findings } from "./fuzz/findings.ts";
import { HttpRunner } from "./fuzz/http-runner.ts";
import { type FuzzNetwork, type FuzzNode, startNetwork } from "./fuzz/network.ts";
import type { WireContext } from "./fuzz/wire-inputs.ts";
import { WireRunner } from "./fuzz/wire-runner.ts";

const { values } = parseArgs({
  options: {
    inputs: { type: "string", default: "100000" },
    seed: { type: "string" },
    store: { type: "string", default: "pglite" },
    examples: { type: "string", default: "5" },
  },
});
const INPUTS = Number(values.inputs);
const SEED = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
if (!Number.isSafeInteger(INPUTS) || INPUTS < 1)
  throw new Error("--inputs must be a positive integer");
if (!Number.isSafeInteger(SEED)) throw new Error("--seed must be an integer");
if (values.store !== "pglite" && values.store !== "postgres")
  throw new Error("--store must be pglite or postgres");
const STORE = values.store;
const WIRE_SHARE = 0.6;
const STUCK_EACH_WAY = 20;
const STUCK_WAIT_MS = 10_000;

const findings = new Findings();
const log = (line: string) => process.stderr.write(`fuzz: ${line}\n`);
process.on("uncaughtException", (err) =>
  findings.add("crashes", `uncaught ${err.name}`, err.message),
);
process.on("unhandledRejection", (err) =>
  findings.add("crashes", "unhandled rejection", String(err)),
);

/** Probes GET /healthz of both gateways; a failed probe starts an outage, counted once. */
function watchHealth(net: FuzzNetwork): { probe(): Promise<void>; stop(): void } {
  const down = new Set<string>();
  const probe = async () => {
    await Promise.all(
      [net.sender, net.receiver].map(async (node) => {
        const id = node.gateway.self.id;
        const ok = await fetch(`${node.gateway.url}/healthz`, {
          signal: AbortSignal.timeout(15_000),
        })
          .then((r) => r.status === 200)
          .catch(() => false);
        if (!ok && !down.has(id))
          findings.add(
            "crashes",
            `${id} stopped answering /healthz`,
            `at ${new Date().toISOString()}`,
          );
        if (ok) down.delete(id);
        else down.add(id);
      }),
    );
  };
  const timer = setInterval(() => void probe(), 2000);
  return { probe, stop: () => clearInterval(timer) };
}

async function submit(node: FuzzNode, to: string): Promise<{ status: number; id?: string }> {
  const res = await fetch(`${node.gateway.url}/v1/messages`, {
    method: "POST",
    headers: { authorization: `Bearer ${node.token}`, "content-type": "application/json" },
    body: JSON.stringify({
      type: "case.notice",
      to,
      caseRef: "CN-HEKOU-2026-0042",
      body: CASE_NOTICE_BODY,
    }),
  });
  const body = (await res.json().catch(() => ({}))) as { id?: string };
  return { status: res.status, ...(body.id === undefined ? {} : { id: body.id }) };
}

/** 20 valid case notices each way after the fuzz: those not delivered within 10 s are stuck. */
async function stuckCheck(net: FuzzNetwork): Promise<void> {
  const pairs = [
    [net.sender, net.receiver],
    [net.receiver, net.sender],
  ] as const;
  const sent: Array<{ from: FuzzNode; label: string; id?: string; status: number }> = [];
  await Promise.all(
    pairs.flatMap(([from, to]) =>
      Array.from({ length: STUCK_EACH_WAY }, async () => {
        const label = `${from.gateway.self.id} → ${to.gateway.self.id}`;
        const r = await submit(from, to.gateway.self.id).catch(() => ({ status: 0 }));
        sent.push({ from, label, ...r });
      }),
    ),
  );
  const deadline = Date.now() + STUCK_WAIT_MS;
  const open = new Map(sent.map((s) => [s, "not submitted"]));
  while (open.size > 0 && Date.now() < deadline) {
    for (const s of [...open.keys()]) {
      if (s.id === undefined) continue;
      const res = await fetch(`${s.from.gateway.url}/v1/messages/${s.id}`, {
        headers: { authorization: `Bearer ${s.from.token}` },
      });
      const body = (await res.json().catch(() => ({}))) as { status?: string };
      const status = body.status ?? `HTTP ${res.status}`;
      if (status === "delivered") open.delete(s);
      else open.set(s, status);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  for (const [s, status] of open) {
    findings.add(
      "stuck",
      `${s.label} case notice not delivered within ${STUCK_WAIT_MS / 1000} s`,
      s.id === undefined ? `submit answered ${s.status}` : `message ${s.id} still ${status}`,
    );
  }
}

/** The receiver's messages to the fuzz partner: what real receipts (from the partner) name. */
async function messagesToPartner(net: FuzzNetwork): Promise<Array<{ id: string; digest: string }>> {
  const ids: string[] = [];
  for (let i = 0; i < 8; i++) {
    const r = await submit(net.receiver, net.partner.party.id);
    if (r.id === undefined)
      throw new Error(`setup: a submit to the fuzz partner answered ${r.status}`);
    ids.push(r.id);
  }
  const db = net.receiver.gateway.database.db;
  const deadline = Date.now() + 15_000;
  for (;;) {
    const queued = await db
      .select({ id: deliveries.messageId })
      .from(deliveries)
      .where(and(eq(deliveries.recipient, net.partner.party.id), eq(deliveries.status, "queued")));
    if (queued.length === 0) break;
    if (Date.now() > deadline)
      throw new Error("setup: the receiver did not publish to the fuzz partner");
    await new Promise((r) => setTimeout(r, 100));
  }
  const out: Array<{ id: string; digest: string }> = [];
  for (const id of ids) {
    const m = await net.receiver.gateway.queries.getMessage(id);
    if (m !== undefined) out.push({ id, digest: m.message.digest });
  }
  return out;
}

function idSource(seed: number, stream: string): () => string {
  let n = 0;
  return () => {
    const h = createHash("sha256").update(`${seed}:${stream}:${n++}`).digest("hex");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${"89ab"[Number.parseInt(h[16] as string, 16) % 4]}${h.slice(17, 20)}-${h.slice(20, 32)}`;
  };
}

async function main(): Promise<number> {
  const t0 = Date.now();
  log(`seed=${SEED} inputs=${INPUTS} store=${STORE}`);
  const net = await startNetwork(STORE, SEED);
  let health: ReturnType<typeof watchHealth> | undefined;
  try {
    const wireCtx: WireContext = {
      self: net.receiver.gateway.self.id,
      senderId: net.sender.gateway.self.id,
      partnerId: net.partner.party.id,
      keys: {
        A: net.senderKey,
        CE: net.partner.ed.signing,
        CS: net.partner.es.signing,
        XE: net.stranger.ed.signing,
        XS: net.stranger.es.signing,
      },
      now: Date.now(),
      baseBody: CASE_NOTICE_BODY,
      maxBytes: net.receiver.gateway.config.maxMessageBytes,
      valid: [],
      receipts: [],
      sentToPartner: await messagesToPartner(net),
      nextId: idSource(SEED, "wire"),
    };
    const receiverJwks = (await (
      await fetch(`${net.receiver.gateway.url}/.well-known/jwks.json`)
    ).json()) as {
      keys: Array<Record<string, unknown>>;
    };
    const wire = new WireRunner(net, wireCtx, findings);
    const http = new HttpRunner(
      net,
      {
        sender: net.sender.gateway.self.id,
        receiver: net.receiver.gateway.self.id,
        baseBody: CASE_NOTICE_BODY,
        accepted: [],
        maxRequestBytes: net.sender.gateway.config.maxMessageBytes,
        documentKeys: net.documentKeys.map((k) => ({
          ...k.publicJwk,
          kid: k.signing.kid,
          alg: k.signing.alg,
        })),
        receiverKey: receiverJwks.keys[0] ?? {},
        uuid: idSource(SEED, "http"),
      },
      findings,
    );
    log(
      `network up in ${((Date.now() - t0) / 1000).toFixed(1)} s (${net.sender.gateway.database.driver})`,
    );

    health = watchHealth(net);
    const wireCount = Math.round(INPUTS * WIRE_SHARE);
    const progress = setInterval(() => {
      void wire.backlog().then(
        (b) =>
          log(
            `wire ${wire.sent}/${wireCount} http ${http.sent}/${INPUTS - wireCount} receiver backlog ${b.pending}+${b.ackPending} (${((Date.now() - t0) / 1000).toFixed(0)} s)`,
          ),
        () => {},
      );
    }, 10_000);
    await Promise.all([wire.run(wireCount, SEED), http.run(INPUTS - wireCount, SEED)]);
    clearInterval(progress);
    log(
      `all ${wire.sent + http.sent} inputs sent in ${((Date.now() - t0) / 1000).toFixed(0)} s; draining`,
    );

    const drained = await wire.drain(600_000);
    log(drained);
    findings.notes.push(`receiver inbox: ${drained}`);
    if (wire.stalled !== undefined)
      findings.notes.push(`receiver inbox stalled during the run: ${wire.stalled}`);
    await wire.check(http.accepted);
    await stuckCheck(net);
    await health.probe();
    for (const [line, count] of [...net.logs.counts.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 6)) {
      findings.notes.push(`gateway log ×${count}: ${line}`);
    }
    findings.notes.push(
      `seed ${SEED}; ${wire.sent} wire inputs (${wire.published.size} distinct byte strings), ${http.sent} HTTP requests (${http.accepted.size} submits accepted); ${((Date.now() - t0) / 1000).toFixed(0)} s`,
    );
    for (const line of findings.table(Number(values.examples))) console.log(line);
    console.log(findings.line(wire.sent + http.sent));
    return findings.failed() ? 1 : 0;
  } finally {
    health?.stop();
    await Promise.race([net.stop(), new Promise((r) => setTimeout(r, 30_000))]);
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(
      `fuzz failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
    );
    process.exit(2);
  },
);
