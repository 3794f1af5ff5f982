/**
 * Wire inputs: fast-check arbitraries of small plans (pure data, reproducible from the seed), each
 * with a `realize` that turns the plan into the bytes published to the receiver's inbound subject
 * (signing for real where the plan says so). Signed plans use a registered key that matches the
 * claimed sender, so the signature passes and the checks after it (envelope schema, times, body
 * schema, duplicates, ECDSA variants, receipts) are reached.
 */
import { createHash } from "node:crypto";
import fc from "fast-check";
import { MESSAGE_TYP, RECEIPT_TYP } from "../../src/protocol/jws-profile.ts";
import type { SigningKey } from "../../src/protocol/types.ts";
import { compact, malleate, utf8 } from "./jws.ts";

export type SignerName = "A" | "CE" | "CS" | "XE" | "XS" | "none";
type Sender = "A" | "C" | "self" | "unknown";

export interface WireContext {
  self: string;
  senderId: string;
  partnerId: string;
  keys: Record<Exclude<SignerName, "none">, SigningKey>;
  /** Start of the run (ms): times are relative to it. */
  now: number;
  baseBody: Record<string, unknown>;
  maxBytes: number;
  /** Valid messages realised so far (for replays, conflicts and ECDSA variants). */
  valid: Array<{ jws: string; envelope: Record<string, unknown>; signer: SignerName }>;
  /** Valid receipts realised so far (for re-signed copies). */
  receipts: Array<{ payload: Record<string, unknown>; signer: SignerName }>;
  /** Messages the receiver sent to the fuzz partner: what a real receipt names. */
  sentToPartner: Array<{ id: string; digest: string }>;
  nextId(): string;
}

export interface Realized {
  bytes: Uint8Array;
  desc: string;
}

