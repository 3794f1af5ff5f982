/**
 * The message catalogue of a victim's journey (docs/messages.md): every example of
 * docs/examples/messages/ against the published schemas, with the personal data encrypted and
 * the handover record signed by jose exactly as a partner's JOSE library would, so that the
 * schemas, the examples and the JWE / JWS shapes cannot drift apart unnoticed.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type CryptoKey,
  calculateJwkThumbprint,
  exportJWK,
  GeneralEncrypt,
  GeneralSign,
  generalDecrypt,
  generateKeyPair,
} from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { CASE_TYPES } from "../../src/cases/case-types.ts";
import { loadSchemaRegistry } from "../../src/config/schema-files.ts";
import type { ValidationIssue, ValidationResult } from "../../src/schemas/schema-registry.ts";

const repo = fileURLToPath(new URL("../../", import.meta.url));
const examplesDir = join(repo, "docs", "examples", "messages");
const registry = loadSchemaRegistry();
const BASE = "https://liaison-gateway.example/schemas/";

/** Stands for a victim's personal data: must never show up in an issue. */
const CANARY = "LO-THI-CANARY-0107";

/** The types of the journey, in journey order, then the reminder (not a step). */
const JOURNEY_TYPES = [...CASE_TYPES];

/** Whether each type's body carries `personalData`, as docs/messages.md says. */
const PERSONAL_DATA: Record<string, "required" | "optional" | "absent"> = {
  "victim.identified": "required",
  "identity.verification.request": "optional",
  "identity.verification.response": "optional",
  "repatriation.request": "optional",
  "repatriation.response": "absent",
  "travel-document.issued": "required",
  "handover.proposal": "absent",
  "handover.confirmation": "absent",
  "handover.completed": "absent",
  "reintegration.update": "optional",
  "case.closed": "absent",
  "case.reminder": "absent",
};

const PD_CTY = "liaison-personal-data+json";
const RECORD_TYP = "liaison-handover-record+jws";
/** LIAISON_MAX_MESSAGE_BYTES by default (docs/protocol.md, Size limit). */
const DEFAULT_MAX_MESSAGE_BYTES = 262_144;

interface Example {
  from: string;
  to: string[];
  type: string;
  caseRef: string;
  inReplyTo?: string;
  handling: { classification: string; onwardDissemination: string };
  body: Record<string, unknown>;
  personalData?: Record<string, unknown>;
  handoverRecord?: Record<string, unknown>;
}

type Json = Record<string, unknown>;

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, "utf8")) as T;
}

const exampleFiles = readdirSync(examplesDir)
  .filter((f) => f.endsWith(".json"))
  .sort();
const examples = exampleFiles.map((file) => ({
  file,
  example: readJson<Example>(join(examplesDir, file)),
}));
const parties = readJson<Array<{ id: string }>>(join(repo, "seeds", "parties.json"));
const crossings = readJson<Array<{ id: string }>>(join(repo, "seeds", "border-crossings.json"));

function exampleOf(type: string): Example {
  const found = examples.find((e) => e.example.type === type);
  if (found === undefined) throw new Error(`no example of ${type}`);
  return structuredClone(found.example);
}

function schemaOf(name: string): Json {
  const doc = registry.documents()[`${BASE}${name}/v1.json`];
  if (doc === undefined) throw new Error(`no schema ${name}`);
  return doc as Json;
}

function commonDef(name: string): Json {
  const defs = schemaOf("common").$defs as Record<string, Json>;
  const def = defs[name];
  if (def === undefined) throw new Error(`no $defs/${name} in common`);
  return def;
}

function issuesOf(result: ValidationResult | undefined): ValidationIssue[] {
  if (result === undefined) throw new Error("expected a validation result");
  return result.ok ? [] : result.issues;
}

/** "@NN-<file stem>" names the message of another example: the id it would get when sent. */
function placeholderId(placeholder: string): string {
  const n = Number(placeholder.slice(1, 3));
  return `0194f3a2-0000-7000-8000-${String(n).padStart(12, "0")}`;
}

function resolvePlaceholders<T>(value: T): T {
  if (typeof value === "string" && /^@\d{2}-/.test(value)) {
    return placeholderId(value) as T;
  }
  if (Array.isArray(value)) return value.map((v) => resolvePlaceholders(v)) as T;
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, resolvePlaceholders(v)]),
    ) as T;
  }
  return value;
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

