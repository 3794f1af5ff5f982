/** Starting a gateway: what it refuses before it touches anything. */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/config.ts";
import { startGateway } from "../../src/gateway.ts";
import { createLogger } from "../../src/observability/logger.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function configWithoutKeys(extra: Record<string, string> = {}) {
  const dir = mkdtempSync(join(tmpdir(), "liaison-start-"));
  dirs.push(dir);
  return {
    dir,
    config: loadConfig({
      LIAISON_PARTY_ID: "CN-MPS-HEKOU",
      LIAISON_API_TOKEN: "t".repeat(32),
      LIAISON_DATA_DIR: dir,
      LIAISON_HTTP_PORT: "0",
      // Nothing listens there: the start must fail before it tries.
      LIAISON_NATS_URL: "nats://127.0.0.1:1",
      ...extra,
    }),
  };
}

describe("starting a gateway", () => {
  it("refuses without a signing key before it opens the embedded store", async () => {
    const { dir, config } = configWithoutKeys();
    await expect(startGateway(config, { logger: createLogger("silent") })).rejects.toMatchObject({
      code: "key_store_invalid",
    });
    expect(existsSync(join(dir, "db"))).toBe(false);
  });

  it("names the missing key, not the database, when PostgreSQL is unreachable too", async () => {
    const { config } = configWithoutKeys({ DATABASE_URL: "postgres://127.0.0.1:1/none" });
    await expect(startGateway(config, { logger: createLogger("silent") })).rejects.toMatchObject({
      code: "key_store_invalid",
    });
  });
});
