/**
 * HTTP inputs: fast-check arbitraries of request plans for the local API (submits, party
 * documents, reads), each realised into one request with what the answer must be: `ok` (a
 * canonical request: 2xx), `refuse` (the API must not answer 2xx: a wrong or missing token, a
 * content type other than JSON for a submit, a string holding U+0000 or a lone surrogate, which
 * the protocol forbids) or `any` (any 2xx or 4xx problem). Tokens are written $API / $ADMIN and
 * filled in by the runner.
 */
import fc from "fast-check";

export type Expect = "ok" | "refuse" | "any";

export interface HttpInput {
  /** sender: Hekou (submits, party documents, reads); receiver: Lao Cai (reads). */
  target: "sender" | "receiver";
  method: string;
  path: string;
  headers: Array<[string, string]>;
  body?: Uint8Array;
  expect: Expect;
  /** Why `refuse` (or `ok`) is expected. */
  why: string;
  desc: string;
}

export interface HttpContext {
  sender: string;
  receiver: string;
  baseBody: Record<string, unknown>;
  /** Ids the sender answered 202 for: real ids to read. */
  accepted: string[];
  maxRequestBytes: number;
  /** Public keys (JWK with kid, alg) for party documents, and the receiver's (registered). */
  documentKeys: Array<Record<string, unknown>>;
  receiverKey: Record<string, unknown>;
  uuid(): string;
}

interface Generator<P> {
  name: string;
  weight: number;
  arb: fc.Arbitrary<P>;
  realize(plan: P, ctx: HttpContext): HttpInput;
}
const gens: Array<Generator<never>> = [];
function gen<P>(
  name: string,
  weight: number,
  arb: fc.Arbitrary<P>,
  realize: Generator<P>["realize"],
) {
  gens.push({ name, weight, arb, realize } as unknown as Generator<never>);
}

const enc = (s: string) => new TextEncoder().encode(s);
const short = (s: string, n = 60) => (s.length > n ? `${s.slice(0, n)}…(${s.length})` : s);

// --- authorization and content types ---------------------------------------------------------

type Level = "none" | "user" | "admin";
/** presents: the token inside; form: exact, lenient (a reading may accept it) or broken. */
const AUTH: Record<string, { value?: string[]; presents: "api" | "admin" | "x"; form: string }> = {
  api: { value: ["Bearer $API"], presents: "api", form: "exact" },
  admin: { value: ["Bearer $ADMIN"], presents: "admin", form: "exact" },
  none: { presents: "x", form: "broken" },
  wrong: { value: ["Bearer AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"], presents: "x", form: "broken" },
  "lower-case scheme": { value: ["bearer $API"], presents: "api", form: "lenient" },
  "upper-case scheme": { value: ["BEARER $API"], presents: "api", form: "lenient" },
  "two spaces": { value: ["Bearer  $API"], presents: "api", form: "lenient" },
  "trailing space": { value: ["Bearer $API "], presents: "api", form: "lenient" },
  tab: { value: ["Bearer\t$API"], presents: "api", form: "lenient" },
  basic: { value: ["Basic $API"], presents: "x", form: "broken" },
  "token only": { value: ["$API"], presents: "x", form: "broken" },
  "scheme only": { value: ["Bearer"], presents: "x", form: "broken" },
  "truncated token": { value: ["Bearer $API-1"], presents: "x", form: "broken" },
  "api then wrong": { value: ["Bearer $API", "Bearer nope"], presents: "api", form: "lenient" },
  "admin, lower-case": { value: ["bearer $ADMIN"], presents: "admin", form: "lenient" },
};
function authExpect(variant: string, level: Level): { expect: Expect; why: string } {
  const a = AUTH[variant] as (typeof AUTH)[string];
  if (level === "none") return { expect: "any", why: "" };
  const right = level === "user" ? "api" : "admin";
  if (a.presents !== right || a.form === "broken") {
    return {
      expect: "refuse",
      why: `authorization "${variant}" on a route for the ${right} token`,
    };
  }
  return { expect: a.form === "exact" ? "ok" : "any", why: "" };
}
function authHeaders(variant: string): Array<[string, string]> {
  return (AUTH[variant]?.value ?? []).map((v) => ["authorization", v]);
}
const authArb = fc.oneof(
  { weight: 6, arbitrary: fc.constant("api") },
  { weight: 2, arbitrary: fc.constantFrom(...Object.keys(AUTH)) },
);

