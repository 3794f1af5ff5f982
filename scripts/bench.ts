/**
 * `npm run bench`: throughput and latency of the whole path between two gateways on this
 * machine — HTTP submit, sign, log + outbox, publish, verify, log + receipt, receipt back,
 * verified and applied. Starts its own nats-server, and with `--store postgres` its own
 * PostgreSQL server (one database per gateway); the default is PGlite. Both gateways run in
 * this one Node process, as in the demo. Prints figures; it asserts nothing.
 *
 *   npm run bench -- [--messages 2000] [--concurrency 64] [--store pglite|postgres] [--rate 100]
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loadConfig } from "../src/config/config.ts";
import { startNatsServer } from "../src/devtools/nats-server.ts";
import { startPostgresServer } from "../src/devtools/postgres-server.ts";
import { type Gateway, startGateway } from "../src/gateway.ts";
import { generateKeyFile } from "../src/registry/key-files.ts";
import { parsePartyDocument } from "../src/registry/party-document.ts";
import { createTestDatabase } from "../tests/helpers/databases.ts";
import { CASE_NOTICE_BODY } from "../tests/helpers/protocol-fixtures.ts";

const { values } = parseArgs({
  options: {
    messages: { type: "string", default: "2000" },
    concurrency: { type: "string", default: "64" },
    store: { type: "string", default: "pglite" },
    rate: { type: "string" },
  },
});
if (values.store !== "pglite" && values.store !== "postgres")
  throw new Error("--store must be pglite or postgres");
const N = Number(values.messages);
const CONCURRENCY = Number(values.concurrency);
const RATE = values.rate === undefined ? undefined : Number(values.rate);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "liaison-bench-"));
  const nats = await startNatsServer();
  const postgres = values.store === "postgres" ? await startPostgresServer() : undefined;
  const gateways: Array<{ gateway: Gateway; token: string }> = [];
  try {
    for (const id of ["CN-MPS-HEKOU", "VN-BGC-LAOCAI"]) {
      const dbUrl =
        postgres === undefined ? undefined : (await createTestDatabase(postgres.url)).url;
      const dataDir = join(work, id);
      await generateKeyFile(join(dataDir, "keys"));
      const token = randomBytes(24).toString("base64url");
      const config = loadConfig({
        LIAISON_PARTY_ID: id,
        LIAISON_HTTP_PORT: "0",
        LIAISON_NATS_URL: nats.url,
        LIAISON_DATA_DIR: dataDir,
        LIAISON_API_TOKEN: token,
        LIAISON_LOG_LEVEL: "error",
        LIAISON_RETRY_BASE_MS: "30000",
        ...(dbUrl === undefined ? {} : { DATABASE_URL: dbUrl }),
      });
      gateways.push({ gateway: await startGateway(config, { pollMs: 20 }), token });
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
      `bench: ${N} case notices CN-MPS-HEKOU -> VN-BGC-LAOCAI, ${CONCURRENCY} submits in flight${RATE === undefined ? "" : `, offered ${RATE}/s`}, stores: ${a.gateway.database.driver}/${b.gateway.database.driver}`,
    );

    const request = JSON.stringify({
      type: "case.notice",
      to: "VN-BGC-LAOCAI",
      caseRef: "CN-HEKOU-2026-0042",
      body: CASE_NOTICE_BODY,
    });
    const submittedAt = new Map<string, number>();
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < N) {
          const i = next;
          next += 1;
          // --rate: an offered load of that many submits per second, not as fast as possible.
          if (RATE !== undefined) {
            const wait = t0 + (i * 1000) / RATE - performance.now();
            if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          }
          const res = await a.gateway.app.request("/v1/messages", {
            method: "POST",
            headers: { authorization: `Bearer ${a.token}`, "content-type": "application/json" },
            body: request,
          });
          if (res.status !== 202) throw new Error(`submit answered ${res.status}`);
          const { id } = (await res.json()) as { id: string };
          submittedAt.set(id, performance.now());
        }
      }),
    );
    const submitSeconds = (performance.now() - t0) / 1000;

    let counts = await a.gateway.queries.deliveryCounts();
    while (counts.delivered + counts.rejected + counts.failed < N) {
      await new Promise((r) => setTimeout(r, 50));
      counts = await a.gateway.queries.deliveryCounts();
      if ((performance.now() - t0) / 1000 > 600) break;
    }
    const totalSeconds = (performance.now() - t0) / 1000;

    // Latency: from the submit's answer to the receipt applied at the sender (deliveries.updated_at).
    const latencies: number[] = [];
    const wallOffset = Date.now() - performance.now();
    for (const [id, at] of submittedAt) {
      const found = await a.gateway.queries.getMessage(id);
      const d = found?.deliveries[0];
      if (d?.status === "delivered") latencies.push(d.updatedAt.getTime() - (at + wallOffset));
    }
    latencies.sort((x, y) => x - y);
    const mem = process.memoryUsage();
    console.log(`submit (HTTP, sign, log + outbox): ${(N / submitSeconds).toFixed(0)} msg/s`);
    console.log(
      `end to end (submit to verified receipt applied): ${(N / totalSeconds).toFixed(0)} msg/s over ${totalSeconds.toFixed(1)} s`,
    );
    console.log(
      `delivered=${counts.delivered} rejected=${counts.rejected} failed=${counts.failed}`,
    );
    console.log(
      `latency after submit answer, ms: p50=${percentile(latencies, 50).toFixed(0)} p90=${percentile(latencies, 90).toFixed(0)} p99=${percentile(latencies, 99).toFixed(0)} max=${(latencies.at(-1) ?? Number.NaN).toFixed(0)}`,
    );
    console.log(
      `process rss=${(mem.rss / 2 ** 20).toFixed(0)} MiB heap=${(mem.heapUsed / 2 ** 20).toFixed(0)} MiB (both gateways in one process)`,
    );
  } finally {
    for (const g of gateways) await g.gateway.stop();
    await nats.stop();
    await postgres?.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
