/**
 * The HTTP API through `app.request` (no socket), over a real embedded PostgreSQL (PGlite) store,
 * real keys and real schemas: happy path, errors and security, each error asserted by its code.
 * Every answer is also held to the OpenAPI document the app serves (status, content-type and
 * body against the response schema of that operation and status).
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import type { Hono } from "hono";
import { calculateJwkThumbprint, exportJWK, generateKeyPair } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CaseBook } from "../../src/cases/case-book.ts";
import { loadSchemaRegistry } from "../../src/config/schema-files.ts";
import { Submitter } from "../../src/delivery/submitter.ts";
import { WakeSignal } from "../../src/delivery/wake-signal.ts";
import { createApp } from "../../src/http/app.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { PromMetrics } from "../../src/observability/metrics.ts";
import { sha256Hex } from "../../src/protocol/digest.ts";
import { type PersonalDataKey, sealPersonalData } from "../../src/protocol/personal-data.ts";
import type { PartyRecord } from "../../src/protocol/types.ts";
import { generateEncryptionKeyFile, generateKeyFile } from "../../src/registry/key-files.ts";
import { OwnKeyring } from "../../src/registry/own-keyring.ts";
import { PartnerRegistry } from "../../src/registry/partner-registry.ts";
import { buildPartyDocument } from "../../src/registry/party-document.ts";
import type { SchemaRegistry } from "../../src/schemas/schema-registry.ts";
import { type Database, openDatabase } from "../../src/store/database.ts";
import { SqlPartyStore } from "../../src/store/party-store.ts";
import { ReadQueries } from "../../src/store/read-queries.ts";
import { messages, receipts } from "../../src/store/schema.ts";
import { createStore } from "../../src/store/store.ts";
import { CASE_NOTICE_BODY, DEADLINES } from "../helpers/protocol-fixtures.ts";

type AddFormats = typeof addFormatsModule.default;
const addFormats: AddFormats =
  (addFormatsModule as unknown as { default?: AddFormats }).default ??
  (addFormatsModule as unknown as AddFormats);

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
let ownKid: string;
let ownEncKid: string;
/** Public encryption keys, for personal data a test encrypts itself. */
let encKeys: { own: PersonalDataKey; partner: PersonalDataKey; stranger: PersonalDataKey };
let partnerKeysDir: string;
let queued = 0;
/** Lower than the request limit, as base64url makes the signed message a third larger. */
let signedLimit = 4096 * 4;
/** A submitter like the app's, with the schema registry given. */
let submitterWith: (schemas: SchemaRegistry) => Submitter;
const dirs: string[] = [];

/** Counts the submitter's wake-ups: one per queued message. */
class CountingWake extends WakeSignal {
  override raise(): void {
    queued += 1;
    super.raise();
  }
}

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), "liaison-http-"));
  partnerKeysDir = mkdtempSync(join(tmpdir(), "liaison-http-partner-"));
  dirs.push(dir, partnerKeysDir);
  await generateKeyFile(join(dir, "keys"), { validFrom: new Date(Date.now() - 60_000) });
  await generateEncryptionKeyFile(join(dir, "keys"), { validFrom: new Date(Date.now() - 60_000) });
  database = await openDatabase({ inMemory: true });
  const registry = await PartnerRegistry.load(new SqlPartyStore(database.db));
  const clock = () => new Date();
  const keyring = await OwnKeyring.read({ dir: join(dir, "keys"), self: SELF, clock });
  await keyring.register(registry);
  ownKid = keyring.publicKeys().find((k) => k.use !== "enc")?.kid as string;
  ownEncKid = keyring.publicKeys().find((k) => k.use === "enc")?.kid as string;
  const partnerKey = await generateKeyFile(partnerKeysDir);
  const { kid: _k, alg: _a, use: _u, ...partnerJwk } = partnerKey.publicJwk;
  const partnerEnc = await generateEncryptionKeyFile(partnerKeysDir);
  const { kid: _ek, alg: _ea, use: _eu, ...partnerEncJwk } = partnerEnc.publicJwk;
  await registry.add(PARTNER, [
    {
      kid: partnerEnc.kid,
      partyId: PARTNER.id,
      alg: partnerEnc.alg,
      use: "enc",
      publicJwk: partnerEncJwk,
      validFrom: partnerEnc.validFrom,
      validUntil: null,
      revokedAt: null,
    },
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
  const stranger = await generateKeyPair("ECDH-ES+A256KW", { crv: "X25519" });
  encKeys = {
    own: keyring.encryptionKey() as PersonalDataKey,
    partner: registry.encryptionKeyOf(PARTNER.id, new Date()) as PersonalDataKey,
    stranger: {
      kid: await calculateJwkThumbprint(await exportJWK(stranger.publicKey), "sha256"),
      key: stranger.publicKey,
    },
  };
  const schemas = loadSchemaRegistry();
  const store = createStore(database.db);
  const wake = new CountingWake();
  const cases = new CaseBook({ keys: registry, policy: () => DEADLINES });
  // A submitter per call, so that a test can lower the signed-message limit.
  submitterWith = (registrySchemas) =>
    new Submitter({
      self: SELF.id,
      store,
      recipients: registry,
      schemas: registrySchemas,
      signer: keyring,
      clock,
      ids: randomUUID,
      ttlMs: 3_600_000,
      maxMessageBytes: signedLimit,
      wake,
      cases,
      caseKeys: keyring,
      encryption: registry,
    });
  const submitter = () => submitterWith(schemas);
  app = createApp({
    apiToken: TOKEN,
    adminToken: ADMIN,
    self: SELF,
    keyring,
    queries: new ReadQueries(database.db),
    registry,
    submitter: {
      submit: (request) => submitter().submit(request),
      submitWithKey: (request, key) => submitter().submitWithKey(request, key),
    },
    readiness: { isReady: async () => true },
    schemas,
    maxRequestBytes: 4096 * 4,
    log: createLogger("silent"),
    caseFiles: { read: (caseRef) => cases.read(store.cases, caseRef) },
    caseKeys: keyring,
    clock,

    metrics: new PromMetrics({
      queries: new ReadQueries(database.db),
      keys: new SqlPartyStore(database.db),
      clock: () => new Date(),
    }),
  });
  await loadDocument();
});