/** Content types for a submit: exact, any (a JSON media type with parameters or in other case), refuse. */
const CONTENT_TYPES: Array<[string | null, Expect]> = [
  ["application/json", "ok"],
  ["application/json; charset=utf-8", "any"],
  ["application/json;charset=UTF-8", "any"],
  ["Application/JSON", "any"],
  ["application/json ; charset=utf-8", "any"],
  ["application/jsonx", "refuse"],
  ["application/json-patch+json", "refuse"],
  ["application/json5", "refuse"],
  ["application/jsonl", "refuse"],
  ["application/json-seq", "refuse"],
  ["application/json/../text", "refuse"],
  ["text/plain", "refuse"],
  ["text/json", "any"],
  ["application/x-www-form-urlencoded", "refuse"],
  ["multipart/form-data; boundary=x", "refuse"],
  ["", "refuse"],
  [null, "refuse"],
];
const ctArb = fc.oneof(
  { weight: 6, arbitrary: fc.constant(0) },
  { weight: 2, arbitrary: fc.nat(CONTENT_TYPES.length - 1) },
);

function combine(...parts: Array<{ expect: Expect; why: string }>): {
  expect: Expect;
  why: string;
} {
  const refuse = parts.find((p) => p.expect === "refuse");
  if (refuse !== undefined) return refuse;
  if (parts.every((p) => p.expect === "ok")) return { expect: "ok", why: "a canonical request" };
  return { expect: "any", why: "" };
}

// --- submits ----------------------------------------------------------------------------------

function baseSubmit(ctx: HttpContext): Record<string, unknown> {
  return {
    type: "case.notice",
    to: ctx.receiver,
    caseRef: "CN-HEKOU-2026-0042",
    body: ctx.baseBody,
  };
}
function submit(
  body: Uint8Array | string,
  desc: string,
  expect: { expect: Expect; why: string },
  auth = "api",
  ct = 0,
): HttpInput {
  const [type, ctExpect] = CONTENT_TYPES[ct] as [string | null, Expect];
  const headers = authHeaders(auth);
  if (type !== null) headers.push(["content-type", type]);
  const e = combine(
    expect,
    authExpect(auth, "user"),
    ctExpect === "refuse"
      ? { expect: "refuse", why: `content-type ${JSON.stringify(type)} is not application/json` }
      : { expect: ctExpect, why: "" },
  );
  return {
    target: "sender",
    method: "POST",
    path: "/v1/messages",
    headers,
    body: typeof body === "string" ? enc(body) : body,
    ...e,
    desc: `${desc}${auth === "api" ? "" : `, auth ${auth}`}${ct === 0 ? "" : `, content-type ${JSON.stringify(type)}`}`,
  };
}
const ANY = { expect: "any" as Expect, why: "" };

/** Odd strings as JSON text; `forbidden`: the protocol forbids them in any string. */
const ODD: Array<[string, string | number[], boolean]> = [
  ["NUL escape", "\\u0000", true],
  ["two NUL escapes", "a\\u0000b\\u0000", true],
  ["lone high surrogate", "\\ud800", true],
  ["lone low surrogate", "\\udfff", true],
  ["reversed surrogates", "\\udc00\\ud800", true],
  ["surrogate pair", "\\ud83d\\ude00", false],
  ["BOM", "\ufeff", false],
  ["RTL override", "\u202e", false],
  ["U+FFFF", "\\uffff", false],
  ["line separator", "\u2028", false],
  ["raw control char", "\u0001", false],
  ["invalid UTF-8 byte 0xFF", [0xff], false],
  ["invalid UTF-8 byte 0xC3", [0xc3], false],
  ["UTF-8-encoded surrogate (CESU)", [0xed, 0xa0, 0x80], false],
];

