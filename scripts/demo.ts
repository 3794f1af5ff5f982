/**
 * `npm run demo`: a two-country network on one machine. Each country runs its own nats-server
 * with its own JetStream domain, joined by NATS's federation (leaf nodes to a hub, over mutual
 * TLS, each country allowed only what it needs: docs/operations.md, Federation); two gateways on
 * embedded PGlite stores — China's Hekou border
 * police liaison office and Vietnam's Lao Cai border guard office — registers each with the
 * other from its published JWKS, sends the example messages in seeds/messages both ways, injects
 * one forged message (a Hekou message whose signature was tampered with) straight onto Lao Cai's
 * NATS subject, then plays a victim's whole journey (docs/examples/messages: identification,
 * verification, repatriation request and acceptance, travel document, handover proposed,
 * confirmed and completed with both countries' signatures, reintegration, closed) step by step,
 * shows one out-of-order step refused, prints the case's timeline as both sides see it, waits for
 * the receipts, prints a summary and stops everything it started.
 *
 *   npm run demo              run, summarise, stop
 *   npm run demo -- --keep    keep the network up and print how to reach it with curl
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "nats";
import { loadConfig } from "../src/config/config.ts";
import { startNatsFederation } from "../src/devtools/nats-federation.ts";
import { type Gateway, startGateway } from "../src/gateway.ts";
import { buildEnvelope } from "../src/protocol/build-envelope.ts";
import { MESSAGE_TYP } from "../src/protocol/jws-profile.ts";
import { signCompact } from "../src/protocol/sign.ts";
import type { PartyRecord } from "../src/protocol/types.ts";
import {
  currentSigningKey,
  generateEncryptionKeyFile,
  generateKeyFile,
  loadKeyFiles,
} from "../src/registry/key-files.ts";
import { parsePartyDocument } from "../src/registry/party-document.ts";

const keep = process.argv.includes("--keep");
const ROOT = new URL("..", import.meta.url);
const RUNNING = ["CN-MPS-HEKOU", "VN-BGC-LAOCAI"];
const WAIT_MS = 30_000;

interface SeedMessage {
  from: string;
  to: string[];
  type: string;
  caseRef: string;
  inReplyTo?: string;
  handling?: unknown;
  body: Record<string, unknown>;
}

interface Node {
  gateway: Gateway;
  token: string;
}

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(new URL(path, ROOT), "utf8")) as T;
}

async function api(
  node: Node,
  path: string,
  init: RequestInit = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${node.gateway.url}${path}`, {
    ...init,
    headers: {
      authorization: `Bearer ${node.token}`,
      "content-type": "application/json",
      ...(init.headers ?? {}),
    },
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function main(): Promise<number> {
  const workDir = mkdtempSync(join(tmpdir(), "liaison-demo-"));
  const stops: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    rmSync(workDir, { recursive: true, force: true });
  };
  try {
    const parties = readJson<PartyRecord[]>("seeds/parties.json");
    const natsUrlOf = (country: string): string => {
      const server = federation.servers[country];
      if (server === undefined) throw new Error(`no nats-server for ${country}`);
      return server.url;
    };
    const countryOf = (id: string): string => {
      const party = parties.find((p) => p.id === id);
      if (party === undefined) throw new Error(`seeds/parties.json has no ${id}`);
      return party.country;
    };
    // A country's JetStream domain is its ISO code here; any name both sides agree on will do.
    const countries = [...new Set(RUNNING.map(countryOf))].map((domain) => ({
      domain,
      parties: RUNNING.filter((id) => countryOf(id) === domain),
    }));
    const federation = await startNatsFederation(countries);
    stops.push(() => federation.stop());
    console.log(
      `nats federation: hub ${federation.hub.url} (no JetStream, leaf connections over TLS)`,
    );
    for (const [domain, server] of Object.entries(federation.servers)) {
      console.log(`  ${domain}: nats-server with JetStream domain ${domain} at ${server.url}`);
    }
    const nodes = new Map<string, Node>();
    for (const id of RUNNING) {
      const party = parties.find((p) => p.id === id);
      if (party === undefined) throw new Error(`seeds/parties.json has no ${id}`);
      const dataDir = join(workDir, id);
      await generateKeyFile(join(dataDir, "keys"));
      await generateEncryptionKeyFile(join(dataDir, "keys"));
      const token = randomBytes(24).toString("base64url");
      const config = loadConfig({
        LIAISON_PARTY_ID: party.id,
        LIAISON_PARTY_NAME: party.name,
        LIAISON_COUNTRY: party.country,
        LIAISON_PARTY_KIND: party.kind,
        LIAISON_INBOUND_SUBJECT: party.inboundSubject,
        LIAISON_HTTP_PORT: "0",
        LIAISON_NATS_URL: natsUrlOf(party.country),
        LIAISON_NATS_DOMAIN: party.country,
        LIAISON_DATA_DIR: dataDir,
        LIAISON_API_TOKEN: token,
        LIAISON_LOG_LEVEL: process.env.LIAISON_LOG_LEVEL ?? "error",
      });
      const gateway = await startGateway(config, { pollMs: 100 });
      stops.push(() => gateway.stop());
      nodes.set(id, { gateway, token });
      console.log(`gateway ${id} (${party.name}) at ${gateway.url}, PGlite in ${dataDir}`);
    }

    // Each registers the other from the JWKS it publishes, as `liaison partners add --jwks URL` does.
    for (const [id, node] of nodes) {
      for (const [otherId, other] of nodes) {
        if (otherId === id) continue;
        const doc = await (await fetch(`${other.gateway.url}/.well-known/jwks.json`)).json();
        const { party, keys } = await parsePartyDocument(doc);
        await node.gateway.registry.add(party, keys);
      }
    }
    console.log("partners registered both ways from /.well-known/jwks.json\n");

    const dir = new URL("seeds/messages/", ROOT);
    const files = readdirSync(dir)
      .filter((f) => f.endsWith(".json"))
      .sort();
    const sent: Array<{ name: string; id: string; seed: SeedMessage }> = [];
    for (const file of files) {
      const name = file.replace(/\.json$/, "");
      const seed = readJson<SeedMessage>(`seeds/messages/${file}`);
      const from = nodes.get(seed.from);
      if (from === undefined)
        throw new Error(`${file}: sender ${seed.from} is not running in the demo`);
      const inReplyTo =
        seed.inReplyTo === undefined
          ? undefined
          : sent.find((s) => `@${s.name}` === seed.inReplyTo)?.id;
      const { status, body } = await api(from, "/v1/messages", {
        method: "POST",
        body: JSON.stringify({
          type: seed.type,
          to: seed.to,
          caseRef: seed.caseRef,
          inReplyTo,
          handling: seed.handling,
          body: seed.body,
        }),
      });
      if (status !== 202)
        throw new Error(`${file}: submit answered ${status} ${JSON.stringify(body)}`);
      sent.push({ name, id: body.id as string, seed });
    }

    // A forged message: a Hekou envelope signed with Hekou's key, then its signature tampered with.
    const hekou = nodes.get("CN-MPS-HEKOU") as Node;
    const laocai = nodes.get("VN-BGC-LAOCAI") as Node;
    const hekouKey = currentSigningKey(
      await loadKeyFiles(hekou.gateway.config.keysDir),
      new Date(),
    );
    if (hekouKey === undefined) throw new Error("Hekou has no signing key");
    const forgedEnvelope = buildEnvelope(
      {
        type: "case.notice",
        schemaVersion: 1,
        to: ["VN-BGC-LAOCAI"],
        caseRef: "CN-HEKOU-2026-0099",
        handling: { classification: "restricted", onwardDissemination: "forbidden" },
        body: sent[0]?.seed.body ?? {},
      },
      {
        self: "CN-MPS-HEKOU",
        clock: () => new Date(),
        ids: () => crypto.randomUUID(),
        ttlMs: 86_400_000,
      },
    );
    const genuine = await signCompact(forgedEnvelope, hekouKey.signing, MESSAGE_TYP);
    const forged = tamperSignature(genuine);
    // Onto Lao Cai's own nats-server: an attacker inside Vietnam's network, past the federation.
    const nc = await connect({ servers: natsUrlOf(laocai.gateway.config.country) });
    await nc
      .jetstream()
      .publish(laocai.gateway.config.inboundSubject, new TextEncoder().encode(forged), {
        msgID: forgedEnvelope.id,
      });
    await nc.drain();
    console.log(
      `injected a forged message ${forgedEnvelope.id} (tampered signature) onto ${laocai.gateway.config.inboundSubject}\n`,
    );

    const journey = await playJourney(nodes, sent);

    // Wait for every receipt, and for the forged message's negative receipt to reach Hekou.
    const deadline = Date.now() + WAIT_MS;
    const final = new Map<string, Record<string, unknown>>();
    while (Date.now() < deadline) {
      for (const s of sent) {
        if (final.has(s.id)) continue;
        const { body } = await api(nodes.get(s.seed.from) as Node, `/v1/messages/${s.id}`);
        if (["delivered", "rejected", "failed"].includes(body.status as string))
          final.set(s.id, body);
      }
      const hekouQuarantine = await hekou.gateway.queries.quarantineCount();
      const laocaiQuarantine = await laocai.gateway.queries.quarantineCount();
      if (final.size === sent.length && hekouQuarantine >= 1 && laocaiQuarantine >= 1) break;
      await new Promise((r) => setTimeout(r, 100));
    }

    console.log("messages");
    for (const s of sent) {
      const status = (final.get(s.id)?.status as string | undefined) ?? "no receipt (timeout)";
      console.log(
        `  ${s.name.padEnd(24)} ${s.seed.type.padEnd(14)} ${s.seed.from} -> ${s.seed.to.join(",")}  ${s.id}  ${status}`,
      );
    }
    let quarantined = 0;
    console.log("quarantine");
    for (const [id, node] of nodes) {
      const { body } = await api(node, "/v1/quarantine");
      for (const q of body.items as Array<Record<string, unknown>>) {
        quarantined += 1;
        console.log(
          `  at ${id.padEnd(14)} ${String(q.code).padEnd(18)} ${q.kind} from ${q.claimedFrom ?? "?"} id ${q.messageId ?? "?"}${q.receiptId ? "; negative receipt sent" : ""}`,
        );
      }
    }
    let casesClosed = 0;
    for (const caseRef of journey.caseRefs) {
      const states = await Promise.all(
        [...nodes.values()].map(async (node) => (await api(node, `/v1/cases/${caseRef}`)).body),
      );
      printCase(caseRef, states);
      if (states.every((c) => c.state === "closed")) casesClosed += 1;
    }
    const statuses = sent.map((s) => final.get(s.id)?.status);
    const delivered = statuses.filter((s) => s === "delivered").length;
    const rejected = statuses.filter((s) => s === "rejected").length;
    const failed = sent.length - delivered - rejected;
    const ok = failed === 0 && quarantined >= 1 && casesClosed === journey.caseRefs.length;

    if (keep && ok) {
      console.log("\nthe network stays up; press Ctrl-C to stop it. Try:");
      for (const [id, node] of nodes) {
        console.log(`  # ${id}`);
        console.log(`  curl -s ${node.gateway.url}/.well-known/jwks.json`);
        console.log(
          `  curl -s -H 'authorization: Bearer ${node.token}' '${node.gateway.url}/v1/messages?direction=inbound'`,
        );
        console.log(
          `  curl -s -H 'authorization: Bearer ${node.token}' ${node.gateway.url}/v1/quarantine`,
        );
      }
      await new Promise<void>((resolve) => {
        process.once("SIGINT", resolve);
        process.once("SIGTERM", resolve);
      });
    }
    console.log(
      `\ndemo: sent=${sent.length} delivered=${delivered} rejected=${rejected} quarantined=${quarantined} failed=${failed} injected=1 cases_closed=${casesClosed} refused_steps=${journey.refused} nats_servers=${federation.serverCount}`,
    );
    return ok ? 0 : 1;
  } finally {
    await stopAll();
  }
}

interface JourneyStep extends SeedMessage {
  personalData?: Record<string, unknown>;
  handoverRecord?: Record<string, unknown>;
}

/** "@NN-<name>" stands for the id the message of that example file received when sent. */
function resolveRefs<T>(value: T, ids: Map<string, string>): T {
  return JSON.parse(
    JSON.stringify(value, (_k, v: unknown) =>
      typeof v === "string" && v.startsWith("@") ? (ids.get(v.slice(1)) ?? v) : v,
    ),
  ) as T;
}