afterAll(async () => {
  await database?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

// ─── every answer is held to the OpenAPI document ───────────────────────────────────────────

const DOC_ID = "https://liaison-gateway.test/openapi.json";
const ajv = new Ajv2020({ strict: true, allErrors: true, allowUnionTypes: true });
addFormats(ajv);
// The document's own members, so that its response schemas can be reached by JSON pointer.
ajv.addVocabulary(["openapi", "info", "tags", "paths", "components"]);
let operations: Array<{ method: string; pattern: RegExp; path: string; op: OpenApiOperation }>;
interface OpenApiOperation {
  responses: Record<string, { content: Record<string, { schema?: unknown }> }>;
}

async function loadDocument() {
  const res = await app.request("/openapi.json");
  const doc = (await res.json()) as { paths: Record<string, Record<string, OpenApiOperation>> };
  ajv.addSchema(doc, DOC_ID);
  operations = Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, op]) => ({
      method,
      path,
      op,
      pattern: new RegExp(`^${path.replace(/\{[^}]+\}/g, "[^/]+")}$`),
    })),
  );
}

const pointer = (s: string) => s.replaceAll("~", "~0").replaceAll("/", "~1");

/** Fails unless the answer is documented for this operation and status, and matches its schema. */
function expectDocumented(
  method: string,
  url: string,
  res: { status: number; type: string; body: unknown },
) {
  const path = new URL(url, "http://gateway").pathname;
  const found = operations.find((o) => o.method === method && o.pattern.test(path));
  if (found === undefined) {
    // No such route: the app's notFound answer.
    expect(res.status, `${method} ${path} is not in the document`).toBe(404);
    expect((res.body as { code?: string }).code).toBe("not_found");
    return;
  }
  const documented = found.op.responses[String(res.status)];
  expect(
    documented,
    `${method} ${found.path} answered an undocumented ${res.status}`,
  ).toBeDefined();
  const mediaType = res.type.split(";")[0]?.trim() ?? "";
  const content = documented?.content ?? {};
  expect(Object.keys(content), `${method} ${found.path} ${res.status}: content-type`).toEqual([
    mediaType,
  ]);
  if (content[mediaType]?.schema === undefined) return;
  const ref = `${DOC_ID}#/paths/${pointer(found.path)}/${method}/responses/${res.status}/content/${pointer(mediaType)}/schema`;
  const validate = ajv.getSchema(ref);
  if (validate === undefined) throw new Error(`no schema at ${ref}`);
  const ok = validate(res.body);
  expect(
    ok ? [] : validate.errors,
    `${method} ${found.path} ${res.status}: the body does not match the document`,
  ).toEqual([]);
}

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
  const type = res.headers.get("content-type") ?? "";
  const answer = {
    status: res.status,
    type,
    headers: res.headers,
    text,
    body: (/json/.test(type) ? JSON.parse(text) : {}) as Record<string, unknown>,
  };
  const method = (json === undefined ? (rest.method ?? "GET") : "POST").toLowerCase();
  expectDocumented(method, path, { ...answer, body: /json/.test(type) ? answer.body : text });
  return answer;
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
    expect(keys.map((k) => k.kid).sort()).toEqual([ownKid, ownEncKid].sort());
    expect(keys.find((k) => k.kid === ownKid)).toMatchObject({
      kty: "OKP",
      crv: "Ed25519",
      alg: "EdDSA",
      use: "sig",
    });
    expect(keys.find((k) => k.kid === ownEncKid)).toMatchObject({
      kty: "OKP",
      crv: "X25519",
      alg: "ECDH-ES+A256KW",
      use: "enc",
    });
    for (const key of keys) expect(key).not.toHaveProperty("d");
  });

  it("serves the error documentation its problem types link to, with a section per code", async () => {
    const res = await request("/docs/errors.md", { token: null });
    expect(res.status).toBe(200);
    const text = res.text;
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
    // Whether it accepts batch receipts is kept with it, and registering again updates it.
    const shown = async () =>
      (
        (await request("/v1/partners")).body.items as Array<{ id: string; receiptBatches?: true }>
      ).find((p) => p.id === th.id)?.receiptBatches;
    expect(await shown()).toBeUndefined();
    const batching = { ...doc, party: { ...doc.party, receiptBatches: true } };
    expect((await request("/v1/partners", { json: batching, token: ADMIN })).status).toBe(201);
    expect(await shown()).toBe(true);
    expect((await request("/v1/partners", { json: doc, token: ADMIN })).status).toBe(201);
    expect(await shown()).toBeUndefined();
  });
});

