import { describe, expect, it } from "vitest";
import {
  checkJsonValue,
  escapePointerSegment,
  jsonTextDepth,
  MAX_JSON_DEPTH,
  parseJsonText,
  tooDeep,
  UNSTORABLE_NAME,
  UNSTORABLE_STRING,
} from "../../src/protocol/json-limits.ts";

/** An array nested `depth` levels deep: `[[...]]`. */
const nested = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`;

describe("jsonTextDepth", () => {
  it("counts objects and arrays, the document itself as level 1", () => {
    expect(jsonTextDepth("1")).toBe(0);
    expect(jsonTextDepth('"x"')).toBe(0);
    expect(jsonTextDepth("{}")).toBe(1);
    expect(jsonTextDepth('{"a":[{}],"b":[]}')).toBe(3);
    expect(jsonTextDepth(nested(7))).toBe(7);
  });

  it("passes text exactly at the limit and stops one level over it", () => {
    expect(jsonTextDepth(nested(MAX_JSON_DEPTH))).toBe(MAX_JSON_DEPTH);
    expect(jsonTextDepth(nested(MAX_JSON_DEPTH + 1))).toBe(MAX_JSON_DEPTH + 1);
    expect(jsonTextDepth(nested(5), 4)).toBe(5);
    expect(jsonTextDepth(nested(4), 4)).toBe(4);
  });

  it("does not count brackets inside strings, escaped quotes and backslashes included", () => {
    expect(jsonTextDepth(`["${"[{".repeat(100)}"]`)).toBe(1);
    expect(jsonTextDepth(`{"a\\"[[[":"\\"{{{"}`)).toBe(1);
    // An escaped backslash ends before the quote, which then closes the string.
    expect(jsonTextDepth(`["\\\\",[[]]]`)).toBe(3);
    expect(jsonTextDepth(`["\\\\\\"[[[",[]]`)).toBe(2);
  });

  it("answers as a character-by-character scan does, on 20,000 texts of brackets, quotes and backslashes", () => {
    // The plain scan the string-skipping one replaced, as the reference.
    const reference = (text: string, limit: number) => {
      let depth = 0;
      let deepest = 0;
      let inString = false;
      for (let i = 0; i < text.length; i++) {
        const c = text[i];
        if (inString) {
          if (c === "\\") i++;
          else if (c === '"') inString = false;
        } else if (c === '"') inString = true;
        else if (c === "{" || c === "[") {
          depth++;
          if (depth > deepest) {
            deepest = depth;
            if (deepest > limit) return deepest;
          }
        } else if (c === "}" || c === "]") depth--;
      }
      return deepest;
    };
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const alphabet = ['"', '"', "\\", "\\", "{", "[", "}", "]", "a", ":"];
    for (let n = 0; n < 20_000; n++) {
      const length = Math.floor(random() * 40);
      let text = "";
      for (let i = 0; i < length; i++) text += alphabet[Math.floor(random() * alphabet.length)];
      const limit = 1 + Math.floor(random() * 6);
      expect([text, jsonTextDepth(text, limit)]).toEqual([text, reference(text, limit)]);
    }
  });

  it("refuses 100,000 levels at once, without a RangeError", () => {
    const text = nested(100_000);
    expect(jsonTextDepth(text)).toBe(MAX_JSON_DEPTH + 1);
    expect(parseJsonText(text)).toEqual({ ok: false, reason: "too_deep" });
    expect(parseJsonText(`${'{"a":'.repeat(100_000)}1${"}".repeat(100_000)}`)).toEqual({
      ok: false,
      reason: "too_deep",
    });
  });
});

describe("parseJsonText", () => {
  it("parses JSON within the limit and tells text that is not JSON from text too deep", () => {
    expect(parseJsonText('{"a":[1]}')).toEqual({ ok: true, value: { a: [1] } });
    expect(parseJsonText(nested(MAX_JSON_DEPTH)).ok).toBe(true);
    expect(parseJsonText("{not json")).toEqual({ ok: false, reason: "not_json" });
    expect(parseJsonText("")).toEqual({ ok: false, reason: "not_json" });
    expect(parseJsonText(nested(MAX_JSON_DEPTH + 1))).toEqual({ ok: false, reason: "too_deep" });
  });
});

describe("checkJsonValue", () => {
  it("accepts ordinary documents, a well-formed surrogate pair included", () => {
    expect(checkJsonValue({ a: ["x", 1, null, true, { b: "😀 Lào Cai" }] })).toBeNull();
    expect(checkJsonValue(JSON.parse('{"emoji":"\\ud83d\\ude00"}'))).toBeNull();
    expect(checkJsonValue(42)).toBeNull();
  });

  it("points at the first string holding U+0000 or a lone surrogate: values, array items", () => {
    expect(checkJsonValue({ a: { b: "x\u0000y" } })).toEqual({
      kind: "string",
      path: "/a/b",
      message: UNSTORABLE_STRING,
    });
    expect(checkJsonValue({ list: ["fine", "\ud800"] })?.path).toBe("/list/1");
    expect(checkJsonValue(["\udfff"])?.path).toBe("/0");
    expect(checkJsonValue("\u0000")?.path).toBe("");
    // The first in document order.
    expect(checkJsonValue({ a: ["ok", { b: "\u0000" }], c: "\u0000" })?.path).toBe("/a/1/b");
  });

  it("escapes pointer segments per RFC 6901", () => {
    expect(checkJsonValue({ "a/b": { "c~d": "\u0000" } })?.path).toBe("/a~1b/c~0d");
    expect(escapePointerSegment("~/~1")).toBe("~0~1~01");
  });

  it("names the object holding an offending member name, never the name itself", () => {
    const issue = checkJsonValue({ party: { "Nguyen\u0000": "x" } });
    expect(issue).toEqual({ kind: "name", path: "/party", message: UNSTORABLE_NAME });
    expect(checkJsonValue({ "\ud800": 1 })?.path).toBe("");
    // A name is checked before its value.
    expect(checkJsonValue({ a: 1, "b\u0000": "\u0000" })?.kind).toBe("name");
  });

  it("refuses a value nested deeper than the limit, at the first container over it", () => {
    const atLimit = JSON.parse(nested(MAX_JSON_DEPTH));
    expect(checkJsonValue(atLimit)).toBeNull();
    expect(checkJsonValue({ a: atLimit })).toEqual({
      kind: "depth",
      path: `/a${"/0".repeat(MAX_JSON_DEPTH - 1)}`,
      message: tooDeep(MAX_JSON_DEPTH),
    });
    expect(checkJsonValue({ a: { b: {} } }, 2)?.path).toBe("/a/b");
  });

  it("walks 100,000 levels without a RangeError", () => {
    let deep: unknown = "\u0000";
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(checkJsonValue(deep)?.kind).toBe("depth");
    const issue = checkJsonValue(deep, Number.POSITIVE_INFINITY);
    expect(issue?.kind).toBe("string");
    expect(issue?.path).toBe("/0".repeat(100_000));
  });
});
