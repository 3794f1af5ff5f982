/**
 * GET /openapi.json against the app that serves it: every route the app serves is documented,
 * every documented operation is served, and the document is valid OpenAPI 3.1. (The answers of
 * the HTTP API tests are held to its response schemas in http-api.test.ts.)
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Validator } from "@seriousme/openapi-schema-validator";
import type { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadSchemaRegistry } from "../../src/config/schema-files.ts";
import { createApp } from "../../src/http/app.ts";
import { openApiPath } from "../../src/http/openapi.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { PromMetrics } from "../../src/observability/metrics.ts";
import type { PartyRecord } from "../../src/protocol/types.ts";
import { generateKeyFile } from "../../src/registry/key-files.ts";
import { OwnKeyring } from "../../src/registry/own-keyring.ts";
import { PartnerRegistry } from "../../src/registry/partner-registry.ts";
import { type Database, openDatabase } from "../../src/store/database.ts";
import { SqlPartyStore } from "../../src/store/party-store.ts";
import { ReadQueries } from "../../src/store/read-queries.ts";

const SELF: PartyRecord = {
  id: "CN-MPS-HEKOU",
  name: "Hekou",
  country: "CN",
  kind: "border-police-liaison-office",
  inboundSubject: "liaison.inbox.CN-MPS-HEKOU",
};

type Operation = {
  operationId: string;
  security?: unknown[];
  responses: Record<string, { content?: Record<string, unknown> }>;
};
type Document = {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, unknown> };
};

let app: Hono;
let database: Database;
let doc: Document;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "liaison-openapi-"));
  await generateKeyFile(dir);
  database = await openDatabase({ inMemory: true });
  const registry = await PartnerRegistry.load(new SqlPartyStore(database.db));
  const keyring = await OwnKeyring.read({ dir, self: SELF, clock: () => new Date() });
  await keyring.register(registry);
  app = createApp({
    apiToken: "t".repeat(32),
    adminToken: undefined,
    self: SELF,
    keyring,
    queries: new ReadQueries(database.db),
    registry,
    submitter: {
      submit: () => Promise.reject(new Error("no message is submitted in this test")),
      submitWithKey: () => Promise.reject(new Error("no message is submitted in this test")),
    },
    readiness: { isReady: async () => true },
    schemas: loadSchemaRegistry(),
    maxRequestBytes: 16 * 1024,
    log: createLogger("silent"),
    caseFiles: { read: async () => null },
    caseKeys: keyring,
    clock: () => new Date(),

    metrics: new PromMetrics({
      queries: new ReadQueries(database.db),
      keys: new SqlPartyStore(database.db),
      clock: () => new Date(),
    }),
  });
  const res = await app.request("/openapi.json");
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("application/json");
  doc = (await res.json()) as Document;
});

afterAll(async () => {
  await database?.close();
  rmSync(dir, { recursive: true, force: true });
});

const operations = () =>
  Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, op]) => ({ key: `${method} ${path}`, op })),
  );

describe("GET /openapi.json", () => {
  it("documents every route the app serves, and only those", () => {
    const served = new Set(
      app.routes
        .filter((r) => r.method !== "ALL" && r.path !== "*")
        .map((r) => `${r.method.toLowerCase()} ${openApiPath(r.path)}`),
    );
    const documented = new Set(operations().map((o) => o.key));
    expect([...served].sort()).toEqual([...documented].sort());
    // The routes of the API, not an empty list on both sides.
    expect(documented).toContain("get /v1/messages/{id}");
    expect(documented).toContain("post /v1/messages");
    expect(documented).toContain("get /docs");
  });

  it("takes in POST /v1/partners' party document every party member the registry keeps and shows", () => {
    const body = (doc.paths["/v1/partners"]?.post as { requestBody?: unknown } | undefined)
      ?.requestBody as
      | { content: Record<string, { schema: { properties: { party: { properties: object } } } }> }
      | undefined;
    const requested = body?.content["application/json"]?.schema.properties.party.properties ?? {};
    const shown = (doc.components?.schemas?.Party as { properties: object } | undefined)
      ?.properties;
    expect(Object.keys(requested).sort()).toEqual(Object.keys(shown ?? {}).sort());
    expect(requested).toMatchObject({ receiptBatches: { type: "boolean" } });
  });

  it("is valid OpenAPI 3.1", async () => {
    const validator = new Validator();
    const result = await validator.validate(doc);
    expect(result.errors).toBeUndefined();
    expect(result.valid).toBe(true);
    expect(validator.version).toBe("3.1");
    expect(doc.openapi).toBe("3.1.0");
  });

  it("resolves every $ref within the document (no $id of schemas/ left)", () => {
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"([^"]+)"/g)].map((m) => m[1] ?? "");
    expect(refs.length).toBeGreaterThan(0);
    for (const ref of refs) {
      expect(ref).toMatch(/^#\/components\/schemas\//);
      expect(doc.components.schemas).toHaveProperty([ref.slice("#/components/schemas/".length)]);
    }
  });

  it("gives every operation an id, a 500 answer, and a 401 answer behind a token", () => {
    const ids = operations().map((o) => o.op.operationId);
    expect(new Set(ids).size).toBe(ids.length);
    for (const { key, op } of operations()) {
      expect(op.responses, key).toHaveProperty("500");
      const secured = (op.security ?? []).length > 0;
      expect(Object.hasOwn(op.responses, "401"), key).toBe(secured);
      // The local API (/v1/) and the metrics need the API token; what partners read does not.
      expect(secured, key).toBe(key.includes(" /v1/") || key.endsWith(" /metrics"));
    }
  });
});

describe("GET /docs", () => {
  it("serves the API reference page, reading /openapi.json", async () => {
    const res = await app.request("/docs");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/html");
    expect(await res.text()).toContain("/openapi.json");
  });

  it("loads everything from this gateway: its own copy of the script, no telemetry, no proxy", async () => {
    const html = await (await app.request("/docs")).text();
    const sources = [...html.matchAll(/<script[^>]*\ssrc="([^"]*)"/g)].map((m) => m[1]);
    expect(sources).toEqual(["/docs/scalar.js"]);
    expect(html).not.toMatch(/(?:src|href)="https?:/);
    expect(html).toMatch(/"telemetry":\s*false/);
    expect(html).toMatch(/"proxyUrl":\s*""/);
    expect(html).toMatch(/"withDefaultFonts":\s*false/);
    const script = await app.request("/docs/scalar.js");
    expect(script.status).toBe(200);
    expect(script.headers.get("content-type")).toContain("javascript");
    expect(await script.text()).toContain("createApiReference");
  });
});
