/**
 * The fuzzer's network, as in bench.ts and the demo: its own nats-server, two gateways in this
 * process (PGlite, or databases on its own PostgreSQL server), registered with each other. The
 * sender (Hekou) is the HTTP target; the receiver (Lao Cai) gets the wire inputs. Lao Cai also
 * registers a fuzz partner whose Ed25519 and ES256 keys we hold (its subject goes to a sink
 * stream we own), and we keep an unregistered key pair and Hekou's real signing key.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  connect,
  DiscardPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type NatsConnection,
  RetentionPolicy,
  StorageType,
} from "nats";
import { loadConfig } from "../../src/config/config.ts";
import { startNatsServer } from "../../src/devtools/nats-server.ts";
import { startPostgresServer } from "../../src/devtools/postgres-server.ts";
import { type Gateway, startGateway } from "../../src/gateway.ts";
import { createLogger } from "../../src/observability/logger.ts";
import type { PartyRecord, SigningKey } from "../../src/protocol/types.ts";
import { currentSigningKey, generateKeyFile, loadKeyFiles } from "../../src/registry/key-files.ts";
import { parsePartyDocument } from "../../src/registry/party-document.ts";
import { createTestDatabase } from "../../tests/helpers/databases.ts";
import { deterministicKey, type FuzzKey, partyDocument } from "./jws.ts";

export interface FuzzNode {
  gateway: Gateway;
  token: string;
  adminToken: string;
}

/** Error-level log lines of the gateways, counted by text (never printed raw). */
export class LogTally {
  readonly counts = new Map<string, number>();
  destination(party: string) {
    return {
      write: (line: string) => {
        try {
          const entry = JSON.parse(line) as { level?: number; msg?: string; err?: unknown };
          if ((entry.level ?? 0) < 50) return;
          const key = `${party}: ${entry.msg ?? "?"}${entry.err === undefined ? "" : ` (${String(entry.err).slice(0, 160)})`}`;
          this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
        } catch {
          // not JSON: ignore
        }
      },
    };
  }
}

export interface FuzzNetwork {
  sender: FuzzNode;
  receiver: FuzzNode;
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** Registered at the receiver, keys held here. */
  partner: { party: PartyRecord; ed: FuzzKey; es: FuzzKey };
  /** Registered nowhere. */
  stranger: { ed: FuzzKey; es: FuzzKey };
  /** Hekou's real signing key (the receiver knows Hekou). */
  senderKey: SigningKey;
  /** Fresh keys for party documents posted over HTTP. */
  documentKeys: FuzzKey[];
  logs: LogTally;
  stop(): Promise<void>;
}

export const SENDER = "CN-MPS-HEKOU";
export const RECEIVER = "VN-BGC-LAOCAI";
export const PARTNER = "TH-RTP-FUZZ";
/** Where the fuzz partner's and the documents' subjects point: a stream of ours that keeps little. */
export const SINK = "fuzz.sink";

export async function startNetwork(
  store: "pglite" | "postgres",
  seed: number,
): Promise<FuzzNetwork> {
  const work = mkdtempSync(join(tmpdir(), "liaison-fuzz-"));
  const stops: Array<() => Promise<void>> = [];
  const stop = async () => {
    for (const fn of stops.reverse()) await fn().catch(() => {});
    rmSync(work, { recursive: true, force: true });
  };
  try {
    const nats = await startNatsServer();
    stops.push(() => nats.stop());
    const postgres = store === "postgres" ? await startPostgresServer() : undefined;
    if (postgres !== undefined) stops.push(() => postgres.stop());
    const logs = new LogTally();

    const nodes: FuzzNode[] = [];
    for (const id of [SENDER, RECEIVER]) {
      const dbUrl =
        postgres === undefined ? undefined : (await createTestDatabase(postgres.url)).url;
      const dataDir = join(work, id);
      await generateKeyFile(join(dataDir, "keys"), {
        validFrom: new Date(Date.now() - 86_400_000),
      });
      const token = randomBytes(24).toString("base64url");
      const adminToken = randomBytes(24).toString("base64url");
      const config = loadConfig({
        LIAISON_PARTY_ID: id,
        LIAISON_HTTP_PORT: "0",
        LIAISON_NATS_URL: nats.url,
        LIAISON_DATA_DIR: dataDir,
        LIAISON_API_TOKEN: token,
        LIAISON_ADMIN_TOKEN: adminToken,
        LIAISON_LOG_LEVEL: "error",
        ...(dbUrl === undefined ? {} : { DATABASE_URL: dbUrl }),
      });
      const logger = createLogger("error", { party: id }, logs.destination(id));
      const gateway = await startGateway(config, { pollMs: 50, logger });
      stops.push(() => gateway.stop());
      nodes.push({ gateway, token, adminToken });
    }
    const [sender, receiver] = nodes as [FuzzNode, FuzzNode];
    for (const [x, y] of [
      [sender, receiver],
      [receiver, sender],
    ] as const) {
      const doc = await (await fetch(`${y.gateway.url}/.well-known/jwks.json`)).json();
      const { party, keys } = await parsePartyDocument(doc);
      await x.gateway.registry.add(party, keys);
    }

    const nc = await connect({ servers: nats.url, name: "liaison-fuzz" });
    stops.push(() => nc.drain());
    const jsm = await nc.jetstreamManager();
    await jsm.streams.add({
      name: "FUZZ_SINK",
      subjects: [`${SINK}.>`],
      retention: RetentionPolicy.Limits,
      storage: StorageType.Memory,
      max_msgs: 2000,
      discard: DiscardPolicy.Old,
    });

    const partner = {
      party: {
        id: PARTNER,
        name: "Fuzz partner",
        country: "TH",
        kind: "fuzz",
        inboundSubject: `${SINK}.${PARTNER}`,
      },
      ed: await deterministicKey(seed, "partner-ed", "EdDSA"),
      es: await deterministicKey(seed, "partner-es", "ES256"),
    };
    const registered = await parsePartyDocument(
      partyDocument(partner.party, [partner.ed, partner.es]),
    );
    await receiver.gateway.registry.add(registered.party, registered.keys);

    const senderKey = currentSigningKey(
      await loadKeyFiles(sender.gateway.config.keysDir),
      new Date(),
    );
    if (senderKey === undefined) throw new Error("the sender has no signing key");
    const documentKeys: FuzzKey[] = [];
    for (let i = 0; i < 12; i++) {
      documentKeys.push(await deterministicKey(seed, `doc-${i}`, i % 3 === 2 ? "ES256" : "EdDSA"));
    }
    return {
      sender,
      receiver,
      nc,
      js: nc.jetstream(),
      jsm,
      partner,
      stranger: {
        ed: await deterministicKey(seed, "stranger-ed", "EdDSA"),
        es: await deterministicKey(seed, "stranger-es", "ES256"),
      },
      senderKey: senderKey.signing,
      documentKeys,
      logs,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
