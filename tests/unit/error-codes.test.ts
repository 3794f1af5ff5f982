/**
 * One closed set of error codes, written down in three places that must not drift apart:
 *
 * - src/protocol/errors.ts: WIRE_ERROR_CODES and LOCAL_ERROR_CODES (the source);
 * - schemas/common.v1.json: `$defs.errorCode.enum`, the wire codes partners validate against;
 * - docs/errors.md: one `## <code>` section per code, and one row per code in its Contents table
 *   (kind and HTTP status), the status being the one src/http/problem.ts answers with.
 *
 * Every assertion names the codes that are missing or extra, so a failure says what to fix.
 */
import { readFileSync } from "node:fs";
import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { problem } from "../../src/http/problem.ts";
import { type ErrorCode, LOCAL_ERROR_CODES, WIRE_ERROR_CODES } from "../../src/protocol/errors.ts";

const commonSchema = JSON.parse(
  readFileSync(new URL("../../schemas/common.v1.json", import.meta.url), "utf8"),
) as { $defs?: { errorCode?: { enum?: unknown } } };
const errorsDoc = readFileSync(new URL("../../docs/errors.md", import.meta.url), "utf8");

const WIRE: readonly string[] = WIRE_ERROR_CODES;
const LOCAL: readonly string[] = LOCAL_ERROR_CODES;
const ALL: readonly string[] = [...WIRE, ...LOCAL];

/** The `## ` sections of docs/errors.md that are not about one code. */
const NON_CODE_SECTIONS = ["Contents", "Where codes appear"];

/** Values that occur more than once, each named once. */
function duplicates(values: readonly string[]): string[] {
  return [...new Set(values.filter((v, i) => values.indexOf(v) !== i))];
}

/** What `actual` lacks of `expected`, and what it has beyond it. */
function difference(expected: readonly string[], actual: readonly string[]) {
  return {
    missing: expected.filter((v) => !actual.includes(v)),
    extra: actual.filter((v) => !expected.includes(v)),
  };
}