it("lists, for an inbound message, every receipt we issued naming its id, oldest first", async () => {
  // Rows as the inbox writes them: the message logged once; our receipts for the copy we
  // accepted, for a copy under another signature encoding, and a negative receipt for bytes
  // claiming the same id with other content; plus receipts that must not be listed.
  const id = randomUUID();
  const b64 = (text: string) => Buffer.from(text).toString("base64url");
  const jws = (n: number) => `${b64('{"alg":"EdDSA"}')}.${b64(`copy ${n}`)}.${b64(`sig ${n}`)}`;
  const now = new Date();
  await database.db.insert(messages).values({
    id,
    direction: "inbound",
    type: "case.notice",
    schemaVersion: 1,
    fromParty: PARTNER.id,
    toParties: [SELF.id],
    caseRef: "VN-LAOCAI-2026-0117",
    sentAt: now,
    expiresAt: new Date(now.getTime() + 3_600_000),
    classification: "restricted",
    kid: "partner-kid",
    jws: jws(1),
    digest: sha256Hex(jws(1)),
  });
  const receipt = (
    copy: number,
    over: Partial<typeof receipts.$inferInsert> = {},
  ): typeof receipts.$inferInsert => ({
    id: randomUUID(),
    direction: "issued",
    messageId: id,
    messageDigest: sha256Hex(jws(copy)),
    fromParty: SELF.id,
    toParty: PARTNER.id,
    status: "accepted",
    errors: [],
    jws: jws(100 + copy),
    digest: sha256Hex(jws(100 + copy)),
    ...over,
  });
  const accepted = receipt(1);
  const conflict = receipt(2, {
    status: "rejected",
    errors: [{ code: "duplicate_conflict", detail: "another message has this id" }],
  });
  const reencoded = receipt(3);
  await database.db.insert(receipts).values(accepted);
  await database.db.insert(receipts).values(receipt(4, { messageId: randomUUID() }));
  await database.db.insert(receipts).values(conflict);
  await database.db.insert(receipts).values(receipt(5, { direction: "received" }));
  await database.db.insert(receipts).values(reencoded);

  const res = await request(`/v1/messages/${id.toUpperCase()}`);
  expect(res.status).toBe(200);
  expect(res.body).toMatchObject({ id, direction: "inbound", status: "accepted", deliveries: [] });
  const listed = res.body.receipts as Array<Record<string, unknown>>;
  expect(listed.map((r) => r.id)).toEqual([accepted.id, conflict.id, reencoded.id]);
  expect(listed[1]).toEqual({
    id: conflict.id,
    from: SELF.id,
    to: PARTNER.id,
    status: "rejected",
    errors: [{ code: "duplicate_conflict", detail: "another message has this id" }],
    jws: conflict.jws,
    digest: conflict.digest,
    messageDigest: sha256Hex(jws(2)),
  });
  expect(res.body.digest).toBe(sha256Hex(jws(1)));
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

  it("400 request_invalid names every broken rule of the request, one issue per ajv error", async () => {
    const res = await request("/v1/messages", { json: notice({ extraOne: 1, extraTwo: 2 }) });
    expectProblem(res, 400, "request_invalid");
    expect(res.body.issues).toEqual([
      { path: "/", message: "must NOT have additional properties" },
      { path: "/", message: "must NOT have additional properties" },
    ]);
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

  it("413 payload_too_large above the size limit declared by Content-Length, and not below it", async () => {
    // What an HTTP client sends for a body of known length: the limit is checked on the header.
    const sized = (json: unknown) => {
      const body = JSON.stringify(json);
      return { json: body, headers: { "content-length": String(Buffer.byteLength(body)) } };
    };
    expectProblem(
      await request("/v1/messages", sized(notice({ body: { pad: "x".repeat(20_000) } }))),
      413,
      "payload_too_large",
    );
    expect((await request("/v1/messages", sized(notice()))).status).toBe(202);
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

// ─── bad input never stops or misleads the gateway (issue 13) ──────────────────────────────

/** A party document for a new partner, valid as it is. */
async function partyDocument(id: string) {
  const keysDir = mkdtempSync(join(tmpdir(), "liaison-http-doc-"));
  dirs.push(keysDir);
  const key = await generateKeyFile(keysDir);
  const { kid: _k, alg: _a, use: _u, ...jwk } = key.publicJwk;
  const party: PartyRecord = {
    id,
    name: "Poipet",
    country: id.slice(0, 2),
    kind: "border-police-liaison-office",
    inboundSubject: `liaison.inbox.${id}`,
  };
  return buildPartyDocument(party, [
    {
      kid: key.kid,
      partyId: id,
      alg: "EdDSA",
      publicJwk: jwk,
      validFrom: key.validFrom,
      validUntil: null,
      revokedAt: null,
    },
  ]);
}

/** Runs `submit` and fails unless nothing was queued or logged meanwhile. */
async function expectNothingLogged(submit: () => Promise<unknown>) {
  const count = async () =>
    ((await request("/v1/messages?direction=outbound&limit=200")).body.items as unknown[]).length;
  const before = { queued, logged: await count() };
  await submit();
  expect({ queued, logged: await count() }).toEqual(before);
}

describe("what we sign is what partners accept", () => {
  it("422 schema_invalid, with the pointer, for U+0000 or a lone surrogate in a body string; nothing signed or logged", async () => {
    const actions = CASE_NOTICE_BODY.requestedActions as Array<Record<string, unknown>>;
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ ...CASE_NOTICE_BODY, summary: "Tran PRIVATE\u0000" }, "/body/summary"],
      [
        {
          ...CASE_NOTICE_BODY,
          requestedActions: [actions[0], { ...actions[1], detail: "Tran PRIVATE \ud800" }],
        },
        "/body/requestedActions/1/detail",
      ],
    ];
    for (const [body, path] of cases) {
      await expectNothingLogged(async () => {
        const res = await request("/v1/messages", { json: notice({ body }) });
        expectProblem(res, 422, "schema_invalid");
        expect(res.body.issues).toEqual([
          { path, message: "must not hold U+0000 or a lone surrogate" },
        ]);
        expect(res.text).not.toContain("PRIVATE");
      });
    }
  });

  it("refuses, unsigned, a message nested deeper than 32 levels, should a body schema ever admit one", async () => {
    const lenient: SchemaRegistry = {
      ...loadSchemaRegistry(),
      validateBody: () => ({ ok: true }),
    };
    let deep: unknown = [];
    for (let i = 0; i < 40; i++) deep = [deep];
    await expectNothingLogged(async () => {
      await expect(
        submitterWith(lenient).submit({
          type: "case.notice",
          to: PARTNER.id,
          caseRef: "CN-HEKOU-2026-0042",
          body: { deep },
        }),
      ).rejects.toMatchObject({
        code: "schema_invalid",
        // envelope 1, body 2, deep 3: the container at level 33 is 30 items further down.
        issues: [
          { path: `/body/deep${"/0".repeat(30)}`, message: "must not nest deeper than 32 levels" },
        ],
      });
    });
  });

  it("400 request_invalid for a request body that is not UTF-8, never repaired; nothing logged", async () => {
    const text = JSON.stringify(notice({ body: { ...CASE_NOTICE_BODY, summary: "Lao Cai XX" } }));
    const bytes = Buffer.from(text);
    const at = bytes.indexOf("XX");
    bytes[at] = 0xc3; // a lead byte followed by "X": not UTF-8 (a lenient decoder makes it U+FFFD)
    await expectNothingLogged(async () => {
      const res = await request("/v1/messages", { method: "POST", body: bytes });
      expectProblem(res, 400, "request_invalid");
      expect(res.body.detail).toBe("the request body is not UTF-8");
    });
    // A surrogate encoded as UTF-8 bytes (CESU) is not UTF-8 either.
    const cesu = Buffer.concat([
      Buffer.from(text.slice(0, text.indexOf("XX"))),
      Buffer.from([0xed, 0xa0, 0x80]),
      Buffer.from(text.slice(text.indexOf("XX") + 2)),
    ]);
    expectProblem(
      await request("/v1/messages", { method: "POST", body: cesu }),
      400,
      "request_invalid",
    );
  });

  it("400 request_invalid for a request nested deeper than 32 levels, refused before it is parsed", async () => {
    // The request object is level 1 and body level 2: `deep` adds the rest.
    const nestedBody = (levels: number) =>
      `{"deep":${"[".repeat(levels - 2)}${"]".repeat(levels - 2)}}`;
    const text = (levels: number) =>
      `{"type":"case.notice","to":"${PARTNER.id}","caseRef":"CN-HEKOU-2026-0042","body":${nestedBody(levels)}}`;
    const over = await request("/v1/messages", { json: text(33) });
    expectProblem(over, 400, "request_invalid");
    expect(over.body.detail).toBe("the request body nests deeper than 32 levels");
    // 32 levels are read, and the body schema refuses them.
    expectProblem(await request("/v1/messages", { json: text(32) }), 422, "schema_invalid");
    const partner = await request("/v1/partners", {
      json: `{"party":${"[".repeat(40)}${"]".repeat(40)},"keys":[]}`,
      token: ADMIN,
    });
    expectProblem(partner, 400, "request_invalid");
    expect(partner.body.detail).toBe("the request body nests deeper than 32 levels");
  });

  it("400 request_invalid for a body that cannot be read to its end", async () => {
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"type":'));
        controller.error(new Error("connection reset"));
      },
    });
    const res = await request("/v1/messages", {
      method: "POST",
      body,
      headers: { "content-length": "100" },
      duplex: "half",
    } as RequestInit);
    expectProblem(res, 400, "request_invalid");
    expect(res.body.detail).toBe("the request body could not be read");
  });
});

