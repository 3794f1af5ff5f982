/**
 * The HTTP API through `app.request` (no socket), over a real embedded PostgreSQL (PGlite) store,
 * real keys and real schemas: happy path, errors and security, each error asserted by its code.
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadSchemaRegistry } from "../../src/config/schema-files.ts";
import { submitMessage } from "../../src/delivery/submit-message.ts";
import { createApp } from "../../src/http/app.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { generateKeyFile, loadKeyFiles, type OwnKey } from "../../src/registry/key-files.ts";
import { PartnerRegistry } from "../../src/registry/partner-registry.ts";
import { buildPartyDocument } from "../../src/registry/party-document.ts";
import { type Database, openDatabase } from "../../src/store/database.ts";
import { MessageStore, type PartyRecord } from "../../src/store/message-store.ts";
import { CASE_NOTICE_BODY } from "../helpers/protocol-fixtures.ts";

const TOKEN = "t".repeat(32);
const ADMIN = "a".repeat(32);
const SELF: PartyRecord = {
  id: "CN-MPS-HEKOU",
  name: "Hekou",
  country: "CN",
  kind: "border-police-liaison-office",
  inboundSubject: "liaison.inbox.CN-MPS-HEKOU",
};
const PARTNER: PartyRecord = {
  id: "VN-BGC-LAOCAI",
  name: "Lao Cai",
  country: "VN",
  kind: "border-police-liaison-office",
  inboundSubject: "liaison.inbox.VN-BGC-LAOCAI",
};

let app: Hono;
let database: Database;
let store: MessageStore;
let own: OwnKey;
let partnerKeysDir: string;
let queued = 0;
/** Lower than the request limit, as base64url makes the signed message a third larger. */
let signedLimit = 4096 * 4;
const dirs: string[] = [];

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), "liaison-http-"));
  partnerKeysDir = mkdtempSync(join(tmpdir(), "liaison-http-partner-"));
  dirs.push(dir, partnerKeysDir);
  await generateKeyFile(join(dir, "keys"), { validFrom: new Date(Date.now() - 60_000) });
  [own] = (await loadKeyFiles(join(dir, "keys"))) as [OwnKey];
  database = await openDatabase({ inMemory: true });
  store = new MessageStore(database.db);
  const registry = await PartnerRegistry.load(store);
  const ownRecord = {
    kid: own.kid,
    partyId: SELF.id,
    alg: own.alg,
    publicJwk: { kty: own.publicJwk.kty, crv: own.publicJwk.crv, x: own.publicJwk.x },
    validFrom: own.validFrom,
    validUntil: null,
    revokedAt: null,
  };
  await registry.add(SELF, [ownRecord]);
  const partnerKey = await generateKeyFile(partnerKeysDir);
  const { kid: _k, alg: _a, use: _u, ...partnerJwk } = partnerKey.publicJwk;
  await registry.add(PARTNER, [
    {
      kid: partnerKey.kid,
      partyId: PARTNER.id,
      alg: "EdDSA",
      publicJwk: partnerJwk,
      validFrom: partnerKey.validFrom,
      validUntil: null,
      revokedAt: null,
    },
  ]);
  const schemas = loadSchemaRegistry();
  app = createApp({
    apiToken: TOKEN,
    adminToken: ADMIN,
    self: SELF,
    ownKeys: () => [ownRecord],
    store,
    registry,
    submit: (request) =>
      submitMessage(request, {
        self: SELF.id,
        store,
        registry,
        schemas,
        signingKey: () => own.signing,
        clock: () => new Date(),
        ids: randomUUID,
        ttlMs: 3_600_000,
        maxMessageBytes: signedLimit,
        onQueued: () => {
          queued += 1;
        },
      }),
    ready: async () => true,
    maxRequestBytes: 4096 * 4,
    log: createLogger("silent"),
  });
});

