import { CompactSign } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { loadSchemaRegistry } from "../../src/config/schema-files.ts";
import { buildReceipt } from "../../src/protocol/build-receipt.ts";
import { sha256Hex } from "../../src/protocol/digest.ts";
import {
  type JwsTyp,
  MESSAGE_TYP,
  RECEIPT_BATCH_TYP,
  RECEIPT_TYP,
} from "../../src/protocol/jws-profile.ts";
import { signCompact } from "../../src/protocol/sign.ts";
import type { Envelope, KeyResolver } from "../../src/protocol/types.ts";
import {
  type InboundVerdict,
  type VerifyContext,
  verifyInbound,
} from "../../src/protocol/verify-inbound.ts";
import { envelopeAt, makeParty, resolverOf, type TestParty } from "../helpers/protocol-fixtures.ts";

const NOW = new Date("2026-11-24T12:00:00.000Z");
const SKEW = 300_000;
const schemas = loadSchemaRegistry();
const enc = new TextEncoder();

let hekou: TestParty;
let laocai: TestParty;
let stranger: TestParty;
let keys: KeyResolver;

beforeAll(async () => {
  hekou = await makeParty("CN-MPS-HEKOU");
  laocai = await makeParty("VN-BGC-LAOCAI");
  stranger = await makeParty("MM-MPF-MUSE");
  keys = resolverOf(hekou, laocai);
});

function ctx(overrides: Partial<VerifyContext> = {}): VerifyContext {
  return {
    self: "VN-BGC-LAOCAI",
    keys,
    schemas,
    now: NOW,
    clockSkewMs: SKEW,
    decryptionKeys: [],
    maxBytes: 256 * 1024,
    ...overrides,
  };
}

async function signed(
  envelope: unknown,
  party: TestParty = hekou,
  typ: JwsTyp = MESSAGE_TYP,
): Promise<string> {
  return signCompact(envelope, party.signing, typ);
}

function b64(value: unknown): string {
  return Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString(
    "base64url",
  );
}

async function verify(
  jws: string | Uint8Array,
  c: Partial<VerifyContext> = {},
): Promise<InboundVerdict> {
  return verifyInbound(typeof jws === "string" ? enc.encode(jws) : jws, ctx(c));
}

function expectRejected(verdict: InboundVerdict, code: string) {
  if (verdict.ok) throw new Error(`expected ${code}, got an accepted ${verdict.kind}`);
  expect(verdict.code).toBe(code);
  return verdict;
}

const fresh = (overrides: Partial<Envelope> = {}) =>
  envelopeAt("CN-MPS-HEKOU", ["VN-BGC-LAOCAI"], new Date(NOW.getTime() - 1000), overrides);

