import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { loadSchemaRegistry } from "../../src/config/schema-files.ts";
import type { ValidationIssue, ValidationResult } from "../../src/schemas/schema-registry.ts";

const repo = fileURLToPath(new URL("../../", import.meta.url));
const seedsDir = join(repo, "seeds");
const messagesDir = join(seedsDir, "messages");

const registry = loadSchemaRegistry();

/** Stands for personal data: must never show up in an issue. */
const SECRET = "NGUYEN-THI-SECRETNAME-4711";

interface SeedMessage {
  from: string;
  to: string[];
  type: string;
  caseRef: string;
  inReplyTo?: string;
  handling: { classification: string; onwardDissemination: string };
  body: Record<string, unknown>;
}

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, "utf8")) as T;
}

const seedFiles = readdirSync(messagesDir)
  .filter((f) => f.endsWith(".json"))
  .sort();
const seeds = seedFiles.map((file) => ({
  file,
  message: readJson<SeedMessage>(join(messagesDir, file)),
}));
const parties = readJson<Array<{ id: string; country: string; inboundSubject: string }>>(
  join(seedsDir, "parties.json"),
);
const crossings = readJson<Array<{ id: string; countries: string[] }>>(
  join(seedsDir, "border-crossings.json"),
);

/** Valid bodies to derive invalid ones from. */
const notice = seeds.find((s) => s.message.type === "case.notice")?.message.body ?? {};
const response = seeds.find((s) => s.message.type === "intel.response")?.message.body ?? {};

function issuesOf(result: ValidationResult | undefined): ValidationIssue[] {
  if (result === undefined) throw new Error("expected a validation result");
  return result.ok ? [] : result.issues;
}

function envelope(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: "0194f3a2-7c1e-7b9a-9d2e-5f1a2b3c4d5e",
    type: "case.notice",
    schemaVersion: 1,
    from: "CN-MPS-HEKOU",
    to: ["VN-BGC-LAOCAI", "INT-IOM-BANGKOK"],
    caseRef: "CN-HEKOU-2026-0042",
    sentAt: "2026-11-18T01:00:00.000Z",
    expiresAt: "2026-12-18T01:00:00Z",
    handling: { classification: "confidential", onwardDissemination: "with-originator-consent" },
    body: {},
    ...overrides,
  };
}

function receipt(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: "0194f3a2-8000-7000-8000-000000000001",
    type: "receipt",
    schemaVersion: 1,
    from: "VN-BGC-LAOCAI",
    to: "CN-MPS-HEKOU",
    sentAt: "2026-11-18T01:00:02Z",
    messageId: "0194f3a2-7c1e-7b9a-9d2e-5f1a2b3c4d5e",
    digest: { alg: "sha-256", value: "a".repeat(64) },
    status: "accepted",
    errors: [],
    ...overrides,
  };
}

function without(value: Record<string, unknown>, key: string): Record<string, unknown> {
  const copy = { ...value };
  delete copy[key];
  return copy;
}

function collect(value: unknown, key: string, out: unknown[] = []): unknown[] {
  if (Array.isArray(value)) for (const v of value) collect(v, key, out);
  else if (typeof value === "object" && value !== null) {
    for (const [k, v] of Object.entries(value)) {
      if (k === key) out.push(v);
      collect(v, key, out);
    }
  }
  return out;
}