/**
 * A victim's journey, one step at a time: each step is sent once the previous one is delivered
 * (the receiver admits a step only when its case allows it). Lao Cai countersigns Hekou's signed
 * handover record. Before the verification answer, Lao Cai tries to answer the repatriation
 * request that was never made: its gateway refuses it with 409.
 */
async function playJourney(
  nodes: Map<string, Node>,
  sent: Array<{ name: string; id: string; seed: SeedMessage }>,
): Promise<{ caseRefs: string[]; refused: number }> {
  const dir = new URL("docs/examples/messages/", ROOT);
  const files = readdirSync(dir)
    .filter((f) => /^\d\d-.*\.json$/.test(f) && !f.includes("case.reminder"))
    .sort();
  const ids = new Map<string, string>();
  const caseRefs = new Set<string>();
  let refused = 0;
  console.log("a victim's journey (docs/examples/messages)");
  const send = async (name: string, step: JourneyStep) => {
    const from = nodes.get(step.from) as Node;
    const request = resolveRefs(
      {
        type: step.type,
        to: step.to,
        caseRef: step.caseRef,
        inReplyTo: step.inReplyTo,
        handling: step.handling,
        body: step.body,
        personalData: step.personalData,
        handoverRecord: step.handoverRecord,
      },
      ids,
    );
    const { status, body } = await api(from, "/v1/messages", {
      method: "POST",
      body: JSON.stringify(request),
    });
    if (status !== 202)
      throw new Error(`${name}: submit answered ${status} ${JSON.stringify(body)}`);
    const id = body.id as string;
    ids.set(name, id);
    sent.push({ name, id, seed: step });
    caseRefs.add(step.caseRef);
    const deadline = Date.now() + WAIT_MS;
    let state = "";
    while (Date.now() < deadline) {
      const message = await api(from, `/v1/messages/${id}`);
      state = message.body.status as string;
      if (state !== "queued" && state !== "sent") break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const view = await api(from, `/v1/cases/${step.caseRef}`);
    console.log(
      `  ${name.padEnd(36)} ${step.from} -> ${step.to.join(",")}  ${state.padEnd(9)} case: ${view.body.state}`,
    );
    if (state !== "delivered") throw new Error(`${name}: ${state}, not delivered`);
  };
  for (const file of files) {
    const name = file.replace(/\.json$/, "");
    const step = readJson<JourneyStep>(`docs/examples/messages/${file}`);
    if (step.type === "identity.verification.response") {
      // Out of order: a repatriation answer before any repatriation request.
      const early = await api(nodes.get(step.from) as Node, "/v1/messages", {
        method: "POST",
        body: JSON.stringify({
          type: "repatriation.response",
          to: step.to,
          caseRef: step.caseRef,
          inReplyTo: ids.get("02-identity.verification.request"),
          body: { decision: "accepted" },
        }),
      });
      refused += early.status === 409 ? 1 : 0;
      console.log(
        `  (out of order) repatriation.response          ${step.from} refused: ${early.status} ${early.body.code}: ${early.body.detail}`,
      );
    }
    await send(name, step);
    if (step.type === "handover.completed") {
      // The receiving side countersigns the record it received: same payload, both signatures.
      await send("09b-handover.completed (countersigned)", {
        from: step.to[0] as string,
        to: [step.from],
        type: "handover.completed",
        caseRef: step.caseRef,
        inReplyTo: `@${name}`,
        handling: step.handling,
        body: { notes: "Record countersigned on receipt of the person." },
      });
    }
  }
  return { caseRefs: [...caseRefs], refused };
}

/** The case as each gateway computes it: state, then its timeline. */
function printCase(caseRef: string, views: Array<Record<string, unknown>>) {
  console.log(`case ${caseRef}`);
  views.forEach((view, i) => {
    console.log(
      `  at ${RUNNING[i]}: state=${view.state}, awaiting=${JSON.stringify(view.awaiting)}, allowed next=${(view.allowedNext as string[]).join(",")}`,
    );
  });
  const [first] = views;
  console.log(`  timeline at ${RUNNING[0]}:`);
  for (const item of (first?.timeline ?? []) as Array<Record<string, unknown>>) {
    const receipts = (item.receipts as Array<Record<string, unknown>>)
      .map((r) => r.status)
      .join(",");
    console.log(
      `  ${String(item.sentAt).slice(0, 19)}  ${String(item.type).padEnd(31)} ${item.from} ${String(item.outcome).padEnd(10)} ${item.hasPersonalData ? "personal data (encrypted)" : ""} ${receipts ? `receipt: ${receipts}` : ""}`,
    );
  }
}

/** Changes one character in the middle of the signature segment: the JWS stays well-formed. */
function tamperSignature(jws: string): string {
  const [h, p, s = ""] = jws.split(".");
  const i = Math.floor(s.length / 2);
  const c = s[i] === "A" ? "B" : "A";
  return `${h}.${p}.${s.slice(0, i)}${c}${s.slice(i + 1)}`;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