const SUBMIT_VALUES: Record<string, unknown[]> = {
  type: [
    "intel.request",
    "no.such",
    "CASE.NOTICE",
    "receipt",
    "",
    1,
    null,
    ["case.notice"],
    "a".repeat(70),
  ],
  to: [
    "$B",
    ["$B"],
    ["$B", "$B"],
    [],
    "$A",
    "KH-NOB-ODY",
    ["$B", "TH-RTP-FUZZ"],
    "vn-bgc-laocai",
    1,
    null,
  ],
  caseRef: ["", "x", "CN-HEKOU-2026-0042\n", "X".repeat(65), 1, null],
  schemaVersion: [0, 1, 2, 1.5, "1", -1, 1e308, null, 2 ** 53],
  inReplyTo: ["$UUID", "$UPPER", "", null, 1],
  handling: [
    {},
    { classification: "secret", onwardDissemination: "allowed" },
    { classification: "top" },
    null,
    [],
  ],
  body: [{}, [], null, "x", { summary: "x" }],
  extra: [1, null],
};
function resolve(ctx: HttpContext, v: unknown): unknown {
  if (Array.isArray(v)) return v.map((x) => resolve(ctx, x));
  if (typeof v !== "string") return v;
  const id = ctx.uuid();
  return v
    .replace("$B", ctx.receiver)
    .replace("$A", ctx.sender)
    .replace("$UUID", id)
    .replace("$UPPER", id.toUpperCase());
}

gen("submit-random-json", 8, fc.jsonValue({ maxDepth: 4 }), (json) => {
  const text = JSON.stringify(json);
  return submit(text, `random JSON ${short(text, 40)}`, ANY);
});

gen(
  "submit-mutated",
  14,
  fc.record({
    member: fc.constantFrom(...Object.keys(SUBMIT_VALUES)),
    op: fc.constantFrom("set", "set", "json", "delete"),
    k: fc.nat(),
    value: fc.jsonValue({ maxDepth: 2 }),
  }),
  ({ member, op, k, value }, ctx) => {
    const req = baseSubmit(ctx);
    let what: string;
    if (op === "delete") {
      delete req[member];
      what = `without ${member}`;
    } else {
      const pool = SUBMIT_VALUES[member] as unknown[];
      req[member] = op === "json" ? value : resolve(ctx, pool[k % pool.length]);
      what = `${member} = ${short(JSON.stringify(req[member]) ?? "undefined", 40)}`;
    }
    return submit(JSON.stringify(req), what, ANY);
  },
);

gen(
  "submit-odd-strings",
  8,
  fc.record({
    odd: fc.constantFrom(...ODD),
    where: fc.constantFrom(
      '"summary":"',
      '"description":"',
      '"locality":"',
      '"caseRef":"',
      '"type":"',
      "member name in body",
      "member name at top",
    ),
  }),
  ({ odd: [name, odd, forbidden], where }, ctx) => {
    const json = JSON.stringify(baseSubmit(ctx));
    const raw = typeof odd === "string" ? Buffer.from(odd) : Buffer.from(odd);
    const [marker, insert] =
      where === "member name in body"
        ? [
            '"body":{',
            (x: Buffer) => Buffer.concat([Buffer.from('"body":{"x'), x, Buffer.from('y":1,')]),
          ]
        : where === "member name at top"
          ? ["{", (x: Buffer) => Buffer.concat([Buffer.from('{"x'), x, Buffer.from('y":1,')])]
          : [where, (x: Buffer) => Buffer.concat([Buffer.from(where), x])];
    const at = json.indexOf(marker);
    const body = Buffer.concat([
      Buffer.from(json.slice(0, at)),
      insert(raw),
      Buffer.from(json.slice(at + marker.length)),
    ]);
    return submit(
      body,
      `${name} in ${where.replaceAll('"', "").replace(":", "")}`,
      forbidden ? { expect: "refuse", why: `a string holds ${name} (forbidden in messages)` } : ANY,
    );
  },
);