describe("schema registry", () => {
  it("discovers the body types from the file names", () => {
    expect(registry.types()).toEqual([
      { type: "case.closed", schemaVersion: 1 },
      { type: "case.notice", schemaVersion: 1 },
      { type: "case.reminder", schemaVersion: 1 },
      { type: "handover.completed", schemaVersion: 1 },
      { type: "handover.confirmation", schemaVersion: 1 },
      { type: "handover.proposal", schemaVersion: 1 },
      { type: "identity.verification.request", schemaVersion: 1 },
      { type: "identity.verification.response", schemaVersion: 1 },
      { type: "intel.request", schemaVersion: 1 },
      { type: "intel.response", schemaVersion: 1 },
      { type: "reintegration.update", schemaVersion: 1 },
      { type: "repatriation.request", schemaVersion: 1 },
      { type: "repatriation.response", schemaVersion: 1 },
      { type: "travel-document.issued", schemaVersion: 1 },
      { type: "victim.identified", schemaVersion: 1 },
    ]);
    expect(registry.hasType("case.notice", 1)).toBe(true);
    expect(registry.hasType("case.notice", 2)).toBe(false);
  });

  it("publishes every schema document under its $id", () => {
    const docs = registry.documents();
    expect(Object.keys(docs).sort()).toEqual(
      [
        "case.closed/v1.json",
        "case.notice/v1.json",
        "case.reminder/v1.json",
        "common/v1.json",
        "envelope/v1.json",
        "handover-record/v1.json",
        "handover.completed/v1.json",
        "handover.confirmation/v1.json",
        "handover.proposal/v1.json",
        "identity.verification.request/v1.json",
        "identity.verification.response/v1.json",
        "intel.request/v1.json",
        "intel.response/v1.json",
        "personal-data/v1.json",
        "receipt-batch/v1.json",
        "receipt/v1.json",
        "reintegration.update/v1.json",
        "repatriation.request/v1.json",
        "repatriation.response/v1.json",
        "travel-document.issued/v1.json",
        "victim.identified/v1.json",
      ].map((p) => `https://liaison-gateway.example/schemas/${p}`),
    );
    // callers get copies: mutating them does not touch the registry
    (docs["https://liaison-gateway.example/schemas/envelope/v1.json"] as { title: string }).title =
      "changed";
    const again = registry.documents()["https://liaison-gateway.example/schemas/envelope/v1.json"];
    expect((again as { title: string }).title).not.toBe("changed");
  });

  it("keeps every published schema documented, closed and bounded", () => {
    // Conditional branches (if/then/else/not) only refine properties declared elsewhere.
    const REFINEMENTS = new Set(["if", "then", "else", "not"]);
    const problems: string[] = [];
    const walk = (node: unknown, where: string): void => {
      if (Array.isArray(node)) {
        node.forEach((item, i) => {
          walk(item, `${where}/${i}`);
        });
        return;
      }
      if (typeof node !== "object" || node === null) return;
      const schema = node as Record<string, unknown>;
      const isBody = where.endsWith("envelope/v1.json#/properties/body");
      if (schema.type === "object" && schema.additionalProperties !== false && !isBody) {
        problems.push(`${where}: object without additionalProperties: false`);
      }
      if (schema.type === "string" && schema.maxLength === undefined && schema.enum === undefined) {
        problems.push(`${where}: unbounded string`);
      }
      if (schema.type === "array" && schema.maxItems === undefined) {
        problems.push(`${where}: unbounded array`);
      }
      const properties = schema.properties as Record<string, Record<string, unknown>> | undefined;
      for (const [name, property] of Object.entries(properties ?? {})) {
        if (typeof property.title !== "string" || typeof property.description !== "string") {
          problems.push(`${where}/properties/${name}: missing title or description`);
        }
      }
      for (const [key, child] of Object.entries(schema)) {
        if (key === "examples" || key === "enum" || REFINEMENTS.has(key)) continue;
        walk(child, `${where}/${key}`);
      }
    };
    for (const [id, doc] of Object.entries(registry.documents())) walk(doc, `${id}#`);
    expect(problems).toEqual([]);
  });

  it("returns undefined from validateBody for an unknown type or version", () => {
    expect(registry.validateBody("alert.unknown-thing", 1, {})).toBeUndefined();
    expect(registry.validateBody("case.notice", 9, {})).toBeUndefined();
  });

  describe("load failures", () => {
    const dirs: string[] = [];
    afterAll(() => {
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    });

    function schemaDir(extra: Record<string, unknown>): string {
      const dir = mkdtempSync(join(tmpdir(), "schemas-"));
      dirs.push(dir);
      mkdirSync(dir, { recursive: true });
      for (const file of readdirSync(join(repo, "schemas"))) {
        writeFileSync(join(dir, file), readFileSync(join(repo, "schemas", file)));
      }
      for (const [file, doc] of Object.entries(extra)) {
        writeFileSync(join(dir, file), JSON.stringify(doc));
      }
      return dir;
    }

    it("names the file of a schema that does not compile in strict mode", () => {
      const dir = schemaDir({
        "alert.cancel.v1.json": {
          $schema: "https://json-schema.org/draft/2020-12/schema",
          $id: "https://liaison-gateway.example/schemas/alert.cancel/v1.json",
          type: "object",
          properties: { reason: { type: "string", minLenght: 1 } },
        },
      });
      expect(() => loadSchemaRegistry(dir)).toThrow(/alert\.cancel\.v1\.json/);
    });

    it("rejects a schema whose $id does not follow the file name", () => {
      const dir = schemaDir({
        "alert.cancel.v1.json": {
          $schema: "https://json-schema.org/draft/2020-12/schema",
          $id: "https://liaison-gateway.example/schemas/alert.cancel/v2.json",
          type: "object",
        },
      });
      expect(() => loadSchemaRegistry(dir)).toThrow(
        /\$id must be https:\/\/liaison-gateway\.example\/schemas\/alert\.cancel\/v1\.json/,
      );
    });
  });
});

