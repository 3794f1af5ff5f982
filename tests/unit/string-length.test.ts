/**
 * The gateway's `maxLength` / `minLength` keyword (src/schemas/string-length.ts) must give
 * exactly ajv's verdicts and errors: lengths in code points, so that a text outside the Basic
 * Multilingual Plane (an astral character is two UTF-16 code units) is held to the same limit a
 * partner's validator holds it to. Compared here with ajv's own keyword on strings built around
 * each limit, where the fast paths (the UTF-16 length alone) and the count meet.
 */
import Ajv2020Module from "ajv/dist/2020.js";
import { describe, expect, it } from "vitest";
import { loadSchemaRegistry } from "../../src/config/schema-files.ts";
import { stringLengthKeyword } from "../../src/schemas/string-length.ts";

type Ajv2020Class = typeof Ajv2020Module.default;
const Ajv2020: Ajv2020Class =
  (Ajv2020Module as unknown as { default?: Ajv2020Class }).default ??
  (Ajv2020Module as unknown as Ajv2020Class);

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
  const ours = new Ajv2020({ strict: true, allErrors: true });
  ours.removeKeyword("maxLength").removeKeyword("minLength").addKeyword(stringLengthKeyword);
  const theirs = new Ajv2020({ strict: true, allErrors: true });
  return { ours: ours.compile(schema), theirs: theirs.compile(schema) };
}

describe("maxLength / minLength without counting what the UTF-16 length decides", () => {
  it.each([0, 1, 2, 3, 5, 8])("gives ajv's verdicts and errors for maxLength %i", (limit) => {
    const { ours, theirs } = validators({ type: "string", maxLength: limit });
    let refused = 0;
    for (const text of samples(limit * 2 + 3)) {
      const expected = theirs(text);
      expect(ours(text), JSON.stringify(text)).toBe(expected);
      expect(ours.errors ?? null).toEqual(theirs.errors ?? null);
      if (!expected) refused++;
    }
    expect(refused).toBeGreaterThan(0);
  });

  it.each([0, 1, 2, 3, 5, 8])("gives ajv's verdicts and errors for minLength %i", (limit) => {
    const { ours, theirs } = validators({ type: "string", minLength: limit });
    let refused = 0;
    for (const text of samples(limit * 2 + 3)) {
      const expected = theirs(text);
      expect(ours(text), JSON.stringify(text)).toBe(expected);
      expect(ours.errors ?? null).toEqual(theirs.errors ?? null);
      if (!expected) refused++;
    }
    if (limit > 0) expect(refused).toBeGreaterThan(0);
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

  it("is what the schema registry validates with", () => {
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
