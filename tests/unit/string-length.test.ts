/**
 * The gateway's `maxLength` / `minLength` keyword (src/schemas/string-length.ts) must give
 * exactly ajv's verdicts and errors: lengths in code points, so that a text outside the Basic
 * Multilingual Plane (an astral character is two UTF-16 code units) is held to the same limit a
 * partner's validator holds it to. Compared here with ajv's own keyword on strings built around
 * each limit, where the fast paths (the UTF-16 length alone) and the count meet.
 */
import { fileURLToPath } from "node:url";
import Ajv2020Module from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { describe, expect, it } from "vitest";
import { loadSchemaRegistry, readSchemaFiles } from "../../src/config/schema-files.ts";
import { SCHEMA_ID_BASE } from "../../src/schemas/schema-registry.ts";
import { stringLengthKeyword } from "../../src/schemas/string-length.ts";
import { CASE_NOTICE_BODY } from "../helpers/protocol-fixtures.ts";

type Ajv2020Class = typeof Ajv2020Module.default;
const Ajv2020: Ajv2020Class =
  (Ajv2020Module as unknown as { default?: Ajv2020Class }).default ??
  (Ajv2020Module as unknown as Ajv2020Class);
type AddFormats = typeof addFormatsModule.default;
const addFormats: AddFormats =
  (addFormatsModule as unknown as { default?: AddFormats }).default ??
  (addFormatsModule as unknown as AddFormats);

/** ajv as the registry configures it, with ajv's own length keywords or with ours. */
function makeAjv(ours: boolean) {
  const ajv = new Ajv2020({ strict: true, allErrors: true });
  addFormats(ajv);
  if (ours) {
    ajv.removeKeyword("maxLength").removeKeyword("minLength").addKeyword(stringLengthKeyword);
  }
  return ajv;
}

const ASTRAL = "\u{1F600}"; // two UTF-16 code units, one code point
const LONE_HIGH = "\uD83D"; // a high surrogate with no low one after it: one code point

/** Strings of every mix of single-unit and astral characters from 0 to `max` code points. */
function samples(max: number): string[] {
  const out = new Set<string>();
  for (let points = 0; points <= max; points++) {
    for (let astral = 0; astral <= points; astral++) {
      out.add(ASTRAL.repeat(astral) + "a".repeat(points - astral));
      out.add("a".repeat(points - astral) + ASTRAL.repeat(astral));
    }
    if (points > 0) out.add("a".repeat(points - 1) + LONE_HIGH);
  }
  return [...out];
}

function validators(schema: object) {
  return { ours: makeAjv(true).compile(schema), theirs: makeAjv(false).compile(schema) };
}