/** The lines of the document outside fenced code blocks (a `## ` in an example is no heading). */
function proseLines(markdown: string): string[] {
  const lines: string[] = [];
  let fenced = false;
  for (const line of markdown.split("\n")) {
    if (/^\s*(```|~~~)/.test(line)) {
      fenced = !fenced;
      continue;
    }
    if (!fenced) lines.push(line);
  }
  return lines;
}

/** Level-2 headings, in document order (repeats kept, so duplicates can be found). */
function sections(markdown: string): string[] {
  return proseLines(markdown)
    .map((line) => /^## (.*?)\s*$/.exec(line)?.[1])
    .filter((title): title is string => title !== undefined);
}

interface ContentsRow {
  /** The code as the link text shows it. */
  code: string;
  /** The link target, `#<anchor>`, without the `#`. */
  anchor: string;
  kind: string;
  http: string;
}

/**
 * The table of the `## Contents` section. Columns are found by their header (`code`, `kind`,
 * `HTTP`), not by position; a code cell must be the link "[`<code>`](#<code>)".
 */
function contentsTable(markdown: string): ContentsRow[] {
  const lines = proseLines(markdown);
  const start = lines.indexOf("## Contents");
  if (start < 0) throw new Error("docs/errors.md has no ## Contents section");
  const end = lines.findIndex((line, i) => i > start && line.startsWith("## "));
  const table = lines
    .slice(start + 1, end < 0 ? undefined : end)
    .filter((line) => line.trimStart().startsWith("|"));
  const cells = (line: string) =>
    line
      .trim()
      .replace(/^\||\|$/g, "")
      .split("|")
      .map((cell) => cell.trim());
  const [header, separator, ...body] = table;
  if (header === undefined || separator === undefined || !/^[\s|:-]+$/.test(separator)) {
    throw new Error("the Contents section of docs/errors.md has no table with a header row");
  }
  const columns = cells(header);
  const column = (name: string) => {
    const index = columns.indexOf(name);
    if (index < 0) throw new Error(`the Contents table has no "${name}" column`);
    return index;
  };
  const [codeAt, kindAt, httpAt] = [column("code"), column("kind"), column("HTTP")];
  return body.map((line) => {
    const row = cells(line);
    const codeCell = row[codeAt] ?? "";
    const link = /^\[`([^`]+)`\]\(#([^)]*)\)$/.exec(codeCell);
    if (link === null || link[1] === undefined || link[2] === undefined) {
      throw new Error(`Contents row "${line}": code cell is not [\`<code>\`](#<code>)`);
    }
    return { code: link[1], anchor: link[2], kind: row[kindAt] ?? "", http: row[httpAt] ?? "" };
  });
}

/**
 * The HTTP column of the Contents table:
 *
 * - `NNN`: the status problem() answers with for the code;
 * - `(NNN)`: a local code that is never an HTTP answer at all (config_invalid stops the gateway
 *   before its server runs; delivery_failed is only logged). NNN must still be the status of
 *   the code in problem.ts's STATUS, which gives every code one;
 * - `—` (or anything else): refused. STATUS is total over ErrorCode, so every code has a status
 *   to show; a code never served writes it in parentheses.
 */
function parseHttp(cell: string): { status: number; served: boolean } | undefined {
  const match = /^([1-5][0-9]{2})$|^\(([1-5][0-9]{2})\)$/.exec(cell);
  if (match === null) return undefined;
  return { status: Number(match[1] ?? match[2]), served: match[1] !== undefined };
}

/** The status src/http/problem.ts answers with, read through problem() itself. */
async function statusOf(code: string): Promise<number> {
  const app = new Hono().get("/probe", (c) => problem(c, code as ErrorCode, "probe"));
  const res = await app.request("/probe");
  const body = (await res.json()) as { status?: unknown; code?: unknown };
  expect(body.code, `problem() for ${code}: code member`).toBe(code);
  expect(body.status, `problem() for ${code}: status member differs from the HTTP status`).toBe(
    res.status,
  );
  return res.status;
}

describe("error codes: src/protocol/errors.ts", () => {
  it("lists every code once, in one of the two unions only", () => {
    expect(duplicates(WIRE), "codes repeated in WIRE_ERROR_CODES").toEqual([]);
    expect(duplicates(LOCAL), "codes repeated in LOCAL_ERROR_CODES").toEqual([]);
    expect(
      WIRE.filter((code) => LOCAL.includes(code)),
      "codes in both WIRE_ERROR_CODES and LOCAL_ERROR_CODES",
    ).toEqual([]);
  });
});

describe("error codes: schemas/common.v1.json", () => {
  it("$defs.errorCode.enum holds exactly the wire codes, each once", () => {
    const values = commonSchema.$defs?.errorCode?.enum;
    expect(Array.isArray(values), "schemas/common.v1.json has no $defs.errorCode.enum array").toBe(
      true,
    );
    const enumCodes = (values as unknown[]).map(String);
    expect(duplicates(enumCodes), "codes repeated in $defs.errorCode.enum").toEqual([]);
    const { missing, extra } = difference(WIRE, enumCodes);
    expect(missing, "wire codes missing from $defs.errorCode.enum").toEqual([]);
    expect(extra, "codes in $defs.errorCode.enum that are not in WIRE_ERROR_CODES").toEqual([]);
  });
});

describe("error codes: docs/errors.md", () => {
  const headings = sections(errorsDoc);

  it("has exactly one ## section per code", () => {
    const codeHeadings = headings.filter((title) => !NON_CODE_SECTIONS.includes(title));
    expect(duplicates(codeHeadings), "## sections that appear more than once").toEqual([]);
    const { missing, extra } = difference(ALL, codeHeadings);
    expect(missing, "codes without a ## section in docs/errors.md").toEqual([]);
    expect(
      extra,
      "## sections that are neither a code nor one of NON_CODE_SECTIONS (add the code, or list the section in the test)",
    ).toEqual([]);
  });

  it("keeps its own non-code sections", () => {
    const { missing } = difference(NON_CODE_SECTIONS, headings);
    expect(missing, "non-code ## sections the test expects but docs/errors.md lacks").toEqual([]);
  });

  const rows = contentsTable(errorsDoc);

  it("has one Contents row per code, linking to its section", () => {
    const listed = rows.map((row) => row.code);
    expect(duplicates(listed), "codes with more than one Contents row").toEqual([]);
    const { missing, extra } = difference(ALL, listed);
    expect(missing, "codes without a row in the Contents table").toEqual([]);
    expect(extra, "Contents rows for codes that are in neither union").toEqual([]);
    expect(
      rows.filter((row) => row.anchor !== row.code).map((row) => `${row.code} -> #${row.anchor}`),
      "Contents rows whose link does not point to #<code>",
    ).toEqual([]);
  });

  it("gives each code the kind of the union it is in", () => {
    const wrong = rows
      .filter((row) => ALL.includes(row.code))
      .filter((row) => row.kind !== (WIRE.includes(row.code) ? "wire" : "local"))
      .map((row) => `${row.code}: "${row.kind}"`);
    expect(wrong, "Contents rows whose kind is not the code's union (wire/local)").toEqual([]);
  });

  it("gives each code the HTTP status problem.ts answers with", async () => {
    const wrong: string[] = [];
    for (const row of rows.filter((r) => ALL.includes(r.code))) {
      const http = parseHttp(row.http);
      const status = await statusOf(row.code);
      if (http === undefined) {
        wrong.push(`${row.code}: "${row.http}" is not NNN or (NNN); problem.ts says ${status}`);
      } else if (http.status !== status) {
        wrong.push(`${row.code}: table says ${row.http}, problem.ts says ${status}`);
      } else if (!http.served && !LOCAL.includes(row.code)) {
        wrong.push(`${row.code}: (NNN) marks a local code never served; this is a wire code`);
      }
    }
    expect(wrong, "Contents rows whose HTTP status disagrees with problem.ts").toEqual([]);
  });
});