describe("seed messages", () => {
  it("has the six demo messages", () => {
    expect(seedFiles.length).toBeGreaterThanOrEqual(6);
  });

  it.each(seeds)("$file: body validates against its type schema", ({ message }) => {
    expect(issuesOf(registry.validateBody(message.type, 1, message.body))).toEqual([]);
  });

  it.each(seeds)("$file: wrapped in an envelope, validates as an envelope", ({ message }) => {
    const { inReplyTo, ...rest } = message;
    const value = envelope({
      ...rest,
      ...(inReplyTo === undefined ? {} : { inReplyTo: "0194f3a2-0000-7000-8000-0000000000aa" }),
    });
    expect(issuesOf(registry.validateEnvelope(value))).toEqual([]);
  });

  it.each(seeds)("$file: names known parties, crossings and seed files", ({ message }) => {
    const partyIds = new Set(parties.map((p) => p.id));
    expect(partyIds.has(message.from)).toBe(true);
    for (const to of message.to) expect(partyIds.has(to)).toBe(true);
    const crossingIds = new Set(crossings.map((c) => c.id));
    for (const id of collect(message.body, "borderCrossingId")) {
      expect(crossingIds.has(id as string)).toBe(true);
    }
    if (message.inReplyTo !== undefined) {
      expect(message.inReplyTo).toMatch(/^@\d{2}-/);
      expect(seedFiles).toContain(`${message.inReplyTo.slice(1)}.json`);
    }
  });

  it("parties have well-formed ids and inbound subjects", () => {
    const common = registry.documents()[
      "https://liaison-gateway.example/schemas/common/v1.json"
    ] as {
      $defs: { partyId: { pattern: string } };
    };
    const pattern = new RegExp(common.$defs.partyId.pattern);
    for (const party of parties) {
      expect(party.id).toMatch(pattern);
      expect(party.inboundSubject).toBe(`liaison.inbox.${party.id}`);
    }
    expect(new Set(parties.map((p) => p.country))).toEqual(
      new Set(["CN", "TH", "KH", "VN", "LA", "MM", "INT"]),
    );
  });
});