describe("verifyInbound", () => {
  it("accepts a signed, valid message addressed to us, with the digest of the exact bytes", async () => {
    const jws = await signed(fresh());
    const verdict = await verify(jws);
    expect(verdict.ok).toBe(true);
    if (!verdict.ok || verdict.kind !== "message") throw new Error("not a message");
    expect(verdict.envelope.from).toBe("CN-MPS-HEKOU");
    expect(verdict.digest).toBe(sha256Hex(jws));
    expect(verdict.kid).toBe(hekou.signing.kid);
  });

  it("accepts an ES256-signed message from a partner whose key is ES256", async () => {
    const thai = await makeParty("TH-RTP-ATHD", { alg: "ES256" });
    const jws = await signed(envelopeAt(thai.id, ["VN-BGC-LAOCAI"], NOW), thai);
    expect((await verify(jws, { keys: resolverOf(hekou, laocai, thai) })).ok).toBe(true);
  });

  it("accepts a receipt addressed to us", async () => {
    const receipt = buildReceipt(
      { to: "VN-BGC-LAOCAI", messageId: crypto.randomUUID(), digest: "a".repeat(64), errors: [] },
      { self: "CN-MPS-HEKOU", clock: () => NOW, ids: () => crypto.randomUUID() },
    );
    const verdict = await verify(await signed(receipt, hekou, RECEIPT_TYP));
    expect(verdict.ok && verdict.kind).toBe("receipt");
  });

  it("rejects oversized input with payload_too_large before parsing", async () => {
    expectRejected(await verify(new Uint8Array(2048), { maxBytes: 1024 }), "payload_too_large");
  });

  it("rejects bytes that are not UTF-8 as malformed", async () => {
    expectRejected(await verify(new Uint8Array([0xff, 0xfe, 0x2e, 0x41])), "malformed");
  });

  it("rejects a string that is not a compact JWS as malformed", async () => {
    expectRejected(await verify("hello world"), "malformed");
    expectRejected(await verify(`${b64({ alg: "EdDSA" })}.${b64("not json")}.c2ln`), "malformed");
    expectRejected(await verify(`${b64("[1]")}.${b64({ a: 1 })}.c2ln`), "malformed");
  });

  it("rejects non-canonical base64url, whose lenient decoding would give one signature two digests", async () => {
    const jws = await signed(fresh());
    const [h, p, s = ""] = jws.split(".");
    // Ed25519 signatures are 64 bytes: 86 base64url characters, the last one carrying 4 unused bits.
    const last = s.at(-1) ?? "A";
    const sibling = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".indexOf(last) ^ 1
    ];
    const variant = `${h}.${p}.${s.slice(0, -1)}${sibling}`;
    expect(
      Buffer.from(variant.split(".")[2] ?? "", "base64url").equals(Buffer.from(s, "base64url")),
    ).toBe(true);
    expectRejected(await verify(variant), "malformed");
    expect((await verify(jws)).ok).toBe(true);
  });

  it("rejects U+0000 and lone surrogates, which the store could never keep, as malformed", async () => {
    const header = { alg: "EdDSA", kid: hekou.signing.kid, typ: MESSAGE_TYP };
    const withNul = `{"id":"x","from":"CN-MPS-HEKOU","caseRef":"A\\u0000B"}`;
    const withSurrogate = `{"id":"x","from":"CN-MPS-HEKOU","caseRef":"A\\ud800B"}`;
    for (const payload of [withNul, withSurrogate]) {
      expectRejected(await verify(`${b64(header)}.${b64(payload)}.c2ln`), "malformed");
    }
  });

  it("rejects the issue's 4,000-deep protected header as malformed, quickly and without a RangeError", async () => {
    const deep = `${'{"a":'.repeat(4000)}1${"}".repeat(4000)}`;
    const started = performance.now();
    const verdict = expectRejected(await verify(`${b64(deep)}.${b64({})}.AAAA`), "malformed");
    expect(performance.now() - started).toBeLessThan(1000);
    expect(verdict.detail).toBe("protected header nests deeper than 32 levels");
    expect(verdict.issues).toEqual([]);
  });

  it("rejects a signed payload nested 10,000 deep as malformed before reading it", async () => {
    const envelope = JSON.stringify(fresh());
    const deepBody = `"body":{"deep":${"[".repeat(10_000)}${"]".repeat(10_000)},`;
    const payload = envelope.replace('"body":{', deepBody);
    expect(payload).not.toBe(envelope);
    const jws = await new CompactSign(enc.encode(payload))
      .setProtectedHeader({ alg: "EdDSA", kid: hekou.signing.kid, typ: MESSAGE_TYP })
      .sign(hekou.signing.key);
    const started = performance.now();
    const verdict = expectRejected(await verify(jws), "malformed");
    expect(performance.now() - started).toBeLessThan(1000);
    expect(verdict.detail).toBe("payload nests deeper than 32 levels");
    // Refused unread: the sender is not even looked at, so nobody is answered.
    expect(verdict.claimedFrom).toBeNull();
  });

  it("reads a header nested exactly 32 deep and refuses one nested 33 deep", async () => {
    const header = (depth: number) =>
      `{"alg":"EdDSA","kid":"${hekou.signing.kid}","typ":"${MESSAGE_TYP}","x":${"[".repeat(depth - 1)}${"]".repeat(depth - 1)}}`;
    const payload = b64(fresh());
    // 32 levels are read, and refused for the extra member by the JWS profile.
    expectRejected(await verify(`${b64(header(32))}.${payload}.c2ln`), "jws_header_invalid");
    const verdict = expectRejected(await verify(`${b64(header(33))}.${payload}.c2ln`), "malformed");
    expect(verdict.detail).toBe("protected header nests deeper than 32 levels");
  });

  it("rejects a message meant to live longer than 366 days as envelope_invalid", async () => {
    const long = fresh({ expiresAt: new Date(NOW.getTime() + 367 * 86_400_000).toISOString() });
    const verdict = expectRejected(await verify(await signed(long)), "envelope_invalid");
    expect(verdict.issues).toEqual([
      { path: "/expiresAt", message: "must be at most 366 days after sentAt" },
    ]);
  });

  it("rejects an unknown typ, a forbidden alg, a missing kid and crit as jws_header_invalid", async () => {
    const payload = b64(fresh());
    const header = { alg: "EdDSA", kid: hekou.signing.kid, typ: MESSAGE_TYP };
    for (const bad of [
      { ...header, typ: "JWT" },
      { ...header, alg: "none" },
      { ...header, alg: "HS256" },
      { alg: "EdDSA", typ: MESSAGE_TYP },
      { ...header, crit: ["exp"] },
      { ...header, b64: true },
      { ...header, jku: "https://attacker.example/jwks.json" },
      { ...header, jwk: { kty: "OKP" } },
    ]) {
      expectRejected(await verify(`${b64(bad)}.${payload}.c2ln`), "jws_header_invalid");
    }
  });

  it("compares typ case-insensitively and with an optional application/ prefix (RFC 7515 §4.1.9)", async () => {
    const [, payload, sig] = (await signed(fresh())).split(".");
    for (const typ of ["application/liaison-message+jws", "Liaison-Message+JWS"]) {
      const header = b64({ alg: "EdDSA", kid: hekou.signing.kid, typ });
      const verdict = await verify(`${header}.${payload}.${sig}`);
      // The header is part of the signing input, so the signature no longer verifies: but the typ
      // was understood (a message), not refused as jws_header_invalid.
      expectRejected(verdict, "signature_invalid");
    }
  });

  it("rejects a leap-second sentAt that would slip past every time check", async () => {
    const revoked = await makeParty("CN-MPS-HEKOU", {
      revokedAt: new Date(NOW.getTime() - 3_600_000),
    });
    const leap = fresh({ sentAt: "2030-12-31T23:59:60Z" });
    const verdict = expectRejected(
      await verify(await signed(leap, revoked), { keys: resolverOf(revoked, laocai) }),
      "envelope_invalid",
    );
    expect(verdict.issues).toEqual([
      { path: "/sentAt", message: "must be a representable date-time" },
    ]);
  });

  it("rejects a header alg that differs from the registered key's alg", async () => {
    const header = b64({ alg: "ES256", kid: hekou.signing.kid, typ: MESSAGE_TYP });
    const [, payload, sig] = (await signed(fresh())).split(".");
    expectRejected(await verify(`${header}.${payload}.${sig}`), "jws_header_invalid");
  });

  it("rejects a message from an unregistered sender as sender_unknown, with no one to answer", async () => {
    const jws = await signed(envelopeAt(stranger.id, ["VN-BGC-LAOCAI"], NOW), stranger);
    const verdict = expectRejected(await verify(jws), "sender_unknown");
    expect(verdict.claimedFrom).toBeNull();
  });

  it("rejects an unknown kid, and a kid of another party, as key_unknown", async () => {
    const byStranger = await signCompact(fresh(), stranger.signing, MESSAGE_TYP);
    expectRejected(await verify(byStranger), "key_unknown");
    const byLaocaiKey = await signCompact(fresh(), laocai.signing, MESSAGE_TYP);
    const verdict = expectRejected(await verify(byLaocaiKey), "key_unknown");
    expect(verdict.claimedFrom).toBe("CN-MPS-HEKOU");
  });

  it("rejects a tampered signature and a tampered payload as signature_invalid, naming the claimed sender", async () => {
    const jws = await signed(fresh());
    const [h, p, s = ""] = jws.split(".");
    const i = Math.floor(s.length / 2);
    const tamperedSig = `${h}.${p}.${s.slice(0, i)}${s[i] === "A" ? "B" : "A"}${s.slice(i + 1)}`;
    const verdict = expectRejected(await verify(tamperedSig), "signature_invalid");
    expect(verdict.claimedFrom).toBe("CN-MPS-HEKOU");
    expect(verdict.messageId).toBe(JSON.parse(Buffer.from(p ?? "", "base64url").toString()).id);
    const changed = b64({
      ...JSON.parse(Buffer.from(p ?? "", "base64url").toString()),
      caseRef: "CN-HEKOU-2026-0043",
    });
    expectRejected(await verify(`${h}.${changed}.${s}`), "signature_invalid");
  });

  it("rejects a signed payload that breaks the envelope schema as envelope_invalid", async () => {
    const extra = { ...fresh(), note: "extra" };
    const verdict = expectRejected(await verify(await signed(extra)), "envelope_invalid");
    expect(verdict.issues.length).toBeGreaterThan(0);
    const { caseRef: _c, ...missing } = fresh();
    expectRejected(await verify(await signed(missing)), "envelope_invalid");
    const backwards = fresh({ expiresAt: new Date(NOW.getTime() - 60_000).toISOString() });
    expectRejected(await verify(await signed(backwards)), "envelope_invalid");
  });

  it("rejects a message claimed to be sent outside the key's validity as key_not_valid", async () => {
    const rotated = await makeParty("CN-MPS-HEKOU", {
      validFrom: new Date("2026-01-01T00:00:00Z"),
      validUntil: new Date("2026-06-01T00:00:00Z"),
    });
    const k = resolverOf(rotated, laocai);
    const before = envelopeAt(rotated.id, ["VN-BGC-LAOCAI"], new Date("2025-12-31T00:00:00Z"), {
      expiresAt: "2027-01-01T00:00:00.000Z",
    });
    expectRejected(await verify(await signed(before, rotated), { keys: k }), "key_not_valid");
    const after = envelopeAt(rotated.id, ["VN-BGC-LAOCAI"], new Date("2026-07-01T00:00:00Z"), {
      expiresAt: "2027-01-01T00:00:00.000Z",
    });
    expectRejected(await verify(await signed(after, rotated), { keys: k }), "key_not_valid");
    const inside = envelopeAt(rotated.id, ["VN-BGC-LAOCAI"], new Date("2026-05-01T00:00:00Z"), {
      expiresAt: "2027-01-01T00:00:00.000Z",
    });
    expect((await verify(await signed(inside, rotated), { keys: k })).ok).toBe(true);
  });

  it("rejects anything new signed with a revoked key, even backdated before the revocation", async () => {
    const revoked = await makeParty("CN-MPS-HEKOU", {
      revokedAt: new Date(NOW.getTime() - 3_600_000),
    });
    const k = resolverOf(revoked, laocai);
    expectRejected(
      await verify(await signed(envelopeAt(revoked.id, ["VN-BGC-LAOCAI"], NOW), revoked), {
        keys: k,
      }),
      "key_revoked",
    );
    const backdated = envelopeAt(
      revoked.id,
      ["VN-BGC-LAOCAI"],
      new Date(NOW.getTime() - 7_200_000),
    );
    expectRejected(await verify(await signed(backdated, revoked), { keys: k }), "key_revoked");
    // Before the revocation time came, the same message verified.
    const before = new Date(NOW.getTime() - 5_400_000);
    expect((await verify(await signed(backdated, revoked), { keys: k, now: before })).ok).toBe(
      true,
    );
    // A revocation announced for the future takes effect then.
    const later = await makeParty("CN-MPS-HEKOU", {
      revokedAt: new Date(NOW.getTime() + 3_600_000),
    });
    const fresh = envelopeAt(later.id, ["VN-BGC-LAOCAI"], NOW);
    expect((await verify(await signed(fresh, later), { keys: resolverOf(later, laocai) })).ok).toBe(
      true,
    );
  });

  it("rejects sentAt ahead of our clock beyond the skew as clock_skew, and tolerates it within", async () => {
    const ahead = envelopeAt(
      "CN-MPS-HEKOU",
      ["VN-BGC-LAOCAI"],
      new Date(NOW.getTime() + SKEW + 1000),
    );
    expectRejected(await verify(await signed(ahead)), "clock_skew");
    const within = envelopeAt(
      "CN-MPS-HEKOU",
      ["VN-BGC-LAOCAI"],
      new Date(NOW.getTime() + SKEW - 1000),
    );
    expect((await verify(await signed(within))).ok).toBe(true);
  });

  it("rejects a message not addressed to us as misaddressed", async () => {
    const other = envelopeAt("CN-MPS-HEKOU", ["TH-RTP-ATHD"], NOW);
    expectRejected(await verify(await signed(other)), "misaddressed");
  });

  it("rejects a receipt addressed to someone else as misaddressed, without answering it", async () => {
    const receipt = buildReceipt(
      { to: "TH-RTP-ATHD", messageId: crypto.randomUUID(), digest: "b".repeat(64), errors: [] },
      { self: "CN-MPS-HEKOU", clock: () => NOW, ids: () => crypto.randomUUID() },
    );
    const verdict = expectRejected(
      await verify(await signed(receipt, hekou, RECEIPT_TYP)),
      "misaddressed",
    );
    expect(verdict.kind).toBe("receipt");
  });

  it("rejects a message whose expiresAt passed (beyond the skew) as expired", async () => {
    const sentAt = new Date(NOW.getTime() - 2 * 86_400_000);
    const old = envelopeAt("CN-MPS-HEKOU", ["VN-BGC-LAOCAI"], sentAt);
    expectRejected(await verify(await signed(old)), "expired");
  });

  it("rejects a type or version without a schema as type_unknown", async () => {
    expectRejected(await verify(await signed(fresh({ type: "alert.unheard-of" }))), "type_unknown");
    expectRejected(await verify(await signed(fresh({ schemaVersion: 9 }))), "type_unknown");
  });

  it("rejects a body that breaks its schema as schema_invalid, with paths but not values", async () => {
    const body = { ...fresh().body, secretName: "Nguyen Thi VICTIM" };
    const verdict = expectRejected(await verify(await signed(fresh({ body }))), "schema_invalid");
    expect(verdict.issues.length).toBeGreaterThan(0);
    expect(JSON.stringify(verdict)).not.toContain("VICTIM");
  });

  it("rejects a receipt typ carrying a message envelope, and a message typ carrying a receipt", async () => {
    expectRejected(await verify(await signed(fresh(), hekou, RECEIPT_TYP)), "envelope_invalid");
    const receipt = buildReceipt(
      { to: "VN-BGC-LAOCAI", messageId: crypto.randomUUID(), digest: "c".repeat(64), errors: [] },
      { self: "CN-MPS-HEKOU", clock: () => NOW, ids: () => crypto.randomUUID() },
    );
    expectRejected(await verify(await signed(receipt, hekou, MESSAGE_TYP)), "envelope_invalid");
  });

  it("accepts a batch receipt addressed to us, comparing its typ as the others (case, application/)", async () => {
    const payload = batchPayload();
    const jws = await signed(payload, hekou, RECEIPT_BATCH_TYP);
    const verdict = await verify(jws);
    if (!verdict.ok || verdict.kind !== "receipt-batch") throw new Error("expected a batch");
    expect(verdict.batch).toEqual(payload);
    expect(verdict.digest).toBe(sha256Hex(enc.encode(jws)));
    for (const typ of ["application/liaison-receipt-batch+jws", "Liaison-Receipt-Batch+JWS"]) {
      const header = { alg: "EdDSA", kid: hekou.signing.kid, typ };
      const other = await new CompactSign(enc.encode(JSON.stringify(payload)))
        .setProtectedHeader(header)
        .sign(hekou.signing.key);
      expect((await verify(other)).ok).toBe(true);
    }
  });

  it("checks a batch receipt against receipt-batch.v1.json (not receipt.v1.json), and a receipt typ not against it", async () => {
    const empty = expectRejected(
      await verify(await signed(batchPayload({ accepted: [] }), hekou, RECEIPT_BATCH_TYP)),
      "envelope_invalid",
    );
    expect(empty.issues).toEqual([
      { path: "/accepted", message: "must NOT have fewer than 1 items" },
    ]);
    expect(empty.kind).toBe("receipt");
    expectRejected(
      await verify(await signed(batchPayload(), hekou, RECEIPT_TYP)),
      "envelope_invalid",
    );
    const receipt = buildReceipt(
      { to: "VN-BGC-LAOCAI", messageId: crypto.randomUUID(), digest: "c".repeat(64), errors: [] },
      { self: "CN-MPS-HEKOU", clock: () => NOW, ids: () => crypto.randomUUID() },
    );
    expectRejected(
      await verify(await signed(receipt, hekou, RECEIPT_BATCH_TYP)),
      "envelope_invalid",
    );
  });

  it("rejects a batch receipt addressed to someone else (B1) and one naming a message twice (B2), as receipts: never answered", async () => {
    const misaddressed = expectRejected(
      await verify(await signed(batchPayload({ to: "TH-RTP-ATHD" }), hekou, RECEIPT_BATCH_TYP)),
      "misaddressed",
    );
    expect(misaddressed.kind).toBe("receipt");
    const [entry] = batchPayload().accepted;
    const twice = expectRejected(
      await verify(
        await signed(
          batchPayload({
            accepted: [entry, { ...entry, digest: { alg: "sha-256", value: "d".repeat(64) } }],
          }),
          hekou,
          RECEIPT_BATCH_TYP,
        ),
      ),
      "envelope_invalid",
    );
    expect(twice).toMatchObject({ kind: "receipt", claimedFrom: "CN-MPS-HEKOU" });
    expect(twice.issues).toEqual([
      { path: "/accepted/1/messageId", message: "must not repeat an earlier entry's" },
    ]);
  });

  it("runs steps 10-23 on a batch receipt as on a receipt: signature, key, clock", async () => {
    const jws = await signed(batchPayload(), hekou, RECEIPT_BATCH_TYP);
    const [header, payload] = jws.split(".");
    expectRejected(
      await verify(`${header}.${payload}.${b64("x".repeat(64))}`),
      "signature_invalid",
    );
    const ahead = batchPayload({ sentAt: new Date(NOW.getTime() + SKEW + 1000).toISOString() });
    expectRejected(await verify(await signed(ahead, hekou, RECEIPT_BATCH_TYP)), "clock_skew");
    expectRejected(
      await verify(await signed(batchPayload(), stranger, RECEIPT_BATCH_TYP)),
      "key_unknown",
    );
  });
});

function batchPayload(overrides: Record<string, unknown> = {}) {
  return {
    id: crypto.randomUUID(),
    type: "receipt.batch",
    schemaVersion: 1,
    from: "CN-MPS-HEKOU",
    to: "VN-BGC-LAOCAI",
    sentAt: new Date(NOW.getTime() - 1000).toISOString(),
    accepted: [
      { messageId: crypto.randomUUID(), digest: { alg: "sha-256", value: "a".repeat(64) } },
      { messageId: crypto.randomUUID(), digest: { alg: "sha-256", value: "b".repeat(64) } },
    ],
    ...overrides,
  } as {
    id: string;
    from: string;
    to: string;
    accepted: Array<{ messageId: string; digest: { alg: string; value: string } }>;
  } & Record<string, unknown>;
}