describe("maxLength / minLength without counting what the UTF-16 length decides", () => {
  const LIMITS = [0, 1, 2, 3, 5, 8];
  it.each(
    (["maxLength", "minLength"] as const).flatMap((keyword) =>
      LIMITS.map((limit) => ({ keyword, limit })),
    ),
  )("gives ajv's verdicts and errors for $keyword $limit", ({ keyword, limit }) => {
    const { ours, theirs } = validators({ type: "string", [keyword]: limit });
    let refused = 0;
    for (const text of samples(limit * 2 + 3)) {
      const expected = theirs(text);
      expect(ours(text), JSON.stringify(text)).toBe(expected);
      expect(ours.errors ?? null).toEqual(theirs.errors ?? null);
      if (!expected) refused++;
    }
    // minLength 0 refuses nothing; every other limit refuses some sample.
    if (keyword === "maxLength" || limit > 0) expect(refused).toBeGreaterThan(0);
  });

  it("counts code points, not UTF-16 units, where the length does not decide", () => {
    const { ours } = validators({ type: "string", minLength: 3, maxLength: 3 });
    expect(ours(ASTRAL.repeat(3))).toBe(true); // 6 units, 3 code points
    expect(ours(ASTRAL.repeat(2))).toBe(false); // 4 units, 2 code points
    expect(ours(ASTRAL.repeat(4))).toBe(false); // 8 units, 4 code points
    expect(ours.errors?.[0]).toMatchObject({
      keyword: "maxLength",
      params: { limit: 3 },
      message: "must NOT have more than 3 characters",
    });
  });

  it.each([
    { type: "string", maxLength: 3, pattern: "^a+$" },
    { type: "string", minLength: 4, pattern: "^a+$" },
    { type: "string", minLength: 2, maxLength: 3, pattern: "^[A-Z]+$" },
    { type: "string", minLength: 30, format: "date-time" },
    { type: "string", maxLength: 5, format: "email", pattern: "^x" },
  ])("reports in ajv's order beside pattern and format (%j)", (schema) => {
    // Partners see the order: the issues of a 400 answer and of a rejection receipt.
    const { ours, theirs } = validators(schema);
    let both = 0;
    for (const text of ["", "a", "bbbbb", "BB", "b".repeat(40), "aaaa", "not-a-date", "x@y.z"]) {
      expect(ours(text), JSON.stringify(text)).toBe(theirs(text));
      expect(ours.errors ?? null, JSON.stringify(text)).toEqual(theirs.errors ?? null);
      if ((theirs.errors?.length ?? 0) > 1) both++;
    }
    expect(both).toBeGreaterThan(0); // some text broke the length and another keyword at once
  });

  it("gives the schema registry's issues as ajv's own keyword does, in ajv's order", () => {
    // A case notice that breaks length limits beside patterns and formats, in several places.
    const body = structuredClone(CASE_NOTICE_BODY) as Record<string, unknown>;
    const victims = body.victims as Record<string, unknown>;
    victims.nationalities = ["Vietnam", "V", "\u{1F600}\u{1F600}\u{1F600}"];
    body.summary = "x".repeat(5000);
    const incident = body.incident as Record<string, unknown>;
    incident.occurredFrom = "tomorrow, or a long time from now".repeat(3);
    const registry = loadSchemaRegistry();
    const result = registry.validateBody("case.notice", 1, body);
    expect(result?.ok).toBe(false);

    const plain = makeAjv(false);
    const dir = fileURLToPath(new URL("../../schemas/", import.meta.url));
    for (const { document } of readSchemaFiles(dir)) plain.addSchema(document as object);
    const validate = plain.getSchema(`${SCHEMA_ID_BASE}case.notice/v1.json`);
    expect(validate).toBeDefined();
    expect(validate?.(body)).toBe(false);
    const expected: Array<{ path: string; message: string | undefined }> = [];
    for (const e of validate?.errors ?? []) {
      if (e.keyword === "if") continue;
      const issue = { path: e.instancePath, message: e.message };
      if (!expected.some((x) => x.path === issue.path && x.message === issue.message)) {
        expected.push(issue);
      }
    }
    expect(expected.length).toBeGreaterThan(3);
    expect(result?.ok === false ? result.issues : []).toEqual(expected);
  });

  it("holds a body's text to its limit in code points", () => {
    // A summary of as many astral characters as its maxLength is twice that many UTF-16 units
    // and passes; one more fails.
    const registry = loadSchemaRegistry();
    const issuesAt = (summary: string) => {
      const result = registry.validateBody("case.notice", 1, { summary });
      return result?.ok === false
        ? result.issues.filter((i) => i.path === "/summary").map((i) => i.message)
        : [];
    };
    const limit = summaryLimit(registry);
    expect(issuesAt(ASTRAL.repeat(limit))).toEqual([]);
    expect(issuesAt(ASTRAL.repeat(limit + 1))).toEqual([
      `must NOT have more than ${limit} characters`,
    ]);
  });
});

function summaryLimit(registry: ReturnType<typeof loadSchemaRegistry>): number {
  // Found by probing rather than read from the files, so the test follows the schema.
  const fits = (n: number) => {
    const result = registry.validateBody("case.notice", 1, { summary: "a".repeat(n) });
    return !(result?.ok === false && result.issues.some((i) => i.path === "/summary"));
  };
  let low = 1;
  let high = 1;
  while (fits(high)) high *= 2;
  while (high - low > 1) {
    const mid = Math.floor((low + high) / 2);
    if (fits(mid)) low = mid;
    else high = mid;
  }
  return low;
}