describe("envelope schema", () => {
  it("accepts a well-formed envelope, with or without inReplyTo", () => {
    expect(registry.validateEnvelope(envelope())).toEqual({ ok: true });
    expect(
      registry.validateEnvelope(envelope({ inReplyTo: "0194f3a2-0000-7000-8000-0000000000aa" })),
    ).toEqual({ ok: true });
  });

  it("rejects a missing required field", () => {
    expect(issuesOf(registry.validateEnvelope(without(envelope(), "caseRef")))).toEqual([
      { path: "", message: "must have required property 'caseRef'" },
    ]);
    expect(
      issuesOf(registry.validateEnvelope(envelope({ handling: { classification: "secret" } }))),
    ).toEqual([
      { path: "/handling", message: "must have required property 'onwardDissemination'" },
    ]);
  });

  it("rejects an extra property, at the top level and nested", () => {
    expect(issuesOf(registry.validateEnvelope(envelope({ priority: "high" })))).toEqual([
      { path: "", message: "must NOT have additional properties" },
    ]);
    const handling = { classification: "secret", onwardDissemination: "forbidden", ttl: 3 };
    expect(issuesOf(registry.validateEnvelope(envelope({ handling })))).toEqual([
      { path: "/handling", message: "must NOT have additional properties" },
    ]);
  });

  it("rejects a bad party id, pointing at the offending array item", () => {
    for (const bad of ["cn-mps-hekou", "CHN-MPS-HEKOU", "CN-MPS", "CN_MPS_HEKOU", "XYZ-IOM-BKK"]) {
      const issues = issuesOf(registry.validateEnvelope(envelope({ to: ["VN-BGC-LAOCAI", bad] })));
      expect(issues.length).toBeGreaterThan(0);
      expect(new Set(issues.map((i) => i.path))).toEqual(new Set(["/to/1"]));
    }
    expect(issuesOf(registry.validateEnvelope(envelope({ from: "CN-MPS-" })))[0]?.path).toBe(
      "/from",
    );
  });

  it("rejects duplicate or missing recipients", () => {
    expect(issuesOf(registry.validateEnvelope(envelope({ to: [] })))[0]?.path).toBe("/to");
    expect(
      issuesOf(registry.validateEnvelope(envelope({ to: ["VN-BGC-LAOCAI", "VN-BGC-LAOCAI"] })))[0]
        ?.path,
    ).toBe("/to");
  });

  it("rejects a timestamp that is not in UTC", () => {
    for (const sentAt of [
      "2026-11-18T08:00:00+07:00",
      "2026-11-18T01:00:00",
      "2026-11-18t01:00:00z",
      "2026-11-18 01:00:00Z",
    ]) {
      expect(
        issuesOf(registry.validateEnvelope(envelope({ sentAt }))).map((i) => i.path),
      ).toContain("/sentAt");
    }
  });

  it("rejects a message id that is not a canonical lower-case UUID", () => {
    for (const id of [
      "0194F3A2-7C1E-7B9A-9D2E-5F1A2B3C4D5E",
      "urn:uuid:0194f3a2-7c1e-7b9a-9d2e-5f1a2b3c4d5e",
      "msg-1",
    ]) {
      expect(issuesOf(registry.validateEnvelope(envelope({ id }))).map((i) => i.path)).toContain(
        "/id",
      );
    }
  });

  it("rejects a type outside the catalogue syntax and a body that is not an object", () => {
    expect(issuesOf(registry.validateEnvelope(envelope({ type: "Case.Notice" })))[0]?.path).toBe(
      "/type",
    );
    expect(issuesOf(registry.validateEnvelope(envelope({ body: [] })))[0]?.path).toBe("/body");
  });
});

describe("receipt schema", () => {
  it("accepts a well-formed accepted receipt and a rejected one", () => {
    expect(registry.validateReceipt(receipt())).toEqual({ ok: true });
    expect(
      registry.validateReceipt(
        receipt({
          status: "rejected",
          messageId: null,
          errors: [{ code: "malformed", detail: "not a compact JWS" }],
        }),
      ),
    ).toEqual({ ok: true });
  });

  it("rejects a missing required field and an extra property", () => {
    expect(issuesOf(registry.validateReceipt(without(receipt(), "digest")))).toEqual([
      { path: "", message: "must have required property 'digest'" },
    ]);
    expect(issuesOf(registry.validateReceipt(receipt({ reason: "x" })))).toEqual([
      { path: "", message: "must NOT have additional properties" },
    ]);
    const digest = { alg: "sha-256", value: "a".repeat(64), encoding: "hex" };
    expect(issuesOf(registry.validateReceipt(receipt({ digest })))[0]?.path).toBe("/digest");
  });

  it("rejects a receipt addressed to several parties or to a bad party id", () => {
    expect(issuesOf(registry.validateReceipt(receipt({ to: ["CN-MPS-HEKOU"] })))[0]?.path).toBe(
      "/to",
    );
    expect(issuesOf(registry.validateReceipt(receipt({ to: "Hekou" })))[0]?.path).toBe("/to");
  });

  it("rejects a non-UTC sentAt and a digest that is not lower-case hex SHA-256", () => {
    expect(
      issuesOf(registry.validateReceipt(receipt({ sentAt: "2026-11-18T09:00:02+08:00" }))),
    ).toEqual([{ path: "/sentAt", message: expect.stringContaining("must match pattern") }]);
    const digest = { alg: "sha-256", value: "A".repeat(64) };
    expect(issuesOf(registry.validateReceipt(receipt({ digest })))[0]?.path).toBe("/digest/value");
  });

  it("rejects a rejected receipt with no errors", () => {
    const issues = issuesOf(registry.validateReceipt(receipt({ status: "rejected", errors: [] })));
    expect(issues).toContainEqual({ path: "/errors", message: "must NOT have fewer than 1 items" });
  });

  it("rejects an accepted receipt with errors", () => {
    const issues = issuesOf(
      registry.validateReceipt(receipt({ errors: [{ code: "schema_invalid" }] })),
    );
    expect(issues).toContainEqual({ path: "/errors", message: "must NOT have more than 0 items" });
  });

  it("rejects an accepted receipt that does not name the message", () => {
    const issues = issuesOf(registry.validateReceipt(receipt({ messageId: null })));
    expect(issues.map((i) => i.path)).toContain("/messageId");
  });

  it("rejects an unknown error code, pointing at it", () => {
    const issues = issuesOf(
      registry.validateReceipt(receipt({ status: "rejected", errors: [{ code: "replay" }] })),
    );
    expect(issues).toEqual([
      { path: "/errors/0/code", message: "must be equal to one of the allowed values" },
    ]);
  });
});