function envelopeOf(example: Example, body: Json): Json {
  const { inReplyTo, personalData: _pd, handoverRecord: _record, ...rest } = example;
  return {
    id: "0194f3a2-7c1e-7b9a-9d2e-5f1a2b3c4d5e",
    schemaVersion: 1,
    sentAt: "2026-12-15T03:00:00.000Z",
    expiresAt: "2026-12-22T03:00:00.000Z",
    ...rest,
    ...(inReplyTo === undefined ? {} : { inReplyTo: resolvePlaceholders(inReplyTo) }),
    body,
  };
}

// ─── keys and JOSE, as a partner's library makes them ──────────────────────────────────────────

interface EncKey {
  kid: string;
  publicKey: CryptoKey;
  privateKey: CryptoKey;
}

async function encKey(): Promise<EncKey> {
  const { publicKey, privateKey } = await generateKeyPair("ECDH-ES+A256KW", { crv: "X25519" });
  const kid = await calculateJwkThumbprint(await exportJWK(publicKey));
  return { kid, publicKey, privateKey };
}

interface SigKey {
  kid: string;
  privateKey: CryptoKey;
}

async function sigKey(): Promise<SigKey> {
  const { publicKey, privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
  const kid = await calculateJwkThumbprint(await exportJWK(publicKey));
  return { kid, privateKey };
}

let sender: EncKey;
let recipient: EncKey;
let identifyingSigner: SigKey;
let originSigner: SigKey;

beforeAll(async () => {
  [sender, recipient] = await Promise.all([encKey(), encKey()]);
  [identifyingSigner, originSigner] = await Promise.all([sigKey(), sigKey()]);
});

/** A JWE (General JSON Serialization) to the addressee and to the sender. */
async function encrypt(plaintext: Json, to: EncKey[] = [recipient, sender]): Promise<Json> {
  const jwe = new GeneralEncrypt(new TextEncoder().encode(JSON.stringify(plaintext)));
  jwe.setProtectedHeader({ enc: "A256GCM", cty: PD_CTY });
  for (const key of to) {
    jwe.addRecipient(key.publicKey).setUnprotectedHeader({ alg: "ECDH-ES+A256KW", kid: key.kid });
  }
  return (await jwe.encrypt()) as unknown as Json;
}

/** A JWS (General JSON Serialization) of the record, signed by each key in turn. */
async function sign(payload: Json, signers: SigKey[]): Promise<Json> {
  const jws = new GeneralSign(new TextEncoder().encode(JSON.stringify(payload)));
  for (const key of signers) {
    jws.addSignature(key.privateKey).setProtectedHeader({
      alg: "EdDSA",
      kid: key.kid,
      typ: RECORD_TYP,
    });
  }
  return (await jws.sign()) as unknown as Json;
}

/** The body as the gateway sends it: personal data encrypted in, the record signed in. */
async function wireBody(example: Example): Promise<Json> {
  const body: Json = structuredClone(example.body);
  if (example.personalData !== undefined) body.personalData = await encrypt(example.personalData);
  if (example.handoverRecord !== undefined) {
    body.record = await sign(resolvePlaceholders(example.handoverRecord), [identifyingSigner]);
  }
  return resolvePlaceholders(body);
}

// ─── the examples ──────────────────────────────────────────────────────────────────────────────

describe("journey examples (docs/examples/messages)", () => {
  it("cover exactly the twelve types of the journey, one file each, in journey order", () => {
    expect(examples.map((e) => e.example.type)).toEqual(JOURNEY_TYPES);
    expect(new Set(examples.map((e) => e.example.type))).toEqual(new Set(JOURNEY_TYPES));
    expect(exampleFiles).toEqual(
      JOURNEY_TYPES.map((type, i) => `${String(i + 1).padStart(2, "0")}-${type}.json`),
    );
  });

  it.each(examples)("$file: the type has a body schema", ({ example }) => {
    expect(registry.hasType(example.type, 1)).toBe(true);
  });

  it.each(examples)("$file: body holds neither personalData nor record", ({ example }) => {
    expect(example.body).not.toHaveProperty("personalData");
    expect(example.body).not.toHaveProperty("record");
    expect(example.handoverRecord === undefined).toBe(example.type !== "handover.completed");
  });

  it.each(examples)("$file: personalData is there when the type requires it", ({ example }) => {
    const presence = PERSONAL_DATA[example.type];
    if (presence === "required") expect(example.personalData).toBeDefined();
    if (presence === "absent") expect(example.personalData).toBeUndefined();
  });

  it.each(examples.filter((e) => e.example.personalData !== undefined))(
    "$file: personalData validates against personal-data",
    ({ example }) => {
      expect(issuesOf(registry.validatePersonalData(example.personalData))).toEqual([]);
    },
  );

  it("the handover record validates against handover-record", () => {
    const { handoverRecord } = exampleOf("handover.completed");
    expect(handoverRecord?.proposalId).toBe("@07-handover.proposal");
    const record = resolvePlaceholders(handoverRecord);
    expect(issuesOf(registry.validateHandoverRecord(record))).toEqual([]);
  });

  it.each(examples)(
    "$file: the body, with a real JWE and JWS, validates against its schema",
    async ({ example }) => {
      const body = await wireBody(example);
      expect(issuesOf(registry.validateBody(example.type, 1, body))).toEqual([]);
    },
  );

  it.each(examples)(
    "$file: wrapped in an envelope, validates as an envelope",
    async ({ example }) => {
      const value = envelopeOf(example, await wireBody(example));
      expect(issuesOf(registry.validateEnvelope(value))).toEqual([]);
    },
  );

  it.each(examples)(
    "$file: one case between two known parties, crossings and files",
    ({ example }) => {
      expect(example.caseRef).toBe("CN-HEKOU-2026-0107");
      const partyIds = new Set(parties.map((p) => p.id));
      expect(partyIds.has(example.from)).toBe(true);
      expect(example.to).toHaveLength(1);
      for (const to of example.to) expect(partyIds.has(to)).toBe(true);
      expect(new Set([example.from, ...example.to])).toEqual(
        new Set(["CN-MPS-HEKOU", "VN-BGC-LAOCAI"]),
      );
      const crossingIds = new Set(crossings.map((c) => c.id));
      for (const id of [
        ...collect(example, "borderCrossingId"),
        ...collect(example, "preferredBorderCrossingId"),
      ]) {
        expect(crossingIds.has(id as string)).toBe(true);
      }
      const placeholders = [example.inReplyTo, ...collect(example, "proposalId")]
        .concat(collect(example, "awaitedMessageId"))
        .filter((p): p is string => typeof p === "string");
      for (const p of placeholders) {
        expect(p).toMatch(/^@\d{2}-/);
        expect(exampleFiles).toContain(`${p.slice(1)}.json`);
      }
    },
  );
});

// ─── the schemas: what the case and docs/messages.md rely on ──────────────────────────────────

describe("journey schemas", () => {
  it.each(JOURNEY_TYPES)("%s: personalData is as docs/messages.md says", (type) => {
    const schema = schemaOf(type);
    const properties = schema.properties as Json;
    const required = schema.required as string[];
    const presence = PERSONAL_DATA[type];
    expect(presence).toBeDefined();
    expect("personalData" in properties).toBe(presence !== "absent");
    expect(required.includes("personalData")).toBe(presence === "required");
    if (presence !== "absent") {
      expect((properties.personalData as Json).$ref).toBe(
        `${BASE}common/v1.json#/$defs/encryptedPersonalData`,
      );
    }
  });

  it("name the fields the case reads with the values it compares", () => {
    const prop = (type: string, name: string): Json =>
      (schemaOf(type).properties as Record<string, Json>)[name] ?? {};
    const required = (type: string): string[] => schemaOf(type).required as string[];
    expect(prop("victim.identified", "minor").type).toBe("boolean");
    expect(required("victim.identified")).toContain("minor");
    expect(prop("identity.verification.response", "result").enum).toEqual([
      "confirmed",
      "not-confirmed",
      "more-information-needed",
    ]);
    expect(prop("repatriation.request", "minor").type).toBe("boolean");
    expect(prop("repatriation.response", "decision").enum).toEqual(["accepted", "declined"]);
    expect(required("handover.proposal")).toEqual(
      expect.arrayContaining(["scheduledAt", "borderCrossingId"]),
    );
    expect(prop("handover.confirmation", "decision").enum).toEqual(["confirmed", "rejected"]);
    expect(prop("handover.completed", "record").$ref).toBe(
      `${BASE}common/v1.json#/$defs/generalJws`,
    );
    expect(required("handover.completed")).toContain("record");
    expect(prop("case.closed", "reason").enum).toEqual([
      "reintegration-completed",
      "identity-not-confirmed",
      "repatriation-declined",
      "person-withdrew-consent",
      "transferred-to-other-procedure",
      "other",
    ]);
    expect(required("handover-record")).toEqual(
      expect.arrayContaining(["caseRef", "proposalId", "handedOverBy", "receivedBy"]),
    );
  });

  it("the reminder awaits any step but the one that opens a case", () => {
    const awaited = (schemaOf("case.reminder").properties as Record<string, Json>).awaitedType;
    expect(awaited?.enum).toEqual(JOURNEY_TYPES.slice(1, 11));
  });

  it("are not message types: personal-data and handover-record", () => {
    expect(registry.hasType("personal-data", 1)).toBe(false);
    expect(registry.hasType("handover-record", 1)).toBe(false);
    for (const type of JOURNEY_TYPES) expect(registry.hasType(type, 1)).toBe(true);
  });

  it("borderCrossingId lists exactly the crossings of seeds/border-crossings.json", () => {
    expect(commonDef("borderCrossingId").enum).toEqual(crossings.map((c) => c.id));
    const pattern = new RegExp(commonDef("borderCrossingId").pattern as string);
    for (const c of crossings) expect(c.id).toMatch(pattern);
  });

  it("languageCode and documentType hold the shared code lists", () => {
    const languages = commonDef("languageCode").enum as string[];
    for (const code of ["zh", "vi", "th", "lo", "km", "my", "en", "fr"]) {
      expect(languages).toContain(code);
    }
    for (const code of ["shn", "kac", "hmn", "khb", "kjg"]) expect(languages).toContain(code);
    for (const code of languages) {
      expect(code).toMatch(/^[a-z]{2,3}$/);
      expect(commonDef("languageCode").description).toContain(`${code} `);
    }
    expect(commonDef("documentType").enum).toEqual([
      "passport",
      "national-identity-card",
      "birth-certificate",
      "household-registration",
      "travel-certificate",
      "border-pass",
      "residence-permit",
      "other",
    ]);
  });
});

// ─── the JWE and JWS shapes jose produces are the ones the schemas allow ──────────────────────

describe("encryptedPersonalData: the JWE as jose makes it", () => {
  it("has exactly the members the profile allows, and decrypts for every recipient", async () => {
    const plaintext = exampleOf("victim.identified").personalData as Json;
    const jwe = await encrypt(plaintext);
    expect(Object.keys(jwe).sort()).toEqual(["ciphertext", "iv", "protected", "recipients", "tag"]);
    const header = JSON.parse(Buffer.from(jwe.protected as string, "base64url").toString("utf8"));
    expect(header).toEqual({ enc: "A256GCM", cty: PD_CTY });
    const recipients = jwe.recipients as Array<{ header: Json; encrypted_key: string }>;
    expect(recipients).toHaveLength(2);
    for (const [i, entry] of recipients.entries()) {
      expect(Object.keys(entry).sort()).toEqual(["encrypted_key", "header"]);
      expect(Object.keys(entry.header).sort()).toEqual(["alg", "epk", "kid"]);
      expect(entry.header.alg).toBe("ECDH-ES+A256KW");
      expect(entry.header.kid).toBe([recipient, sender][i]?.kid);
      expect(Object.keys(entry.header.epk as Json).sort()).toEqual(["crv", "kty", "x"]);
      expect(entry.header.epk).toMatchObject({ kty: "OKP", crv: "X25519" });
      expect(entry.encrypted_key).toHaveLength(54);
    }
    expect(jwe.iv).toHaveLength(16);
    expect(jwe.tag).toHaveLength(22);
    for (const key of [recipient, sender]) {
      const { plaintext: bytes, protectedHeader } = await generalDecrypt(
        jwe as never,
        key.privateKey,
      );
      expect(protectedHeader).toEqual({ enc: "A256GCM", cty: PD_CTY });
      expect(JSON.parse(new TextDecoder().decode(bytes))).toEqual(plaintext);
    }
  });

  async function victimBodyWith(mutate: (jwe: Json) => void): Promise<ValidationIssue[]> {
    const example = exampleOf("victim.identified");
    const jwe = await encrypt(example.personalData as Json);
    mutate(jwe);
    return issuesOf(
      registry.validateBody("victim.identified", 1, { ...example.body, personalData: jwe }),
    );
  }

  it("refuses an aad or an unprotected member", async () => {
    expect(await victimBodyWith((jwe) => Object.assign(jwe, { aad: "YWFk" }))).toEqual([
      { path: "/personalData", message: "must NOT have additional properties" },
    ]);
    expect(
      await victimBodyWith((jwe) => Object.assign(jwe, { unprotected: { jku: "x" } })),
    ).toEqual([{ path: "/personalData", message: "must NOT have additional properties" }]);
  });

  it("refuses a recipient header with another member or another key type", async () => {
    const first = (jwe: Json) => (jwe.recipients as Array<{ header: Json }>)[0] as { header: Json };
    expect(
      await victimBodyWith((jwe) => Object.assign(first(jwe).header, { enc: "A256GCM" })),
    ).toEqual([
      { path: "/personalData/recipients/0/header", message: "must NOT have additional properties" },
    ]);
    expect(
      (
        await victimBodyWith((jwe) => {
          first(jwe).header.alg = "ECDH-ES";
          (first(jwe).header.epk as Json).crv = "P-256";
        })
      ).map((i) => i.path),
    ).toEqual([
      "/personalData/recipients/0/header/alg",
      "/personalData/recipients/0/header/epk/crv",
    ]);
    expect(
      (await victimBodyWith((jwe) => Object.assign(first(jwe), { header: undefined }))).map(
        (i) => i.path,
      ),
    ).toContain("/personalData/recipients/0");
  });

  it("refuses no recipient and more than 65 (64 addressees and the sender)", async () => {
    expect(
      (await victimBodyWith((jwe) => Object.assign(jwe, { recipients: [] }))).map((i) => i.path),
    ).toEqual(["/personalData/recipients"]);
    const many = await victimBodyWith((jwe) => {
      const one = (jwe.recipients as Json[])[0];
      jwe.recipients = Array.from({ length: 66 }, () => one);
    });
    expect(many).toEqual([
      { path: "/personalData/recipients", message: "must NOT have more than 65 items" },
    ]);
  });

  it("refuses segments that are not base64url, or not of the algorithms' lengths", async () => {
    const first = (jwe: Json) => (jwe.recipients as Array<{ header: Json }>)[0] as { header: Json };
    const issues = await victimBodyWith((jwe) => {
      jwe.ciphertext = `${jwe.ciphertext as string}=`;
      jwe.iv = "AAAAAAAAAAAAAAAAAAAA"; // 15 bytes, not the 12 of AES-GCM
      jwe.tag = "AAAAAAAAAAAAAAAAAAAAAB"; // 22 characters, but not canonical (unused bits set)
      first(jwe).header.kid = `${"A".repeat(42)}B`; // idem for 32 bytes
    });
    expect([...new Set(issues.map((i) => i.path))].sort()).toEqual([
      "/personalData/ciphertext",
      "/personalData/iv",
      "/personalData/recipients/0/header/kid",
      "/personalData/tag",
    ]);
  });

  it("bounds the JWE so that the largest one fits a signed message in the default size limit", () => {
    // The largest personal data the schema allows, in 4-byte UTF-8 wherever the text is free.
    const wide = (n: number): string => "𠀀".repeat(n);
    const address = {
      line1: wide(200),
      line2: wide(200),
      line3: wide(200),
      locality: wide(100),
      adminArea: wide(100),
      postalCode: wide(20),
      country: "VN",
    };
    const largest = {
      names: {
        given: wide(100),
        family: wide(100),
        otherNames: Array.from({ length: 10 }, (_, i) => `${i}${wide(99)}`),
        nativeScript: { given: wide(100), family: wide(100) },
      },
      aliases: Array.from({ length: 10 }, (_, i) => `${i}${wide(99)}`),
      sex: "unknown",
      dateOfBirth: { value: "2010-05-14", approximate: true },
      placeOfBirth: {
        country: "VN",
        adminArea: wide(100),
        locality: wide(100),
        borderCrossingId: "KH-TH-POIPET-ARANYAPRATHET",
        geo: { lat: -89.123456789, lon: -179.123456789, uncertaintyMetres: 100000 },
        description: wide(500),
      },
      photographs: Array.from({ length: 10 }, () => ({
        ref: wide(500),
        sha256: "a".repeat(64),
        mediaType: "image/jpeg",
      })),
      identityDocuments: Array.from({ length: 10 }, () => ({
        documentType: "national-identity-card",
        number: wide(50),
        issuingCountry: "VN",
        issuedOn: "2024-07-10",
        expiresOn: "2035-05-14",
      })),
      familyContacts: Array.from({ length: 10 }, () => ({
        relationship: "other-relative",
        name: wide(200),
        phone: "+".padEnd(30, "0"),
        address,
      })),
      homeAddress: address,
      guardian: { name: wide(200), role: "child-protection-officer", phone: "+".padEnd(30, "0") },
      languagesSpoken: ["vi", "blt", "hmn", "zh", "yue", "th", "lo", "km", "my", "und"],
    };
    expect(issuesOf(registry.validatePersonalData(largest))).toEqual([]);
    const plaintextBytes = Buffer.byteLength(JSON.stringify(largest));
    const ciphertext = commonDef("encryptedPersonalData").properties as Record<string, Json>;
    const maxCiphertext = ciphertext.ciphertext?.maxLength as number;
    // AES-GCM ciphertext is as long as the plaintext; base64url makes it a third longer.
    expect(Math.ceil((plaintextBytes * 4) / 3)).toBeLessThanOrEqual(maxCiphertext);

    // The largest JWE in a victim.identified with its longest free text, signed.
    const b64 = (n: number) => "A".repeat(n);
    const jwe = {
      protected: b64(256),
      recipients: Array.from({ length: 65 }, () => ({
        header: {
          alg: "ECDH-ES+A256KW",
          kid: b64(43),
          epk: { kty: "OKP", crv: "X25519", x: b64(43) },
        },
        encrypted_key: b64(54),
      })),
      iv: b64(16),
      ciphertext: b64(maxCiphertext),
      tag: b64(22),
    };
    const example = exampleOf("victim.identified");
    const body = { ...example.body, circumstances: wide(2000), personalData: jwe };
    expect(issuesOf(registry.validateBody("victim.identified", 1, body))).toEqual([]);
    const envelope = envelopeOf(example, body);
    const header = Buffer.from(
      JSON.stringify({ alg: "EdDSA", kid: b64(43), typ: "liaison-message+jws" }),
    ).toString("base64url");
    const payload = Buffer.from(JSON.stringify(envelope)).toString("base64url");
    const compact = `${header}.${payload}.${b64(86)}`;
    expect(compact.length).toBeLessThan(DEFAULT_MAX_MESSAGE_BYTES);
  });
});

describe("generalJws: the handover record as jose signs it", () => {
  const record = () => resolvePlaceholders(exampleOf("handover.completed").handoverRecord as Json);
  const completed = (value: unknown): ValidationIssue[] =>
    issuesOf(registry.validateBody("handover.completed", 1, { record: value }));

  it("signed once and countersigned, has exactly payload and protected signatures", async () => {
    const first = await sign(record(), [identifyingSigner]);
    const both = await sign(record(), [identifyingSigner, originSigner]);
    for (const jws of [first, both]) {
      expect(Object.keys(jws).sort()).toEqual(["payload", "signatures"]);
      for (const s of jws.signatures as Json[]) {
        expect(Object.keys(s).sort()).toEqual(["protected", "signature"]);
        const header = JSON.parse(Buffer.from(s.protected as string, "base64url").toString("utf8"));
        expect(Object.keys(header).sort()).toEqual(["alg", "kid", "typ"]);
        expect(header.typ).toBe(RECORD_TYP);
      }
      expect(completed(jws)).toEqual([]);
    }
    // the countersigned record keeps the payload and the first signature byte for byte
    expect(both.payload).toBe(first.payload);
    expect((both.signatures as Json[])[0]?.protected).toBe(
      (first.signatures as Json[])[0]?.protected,
    );
    const decoded = JSON.parse(Buffer.from(first.payload as string, "base64url").toString("utf8"));
    expect(issuesOf(registry.validateHandoverRecord(decoded))).toEqual([]);
  });

  it("refuses an unprotected header, a third signature and other members", async () => {
    const jws = await sign(record(), [identifyingSigner]);
    const one = (jws.signatures as Json[])[0] as Json;
    expect(completed({ ...jws, signatures: [{ ...one, header: { kid: "x" } }] })).toEqual([
      { path: "/record/signatures/0", message: "must NOT have additional properties" },
    ]);
    expect(completed({ ...jws, signatures: [one, one, one] })).toEqual([
      { path: "/record/signatures", message: "must NOT have more than 2 items" },
    ]);
    expect(completed({ ...jws, signatures: [] })).toEqual([
      { path: "/record/signatures", message: "must NOT have fewer than 1 items" },
    ]);
    expect(completed({ ...jws, protected: one.protected })).toEqual([
      { path: "/record", message: "must NOT have additional properties" },
    ]);
    expect(completed({ ...jws, payload: `${jws.payload as string}==` })[0]?.path).toBe(
      "/record/payload",
    );
  });
});

// ─── what each body refuses ────────────────────────────────────────────────────────────────────

describe("journey bodies refuse", () => {
  async function body(type: string, change: (body: Json) => void): Promise<ValidationIssue[]> {
    const value = await wireBody(exampleOf(type));
    change(value);
    return issuesOf(registry.validateBody(type, 1, value));
  }

  it("a minor without a guardian (repatriation.request)", async () => {
    expect(
      await body("repatriation.request", (b) => {
        delete b.guardian;
      }),
    ).toEqual([{ path: "", message: "must have required property 'guardian'" }]);
    // an adult needs none
    expect(
      await body("repatriation.request", (b) => {
        delete b.guardian;
        b.minor = false;
      }),
    ).toEqual([]);
  });

  it("consent that is not informed (repatriation.request)", async () => {
    const issues = await body("repatriation.request", (b) => {
      (b.consent as Json).informed = false;
    });
    expect(issues).toEqual([{ path: "/consent/informed", message: "must be equal to constant" }]);
  });

  it("a declined return without a decline reason, and an accepted one with it", async () => {
    expect(
      await body("repatriation.response", (b) => {
        b.decision = "declined";
      }),
    ).toEqual([{ path: "", message: "must have required property 'declineReason'" }]);
    expect(
      await body("repatriation.response", (b) => {
        b.declineReason = { code: "other", explanation: "x" };
      }),
    ).toEqual([{ path: "/declineReason", message: "must NOT be valid" }]);
  });

  it("more-information-needed without informationNeeded, not-confirmed without a reason", async () => {
    expect(
      await body("identity.verification.response", (b) => {
        b.result = "more-information-needed";
      }),
    ).toEqual([{ path: "", message: "must have required property 'informationNeeded'" }]);
    expect(
      await body("identity.verification.response", (b) => {
        b.result = "not-confirmed";
      }),
    ).toEqual([{ path: "", message: "must have required property 'reason'" }]);
  });

  it("a confirmed handover without receiving officials, a rejected one without a reason", async () => {
    expect(
      await body("handover.confirmation", (b) => {
        delete b.receivingOfficials;
      }),
    ).toEqual([{ path: "", message: "must have required property 'receivingOfficials'" }]);
    expect(
      await body("handover.confirmation", (b) => {
        b.decision = "rejected";
      }),
    ).toEqual([{ path: "", message: "must have required property 'reason'" }]);
  });

  it("a victim.identified or travel-document.issued without personalData", async () => {
    for (const type of ["victim.identified", "travel-document.issued"]) {
      expect(
        await body(type, (b) => {
          delete b.personalData;
        }),
      ).toEqual([{ path: "", message: "must have required property 'personalData'" }]);
    }
  });

  it("personal data in clear: a name member in any body", async () => {
    for (const type of JOURNEY_TYPES) {
      const issues = await body(type, (b) => {
        b.name = CANARY;
      });
      expect(issues).toEqual([{ path: "", message: "must NOT have additional properties" }]);
    }
  });

  it("'none' together with another need", async () => {
    expect(
      await body("victim.identified", (b) => {
        b.immediateNeeds = ["none", "shelter"];
      }),
    ).toEqual([{ path: "/immediateNeeds", message: "must NOT have more than 1 items" }]);
  });

  it("a reminder awaiting victim.identified, a closure 'other' without explanation", async () => {
    expect(
      (
        await body("case.reminder", (b) => {
          b.awaitedType = "victim.identified";
        })
      ).map((i) => i.path),
    ).toEqual(["/awaitedType"]);
    expect(
      await body("case.closed", (b) => {
        b.reason = "other";
        delete b.explanation;
      }),
    ).toEqual([{ path: "", message: "must have required property 'explanation'" }]);
  });

  it("a border crossing that is not on the shared list", async () => {
    const issues = await body("handover.proposal", (b) => {
      b.borderCrossingId = "CN-VN-NOWHERE-NOPLACE";
    });
    expect(issues).toEqual([
      { path: "/borderCrossingId", message: "must be equal to one of the allowed values" },
    ]);
  });
});

describe("personal data and handover record refuse", () => {
  it("personal data with an unknown member, or none at all", () => {
    const pd = exampleOf("victim.identified").personalData as Json;
    expect(issuesOf(registry.validatePersonalData({ ...pd, religion: "x" }))).toEqual([
      { path: "", message: "must NOT have additional properties" },
    ]);
    expect(
      issuesOf(registry.validatePersonalData({ ...pd, names: { given: "Mai", title: "Ms" } })),
    ).toEqual([{ path: "/names", message: "must NOT have additional properties" }]);
    expect(issuesOf(registry.validatePersonalData({}))).toEqual([
      { path: "", message: "must NOT have fewer than 1 properties" },
    ]);
  });

  it("a photograph that is not a JPEG or PNG reference", () => {
    const photo = { ref: "x", sha256: "a".repeat(64), mediaType: "image/gif" };
    expect(issuesOf(registry.validatePersonalData({ photographs: [photo] }))).toEqual([
      { path: "/photographs/0/mediaType", message: "must be equal to one of the allowed values" },
    ]);
  });

  it("a record that hands over more than one person or names a placeholder", () => {
    const record = resolvePlaceholders(exampleOf("handover.completed").handoverRecord as Json);
    expect(issuesOf(registry.validateHandoverRecord({ ...record, personsHandedOver: 2 }))).toEqual([
      { path: "/personsHandedOver", message: "must be equal to constant" },
    ]);
    const raw = exampleOf("handover.completed").handoverRecord as Json;
    expect(issuesOf(registry.validateHandoverRecord(raw)).map((i) => i.path)).toContain(
      "/proposalId",
    );
  });
});

describe("validation issues of the journey", () => {
  it("never contain the offending value", async () => {
    const pdIssues = issuesOf(
      registry.validatePersonalData({
        names: { given: CANARY.repeat(20), family: 7, [CANARY]: CANARY },
        sex: CANARY,
        dateOfBirth: { value: CANARY, approximate: CANARY },
        familyContacts: [{ relationship: CANARY, name: CANARY, phone: CANARY }],
        homeAddress: { country: CANARY, [CANARY]: CANARY },
        [CANARY]: CANARY,
      }),
    );
    expect(pdIssues.length).toBeGreaterThan(6);
    expect(JSON.stringify(pdIssues)).not.toContain(CANARY);

    const example = exampleOf("victim.identified");
    const jwe = await encrypt(example.personalData as Json);
    const bodyIssues = issuesOf(
      registry.validateBody("victim.identified", 1, {
        ...example.body,
        circumstances: CANARY.repeat(200),
        languages: [CANARY],
        personalData: { ...jwe, iv: CANARY, [CANARY]: CANARY },
        [CANARY]: CANARY,
      }),
    );
    expect(bodyIssues.length).toBeGreaterThan(3);
    expect(JSON.stringify(bodyIssues)).not.toContain(CANARY);

    const recordIssues = issuesOf(
      registry.validateHandoverRecord({
        caseRef: CANARY,
        proposalId: CANARY,
        escorts: [{ role: CANARY, agency: CANARY, count: CANARY }],
        notes: CANARY.repeat(100),
        [CANARY]: CANARY,
      }),
    );
    expect(recordIssues.length).toBeGreaterThan(4);
    expect(JSON.stringify(recordIssues)).not.toContain(CANARY);
  });
});