describe("content type and authorization", () => {
  it("accepts exactly application/json, in any case, with parameters and a UTF-8 charset", async () => {
    for (const type of [
      "APPLICATION/JSON; charset=utf-8",
      "application/json;charset=UTF-8",
      'Application/Json ; charset="utf-8"',
      "application/json; foo=bar",
    ]) {
      const res = await request("/v1/messages", {
        json: notice(),
        headers: { "content-type": type },
      });
      expect(res.status, type).toBe(202);
    }
  });

  it("400 request_invalid for another media type, another charset or a malformed content type", async () => {
    for (const type of [
      "application/jsonx",
      "application/json-patch+json",
      "application/json+x",
      "text/json",
      "application/json; charset=iso-8859-1",
      "application/json; charset=utf-8; charset=iso-8859-1",
      "application/json; charset",
      "application/json; charset=",
      "application/json/x",
      "application json",
      "",
    ]) {
      const res = await request("/v1/messages", {
        json: notice(),
        headers: { "content-type": type },
      });
      expectProblem(res, 400, "request_invalid");
    }
  });

  it("POST /v1/partners checks the content type too", async () => {
    const doc = await partyDocument("MM-MPF-MUSE");
    expectProblem(
      await request("/v1/partners", {
        json: doc,
        token: ADMIN,
        headers: { "content-type": "text/plain" },
      }),
      400,
      "request_invalid",
    );
    const ok = await request("/v1/partners", {
      json: doc,
      token: ADMIN,
      headers: { "content-type": "Application/JSON; charset=utf-8" },
    });
    expect(ok.status).toBe(201);
  });

  it("compares the authorization scheme case-insensitively, after one or more spaces", async () => {
    for (const authorization of [`bearer ${TOKEN}`, `BEARER ${TOKEN}`, `Bearer   ${TOKEN}`]) {
      const res = await request("/v1/quarantine", { token: null, headers: { authorization } });
      expect(res.status, authorization).toBe(200);
    }
    for (const authorization of [
      `Bearer${TOKEN}`,
      `Basic ${TOKEN}`,
      `Bearer  ${TOKEN}x`,
      "Bearer",
      "Bearer ",
    ]) {
      expectProblem(
        await request("/v1/quarantine", { token: null, headers: { authorization } }),
        401,
        "unauthorized",
      );
    }
  });
});

