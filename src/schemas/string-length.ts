/**
 * `maxLength` and `minLength` as JSON Schema defines them (a string's length in Unicode code
 * points) and ajv checks them, with the same errors, but without counting the code points of a
 * string whose UTF-16 length already decides the answer.
 *
 * ajv's own keyword counts every code point of every string it checks (its `ucs2length`, a loop
 * over each character), and a case notice's free-text fields made that count about a twentieth
 * of the gateway's CPU per message (docs/performance.md). A string of `n` UTF-16 code units holds
 * between ⌈n/2⌉ and `n` code points, so:
 * - `maxLength: m` holds whenever `n ≤ m`, and only a longer string is counted;
 * - `minLength: m` fails whenever `n < m`, holds whenever `n ≥ 2m`, and only a string in between
 *   is counted.
 * The count, where one is needed, is ajv's own function, so every verdict is the one ajv's
 * keyword would give; and the keyword runs where ajv's runs, before `pattern` and `format`, so
 * that the errors come in ajv's order too (partners see that order: the issues of a 400 answer
 * and of a rejection receipt, which keeps the first 32). `$data` references are not supported
 * (no schema of the project uses them, and without ajv's `$data` option a limit that is not an
 * integer is refused when the schema is compiled).
 */
import type { CodeKeywordDefinition, KeywordCxt } from "ajv";
import { _, str } from "ajv";
import ucs2lengthModule from "ajv/dist/runtime/ucs2length.js";

type CountFn = (text: string) => number;
const ucs2length: CountFn =
  (ucs2lengthModule as unknown as { default?: CountFn }).default ??
  (ucs2lengthModule as unknown as CountFn);

export const stringLengthKeyword: CodeKeywordDefinition = {
  keyword: ["maxLength", "minLength"],
  type: "string",
  // ajv's own keyword comes first among the string keywords (limitLength, then pattern, then
  // format); one added without `before` would run, and report, after them.
  before: "pattern",
  schemaType: "number",
  error: {
    // ajv's own messages and params, word for word (limitLength.ts).
    message: ({ keyword, schemaCode }) =>
      str`must NOT have ${keyword === "maxLength" ? "more" : "fewer"} than ${schemaCode} characters`,
    params: ({ schemaCode }) => _`{limit: ${schemaCode}}`,
  },
  code(cxt: KeywordCxt) {
    const { keyword, data, schemaCode, gen } = cxt;
    // No `code`: the validators are compiled in memory, never written out as standalone code.
    const count = gen.scopeValue("func", { ref: ucs2length });
    if (keyword === "maxLength") {
      cxt.fail(_`${data}.length > ${schemaCode} && ${count}(${data}) > ${schemaCode}`);
    } else {
      cxt.fail(
        _`${data}.length < ${schemaCode} || (${data}.length < 2 * ${schemaCode} && ${count}(${data}) < ${schemaCode})`,
      );
    }
  },
};