function batch(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: "0194f3a2-8000-7000-8000-0000000000b1",
    type: "receipt.batch",
    schemaVersion: 1,
    from: "VN-BGC-LAOCAI",
    to: "CN-MPS-HEKOU",
    sentAt: "2026-11-18T01:00:02Z",
    accepted: [
      {
        messageId: "0194f3a2-7c1e-7b9a-9d2e-5f1a2b3c4d5e",
        digest: { alg: "sha-256", value: "a".repeat(64) },
      },
      {
        messageId: "0194f3a2-7c1e-7b9a-9d2e-5f1a2b3c4d5f",
        digest: { alg: "sha-256", value: "b".repeat(64) },
      },
    ],
    ...overrides,
  };
}

function entries(n: number): Array<Record<string, unknown>> {
  return Array.from({ length: n }, (_, i) => ({
    messageId: `0194f3a2-7c1e-7b9a-9d2e-${i.toString(16).padStart(12, "0")}`,
    digest: { alg: "sha-256", value: i.toString(16).padStart(64, "0") },
  }));
}

describe("receipt-batch schema", () => {
  it("accepts a batch of one to 300 accepted messages", () => {
    expect(registry.validateReceiptBatch(batch())).toEqual({ ok: true });
    expect(registry.validateReceiptBatch(batch({ accepted: entries(1) }))).toEqual({ ok: true });
    expect(registry.validateReceiptBatch(batch({ accepted: entries(300) }))).toEqual({ ok: true });
  });

  it("rejects an empty batch and one of more than 300 entries", () => {
    expect(issuesOf(registry.validateReceiptBatch(batch({ accepted: [] })))).toEqual([
      { path: "/accepted", message: "must NOT have fewer than 1 items" },
    ]);
    expect(issuesOf(registry.validateReceiptBatch(batch({ accepted: entries(301) })))).toEqual([
      { path: "/accepted", message: "must NOT have more than 300 items" },
    ]);
  });

  it("rejects extra members, at the top, in an entry and in its digest", () => {
    expect(issuesOf(registry.validateReceiptBatch(batch({ status: "accepted" })))).toEqual([
      { path: "", message: "must NOT have additional properties" },
    ]);
    const [first] = entries(1) as [Record<string, unknown>];
    expect(
      issuesOf(registry.validateReceiptBatch(batch({ accepted: [{ ...first, errors: [] }] }))),
    ).toEqual([{ path: "/accepted/0", message: "must NOT have additional properties" }]);
    const digest = { alg: "sha-256", value: "a".repeat(64), encoding: "hex" };
    expect(
      issuesOf(registry.validateReceiptBatch(batch({ accepted: [{ ...first, digest }] }))),
    ).toEqual([{ path: "/accepted/0/digest", message: "must NOT have additional properties" }]);
  });

  it("rejects a missing member, another type, a null or upper-case message id, a bad digest", () => {
    expect(issuesOf(registry.validateReceiptBatch(without(batch(), "accepted")))).toEqual([
      { path: "", message: "must have required property 'accepted'" },
    ]);
    expect(issuesOf(registry.validateReceiptBatch(batch({ type: "receipt" })))[0]?.path).toBe(
      "/type",
    );
    const [first] = entries(1) as [Record<string, unknown>];
    for (const messageId of [null, "0194F3A2-7C1E-7B9A-9D2E-5F1A2B3C4D5E"]) {
      expect(
        issuesOf(registry.validateReceiptBatch(batch({ accepted: [{ ...first, messageId }] })))[0]
          ?.path,
      ).toBe("/accepted/0/messageId");
    }
    const digest = { alg: "sha-256", value: "A".repeat(64) };
    expect(
      issuesOf(registry.validateReceiptBatch(batch({ accepted: [{ ...first, digest }] })))[0]?.path,
    ).toBe("/accepted/0/digest/value");
    expect(issuesOf(registry.validateReceiptBatch(batch({ to: ["CN-MPS-HEKOU"] })))[0]?.path).toBe(
      "/to",
    );
  });

  it("is not a message type, and a receipt does not validate as a batch (nor the reverse)", () => {
    expect(registry.hasType("receipt-batch", 1)).toBe(false);
    expect(registry.validateReceiptBatch(receipt()).ok).toBe(false);
    expect(registry.validateReceipt(batch()).ok).toBe(false);
  });
});