describe("party documents never answer 500", () => {
  it("400 request_invalid for U+0000 in party.name or party.kind, and a lone surrogate, naming the field", async () => {
    const doc = await partyDocument("KH-NP-KOHKONG");
    for (const [party, path] of [
      [{ ...doc.party, name: "Poi\u0000pet" }, "/party/name"],
      [{ ...doc.party, kind: "police\u0000" }, "/party/kind"],
      [{ ...doc.party, name: "Poipet \udbff" }, "/party/name"],
    ] as const) {
      const res = await request("/v1/partners", { json: { ...doc, party }, token: ADMIN });
      expectProblem(res, 400, "request_invalid");
      expect(res.body.issues).toEqual([
        { path, message: "must not hold U+0000 or a lone surrogate" },
      ]);
    }
    const list = await request("/v1/partners");
    expect((list.body.items as Array<{ id: string }>).map((p) => p.id)).not.toContain(doc.party.id);
  });

  it("400 request_invalid for the year 0000 in validFrom or revokedAt", async () => {
    const doc = await partyDocument("TH-RTP-MAESOT");
    for (const [field, value] of [
      ["validFrom", "0000-01-01T00:00:00.000Z"],
      ["revokedAt", "0000-06-01T00:00:00.000Z"],
      ["revokedAt", "0001-01-01T00:00:00+01:00"],
    ] as const) {
      const keys = doc.keys.map((k) => ({ ...k, [field]: value }));
      const res = await request("/v1/partners", { json: { ...doc, keys }, token: ADMIN });
      expectProblem(res, 400, "request_invalid");
      expect(res.body.detail).toContain(`keys[0].${field}`);
    }
    const list = await request("/v1/partners");
    expect((list.body.items as Array<{ id: string }>).map((p) => p.id)).not.toContain(doc.party.id);
  });
});