gen(
  "submit-deep-json",
  3,
  fc.record({
    depth: fc.oneof(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 100, max: 20_000 })),
    shape: fc.constantFrom("array", "object"),
    where: fc.constantFrom("body", "body member", "top member", "whole request", "summary"),
  }),
  ({ depth, shape, where }, ctx) => {
    const deep =
      shape === "array"
        ? `${"[".repeat(depth)}1${"]".repeat(depth)}`
        : `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
    const req = baseSubmit(ctx);
    let text: string;
    if (where === "whole request") text = deep;
    else {
      if (where === "body") req.body = "__X__";
      else if (where === "body member") req.body = { ...ctx.baseBody, deep: "__X__" };
      else if (where === "summary") req.body = { ...ctx.baseBody, summary: "__X__" };
      else req.deep = "__X__";
      text = JSON.stringify(req).replace('"__X__"', () => deep);
    }
    return submit(text, `${shape} nested ${depth} deep at ${where}`, ANY);
  },
);

gen("submit-headers", 10, fc.record({ auth: authArb, ct: ctArb }), ({ auth, ct }, ctx) =>
  submit(JSON.stringify(baseSubmit(ctx)), "valid submit", { expect: "ok", why: "" }, auth, ct),
);

gen(
  "submit-raw-body",
  6,
  fc.record({
    kind: fc.constantFrom(
      "empty",
      "null",
      "{",
      "[]",
      "truncated",
      "BOM",
      "trailing garbage",
      "raw NUL byte",
      "too large",
      "1e999",
      "string",
    ),
    cut: fc.double({ min: 0, max: 1, noNaN: true }),
  }),
  ({ kind, cut }, ctx) => {
    const valid = JSON.stringify(baseSubmit(ctx));
    const body: Record<string, () => string | Uint8Array> = {
      empty: () => "",
      null: () => "null",
      "{": () => "{",
      "[]": () => "[]",
      truncated: () => valid.slice(0, Math.floor(valid.length * cut)),
      BOM: () => `\ufeff${valid}`,
      "trailing garbage": () => `${valid}}x`,
      "raw NUL byte": () => Buffer.concat([Buffer.from(valid), Buffer.from([0])]),
      "too large": () =>
        JSON.stringify({ ...baseSubmit(ctx), pad: "p".repeat(ctx.maxRequestBytes + 10) }),
      "1e999": () => "1e999",
      string: () => '"case.notice"',
    };
    return submit((body[kind] as () => string | Uint8Array)(), `body: ${kind}`, ANY);
  },
);

// --- party documents --------------------------------------------------------------------------

const ODD_TIMES = [
  "0000-01-01T00:00:00Z",
  "0000-01-01T00:00:00.000+01:00",
  "2026-12-31T23:59:60Z",
  "2026-02-30T00:00:00Z",
  "2026-01-01T24:00:00Z",
  "2026-01-01T00:00:00",
  "9999-12-31T23:59:59.999-23:59",
  "2026-01-01T00:00:00.123456789Z",
  "1970-01-01T00:00:00Z",
  "",
  null,
  1,
];
const PARTY_MUTATIONS = [
  "none",
  "name",
  "kind",
  "country",
  "id",
  "inboundSubject",
  "keys",
  "key member",
  "validFrom",
  "validUntil",
  "revokedAt",
  "random",
] as const;
const PARTY_STRINGS: Array<[string, string, boolean]> = [
  ["NUL", "\\u0000", true],
  ["lone surrogate", "\\ud800", true],
  ["RTL override", "\u202e", false],
  ["empty", "", false],
  ["long", "n".repeat(10_000), false],
];
const SUBJECTS = ["a.*", "a b", "", "a..b", ">", "x".repeat(300), "fuzz.sink.X", "liaison.inbox.x"];

gen(
  "partner-document",
  14,
  fc.record({
    party: fc.nat(29),
    key: fc.nat(),
    mutation: fc.constantFrom(...PARTY_MUTATIONS),
    k: fc.nat(),
    value: fc.jsonValue({ maxDepth: 3 }),
    auth: fc.oneof(
      { weight: 8, arbitrary: fc.constant("admin") },
      { weight: 1, arbitrary: fc.constantFrom("api", "none", "wrong", "admin, lower-case") },
    ),
  }),
  (p, ctx) => {
    const id = `TH-FZ-P${p.party}`;
    const jwk = ctx.documentKeys[p.key % ctx.documentKeys.length] as Record<string, unknown>;
    const doc = {
      party: {
        id,
        name: "Fuzz party",
        country: "TH",
        kind: "fuzz",
        inboundSubject: `fuzz.sink.${id}`,
      },
      keys: [{ ...jwk, use: "sig", validFrom: "2020-01-01T00:00:00.000Z" }] as unknown[],
    };
    const party = doc.party as Record<string, unknown>;
    const key0 = doc.keys[0] as Record<string, unknown>;
    let text: string | undefined;
    let forbidden = "";
    let what: string = p.mutation;
    const [sname, sval, sforbidden] = PARTY_STRINGS[p.k % PARTY_STRINGS.length] as [
      string,
      string,
      boolean,
    ];
    if (p.mutation === "name" || p.mutation === "kind") {
      party[p.mutation] = "__S__";
      text = JSON.stringify(doc).replace("__S__", () => `Fuzz${sval}party`);
      what = `party.${p.mutation} with ${sname}`;
      if (sforbidden) forbidden = `party.${p.mutation} holds ${sname}`;
    } else if (p.mutation === "country") {
      party.country = ["XX", "th", "INT", "", 1, "TH "][p.k % 6];
      what = `country ${JSON.stringify(party.country)}`;
    } else if (p.mutation === "id") {
      party.id = [ctx.sender, "th-fz-p1", "", 1, "TH-FZ-P1\n", "INT-FZ-P1"][p.k % 6];
      what = `party.id ${JSON.stringify(party.id)}`;
    } else if (p.mutation === "inboundSubject") {
      party.inboundSubject = SUBJECTS[p.k % SUBJECTS.length];
      what = `inboundSubject ${short(JSON.stringify(party.inboundSubject), 30)}`;
    } else if (p.mutation === "keys") {
      const variants: unknown[] = [
        [],
        "x",
        Array.from({ length: 65 }, () => key0),
        [{}],
        [key0, key0],
        [{ ...ctx.receiverKey, use: "sig", validFrom: "2020-01-01T00:00:00Z" }],
        [{ ...key0, use: "enc" }],
      ];
      doc.keys = variants[p.k % variants.length] as unknown[];
      what = `keys variant ${p.k % variants.length}`;
    } else if (p.mutation === "key member") {
      const changes: Array<Record<string, unknown>> = [
        { d: "AAAA" },
        { kid: "wrong" },
        { kid: undefined },
        { alg: "none" },
        { alg: "HS256" },
        { alg: undefined },
        { alg: key0.alg === "EdDSA" ? "ES256" : "EdDSA" },
        { x: "AAAA" },
        { kty: "RSA" },
        { extra: p.value },
      ];
      const change = changes[p.k % changes.length] as Record<string, unknown>;
      Object.assign(key0, change);
      what = `key ${short(JSON.stringify(change), 40)}`;
    } else if (
      p.mutation === "validFrom" ||
      p.mutation === "validUntil" ||
      p.mutation === "revokedAt"
    ) {
      key0[p.mutation] = ODD_TIMES[p.k % ODD_TIMES.length];
      what = `${p.mutation} ${JSON.stringify(key0[p.mutation])}`;
    } else if (p.mutation === "random") {
      text = JSON.stringify(p.value);
      what = `random JSON ${short(text, 30)}`;
    }
    const auth = authExpect(p.auth, "admin");
    const e = combine(forbidden === "" ? ANY : { expect: "refuse", why: forbidden }, auth);
    return {
      target: "sender",
      method: "POST",
      path: "/v1/partners",
      headers: [...authHeaders(p.auth), ["content-type", "application/json"]],
      body: enc(text ?? JSON.stringify(doc)),
      ...e,
      desc: `party document: ${what}${p.auth === "admin" ? "" : `, auth ${p.auth}`}`,
    };
  },
);

// --- reads ------------------------------------------------------------------------------------

const IDS = [
  "$REAL",
  "$UUID",
  "$UPPER",
  "urn:uuid:$UUID",
  "%00",
  "%ZZ",
  "..%2f..",
  "x".repeat(5000),
  "%F0%9F%98%80",
  "%ED%A0%80",
  "%",
  "null",
  "00000000-0000-0000-0000-000000000000",
  "$UUID%00",
];
const LIMITS = [
  "1",
  "50",
  "200",
  "0",
  "201",
  "-1",
  "1e2",
  "0x10",
  "%205",
  "abc",
  "",
  "1.5",
  "9007199254740993",
  "%ZZ",
];
const CURSORS = [
  "$CURSOR",
  "MQ",
  "AAAA",
  "_-_-",
  "%ZZ",
  "",
  "x".repeat(25),
  "LTE",
  "OTAwNzE5OTI1NDc0MDk5Mw",
  "MWUz",
  "%00",
];
const DIRECTIONS = ["inbound", "outbound", "", "INBOUND", "both", "%00", "%ED%A0%80"];
const PLAIN: Array<[string, Level]> = [
  ["/v1/partners", "user"],
  ["/.well-known/jwks.json", "none"],
  ["/healthz", "none"],
  ["/readyz", "none"],
  ["/openapi.json", "none"],
  ["/docs/errors.md", "none"],
  ["/docs", "none"],
  ["/nope", "none"],
  ["/v1", "none"],
  ["/v1/messages/", "user"],
  ["//v1/messages", "user"],
  ["/v1/messages/%2e%2e", "user"],
  ["/v1/partners?x=%ZZ", "user"],
];

gen(
  "get",
  20,
  fc.record({
    target: fc.constantFrom<"sender" | "receiver">("sender", "receiver"),
    route: fc.constantFrom("message", "messages", "quarantine", "plain"),
    a: fc.nat(),
    b: fc.nat(),
    c: fc.nat(),
    present: fc.record({ a: fc.boolean(), b: fc.boolean(), c: fc.boolean(), twice: fc.boolean() }),
    auth: authArb,
  }),
  (p, ctx) => {
    const fill = (s: string) => {
      const id = ctx.uuid();
      const real =
        ctx.accepted.length === 0 ? id : (ctx.accepted[p.c % ctx.accepted.length] as string);
      return s
        .replace("$REAL", real)
        .replace("$UUID", id)
        .replace("$UPPER", id.toUpperCase())
        .replace("$CURSOR", Buffer.from(String(p.c)).toString("base64url"));
    };
    let path: string;
    let level: Level = "user";
    if (p.route === "message") path = `/v1/messages/${fill(IDS[p.a % IDS.length] as string)}`;
    else if (p.route === "plain") [path, level] = PLAIN[p.a % PLAIN.length] as [string, Level];
    else {
      const q: string[] = [];
      if (p.route === "messages" && p.present.a)
        q.push(`direction=${DIRECTIONS[p.a % DIRECTIONS.length]}`);
      if (p.present.b) q.push(`limit=${LIMITS[p.b % LIMITS.length]}`);
      if (p.present.c) q.push(`cursor=${fill(CURSORS[p.c % CURSORS.length] as string)}`);
      if (p.present.twice) q.push("limit=500");
      path = `/v1/${p.route === "messages" ? "messages" : "quarantine"}${q.length === 0 ? "" : `?${q.join("&")}`}`;
    }
    const e = combine(authExpect(p.auth, level), ANY);
    return {
      target: p.target,
      method: "GET",
      path,
      headers: authHeaders(p.auth),
      ...e,
      desc: `GET ${short(path, 70)}${p.auth === "api" ? "" : `, auth ${p.auth}`}`,
    };
  },
);

gen(
  "other-method",
  3,
  fc.record({
    method: fc.constantFrom("PUT", "DELETE", "PATCH", "OPTIONS"),
    path: fc.constantFrom("/v1/messages", "/v1/partners", "/healthz", "/v1/quarantine"),
  }),
  ({ method, path }) => ({
    target: "sender",
    method,
    path,
    headers: authHeaders("api"),
    ...ANY,
    desc: `${method} ${path}`,
  }),
);

gen(
  "canonical",
  4,
  fc.constantFrom("submit", "/v1/messages", "/v1/quarantine", "/v1/partners", "/healthz"),
  (what, ctx) => {
    if (what === "submit")
      return submit(JSON.stringify(baseSubmit(ctx)), "canonical submit", {
        expect: "ok",
        why: "a canonical request",
      });
    return {
      target: "sender",
      method: "GET",
      path: what,
      headers: authHeaders("api"),
      expect: "ok",
      why: "a canonical request",
      desc: `canonical GET ${what}`,
    };
  },
);

// --- what the runner uses ---------------------------------------------------------------------

export interface HttpPlan {
  gen: string;
  plan: unknown;
}

export const httpPlans: fc.Arbitrary<HttpPlan> = fc.oneof(
  ...gens.map((g) => ({
    weight: g.weight,
    arbitrary: (g.arb as fc.Arbitrary<unknown>).map((plan) => ({ gen: g.name, plan })),
  })),
);

export function realizeHttp(p: HttpPlan, ctx: HttpContext): HttpInput {
  const g = gens.find((x) => x.name === p.gen);
  if (g === undefined) throw new Error(`no HTTP generator ${p.gen}`);
  return g.realize(p.plan as never, ctx);
}
