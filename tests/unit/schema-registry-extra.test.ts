/**
 * The two schemas of the registry that are not message types: the plaintext of a personalData
 * JWE (personal-data) and the payload of a handover record JWS (handover-record). Required like
 * common, envelope and receipt; validated through their own functions, never as bodies.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { readSchemaFiles } from "../../src/config/schema-files.ts";
import {
  createSchemaRegistry,
  type ValidationIssue,
  type ValidationResult,
} from "../../src/schemas/schema-registry.ts";

const dir = fileURLToPath(new URL("../../schemas/", import.meta.url));
const files = readSchemaFiles(dir);
const registry = createSchemaRegistry(files, { source: dir });
const BASE = "https://liaison-gateway.example/schemas/";

/** Stands for a victim's personal data: must never show up in an issue. */
const SECRET = "LO-THI-SECRET-MAI-2010";

function issuesOf(result: ValidationResult): ValidationIssue[] {
  return result.ok ? [] : result.issues;
}

const personalData = {
  names: { given: "Thị Mai", family: "Lò", otherNames: ["Mai"] },
  sex: "female",
  dateOfBirth: { value: "2010-05-14", approximate: false },
  placeOfBirth: { country: "VN", adminArea: "Lao Cai", locality: "Bat Xat" },
  identityDocuments: [
    { documentType: "birth-certificate", number: "107/2010", issuingCountry: "VN" },
  ],
  familyContacts: [
    {
      relationship: "mother",
      name: "Lò Thị Hoa",
      phone: "+84900000231",
      address: { line1: "Thôn 2", locality: "Bát Xát", adminArea: "Lao Cai", country: "VN" },
    },
  ],
  guardian: { name: "Zhang Lifang", role: "child-protection-officer" },
  languagesSpoken: ["vi", "blt"],
};

const handoverRecord = {
  caseRef: "CN-HEKOU-2026-0107",
  proposalId: "0194f3a2-0000-7000-8000-000000000007",
  handedOverAt: "2026-12-15T02:20:00Z",
  borderCrossingId: "CN-VN-HEKOU-LAOCAI",
  handedOverBy: "CN-MPS-HEKOU",
  receivedBy: "VN-BGC-LAOCAI",
  escorts: [{ role: "police-officer", agency: "Hekou Border Police Station", count: 2 }],
  documentsHandedOver: ["travel-certificate"],
  personsHandedOver: 1,
};

describe("schema registry: personal-data and handover-record", () => {
  it("are published but are not message types", () => {
    const docs = registry.documents();
    expect(docs).toHaveProperty([`${BASE}personal-data/v1.json`]);
    expect(docs).toHaveProperty([`${BASE}handover-record/v1.json`]);
    const types = registry.types().map((t) => t.type);
    expect(types).not.toContain("personal-data");
    expect(types).not.toContain("handover-record");
    expect(registry.validateBody("personal-data", 1, personalData)).toBeUndefined();
    expect(registry.validateBody("handover-record", 1, handoverRecord)).toBeUndefined();
  });

  it.each(["personal-data", "handover-record", "common", "envelope", "receipt", "receipt-batch"])(
    "are required: a registry without %s.v1.json fails to start, naming the file",
    (name) => {
      const without = files.filter((f) => f.file !== `${name}.v1.json`);
      expect(without.length).toBe(files.length - 1);
      expect(() => createSchemaRegistry(without, { source: "the test" })).toThrow(
        `schema registry: ${name}.v1.json missing in the test`,
      );
    },
  );

  it("the examples inside the two schemas validate", () => {
    const docs = registry.documents() as Record<string, { examples: unknown[] }>;
    for (const example of docs[`${BASE}personal-data/v1.json`]?.examples ?? []) {
      expect(registry.validatePersonalData(example)).toEqual({ ok: true });
    }
    for (const example of docs[`${BASE}handover-record/v1.json`]?.examples ?? []) {
      expect(registry.validateHandoverRecord(example)).toEqual({ ok: true });
    }
  });
});