// ─── victims' cases ─────────────────────────────────────────────────────────────────────────

describe("cases", () => {
  const example = (file: string) =>
    JSON.parse(
      readFileSync(new URL(`../../docs/examples/messages/${file}`, import.meta.url), "utf8"),
    ) as Record<string, unknown>;
  const identified = example("01-victim.identified.json");
  const CANARY = `CANARY-${randomUUID()}`;
  const REF = "CN-HEKOU-2026-7001";
  const victim = (caseRef: string, given = CANARY) => ({
    type: "victim.identified",
    to: PARTNER.id,
    caseRef,
    body: identified.body,
    personalData: {
      ...(identified.personalData as Record<string, unknown>),
      names: { given, family: "Test" },
    },
  });

  it("opens a case with victim.identified: the case, its timeline and allowed next steps, no personal data", async () => {
    const res = await request("/v1/messages", { json: victim(REF) });
    expect(res.status).toBe(202);
    expect(res.text).not.toContain(CANARY);
    const logged = await request(`/v1/messages/${res.body.id}`);
    expect(logged.text).not.toContain(CANARY);
    const view = await request(`/v1/cases/${REF}`);
    expect(view.status).toBe(200);
    expect(view.text).not.toContain(CANARY);
    expect(view.body).toMatchObject({
      caseRef: REF,
      state: "identified",
      identifying: SELF.id,
      origin: PARTNER.id,
      minor: true,
      allowedNext: ["identity.verification.request", "case.closed", "case.reminder"],
      overdue: false,
    });
    const [item] = view.body.timeline as Array<Record<string, unknown>>;
    expect(item).toMatchObject({
      id: res.body.id,
      direction: "outbound",
      type: "victim.identified",
      outcome: "applied",
      hasPersonalData: true,
      deliveries: [{ recipient: PARTNER.id, status: "queued" }],
    });
  });

  it("returns the personal data, decrypted, only from its own route", async () => {
    const res = await request(`/v1/cases/${REF}/personal-data`);
    expect(res.status).toBe(200);
    const items = res.body.items as Array<{ personalData: { names: { given: string } } }>;
    expect(items).toHaveLength(1);
    expect(items[0]?.personalData.names.given).toBe(CANARY);
  });

  it("lists cases, filtered by state, party and overdue, paged by cursor", async () => {
    await request("/v1/messages", { json: victim("CN-HEKOU-2026-7002") });
    await request("/v1/messages", { json: victim("CN-HEKOU-2026-7003") });
    const all = await request("/v1/cases?limit=2");
    expect(all.status).toBe(200);
    const first = all.body.items as Array<{ caseRef: string }>;
    expect(first.map((c) => c.caseRef)).toEqual(["CN-HEKOU-2026-7001", "CN-HEKOU-2026-7002"]);
    const next = await request(`/v1/cases?limit=2&cursor=${all.body.nextCursor}`);
    expect((next.body.items as Array<{ caseRef: string }>).map((c) => c.caseRef)).toEqual([
      "CN-HEKOU-2026-7003",
    ]);
    expect(next.body.nextCursor).toBeNull();
    const identifiedCases = await request("/v1/cases?state=identified&party=VN-BGC-LAOCAI");
    expect((identifiedCases.body.items as unknown[]).length).toBe(3);
    expect((await request("/v1/cases?state=closed")).body.items).toEqual([]);
    expect((await request("/v1/cases?party=TH-RTP-ATPD")).body.items).toEqual([]);
    // Nothing is awaited of Lao Cai yet: no deadline, nothing overdue.
    expect((await request("/v1/cases?overdue=true")).body.items).toEqual([]);
  });

  it("409 transition_not_allowed for a step the case does not allow; nothing logged", async () => {
    const before = (await request("/v1/messages?direction=outbound&limit=200")).body
      .items as unknown[];
    const res = await request("/v1/messages", {
      json: {
        type: "repatriation.request",
        to: PARTNER.id,
        caseRef: REF,
        body: example("04-repatriation.request.json").body,
      },
    });
    expectProblem(res, 409, "transition_not_allowed");
    const unopened = await request("/v1/messages", {
      json: {
        type: "case.closed",
        to: PARTNER.id,
        caseRef: "CN-HEKOU-2026-7999",
        body: { reason: "other", explanation: "test" },
      },
    });
    expectProblem(unopened, 409, "transition_not_allowed");
    const after = (await request("/v1/messages?direction=outbound&limit=200")).body
      .items as unknown[];
    expect(after.length).toBe(before.length);
    expect((await request(`/v1/cases/${REF}`)).body.state).toBe("identified");
  });

  it("422 personal_data_invalid for personal data that breaks its schema, naming fields, not values", async () => {
    const res = await request("/v1/messages", {
      json: {
        ...victim("CN-HEKOU-2026-7004"),
        personalData: { names: { given: CANARY }, shoeSize: CANARY },
      },
    });
    expectProblem(res, 422, "personal_data_invalid");
    expect(res.text).not.toContain(CANARY);
    expect((res.body.issues as Array<{ path: string }>)[0]?.path).toMatch(/^\/personalData/);
    expectProblem(await request("/v1/cases/CN-HEKOU-2026-7004"), 404, "not_found");
  });

  it("400 request_invalid for personal data both in clear and encrypted, or a record in the body", async () => {
    const res = await request("/v1/messages", {
      json: {
        ...victim("CN-HEKOU-2026-7005"),
        body: { ...(identified.body as object), personalData: {} },
      },
    });
    expectProblem(res, 400, "request_invalid");
    const record = await request("/v1/messages", {
      json: {
        type: "handover.completed",
        to: PARTNER.id,
        caseRef: REF,
        body: { record: { payload: "e30", signatures: [] } },
      },
    });
    expectProblem(record, 400, "request_invalid");
  });

  describe("personal data a local system encrypted itself (body.personalData)", () => {
    const clear = () => ({
      ...(identified.personalData as Record<string, unknown>),
      names: { given: CANARY, family: "Test" },
    });
    const submitEncrypted = (caseRef: string, jwe: unknown) =>
      request("/v1/messages", {
        json: {
          type: "victim.identified",
          to: PARTNER.id,
          caseRef,
          body: { ...(identified.body as object), personalData: jwe },
        },
      });

    it("is accepted when it has an entry for every addressee and for us, and decrypts to valid content", async () => {
      const jwe = await sealPersonalData(clear(), [encKeys.partner, encKeys.own]);
      const res = await submitEncrypted("CN-HEKOU-2026-7101", jwe);
      expect(res.status).toBe(202);
      const logged = await request(`/v1/messages/${res.body.id}`);
      const payload = JSON.parse(
        Buffer.from(String(logged.body.jws).split(".")[1] ?? "", "base64url").toString(),
      ) as { body: { personalData: unknown } };
      // Sent as the local system encrypted it, byte for byte.
      expect(payload.body.personalData).toEqual(jwe);
      const data = await request("/v1/cases/CN-HEKOU-2026-7101/personal-data");
      expect(
        (data.body.items as Array<{ personalData: { names: { given: string } } }>)[0]?.personalData
          .names.given,
      ).toBe(CANARY);
    });

    it("422 personal_data_not_for_us without an entry for us, or for an addressee; 400 with an entry for anyone else", async () => {
      const notOurs = await submitEncrypted(
        "CN-HEKOU-2026-7102",
        await sealPersonalData(clear(), [encKeys.partner, encKeys.stranger]),
      );
      expectProblem(notOurs, 422, "personal_data_not_for_us");
      const notTheirs = await submitEncrypted(
        "CN-HEKOU-2026-7102",
        await sealPersonalData(clear(), [encKeys.own]),
      );
      expectProblem(notTheirs, 422, "personal_data_not_for_us");
      expect(notTheirs.body.issues).toEqual([
        { path: "/to/0", message: "no recipient entry for its encryption key" },
      ]);
      const extra = await submitEncrypted(
        "CN-HEKOU-2026-7102",
        await sealPersonalData(clear(), [encKeys.partner, encKeys.own, encKeys.stranger]),
      );
      expectProblem(extra, 400, "request_invalid");
      expect(extra.body.issues).toEqual([
        { path: "/body/personalData/recipients/2", message: "not an addressee's key" },
      ]);
      expectProblem(await request("/v1/cases/CN-HEKOU-2026-7102"), 404, "not_found");
    });

    it("422 personal_data_undecryptable when it does not decrypt, 422 personal_data_invalid when its content breaks the schema", async () => {
      const jwe = await sealPersonalData(clear(), [encKeys.partner, encKeys.own]);
      const tag = Buffer.from(jwe.tag, "base64url");
      tag[0] = (tag[0] as number) ^ 1;
      const tampered = await submitEncrypted("CN-HEKOU-2026-7103", {
        ...jwe,
        tag: tag.toString("base64url"),
      });
      expectProblem(tampered, 422, "personal_data_undecryptable");
      const invalid = await submitEncrypted(
        "CN-HEKOU-2026-7103",
        await sealPersonalData({ shoeSize: CANARY }, [encKeys.partner, encKeys.own]),
      );
      expectProblem(invalid, 422, "personal_data_invalid");
      expect(invalid.text).not.toContain(CANARY);
      expectProblem(await request("/v1/cases/CN-HEKOU-2026-7103"), 404, "not_found");
    });
  });

  it("409 transition_not_allowed for a countersignature when the case holds no signed record", async () => {
    const res = await request("/v1/messages", {
      json: {
        type: "handover.completed",
        to: PARTNER.id,
        caseRef: REF,
        inReplyTo: randomUUID(),
        body: {},
      },
    });
    expectProblem(res, 409, "transition_not_allowed");
  });

  it("404 not_found for an unknown case or a malformed reference, on both case routes", async () => {
    expectProblem(await request("/v1/cases/CN-HEKOU-2026-0000"), 404, "not_found");
    expectProblem(await request("/v1/cases/not-a-ref"), 404, "not_found");
    expectProblem(await request("/v1/cases/CN-HEKOU-2026-0000/personal-data"), 404, "not_found");
  });

  it("400 request_invalid for an unknown state, a bad party or overdue value", async () => {
    expectProblem(await request("/v1/cases?state=lost"), 400, "request_invalid");
    expectProblem(await request("/v1/cases?party=nobody"), 400, "request_invalid");
    expectProblem(await request("/v1/cases?overdue=yes"), 400, "request_invalid");
  });

  it("401 without a token on every case route", async () => {
    for (const path of ["/v1/cases", `/v1/cases/${REF}`, `/v1/cases/${REF}/personal-data`]) {
      expectProblem(await request(path, { token: null }), 401, "unauthorized");
    }
  });
});