interface Generator<P> {
  name: string;
  weight: number;
  arb: fc.Arbitrary<P>;
  realize(plan: P, ctx: WireContext): Promise<Realized>;
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

// --- building blocks -----------------------------------------------------------------------

const DAY = 86_400_000;
const iso = (ms: number) => new Date(ms).toISOString();
const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const text = (s: string | Uint8Array) => (typeof s === "string" ? utf8(s) : s);
const short = (s: string, n = 40) => (s.length > n ? `${s.slice(0, n)}…(${s.length})` : s);

function senderId(ctx: WireContext, s: Sender): string {
  return { A: ctx.senderId, C: ctx.partnerId, self: ctx.self, unknown: "KH-NOB-ODY" }[s];
}
function key(ctx: WireContext, s: SignerName): SigningKey | null {
  return s === "none" ? null : ctx.keys[s];
}
/** The registered key that signs for a sender (the partner has two). */
function signerFor(s: "A" | "C", es: boolean): SignerName {
  return s === "A" ? "A" : es ? "CS" : "CE";
}
function header(k: SigningKey | null, typ = MESSAGE_TYP): string {
  return JSON.stringify({ alg: k?.alg ?? "EdDSA", kid: k?.kid ?? "none", typ });
}
function envelope(ctx: WireContext, from: string, id = ctx.nextId()): Record<string, unknown> {
  const sentAt = ctx.now - 60_000;
  return {
    id,
    type: "case.notice",
    schemaVersion: 1,
    from,
    to: [ctx.self],
    caseRef: "CN-HEKOU-2026-0042",
    sentAt: iso(sentAt),
    expiresAt: iso(sentAt + 7 * DAY),
    handling: { classification: "restricted", onwardDissemination: "forbidden" },
    body: ctx.baseBody,
  };
}
async function signed(ctx: WireContext, payload: unknown, s: SignerName, typ = MESSAGE_TYP) {
  const k = key(ctx, s);
  return compact(header(k, typ), JSON.stringify(payload), k);
}
/** A valid message from A or the partner, remembered for replays. */
async function validMessage(ctx: WireContext, from: "A" | "C", es: boolean) {
  const s = signerFor(from, es);
  const env = envelope(ctx, senderId(ctx, from));
  const jws = await signed(ctx, env, s);
  ctx.valid.push({ jws, envelope: env, signer: s });
  if (ctx.valid.length > 500) ctx.valid.shift();
  return { jws, signer: s, envelope: env };
}
function pick<T>(pool: T[], k: number): T | undefined {
  return pool.length === 0 ? undefined : pool[k % pool.length];
}
/** Puts `inner` (JSON text) where the payload's "__X__" string is. */
function splice(payload: Record<string, unknown>, inner: string): string {
  return JSON.stringify(payload).replace('"__X__"', () => inner);
}
function deepJson(depth: number, shape: "array" | "object"): string {
  return shape === "array"
    ? `${"[".repeat(depth)}1${"]".repeat(depth)}`
    : `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
}

const senderArb = fc.constantFrom<Sender>("A", "C", "self", "unknown");
const signerArb = fc.constantFrom<SignerName>("A", "CE", "CS", "XE", "XS", "none");
const goodArb = fc.record({ from: fc.constantFrom<"A" | "C">("A", "C"), es: fc.boolean() });

/** Odd strings, as JSON text to put inside a string literal. */
const ODD_TEXT: Array<[string, string]> = [
  ["NUL escape", "\\u0000"],
  ["two NUL escapes", "\\u0000\\u0000"],
  ["lone high surrogate", "\\ud800"],
  ["lone low surrogate", "\\udfff"],
  ["reversed surrogates", "\\udc00\\ud800"],
  ["surrogate pair", "\\ud83d\\ude00"],
  ["BOM", "\ufeff"],
  ["escaped BOM", "\\ufeff"],
  ["RTL mark", "\u200f"],
  ["RTL override", "\u202e"],
  ["line separator", "\u2028"],
  ["U+FFFF escape", "\\uffff"],
  ["combining mark", "e\u0301"],
  ["emoji", "\u{1f600}"],
  ["bad escape", "\\u00zz"],
  ["raw control char", "\u0001"],
];
const ODD_TIMES = [
  "2026-12-31T23:59:60Z",
  "2016-12-31T23:59:60.000Z",
  "0000-01-01T00:00:00Z",
  "0001-01-01T00:00:00.000Z",
  "9999-12-31T23:59:59.999Z",
  "1970-01-01T00:00:00Z",
  "2026-02-30T00:00:00Z",
  "2026-01-01T24:00:00Z",
  "2026-01-01T00:00:00+07:00",
  "2026-01-01t00:00:00z",
  "2026-01-01T00:00:00.1234567891Z",
  "2026-01-01T00:00:00.123456789Z",
  "+275760-09-13T00:00:00Z",
  "",
  "now+10m",
  "now-8d",
  "now+400d",
  "now-400d",
  "now+1ms",
];
function time(ctx: WireContext, t: string): string {
  const rel = /^now([+-])(\d+)(ms|m|d)$/.exec(t);
  if (rel === null) return t;
  const unit = { ms: 1, m: 60_000, d: DAY }[rel[3] as "ms" | "m" | "d"];
  return iso(ctx.now + (rel[1] === "+" ? 1 : -1) * Number(rel[2]) * unit);
}
/** Values for envelope members; "$..." tokens are resolved against the context. */
const MEMBER_VALUES: Record<string, unknown[]> = {
  id: ["$UPPER", "urn:uuid:$ID", "not-a-uuid", "", 1, null, "00000000-0000-0000-0000-000000000000"],
  type: ["receipt", "foo.bar", "CASE.NOTICE", "intel.request", "intel.response", "case", "", 7],
  schemaVersion: [0, 2, 999, 1000, 1.5, "1", -1, null, 1e308],
  from: ["$A", "$C", "$SELF", "KH-NOB-ODY", "cn-mps-hekou", "", 1, ["$A"]],
  to: [[], ["$SELF", "$SELF"], ["KH-NOB-ODY"], ["$SELF", "$A"], "$SELF", null, "$MANY"],
  caseRef: ["", "cn-hekou-1", "X".repeat(65), 42, "CN-HEKOU-2026-0042\n"],
  inReplyTo: ["$ID", null, "", "$UPPER"],
  handling: [{}, null, { classification: "top-secret", onwardDissemination: "allowed" }, []],
  body: [{}, [], null, "text", { summary: "x" }],
  extra: [1, null, "x", {}],
};
function resolve(ctx: WireContext, v: unknown): unknown {
  if (Array.isArray(v)) return v.map((x) => resolve(ctx, x));
  if (typeof v !== "string") return v;
  if (v === "$MANY") return [ctx.self, ...Array.from({ length: 64 }, (_, i) => `TH-FZ-P${i}`)];
  const id = ctx.nextId();
  return v
    .replace("$UPPER", id.toUpperCase())
    .replace("$ID", id)
    .replace("$A", ctx.senderId)
    .replace("$C", ctx.partnerId)
    .replace("$SELF", ctx.self);
}

// --- the generators --------------------------------------------------------------------------

gen("raw-bytes", 4, fc.uint8Array({ maxLength: 600 }), async (bytes) => ({
  bytes,
  desc: `${bytes.length} random bytes`,
}));

gen("raw-text", 3, fc.string({ unit: "binary", maxLength: 300 }), async (s) => ({
  bytes: utf8(s),
  desc: `random text of ${s.length} code units`,
}));

gen(
  "jws-shaped-junk",
  3,
  fc.array(fc.string({ unit: fc.constantFrom(...B64), maxLength: 120 }), {
    minLength: 1,
    maxLength: 6,
  }),
  async (segments) => ({
    bytes: utf8(segments.join(".")),
    desc: `${segments.length} base64url-ish segments`,
  }),
);

gen(
  "truncated",
  5,
  fc.record({ good: goodArb, cut: fc.double({ min: 0, max: 1, noNaN: true }) }),
  async ({ good, cut }, ctx) => {
    const { jws } = await validMessage(ctx, good.from, good.es);
    const n = Math.floor(jws.length * cut);
    return { bytes: utf8(jws.slice(0, n)), desc: `valid message cut to ${n}/${jws.length}` };
  },
);

gen(
  "extended",
  4,
  fc.record({
    good: goodArb,
    affix: fc.constantFrom("\n", "\r\n", " ", "=", "==", ".", ".AA", "A", "\u0000", "\t", "\ufeff"),
    prefix: fc.boolean(),
  }),
  async ({ good, affix, prefix }, ctx) => {
    const { jws } = await validMessage(ctx, good.from, good.es);
    return {
      bytes: utf8(prefix ? affix + jws : jws + affix),
      desc: `valid message with ${JSON.stringify(affix)} ${prefix ? "before" : "after"}`,
    };
  },
);

gen(
  "non-utf8",
  3,
  fc.record({
    good: goodArb,
    where: fc.constantFrom("wire", "payload", "header"),
    pos: fc.double({ min: 0, max: 1, noNaN: true }),
    byte: fc.constantFrom(0x80, 0xc3, 0xff, 0xfe, 0xed, 0xc0, 0xf8),
  }),
  async ({ good, where, pos, byte }, ctx) => {
    const s = signerFor(good.from, good.es);
    if (where === "wire") {
      const { jws } = await validMessage(ctx, good.from, good.es);
      const bytes = Buffer.from(jws);
      bytes[Math.floor(pos * (bytes.length - 1))] = byte;
      return { bytes, desc: `valid message with byte 0x${byte.toString(16)} on the wire` };
    }
    const env = envelope(ctx, senderId(ctx, good.from));
    const json = Buffer.from(JSON.stringify({ ...env, body: { ...ctx.baseBody, summary: "__" } }));
    const at = json.indexOf("__") + 1;
    json[at] = byte;
    const k = key(ctx, s);
    const jws =
      where === "payload"
        ? await compact(header(k), json, k)
        : await compact(`${header(k).slice(0, -1)},"x":"${String.fromCharCode(byte)}"}`, json, k);
    return { bytes: utf8(jws), desc: `signed, invalid UTF-8 (0x${byte.toString(16)}) in ${where}` };
  },
);

gen(
  "re-encoded",
  6,
  fc.record({
    good: goodArb,
    segment: fc.constantFrom(0, 1, 2),
    how: fc.constantFrom(
      "non-canonical",
      "padding",
      "whitespace",
      "std-alphabet",
      "case-flip",
      "extra-char",
    ),
    pos: fc.double({ min: 0, max: 1, noNaN: true }),
    bits: fc.integer({ min: 1, max: 15 }),
  }),
  async ({ good, segment, how, pos, bits }, ctx) => {
    const { jws } = await validMessage(ctx, good.from, good.es);
    const parts = jws.split(".");
    let seg = parts[segment] ?? "";
    const at = Math.floor(pos * seg.length);
    if (how === "non-canonical") {
      const unused = { 2: 15, 3: 3 }[(seg.length % 4) as 2 | 3];
      const last = B64.indexOf(seg.at(-1) ?? "A");
      seg =
        unused === undefined
          ? `${seg}A`
          : seg.slice(0, -1) + (B64[last ^ (bits & unused || 1)] as string);
    } else if (how === "padding") seg += seg.length % 4 === 2 ? "==" : "=";
    else if (how === "whitespace") seg = `${seg.slice(0, at)}${" \n\t"[bits % 3]}${seg.slice(at)}`;
    else if (how === "std-alphabet") seg = seg.replaceAll("-", "+").replaceAll("_", "/");
    else if (how === "case-flip") {
      const c = seg[at] ?? "a";
      const flipped = c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase();
      seg = seg.slice(0, at) + flipped + seg.slice(at + 1);
    } else seg += B64[bits] as string;
    parts[segment] = seg;
    return { bytes: utf8(parts.join(".")), desc: `${how} in segment ${segment}` };
  },
);

gen(
  "swapped-segments",
  3,
  fc.record({
    good: goodArb,
    order: fc.constantFrom([1, 0, 2], [0, 2, 1], [2, 1, 0], [1, 2, 0], [2, 0, 1], [0, 1, 1]),
    mix: fc.boolean(),
  }),
  async ({ good, order, mix }, ctx) => {
    const { jws } = await validMessage(ctx, good.from, good.es);
    const parts = jws.split(".");
    if (mix) {
      const other = (await validMessage(ctx, good.from === "A" ? "C" : "A", good.es)).jws;
      return {
        bytes: utf8(`${parts[0]}.${other.split(".")[1]}.${parts[2]}`),
        desc: "header and signature of one message, payload of another",
      };
    }
    return {
      bytes: utf8(order.map((i) => parts[i]).join(".")),
      desc: `segments in order ${order.join("")}`,
    };
  },
);

gen(
  "header",
  10,
  fc.record({
    sender: senderArb,
    signer: signerArb,
    typ: fc.constantFrom<unknown>(
      MESSAGE_TYP,
      RECEIPT_TYP,
      "application/liaison-message+jws",
      "LIAISON-MESSAGE+JWS",
      "JWT",
      "JOSE",
      "",
      42,
      null,
      "$absent",
      `${MESSAGE_TYP} `,
    ),
    alg: fc.constantFrom<unknown>(
      "$key",
      "EdDSA",
      "ES256",
      "none",
      "HS256",
      "RS256",
      "Ed25519",
      "eddsa",
      "",
      null,
      "$absent",
    ),
    kid: fc.constantFrom<unknown>("$key", "$A", "$CE", "$X", "", 123, "$absent", "$long", "../x"),
    extra: fc.constantFrom<unknown>(
      "$none",
      { crit: ["b64"] },
      { b64: false },
      { b64: true },
      { jku: "http://127.0.0.1/x" },
      { jwk: {} },
      { x5u: "x" },
      { cty: "json" },
      { zip: "DEF" },
      { "x-private": 1 },
    ),
    notObject: fc.constantFrom("$no", "[]", '"x"', "1", "null", "{", ""),
  }),
  async (p, ctx) => {
    const k = key(ctx, p.signer);
    const h: Record<string, unknown> = {};
    const val = (v: unknown, own: unknown) =>
      v === "$key"
        ? own
        : v === "$A"
          ? ctx.keys.A.kid
          : v === "$CE"
            ? ctx.keys.CE.kid
            : v === "$X"
              ? ctx.keys.XE.kid
              : v === "$long"
                ? "k".repeat(5000)
                : v;
    for (const [name, v] of [
      ["alg", val(p.alg, k?.alg ?? "EdDSA")],
      ["kid", val(p.kid, k?.kid ?? "none")],
      ["typ", p.typ],
    ] as const) {
      if (v !== "$absent") h[name] = v;
    }
    if (p.extra !== "$none") Object.assign(h, p.extra);
    const headerText = p.notObject === "$no" ? JSON.stringify(h) : p.notObject;
    const jws = await compact(
      headerText,
      JSON.stringify(envelope(ctx, senderId(ctx, p.sender))),
      k,
    );
    return {
      bytes: utf8(jws),
      desc: `header ${short(headerText, 90)} from ${p.sender} signed ${p.signer}`,
    };
  },
);

gen(
  "deep-json",
  4,
  fc.record({
    depth: fc.oneof(
      fc.integer({ min: 1, max: 64 }),
      fc.integer({ min: 64, max: 3000 }),
      fc.integer({ min: 3000, max: 20_000 }),
    ),
    shape: fc.constantFrom<"array" | "object">("array", "object"),
    where: fc.constantFrom(
      "payload-root",
      "header-root",
      "body-member",
      "envelope-member",
      "header-member",
      "receipt-member",
    ),
    good: goodArb,
    signed: fc.boolean(),
  }),
  async ({ depth, shape, where, good, signed: isSigned }, ctx) => {
    const s = isSigned ? signerFor(good.from, good.es) : "none";
    const k = key(ctx, s);
    const deep = deepJson(depth, shape);
    const env = envelope(ctx, senderId(ctx, good.from));
    let h = header(k);
    let payload: string;
    if (where === "payload-root") payload = deep;
    else if (where === "header-root") {
      h = deep;
      payload = JSON.stringify(env);
    } else if (where === "body-member") {
      payload = splice({ ...env, body: { ...ctx.baseBody, deep: "__X__" } }, deep);
    } else if (where === "envelope-member") payload = splice({ ...env, deep: "__X__" }, deep);
    else if (where === "header-member") {
      h = `${h.slice(0, -1)},"deep":${deep}}`;
      payload = JSON.stringify(env);
    } else {
      h = header(k, RECEIPT_TYP);
      payload = splice({ ...receiptPayload(ctx, 0), deep: "__X__" }, deep);
    }
    return {
      bytes: utf8(await compact(h, payload, k)),
      desc: `${shape} nested ${depth} deep at ${where}${isSigned ? ", signed" : ""}`,
    };
  },
);

gen(
  "huge-string",
  2,
  fc.record({
    len: fc.oneof(
      fc.integer({ min: 1000, max: 20_000 }),
      fc.integer({ min: 20_000, max: 300_000 }),
    ),
    ch: fc.constantFrom("a", "é", "漢", "\u{1f600}", "\\n", "\\u0000", "\\ud800", "\\\\"),
    where: fc.constantFrom("summary", "member", "kid"),
    good: goodArb,
  }),
  async ({ len, ch, where, good }, ctx) => {
    const s = signerFor(good.from, good.es);
    const k = key(ctx, s);
    const big = `"${ch.repeat(Math.ceil(len / Buffer.byteLength(ch)))}"`;
    const env = envelope(ctx, senderId(ctx, good.from));
    let h = header(k);
    let payload = JSON.stringify(env);
    if (where === "summary")
      payload = splice({ ...env, body: { ...ctx.baseBody, summary: "__X__" } }, big);
    else if (where === "member") payload = splice({ ...env, note: "__X__" }, big);
    else h = `{"alg":"${k?.alg}","kid":${big},"typ":"${MESSAGE_TYP}"}`;
    const jws = await compact(h, payload, k);
    return {
      bytes: utf8(jws),
      desc: `${len}-byte string of ${JSON.stringify(ch)} in ${where} (${jws.length} bytes), signed`,
    };
  },
);

gen(
  "odd-unicode",
  8,
  fc.record({
    odd: fc.constantFrom(...ODD_TEXT),
    where: fc.constantFrom(
      "summary",
      "caseRef",
      "from",
      "id",
      "member-name",
      "body-member-name",
      "header-kid",
      "header-member-name",
      "bom-payload",
      "bom-header",
    ),
    good: goodArb,
  }),
  async ({ odd: [oddName, odd], where, good }, ctx) => {
    const s = signerFor(good.from, good.es);
    const k = key(ctx, s);
    let h = header(k);
    let payload: string | Uint8Array = JSON.stringify(envelope(ctx, senderId(ctx, good.from)));
    const after = (json: string, marker: string) => json.replace(marker, () => marker + odd);
    if (where === "summary") payload = after(payload, '"summary":"');
    else if (where === "caseRef") payload = after(payload, '"caseRef":"');
    else if (where === "from") payload = after(payload, '"from":"');
    else if (where === "id") payload = after(payload, '"id":"');
    else if (where === "member-name") payload = payload.replace("{", () => `{"x${odd}y":1,`);
    else if (where === "body-member-name")
      payload = payload.replace('"body":{', () => `"body":{"x${odd}y":1,`);
    else if (where === "header-kid") h = after(h, '"kid":"');
    else if (where === "header-member-name") h = h.replace("{", () => `{"x${odd}":1,`);
    else if (where === "bom-payload")
      payload = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(payload)]);
    else h = `\ufeff${h}`;
    return {
      bytes: utf8(await compact(h, payload, k)),
      desc: `${oddName} in ${where}, signed`,
    };
  },
);

gen(
  "envelope",
  12,
  fc.record({
    good: goodArb,
    member: fc.constantFrom(...Object.keys(MEMBER_VALUES), "sentAt", "expiresAt", "both-times"),
    op: fc.constantFrom("set", "set", "set", "delete"),
    k: fc.nat(),
  }),
  async ({ good, member, op, k }, ctx) => {
    const s = signerFor(good.from, good.es);
    const env = envelope(ctx, senderId(ctx, good.from));
    let what: string;
    if (op === "delete" && member !== "extra" && member !== "both-times") {
      delete env[member];
      what = `without ${member}`;
    } else if (member === "sentAt" || member === "expiresAt" || member === "both-times") {
      const t = ODD_TIMES[k % ODD_TIMES.length] as string;
      const u = ODD_TIMES[Math.floor(k / ODD_TIMES.length) % ODD_TIMES.length] as string;
      if (member !== "expiresAt") env.sentAt = time(ctx, t);
      if (member !== "sentAt") env.expiresAt = time(ctx, member === "both-times" ? u : t);
      what = `sentAt ${String(env.sentAt)}, expiresAt ${String(env.expiresAt)}`;
    } else {
      const pool = MEMBER_VALUES[member] as unknown[];
      const v = resolve(ctx, pool[k % pool.length]);
      env[member] = v;
      what = `${member} = ${short(JSON.stringify(v) ?? "undefined")}`;
    }
    return { bytes: utf8(await signed(ctx, env, s)), desc: `${what}, signed ${s}` };
  },
);

gen(
  "body",
  8,
  fc.record({
    good: goodArb,
    type: fc.constantFrom(
      ["case.notice", 1],
      ["case.notice", 2],
      ["intel.request", 1],
      ["intel.response", 1],
      ["no.such", 1],
    ),
    op: fc.constantFrom("replace", "set", "delete"),
    field: fc.nat(),
    value: fc.jsonValue({ maxDepth: 3 }),
  }),
  async ({ good, type, op, field, value }, ctx) => {
    const s = signerFor(good.from, good.es);
    const env = envelope(ctx, senderId(ctx, good.from));
    env.type = type[0];
    env.schemaVersion = type[1];
    const names = [...Object.keys(ctx.baseBody), "extra"];
    const name = names[field % names.length] as string;
    let body: unknown = { ...ctx.baseBody };
    if (op === "replace") body = value;
    else if (op === "set") (body as Record<string, unknown>)[name] = value;
    else delete (body as Record<string, unknown>)[name];
    env.body = body;
    const what =
      op === "replace" ? "body replaced" : `body.${name} ${op === "set" ? "set" : "deleted"}`;
    return {
      bytes: utf8(await signed(ctx, env, s)),
      desc: `${type.join(" v")}, ${what}, signed ${s}`,
    };
  },
);

gen("valid", 8, goodArb, async (good, ctx) => {
  const { jws, signer } = await validMessage(ctx, good.from, good.es);
  return { bytes: utf8(jws), desc: `valid message signed ${signer}` };
});

gen("replay", 4, fc.nat(), async (k, ctx) => {
  const m = pick(ctx.valid, k) ?? (await validMessage(ctx, "A", false));
  return { bytes: utf8(m.jws), desc: `exact replay of a valid message (${m.signer})` };
});

gen(
  "conflict",
  2,
  fc.record({ k: fc.nat(), change: fc.constantFrom("caseRef", "expiresAt", "summary") }),
  async ({ k, change }, ctx) => {
    const m = pick(ctx.valid, k) ?? (await validMessage(ctx, "C", false));
    const env: Record<string, unknown> = { ...m.envelope };
    if (change === "caseRef") env.caseRef = "CN-HEKOU-2026-9999";
    else if (change === "expiresAt") env.expiresAt = iso(ctx.now + 2 * DAY);
    else env.body = { ...ctx.baseBody, summary: "Another summary." };
    return {
      bytes: utf8(await signed(ctx, env, m.signer)),
      desc: `same id and sender as a valid message, other ${change}, signed ${m.signer}`,
    };
  },
);

gen(
  "ecdsa-variant",
  3,
  fc.record({ k: fc.nat(), twice: fc.boolean() }),
  async ({ k, twice }, ctx) => {
    const es = ctx.valid.filter((m) => m.signer === "CS");
    const m = pick(es, k) ?? (await validMessage(ctx, "C", true));
    const variant = malleate(m.jws);
    return {
      bytes: utf8(twice ? malleate(variant) : variant),
      desc: twice ? "ES256 variant of a variant (the original)" : "ES256 variant R||(n-S)",
    };
  },
);

function receiptPayload(ctx: WireContext, k: number): Record<string, unknown> {
  const sent = pick(ctx.sentToPartner, k);
  return {
    id: ctx.nextId(),
    type: "receipt",
    schemaVersion: 1,
    from: ctx.partnerId,
    to: ctx.self,
    sentAt: iso(ctx.now - 30_000),
    messageId: sent?.id ?? ctx.nextId(),
    digest: { alg: "sha-256", value: sent?.digest ?? "0".repeat(64) },
    status: "accepted",
    errors: [],
  };
}

gen(
  "receipt",
  8,
  fc.record({
    k: fc.nat(),
    es: fc.boolean(),
    variant: fc.constantFrom(
      "valid",
      "valid",
      "rejected",
      "unknown-id",
      "wrong-digest",
      "null-id",
      "to-other",
      "from-sender",
      "stranger",
      "re-signed",
      "same-id-other-content",
      "message-typ",
      "bad-schema",
      "future",
      "from-self",
    ),
  }),
  async ({ k, es, variant }, ctx) => {
    let r = receiptPayload(ctx, k);
    let s: SignerName = es ? "CS" : "CE";
    let typ = RECEIPT_TYP;
    if (variant === "rejected")
      r = { ...r, status: "rejected", errors: [{ code: "schema_invalid", path: "/body" }] };
    else if (variant === "unknown-id") r.messageId = ctx.nextId();
    else if (variant === "wrong-digest")
      r.digest = { alg: "sha-256", value: createHash("sha256").update(String(k)).digest("hex") };
    else if (variant === "null-id")
      r = { ...r, messageId: null, status: "rejected", errors: [{ code: "malformed" }] };
    else if (variant === "to-other") r.to = ctx.senderId;
    else if (variant === "from-sender") {
      r.from = ctx.senderId;
      s = "A";
    } else if (variant === "stranger") s = es ? "XS" : "XE";
    else if (variant === "re-signed") {
      const earlier = pick(
        ctx.receipts.filter((x) => x.signer === "CS"),
        k,
      );
      if (earlier !== undefined) r = earlier.payload;
      s = "CS";
    } else if (variant === "same-id-other-content") {
      const earlier = pick(ctx.receipts, k);
      if (earlier !== undefined) {
        const accepted = earlier.payload.status === "accepted";
        r = {
          ...earlier.payload,
          status: accepted ? "rejected" : "accepted",
          errors: accepted ? [{ code: "schema_invalid", path: "/body" }] : [],
        };
        s = earlier.signer;
      }
    } else if (variant === "message-typ") typ = MESSAGE_TYP;
    else if (variant === "bad-schema") r = { ...r, errors: [{ code: "nope" }], digest: "x" };
    else if (variant === "future") r.sentAt = iso(ctx.now + 3_600_000);
    else if (variant === "from-self") r.from = ctx.self;
    if (variant === "valid" || variant === "rejected") {
      ctx.receipts.push({ payload: r, signer: s });
      if (ctx.receipts.length > 200) ctx.receipts.shift();
    }
    return { bytes: utf8(await signed(ctx, r, s, typ)), desc: `receipt: ${variant}, signed ${s}` };
  },
);

gen(
  "self-sender",
  4,
  fc.record({ signer: signerArb, typ: fc.constantFrom(MESSAGE_TYP, RECEIPT_TYP) }),
  async ({ signer, typ }, ctx) => {
    const payload =
      typ === MESSAGE_TYP ? envelope(ctx, ctx.self) : { ...receiptPayload(ctx, 0), from: ctx.self };
    return {
      bytes: utf8(await signed(ctx, payload, signer, typ)),
      desc: `${typ === MESSAGE_TYP ? "message" : "receipt"} claiming the receiver as sender, signed ${signer}`,
    };
  },
);

gen(
  "stranger",
  3,
  fc.record({
    sender: senderArb,
    es: fc.boolean(),
    kid: fc.constantFrom("own", "A", "CE"),
  }),
  async ({ sender, es, kid }, ctx) => {
    const own = es ? ctx.keys.XS : ctx.keys.XE;
    const claimed = kid === "own" ? own : { ...own, kid: ctx.keys[kid as "A" | "CE"].kid };
    const jws = await compact(
      JSON.stringify({ alg: own.alg, kid: claimed.kid, typ: MESSAGE_TYP }),
      JSON.stringify(envelope(ctx, senderId(ctx, sender))),
      own,
    );
    return { bytes: utf8(jws), desc: `from ${sender}, signed by an unregistered key, kid ${kid}` };
  },
);

gen("size-edge", 1, fc.integer({ min: -2, max: 3 }), async (delta, ctx) => {
  const target = ctx.maxBytes + delta;
  const env = envelope(ctx, ctx.senderId);
  let pad = Math.max(0, Math.floor(((target - 600) * 3) / 4) - 3000);
  let jws = "";
  for (let i = 0; i < 8; i++) {
    jws = await signed(ctx, { ...env, padding: "p".repeat(pad) }, "A");
    if (jws.length === target) break;
    pad += Math.trunc(((target - jws.length) * 3) / 4) || (jws.length > target ? -1 : 1);
  }
  return {
    bytes: utf8(jws),
    desc: `signed message of ${jws.length} bytes (limit ${ctx.maxBytes})`,
  };
});

// --- what the runner uses --------------------------------------------------------------------

export interface WirePlan {
  gen: string;
  plan: unknown;
}

export const wirePlans: fc.Arbitrary<WirePlan> = fc.oneof(
  ...gens.map((g) => ({
    weight: g.weight,
    arbitrary: (g.arb as fc.Arbitrary<unknown>).map((plan) => ({ gen: g.name, plan })),
  })),
);

export async function realizeWire(p: WirePlan, ctx: WireContext): Promise<Realized> {
  const g = gens.find((x) => x.name === p.gen);
  if (g === undefined) throw new Error(`no wire generator ${p.gen}`);
  const out = await g.realize(p.plan as never, ctx);
  return { bytes: text(out.bytes), desc: out.desc };
}