describe("validatePersonalData", () => {
  it("accepts personal data as far as known, and any one member alone", () => {
    expect(registry.validatePersonalData(personalData)).toEqual({ ok: true });
    expect(registry.validatePersonalData({ sex: "female" })).toEqual({ ok: true });
    expect(registry.validatePersonalData({ names: { given: "Aung" } })).toEqual({ ok: true });
  });

  it("refuses what is not an object, an empty object and unknown members", () => {
    expect(issuesOf(registry.validatePersonalData("Lò Thị Mai"))).toEqual([
      { path: "", message: "must be object" },
    ]);
    expect(issuesOf(registry.validatePersonalData({}))).toEqual([
      { path: "", message: "must NOT have fewer than 1 properties" },
    ]);
    expect(issuesOf(registry.validatePersonalData({ ...personalData, ethnicity: "x" }))).toEqual([
      { path: "", message: "must NOT have additional properties" },
    ]);
    expect(issuesOf(registry.validatePersonalData({ names: {} }))).toEqual([
      { path: "/names", message: "must NOT have fewer than 1 properties" },
    ]);
  });

  it("points at the broken member with a JSON pointer", () => {
    const broken = {
      ...personalData,
      dateOfBirth: { value: "2010-02-30", approximate: false },
      familyContacts: [{ relationship: "neighbour", name: "x", phone: "call me" }],
      languagesSpoken: ["vietnamese"],
    };
    expect(issuesOf(registry.validatePersonalData(broken))).toEqual([
      { path: "/dateOfBirth/value", message: 'must match format "date"' },
      {
        path: "/familyContacts/0/relationship",
        message: "must be equal to one of the allowed values",
      },
      { path: "/familyContacts/0/phone", message: 'must match pattern "^\\+?[0-9 ()./-]+$"' },
      { path: "/languagesSpoken/0", message: "must be equal to one of the allowed values" },
    ]);
  });

  it("requires the guardian's role and name, and a document's number", () => {
    const issues = issuesOf(
      registry.validatePersonalData({
        guardian: { name: "x" },
        identityDocuments: [{ documentType: "passport", issuingCountry: "VN" }],
      }),
    );
    expect(issues).toEqual([
      { path: "/identityDocuments/0", message: "must have required property 'number'" },
      { path: "/guardian", message: "must have required property 'role'" },
    ]);
  });

  it("never puts a value in an issue", () => {
    const issues = issuesOf(
      registry.validatePersonalData({
        names: { given: SECRET.repeat(10), [SECRET]: SECRET },
        aliases: [SECRET, SECRET],
        sex: SECRET,
        homeAddress: { country: SECRET },
        guardian: { name: SECRET, role: SECRET, phone: SECRET },
        [SECRET]: SECRET,
      }),
    );
    expect(issues.length).toBeGreaterThanOrEqual(7);
    expect(JSON.stringify(issues)).not.toContain(SECRET);
  });
});

describe("validateHandoverRecord", () => {
  it("accepts a record", () => {
    expect(registry.validateHandoverRecord(handoverRecord)).toEqual({ ok: true });
    const { documentsHandedOver: _d, ...minimal } = handoverRecord;
    expect(registry.validateHandoverRecord(minimal)).toEqual({ ok: true });
  });

  it("requires what the case compares: case, proposal and both parties", () => {
    const {
      caseRef: _c,
      proposalId: _p,
      handedOverBy: _b,
      receivedBy: _r,
      ...rest
    } = handoverRecord;
    expect(issuesOf(registry.validateHandoverRecord(rest))).toEqual(
      ["caseRef", "proposalId", "handedOverBy", "receivedBy"].map((name) => ({
        path: "",
        message: `must have required property '${name}'`,
      })),
    );
  });

  it("refuses personal data and bad values, pointing at them", () => {
    expect(
      issuesOf(registry.validateHandoverRecord({ ...handoverRecord, personName: "x" })),
    ).toEqual([{ path: "", message: "must NOT have additional properties" }]);
    expect(
      issuesOf(
        registry.validateHandoverRecord({
          ...handoverRecord,
          handedOverAt: "2026-12-15T09:20:00+07:00",
          escorts: [],
          personsHandedOver: 2,
        }),
      ).map((i) => i.path),
    ).toEqual(["/handedOverAt", "/escorts", "/personsHandedOver"]);
  });

  it("never puts a value in an issue", () => {
    const issues = issuesOf(
      registry.validateHandoverRecord({
        ...handoverRecord,
        caseRef: SECRET,
        receivedBy: SECRET,
        notes: SECRET.repeat(60),
        escorts: [{ role: "guardian", agency: SECRET, count: 1, name: SECRET }],
        [SECRET]: SECRET,
      }),
    );
    expect(issues.length).toBeGreaterThanOrEqual(4);
    expect(JSON.stringify(issues)).not.toContain(SECRET);
  });
});

describe("the shared code list of countries", () => {
  it("accepts the ISO 3166-1 alpha-2 codes and refuses others; a nationality may also be XX", () => {
    const ok = (country: string) => registry.validatePersonalData({ placeOfBirth: { country } }).ok;
    for (const code of ["CN", "VN", "TH", "KH", "LA", "MM", "SS", "AX"])
      expect(ok(code)).toBe(true);
    for (const code of ["ZZ", "XK", "EU", "UK", "XX"]) expect(ok(code)).toBe(false);
    const example = JSON.parse(
      readFileSync(
        new URL("../../docs/examples/messages/01-victim.identified.json", import.meta.url),
        "utf8",
      ),
    ) as { body: Record<string, unknown> };
    // The example body lacks only personalData (the gateway adds it): look at the nationality.
    const nationalityIssues = (presumedNationality: string) => {
      const result = registry.validateBody("victim.identified", 1, {
        ...example.body,
        presumedNationality,
      });
      return result?.ok === false
        ? result.issues.filter((i) => i.path.startsWith("/presumedNationality"))
        : [];
    };
    expect(nationalityIssues("VN")).toEqual([]);
    expect(nationalityIssues("XX")).toEqual([]);
    expect(nationalityIssues("ZZ")).not.toEqual([]);
  });
});