describe("body schemas", () => {
  it("refuses identifying data about victims in a case notice", () => {
    const victims = { count: 1, minorsCount: 0, nationalities: ["VN"], names: ["x"] };
    const issues = issuesOf(registry.validateBody("case.notice", 1, { ...notice, victims }));
    expect(issues).toEqual([{ path: "/victims", message: "must NOT have additional properties" }]);
  });

  it("requires a reason for a declined intel response and no answers", () => {
    const declined = {
      responseKind: "declined",
      answers: [{ questionIndex: 0, outcome: "no-record" }],
    };
    const paths = issuesOf(registry.validateBody("intel.response", 1, declined)).map((i) => i.path);
    expect(paths).toContain("/answers");
    expect(issuesOf(registry.validateBody("intel.response", 1, declined))).toContainEqual({
      path: "",
      message: "must have required property 'reason'",
    });
  });

  it("forbids a reason on a full intel response", () => {
    const full = { ...response, responseKind: "full", reason: { code: "other" } };
    expect(issuesOf(registry.validateBody("intel.response", 1, full)).map((i) => i.path)).toContain(
      "/reason",
    );
  });
});

describe("validation issues", () => {
  it("never contain the offending value", () => {
    const value = envelope({
      id: SECRET,
      from: SECRET,
      to: [SECRET],
      schemaVersion: SECRET,
      sentAt: SECRET,
      caseRef: SECRET,
      handling: { classification: SECRET, onwardDissemination: "forbidden", [SECRET]: SECRET },
      [SECRET]: SECRET,
    });
    const issues = issuesOf(registry.validateEnvelope(value));
    expect(issues.length).toBeGreaterThan(5);
    expect(JSON.stringify(issues)).not.toContain(SECRET);

    const victims = { count: SECRET, minorsCount: 0, nationalities: [SECRET], [SECRET]: SECRET };
    const suspects = [{ ref: SECRET, roles: [SECRET], status: "at-large", fullName: 7 }];
    const bodyIssues = issuesOf(
      registry.validateBody("case.notice", 1, { ...notice, victims, suspects }),
    );
    expect(bodyIssues.length).toBeGreaterThan(3);
    expect(JSON.stringify(bodyIssues)).not.toContain(SECRET);

    const receiptIssues = issuesOf(
      registry.validateReceipt(
        receipt({ status: "rejected", errors: [{ code: SECRET, detail: SECRET.repeat(40) }] }),
      ),
    );
    expect(receiptIssues.length).toBe(2);
    expect(JSON.stringify(receiptIssues)).not.toContain(SECRET);
  });

  it("carry JSON-pointer paths", () => {
    const suspects = [{ ref: "S1", roles: ["recruiter"], status: "at-large", aliases: [7] }];
    const issues = issuesOf(registry.validateBody("case.notice", 1, { ...notice, suspects }));
    expect(issues).toEqual([{ path: "/suspects/0/aliases/0", message: "must be string" }]);
    for (const issue of issuesOf(registry.validateEnvelope({ to: [1], handling: {} }))) {
      expect(issue.path === "" || issue.path.startsWith("/")).toBe(true);
    }
  });
});
