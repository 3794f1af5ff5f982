/**
 * A test network of real gateways on the real nats-server and PostgreSQL of the global setup.
 * Each network gets its own subjects and stream names, so test files run in parallel on one
 * nats-server without seeing each other's traffic.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../src/config/config.ts";
import type { Clock } from "../../src/delivery/ports.ts";
import { type Gateway, startGateway } from "../../src/gateway.ts";
import { createLogger } from "../../src/observability/logger.ts";
import type { SigningKey } from "../../src/protocol/types.ts";
import {
  currentSigningKey,
  generateEncryptionKeyFile,
  generateKeyFile,
  loadKeyFiles,
} from "../../src/registry/key-files.ts";
import { parsePartyDocument } from "../../src/registry/party-document.ts";

export interface TestNode {
  gateway: Gateway;
  token: string;
  /** The operator's token, for POST /v1/partners. */
  adminToken: string;
  signingKey: SigningKey;
}

export interface NodeSpec {
  partyId: string;
  /** postgres URL; PGlite in a temporary directory when absent. */
  databaseUrl?: string;
  env?: Record<string, string>;
  /** Where the gateway's log lines go (info level); silent when absent. */
  logLines?: string[];
  /** The level of the lines written to logLines (default: info). */
  logLevel?: string;
  /** The gateway's clock (GatewayOptions.clock); the system clock when absent. */
  clock?: Clock;
}

export async function startNode(
  natsUrl: string,
  tag: string,
  spec: NodeSpec,
): Promise<TestNode & { dataDir: string }> {
  const dataDir = mkdtempSync(join(tmpdir(), `liaison-test-${spec.partyId}-`));
  await generateKeyFile(join(dataDir, "keys"), { validFrom: new Date(Date.now() - 86_400_000) });
  await generateEncryptionKeyFile(join(dataDir, "keys"), {
    validFrom: new Date(Date.now() - 86_400_000),
  });
  const token = randomBytes(24).toString("base64url");
  const adminToken = randomBytes(24).toString("base64url");
  const config = loadConfig({
    LIAISON_PARTY_ID: spec.partyId,
    LIAISON_INBOUND_SUBJECT: `test.${tag}.inbox.${spec.partyId}`,
    LIAISON_STREAM: `T_${tag}_${spec.partyId.replaceAll("-", "_")}`,
    LIAISON_HTTP_PORT: "0",
    LIAISON_NATS_URL: natsUrl,
    LIAISON_DATA_DIR: dataDir,
    LIAISON_API_TOKEN: token,
    LIAISON_ADMIN_TOKEN: adminToken,
    LIAISON_RETRY_BASE_MS: "300",
    LIAISON_RETRY_MAX_MS: "2000",
    ...(spec.databaseUrl === undefined ? {} : { DATABASE_URL: spec.databaseUrl }),
    ...spec.env,
  });
  const lines = spec.logLines;
  const logger =
    lines === undefined
      ? createLogger("silent")
      : createLogger(
          spec.logLevel ?? "info",
          { party: spec.partyId },
          { write: (line: string) => void lines.push(line) },
        );
  const gateway = await startGateway(config, {
    pollMs: 50,
    logger,
    reloadMs: 200,
    ...(spec.clock === undefined ? {} : { clock: spec.clock }),
  });
  const key = currentSigningKey(await loadKeyFiles(config.keysDir), new Date());
  if (key === undefined) throw new Error("no signing key");
  const stop = gateway.stop;
  gateway.stop = async () => {
    await stop();
    rmSync(dataDir, { recursive: true, force: true });
  };
  return { gateway, token, adminToken, signingKey: key.signing, dataDir };
}

/** Registers every node with every other from the JWKS each one publishes over HTTP. */
export async function introduce(nodes: TestNode[]): Promise<void> {
  for (const node of nodes) {
    for (const other of nodes) {
      if (other === node) continue;
      const doc = await (await fetch(`${other.gateway.url}/.well-known/jwks.json`)).json();
      const { party, keys } = await parsePartyDocument(doc);
      await node.gateway.registry.add(party, keys);
    }
  }
}

export function uniqueTag(): string {
  return randomBytes(4).toString("hex");
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

export async function call(
  node: TestNode,
  path: string,
  init: RequestInit & { json?: unknown; asAdmin?: boolean } = {},
): Promise<{ status: number; headers: Headers; body: Record<string, unknown> }> {
  const { json, asAdmin, ...rest } = init;
  const res = await node.gateway.app.request(path, {
    ...rest,
    ...(json === undefined ? {} : { method: rest.method ?? "POST", body: JSON.stringify(json) }),
    headers: {
      authorization: `Bearer ${asAdmin === true ? node.adminToken : node.token}`,
      "content-type": "application/json",
      ...(rest.headers ?? {}),
    },
  });
  return {
    status: res.status,
    headers: res.headers,
    body: (await res.json()) as Record<string, unknown>,
  };
}

export interface Pair {
  hekou: TestNode;
  laocai: TestNode;
  stop(): Promise<void>;
}

/** China's Hekou and Vietnam's Lao Cai on one nats-server, each registered with the other. */
export async function startPair(
  natsUrl: string,
  specs: { hekou?: Omit<NodeSpec, "partyId">; laocai?: Omit<NodeSpec, "partyId"> } = {},
): Promise<Pair> {
  const tag = uniqueTag();
  const hekou = await startNode(natsUrl, tag, { partyId: "CN-MPS-HEKOU", ...specs.hekou });
  try {
    const laocai = await startNode(natsUrl, tag, { partyId: "VN-BGC-LAOCAI", ...specs.laocai });
    await introduce([hekou, laocai]);
    return {
      hekou,
      laocai,
      stop: async () => {
        await hekou.gateway.stop();
        await laocai.gateway.stop();
      },
    };
  } catch (err) {
    await hekou.gateway.stop();
    throw err;
  }
}