afterAll(async () => {
  await database?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function request(
  path: string,
  init: RequestInit & { json?: unknown; token?: string | null } = {},
) {
  const { json, token = TOKEN, ...rest } = init;
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const res = await app.request(path, {
    ...rest,
    ...(json === undefined
      ? {}
      : { method: "POST", body: typeof json === "string" ? json : JSON.stringify(json) }),
    headers: { ...headers, ...((rest.headers as Record<string, string>) ?? {}) },
  });
  const text = await res.text();
  return {
    status: res.status,
    type: res.headers.get("content-type") ?? "",
    body: JSON.parse(text) as Record<string, unknown>,
  };
}

function expectProblem(
  res: { status: number; type: string; body: Record<string, unknown> },
  status: number,
  code: string,
) {
  expect(res.status).toBe(status);
  expect(res.type).toContain("application/problem+json");
  expect(res.body.code).toBe(code);
  expect(res.body.type).toBe(`/docs/errors.md#${code}`);
  expect(res.body.status).toBe(status);
}

const notice = (overrides: Record<string, unknown> = {}) => ({
  type: "case.notice",
  to: PARTNER.id,
  caseRef: "CN-HEKOU-2026-0042",
  body: CASE_NOTICE_BODY,
  ...overrides,
});

describe("happy path", () => {
  it("accepts a submit with 202, logs it signed and queues one delivery per recipient", async () => {
    const before = queued;
    const res = await request("/v1/messages", { json: notice() });
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ status: "queued", statusUrl: `/v1/messages/${res.body.id}` });
    expect(queued).toBe(before + 1);
    const status = await request(`/v1/messages/${res.body.id}`);
    expect(status.body).toMatchObject({
      id: res.body.id,
      direction: "outbound",
      status: "queued",
      from: SELF.id,
      to: [PARTNER.id],
    });
    expect((status.body.deliveries as unknown[]).length).toBe(1);
    expect(String(status.body.jws).split(".")).toHaveLength(3);
  });

  it("pages outbound messages with a cursor", async () => {
    for (let i = 0; i < 3; i++) await request("/v1/messages", { json: notice() });
    const first = await request("/v1/messages?direction=outbound&limit=2");
    expect((first.body.items as unknown[]).length).toBe(2);
    expect(typeof first.body.nextCursor).toBe("string");
    const second = await request(
      `/v1/messages?direction=outbound&limit=2&cursor=${first.body.nextCursor}`,
    );
    const ids = [
      ...(first.body.items as Array<{ id: string }>),
      ...(second.body.items as Array<{ id: string }>),
    ].map((m) => m.id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("publishes the party document with public keys only", async () => {
    const res = await request("/.well-known/jwks.json", { token: null });
    expect(res.status).toBe(200);
    expect(res.body.party).toEqual(SELF);
    const keys = res.body.keys as Array<Record<string, unknown>>;
    expect(keys.map((k) => k.kid)).toEqual([own.kid]);
    expect(keys[0]).toMatchObject({ kty: "OKP", crv: "Ed25519", alg: "EdDSA", use: "sig" });
    expect(keys[0]).not.toHaveProperty("d");
  });

  it("serves the error documentation its problem types link to, with a section per code", async () => {
    const res = await app.request("/docs/errors.md");
    expect(res.status).toBe(200);
    const text = await res.text();
    for (const code of [
      "schema_invalid",
      "unauthorized",
      "recipient_unknown",
      "payload_too_large",
    ]) {
      expect(text).toContain(`## ${code}\n`);
    }
  });

  it("answers health and readiness without a token", async () => {
    expect((await request("/healthz", { token: null })).status).toBe(200);
    expect((await request("/readyz", { token: null })).body).toEqual({ status: "ready" });
  });

  it("registers a partner from its party document", async () => {
    const keysDir = mkdtempSync(join(tmpdir(), "liaison-http-th-"));
    dirs.push(keysDir);
    const key = await generateKeyFile(keysDir);
    const { kid: _k, alg: _a, use: _u, ...jwk } = key.publicJwk;
    const th: PartyRecord = {
      id: "TH-RTP-ATPD",
      name: "Thai ATPD",
      country: "TH",
      kind: "anti-trafficking-police",
      inboundSubject: "liaison.inbox.TH-RTP-ATPD",
    };
    const doc = buildPartyDocument(th, [
      {
        kid: key.kid,
        partyId: th.id,
        alg: "EdDSA",
        publicJwk: jwk,
        validFrom: key.validFrom,
        validUntil: null,
        revokedAt: null,
      },
    ]);
    const res = await request("/v1/partners", { json: doc, token: ADMIN });
    expect(res.status).toBe(201);
    const list = await request("/v1/partners");
    expect((list.body.items as Array<{ id: string }>).map((p) => p.id)).toContain("TH-RTP-ATPD");
  });
});

describe("errors", () => {
  it("422 schema_invalid for a body that breaks its schema, naming fields but not values", async () => {
    const res = await request("/v1/messages", {
      json: notice({ body: { ...CASE_NOTICE_BODY, victimName: "Tran PRIVATE" } }),
    });
    expectProblem(res, 422, "schema_invalid");
    expect((res.body.issues as unknown[]).length).toBeGreaterThan(0);
    expect(JSON.stringify(res.body)).not.toContain("PRIVATE");
  });

  it("422 type_unknown for a type without a schema", async () => {
    expectProblem(
      await request("/v1/messages", { json: notice({ type: "alert.unheard-of" }) }),
      422,
      "type_unknown",
    );
  });

  it("422 recipient_unknown for an unregistered recipient", async () => {
    expectProblem(
      await request("/v1/messages", { json: notice({ to: "KH-NP-POIPET" }) }),
      422,
      "recipient_unknown",
    );
  });

  it("400 request_invalid for a request missing caseRef, addressed to itself, or not JSON", async () => {
    const { caseRef: _c, ...missing } = notice();
    const res = await request("/v1/messages", { json: missing });
    expectProblem(res, 400, "request_invalid");
    expect(res.body.issues).toEqual(
      expect.arrayContaining([expect.objectContaining({ path: "/" })]),
    );
    expectProblem(
      await request("/v1/messages", { json: notice({ to: SELF.id }) }),
      400,
      "request_invalid",
    );
    expectProblem(await request("/v1/messages", { json: "{not json" }), 400, "request_invalid");
    expectProblem(
      await request("/v1/messages", { json: notice(), headers: { "content-type": "text/plain" } }),
      400,
      "request_invalid",
    );
  });

  it("413 payload_too_large when the request fits but the signed message would not", async () => {
    const before = (await request("/v1/messages?direction=outbound&limit=200")).body
      .items as unknown[];
    signedLimit = 4000;
    try {
      const res = await request("/v1/messages", { json: notice() });
      expectProblem(res, 413, "payload_too_large");
      expect(String(res.body.detail)).toContain("signed message");
    } finally {
      signedLimit = 4096 * 4;
    }
    const after = (await request("/v1/messages?direction=outbound&limit=200")).body
      .items as unknown[];
    expect(after.length).toBe(before.length);
  });

  it("413 payload_too_large above the size limit", async () => {
    expectProblem(
      await request("/v1/messages", { json: notice({ body: { pad: "x".repeat(20_000) } }) }),
      413,
      "payload_too_large",
    );
  });

  it("404 not_found for an unknown message, a malformed id and an unknown route", async () => {
    expectProblem(await request(`/v1/messages/${randomUUID()}`), 404, "not_found");
    expectProblem(await request("/v1/messages/not-a-uuid"), 404, "not_found");
    expectProblem(await request("/v1/nothing-here"), 404, "not_found");
  });

  it("400 request_invalid for a bad direction, limit or cursor", async () => {
    expectProblem(await request("/v1/messages?direction=sideways"), 400, "request_invalid");
    expectProblem(await request("/v1/messages?limit=0"), 400, "request_invalid");
    expectProblem(await request("/v1/messages?limit=1000"), 400, "request_invalid");
    expectProblem(await request("/v1/messages?cursor=%%%"), 400, "request_invalid");
  });

  it("400 request_invalid for a party document whose kid is not its thumbprint", async () => {
    const doc = (await request("/.well-known/jwks.json", { token: null })).body as {
      party: PartyRecord;
      keys: Array<Record<string, unknown>>;
    };
    const forged = {
      party: { ...PARTNER, id: "LA-MPS-BOTEN" },
      keys: doc.keys.map((k) => ({ ...k, kid: "not-the-thumbprint" })),
    };
    expectProblem(
      await request("/v1/partners", { json: forged, token: ADMIN }),
      400,
      "request_invalid",
    );
  });
});

describe("security", () => {
  it("401 unauthorized without a token, with a wrong token, and with a token of another length", async () => {
    for (const token of [null, "u".repeat(32), "short"]) {
      expectProblem(await request("/v1/messages", { json: notice(), token }), 401, "unauthorized");
      expectProblem(
        await request("/v1/messages?direction=inbound", { token }),
        401,
        "unauthorized",
      );
      expectProblem(await request("/v1/quarantine", { token }), 401, "unauthorized");
    }
  });

  it("registers partners only with the admin token, and reads nothing with it", async () => {
    const doc = { party: PARTNER, keys: [] };
    expectProblem(await request("/v1/partners", { json: doc }), 401, "unauthorized");
    expectProblem(await request("/v1/partners", { json: doc, token: null }), 401, "unauthorized");
    expectProblem(
      await request("/v1/messages?direction=inbound", { token: ADMIN }),
      401,
      "unauthorized",
    );
  });

  it("does not accept our own party document over the API", async () => {
    const doc = (await request("/.well-known/jwks.json", { token: null })).body;
    expectProblem(
      await request("/v1/partners", { json: doc, token: ADMIN }),
      400,
      "request_invalid",
    );
  });
});
