import { createPublicKey, type KeyObject, verify as nodeVerify } from "node:crypto";
import { exportJWK, FlattenedSign, generalVerify } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { LiaisonError } from "../../src/protocol/errors.ts";
import {
  countersignHandoverRecord,
  HANDOVER_RECORD_TYP,
  type HandoverRecord,
  type HandoverSignature,
  signHandoverRecord,
  verifyHandoverRecord,
} from "../../src/protocol/handover-record.ts";
import type { KeyResolver } from "../../src/protocol/types.ts";
import { makeParty, resolverOf, type TestParty } from "../helpers/protocol-fixtures.ts";

const NOW = new Date("2026-11-24T12:00:00.000Z");

const RECORD = {
  caseRef: "CN-HEKOU-2026-0042",
  proposalId: "6f1c2a52-9d7e-4a4b-8f3e-2c1d0b9a8e7f",
  handedOverAt: "2026-11-24T09:30:00Z",
  borderCrossingId: "HEKOU-LAOCAI-BRIDGE",
  handedOverBy: "CN-MPS-HEKOU",
  receivedBy: "VN-BGC-LAOCAI",
};

let hekou: TestParty;
let laocai: TestParty;
let laocaiEs: TestParty;
let thai: TestParty;
let stranger: TestParty;
let keys: KeyResolver;
/** Signed by hekou (Ed25519) and countersigned by laocai (Ed25519). */
let both: HandoverRecord;

beforeAll(async () => {
  hekou = await makeParty("CN-MPS-HEKOU");
  laocai = await makeParty("VN-BGC-LAOCAI");
  laocaiEs = await makeParty("VN-BGC-LAOCAI", { alg: "ES256" });
  thai = await makeParty("TH-RTP-ATHD", { alg: "ES256" });
  stranger = await makeParty("MM-MPF-MUSE");
  keys = resolverOf(hekou, laocai, laocaiEs, thai);
  both = await countersignHandoverRecord(
    await signHandoverRecord(RECORD, hekou.signing),
    laocai.signing,
  );
});

const b64 = (value: unknown): string =>
  Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

/** A signature made with `party`'s real key over `payload` (a segment) under any header. */
async function signatureWith(
  party: TestParty,
  payload: string,
  header: Record<string, unknown> = {
    alg: party.signing.alg,
    kid: party.signing.kid,
    typ: HANDOVER_RECORD_TYP,
  },
): Promise<{ protected: string; signature: string }> {
  const jws = await new FlattenedSign(Buffer.from(payload, "base64url"))
    .setProtectedHeader(header as { alg: string })
    .sign(party.signing.key);
  return { protected: jws.protected ?? "", signature: jws.signature };
}

/** A one-signature record over raw payload text, signed properly by `party`. */
async function recordOver(text: string, party: TestParty = hekou): Promise<HandoverRecord> {
  const payload = b64(text);
  return { payload, signatures: [await signatureWith(party, payload)] };
}

async function expectInvalid(record: unknown, detail?: RegExp, k: KeyResolver = keys) {
  const verdict = await verifyHandoverRecord(record, k, NOW);
  if (verdict.ok) throw new Error("expected handover_record_invalid, got a verified record");
  expect(verdict.code).toBe("handover_record_invalid");
  if (detail !== undefined) expect(verdict.detail).toMatch(detail);
  // Details name the rule, never the record's content.
  for (const value of Object.values(RECORD)) expect(verdict.detail).not.toContain(value);
  return verdict;
}

async function expectRefused(promise: Promise<unknown>, detail: RegExp) {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(LiaisonError);
  expect((error as LiaisonError).code).toBe("handover_record_invalid");
  expect((error as LiaisonError).message).toMatch(detail);
}

/** The same bytes under the sibling spelling of the last character (its unused low bits). */
function sibling(segment: string): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const last = segment.at(-1) ?? "A";
  return `${segment.slice(0, -1)}${alphabet[alphabet.indexOf(last) ^ 1]}`;
}

/** The same segment with its first byte changed: still canonical, no longer the signature. */
function corrupted(segment: string): string {
  const bytes = Buffer.from(segment, "base64url");
  bytes[0] = (bytes[0] ?? 0) ^ 0x01;
  return bytes.toString("base64url");
}

describe("signHandoverRecord / countersignHandoverRecord / verifyHandoverRecord", () => {
  it("signs, countersigns and verifies: two signers in signature order, and the payload", async () => {
    const verdict = await verifyHandoverRecord(both, keys, NOW);
    expect(verdict).toEqual({
      ok: true,
      payload: RECORD,
      signers: [
        { partyId: "CN-MPS-HEKOU", kid: hekou.signing.kid },
        { partyId: "VN-BGC-LAOCAI", kid: laocai.signing.kid },
      ],
    });
    // Exactly the members of RFC 7515 §7.2.1 that the profile allows, and the header profile.
    expect(Object.keys(both).sort()).toEqual(["payload", "signatures"]);
    for (const s of both.signatures) {
      expect(Object.keys(s).sort()).toEqual(["protected", "signature"]);
    }
    expect(
      JSON.parse(Buffer.from(both.signatures[1]?.protected ?? "", "base64url").toString()),
    ).toEqual({ alg: "EdDSA", kid: laocai.signing.kid, typ: "liaison-handover-record+jws" });
    expect(JSON.parse(Buffer.from(both.payload, "base64url").toString())).toEqual(RECORD);
  });

  it("verifies a record of one signature, and a record that travelled as JSON text", async () => {
    const first = await signHandoverRecord(RECORD, hekou.signing);
    expect(await verifyHandoverRecord(first, keys, NOW)).toMatchObject({
      ok: true,
      signers: [{ partyId: "CN-MPS-HEKOU", kid: hekou.signing.kid }],
    });
    expect((await verifyHandoverRecord(JSON.parse(JSON.stringify(both)), keys, NOW)).ok).toBe(true);
  });

  it("mixes Ed25519 and ES256: an ES256 countersignature over an Ed25519-signed record", async () => {
    const first = await signHandoverRecord(RECORD, hekou.signing);
    const record = await countersignHandoverRecord(first, laocaiEs.signing);
    expect(await verifyHandoverRecord(record, keys, NOW)).toMatchObject({
      ok: true,
      signers: [
        { partyId: "CN-MPS-HEKOU", kid: hekou.signing.kid },
        { partyId: "VN-BGC-LAOCAI", kid: laocaiEs.signing.kid },
      ],
    });
    const esFirst = await signHandoverRecord(RECORD, thai.signing);
    const esBoth = await countersignHandoverRecord(esFirst, laocai.signing);
    expect((await verifyHandoverRecord(esBoth, keys, NOW)).ok).toBe(true);
  });

  it("keeps the first signature and the payload byte for byte when countersigning", async () => {
    const first = await signHandoverRecord(RECORD, hekou.signing);
    const copy = JSON.stringify(first);
    const record = await countersignHandoverRecord(first, laocai.signing);
    expect(record.payload).toBe(first.payload);
    expect(record.signatures).toHaveLength(2);
    expect(JSON.stringify(record.signatures[0])).toBe(JSON.stringify(first.signatures[0]));
    // The record countersigned is left as it was.
    expect(JSON.stringify(first)).toBe(copy);
  });

  it("refuses a tampered payload", async () => {
    const tampered = b64({ ...RECORD, borderCrossingId: "MONG-CAI-BRIDGE" });
    await expectInvalid({ ...both, payload: tampered }, /^signature 1 does not verify/);
  });

  it("refuses a signature taken from another record", async () => {
    const other = await countersignHandoverRecord(
      await signHandoverRecord({ ...RECORD, handedOverAt: "2026-11-25T09:30:00Z" }, hekou.signing),
      laocai.signing,
    );
    const [first, second] = both.signatures;
    const [otherFirst, otherSecond] = other.signatures;
    if (!first || !second || !otherFirst || !otherSecond) throw new Error("two signatures");
    await expectInvalid({ ...both, signatures: [first, otherSecond] }, /^signature 2 does not/);
    await expectInvalid({ ...both, signatures: [otherFirst, second] }, /^signature 1 does not/);
  });

  it("refuses a signature whose kid names no registered key", async () => {
    const record = await countersignHandoverRecord(
      await signHandoverRecord(RECORD, hekou.signing),
      stranger.signing,
    );
    await expectInvalid(record, /^signature 2: kid names no registered key$/);
  });

  it("refuses a key revoked by now, even for a record signed before the revocation", async () => {
    const revoked = await makeParty("VN-BGC-LAOCAI", {
      revokedAt: new Date(NOW.getTime() - 3_600_000),
    });
    const first = await signHandoverRecord(RECORD, hekou.signing);
    const record = await countersignHandoverRecord(first, revoked.signing);
    const k = resolverOf(hekou, revoked);
    await expectInvalid(record, /^signature 2: the key is revoked$/, k);
    // Before the revocation came, the same record verified.
    const before = new Date(NOW.getTime() - 7_200_000);
    expect((await verifyHandoverRecord(record, k, before)).ok).toBe(true);
    // A revocation announced for the future takes effect then.
    const later = await makeParty("VN-BGC-LAOCAI", {
      revokedAt: new Date(NOW.getTime() + 3_600_000),
    });
    const laterRecord = await countersignHandoverRecord(first, later.signing);
    expect((await verifyHandoverRecord(laterRecord, resolverOf(hekou, later), NOW)).ok).toBe(true);
  });

  it("refuses a key not valid when the record was sent (not yet valid, or rotated out)", async () => {
    const future = await makeParty("VN-BGC-LAOCAI", {
      validFrom: new Date(NOW.getTime() + 60_000),
    });
    const past = await makeParty("VN-BGC-LAOCAI", { validUntil: new Date(NOW.getTime() - 1) });
    const first = await signHandoverRecord(RECORD, hekou.signing);
    for (const party of [future, past]) {
      await expectInvalid(
        await countersignHandoverRecord(first, party.signing),
        /^signature 2: the key is not valid when the record was sent$/,
        resolverOf(hekou, party),
      );
    }
  });

  it("checks validity at the carrying message's sentAt, revocation also against now", async () => {
    const rotated = await makeParty("VN-BGC-LAOCAI", { validUntil: new Date(NOW.getTime() - 1) });
    const record = await countersignHandoverRecord(
      await signHandoverRecord(RECORD, hekou.signing),
      rotated.signing,
    );
    const keys = resolverOf(hekou, rotated);
    // Sent while the key was valid, verified after its rotation: valid.
    expect(
      await verifyHandoverRecord(record, keys, NOW, { signedBy: new Date(NOW.getTime() - 60_000) }),
    ).toMatchObject({ ok: true });
    const revoked = await makeParty("VN-BGC-LAOCAI", { revokedAt: new Date(NOW.getTime() - 1) });
    const byRevoked = await countersignHandoverRecord(
      await signHandoverRecord(RECORD, hekou.signing),
      revoked.signing,
    );
    expect(
      await verifyHandoverRecord(byRevoked, resolverOf(hekou, revoked), NOW, {
        signedBy: new Date(NOW.getTime() - 60_000),
      }),
    ).toMatchObject({ ok: false, detail: "signature 2: the key is revoked" });
  });

  it("checks the receiver's own signature for the signature alone (its key may have been rotated or revoked since)", async () => {
    const ownRevoked = await makeParty("CN-MPS-HEKOU", { revokedAt: new Date(NOW.getTime() - 1) });
    const record = await countersignHandoverRecord(
      await signHandoverRecord(RECORD, ownRevoked.signing),
      laocai.signing,
    );
    const keys = resolverOf(ownRevoked, laocai);
    expect(await verifyHandoverRecord(record, keys, NOW)).toMatchObject({ ok: false });
    expect(await verifyHandoverRecord(record, keys, NOW, { self: "CN-MPS-HEKOU" })).toMatchObject({
      ok: true,
    });
    // Its signature must still verify.
    const forged = {
      ...record,
      signatures: [
        {
          ...(record.signatures[0] as HandoverSignature),
          signature: (record.signatures[1] as HandoverSignature).signature,
        },
        record.signatures[1] as HandoverSignature,
      ],
    };
    expect(await verifyHandoverRecord(forged, keys, NOW, { self: "CN-MPS-HEKOU" })).toMatchObject({
      ok: false,
    });
  });

  it("refuses a protected header with an extra member, a wrong typ, a forbidden alg or no kid", async () => {
    const payload = both.payload;
    const header = { alg: "EdDSA", kid: hekou.signing.kid, typ: HANDOVER_RECORD_TYP };
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ ...header, cty: "json" }, /must hold exactly alg, kid and typ/],
      [{ ...header, jwk: { kty: "OKP" } }, /must hold exactly alg, kid and typ/],
      [{ alg: "EdDSA", kid: hekou.signing.kid }, /must hold exactly alg, kid and typ/],
      [{ ...header, typ: "liaison-message+jws" }, /typ must be "liaison-handover-record\+jws"/],
      [{ ...header, typ: "JOSE" }, /typ must be/],
      [{ ...header, typ: 1 }, /typ must be/],
      [{ ...header, kid: "" }, /kid is missing/],
    ];
    for (const [bad, detail] of cases) {
      const record = { payload, signatures: [await signatureWith(hekou, payload, bad)] };
      await expectInvalid(record, detail);
    }
    // alg is checked against the profile and against the registered key, signed or not.
    const sig = both.signatures[0]?.signature ?? "";
    for (const alg of ["none", "HS256", "RS256"]) {
      const record = {
        payload,
        signatures: [{ protected: b64({ ...header, alg }), signature: sig }],
      };
      await expectInvalid(record, /^signature 1: alg must be one of EdDSA, ES256$/);
    }
    const mismatch = {
      payload,
      signatures: [{ protected: b64({ ...header, alg: "ES256" }), signature: sig }],
    };
    await expectInvalid(mismatch, /^signature 1: alg does not match the key$/);
    // A header that is not JSON, or not an object.
    for (const text of ["not json", "[1]", '"x"']) {
      await expectInvalid(
        { payload, signatures: [{ protected: b64(text), signature: sig }] },
        /protected header is not/,
      );
    }
  });

  it("reads typ as RFC 7515 §4.1.9 allows: case-insensitively, with an optional application/ prefix", async () => {
    const payload = both.payload;
    const header = {
      alg: "EdDSA",
      kid: hekou.signing.kid,
      typ: "application/Liaison-Handover-Record+JWS",
    };
    const record = { payload, signatures: [await signatureWith(hekou, payload, header)] };
    expect((await verifyHandoverRecord(record, keys, NOW)).ok).toBe(true);
  });

  it("refuses three signatures, zero signatures and signatures that are not an array", async () => {
    const third = await signatureWith(thai, both.payload);
    await expectInvalid({ ...both, signatures: [...both.signatures, third] }, /1 to 2 signatures/);
    await expectInvalid({ ...both, signatures: [] }, /1 to 2 signatures/);
    await expectInvalid({ ...both, signatures: both.signatures[0] }, /1 to 2 signatures/);
    await expectInvalid({ payload: both.payload }, /exactly payload and signatures/);
  });

  it("refuses an unprotected header member in a signature", async () => {
    const [first, second] = both.signatures;
    if (!first || !second) throw new Error("two signatures");
    await expectInvalid(
      { ...both, signatures: [first, { ...second, header: { kid: laocai.signing.kid } }] },
      /^signature 2 must hold exactly protected and signature \(no unprotected header\)$/,
    );
    await expectInvalid(
      { ...both, signatures: [{ ...first, header: {} }, second] },
      /^signature 1 must hold exactly protected/,
    );
    await expectInvalid({ ...both, signatures: [{ signature: first.signature }] }, /^signature 1/);
    await expectInvalid({ ...both, signatures: ["x"] }, /^signature 1 must hold exactly/);
  });

  it("refuses an extra top-level member, and anything that is not a record object", async () => {
    const first = both.signatures[0];
    await expectInvalid({ ...both, extra: 1 }, /exactly payload and signatures/);
    // A flattened signature next to the general one (RFC 7515 §7.2.2 members).
    await expectInvalid({ ...both, ...first }, /exactly payload and signatures/);
    for (const value of [null, "x", [both], 1]) {
      await expectInvalid(value, /exactly payload and signatures/);
    }
  });

  it("refuses the same party signing twice, with one key or with two", async () => {
    const first = await signHandoverRecord(RECORD, hekou.signing);
    const again = await signatureWith(hekou, first.payload);
    await expectInvalid(
      { ...first, signatures: [...first.signatures, again] },
      /^signature 2: its party signed the record already$/,
    );
    const laocaiTwice = await countersignHandoverRecord(
      await signHandoverRecord(RECORD, laocai.signing),
      laocaiEs.signing,
    );
    await expectInvalid(laocaiTwice, /^signature 2: its party signed the record already$/);
  });

  it("refuses non-canonical base64url, whose lenient decoding would give one signature two records", async () => {
    const [first, second] = both.signatures;
    if (!first || !second) throw new Error("two signatures");
    // Ed25519 signatures are 64 bytes: 86 characters, the last one carrying 4 unused bits.
    const variant = sibling(second.signature);
    expect(
      Buffer.from(variant, "base64url").equals(Buffer.from(second.signature, "base64url")),
    ).toBe(true);
    expect(variant).not.toBe(second.signature);
    await expectInvalid(
      { ...both, signatures: [first, { ...second, signature: variant }] },
      /^signature 2: a segment is not canonical base64url$/,
    );
    await expectInvalid({ ...both, payload: `${both.payload}=` }, /^payload is not canonical/);
    await expectInvalid(
      { ...both, payload: `${both.payload.slice(0, 4)}+${both.payload.slice(5)}` },
      /^payload is not canonical/,
    );
    await expectInvalid({ ...both, payload: "" }, /^payload is not canonical/);
    await expectInvalid(
      { ...both, signatures: [{ ...first, protected: `${first.protected}==` }, second] },
      /^signature 1: a segment is not canonical base64url$/,
    );
  });

  it("refuses a payload that is not a JSON object, not UTF-8, too deep or unstorable", async () => {
    for (const text of ["[1]", '"a record"', "42", "null", "not json"]) {
      await expectInvalid(await recordOver(text), /^payload is not (a JSON object|JSON)$/);
    }
    const latin1 = Buffer.from([0x7b, 0x22, 0xe9, 0x22, 0x3a, 0x31, 0x7d]).toString("base64url");
    await expectInvalid(
      { payload: latin1, signatures: [await signatureWith(hekou, latin1)] },
      /^payload is not UTF-8$/,
    );
    const deep = `{"a":${"[".repeat(32)}${"]".repeat(32)}}`;
    await expectInvalid(await recordOver(deep), /^payload nests deeper than 32 levels$/);
    const atLimit = `{"a":${"[".repeat(31)}${"]".repeat(31)}}`;
    expect((await verifyHandoverRecord(await recordOver(atLimit), keys, NOW)).ok).toBe(true);
    await expectInvalid(await recordOver('{"a":"\\u0000"}'), /U\+0000 or a lone surrogate/);
    await expectInvalid(await recordOver('{"a":"\\ud800"}'), /U\+0000 or a lone surrogate/);
  });

  it("verifies each signature on its own: one valid signature does not carry a forged one", async () => {
    const [first, second] = both.signatures;
    if (!first || !second) throw new Error("two signatures");
    const forgedSecond = {
      ...both,
      signatures: [first, { ...second, signature: corrupted(second.signature) }],
    };
    const forgedFirst = {
      ...both,
      signatures: [{ ...first, signature: corrupted(first.signature) }, second],
    };
    await expectInvalid(forgedSecond, /^signature 2 does not verify with the registered key$/);
    await expectInvalid(forgedFirst, /^signature 1 does not verify with the registered key$/);
    // What a generalVerify-only implementation would have done: accept both records.
    const byKid = (header: { kid?: string }) => {
      const key = keys.keyById(header.kid ?? "");
      if (key === undefined) throw new Error("unknown kid");
      return key.key;
    };
    await expect(generalVerify(forgedSecond, byKid)).resolves.toBeDefined();
    await expect(generalVerify(forgedFirst, byKid)).resolves.toBeDefined();
  });

  it("can be verified offline with node:crypto and the two parties' public keys alone", async () => {
    const record: unknown = JSON.parse(JSON.stringify(both));
    const { payload, signatures } = record as HandoverRecord;
    // All a partner needs: the two public keys as JWKs (as their party documents publish them).
    const jwks = [await exportJWK(hekou.registered.key), await exportJWK(laocai.registered.key)];
    const publicKeys = jwks.map((jwk) => createPublicKey({ key: jwk, format: "jwk" }));
    for (const [i, s] of signatures.entries()) {
      // RFC 7515 §5.2: the signing input is ASCII(BASE64URL(protected) || "." || payload).
      const input = Buffer.from(`${s.protected}.${payload}`, "ascii");
      const signature = Buffer.from(s.signature, "base64url");
      expect(nodeVerify(null, input, publicKeys[i] as KeyObject, signature)).toBe(true);
      // And each key verifies only its own signature.
      expect(nodeVerify(null, input, publicKeys[1 - i] as KeyObject, signature)).toBe(false);
    }
    expect(JSON.parse(Buffer.from(payload, "base64url").toString("utf8"))).toEqual(RECORD);
  });

  it("verifies an ES256 signature offline with node:crypto (raw r || s, RFC 7518 §3.4)", async () => {
    const record = await countersignHandoverRecord(
      await signHandoverRecord(RECORD, hekou.signing),
      laocaiEs.signing,
    );
    const s = record.signatures[1];
    if (!s) throw new Error("two signatures");
    const key = createPublicKey({ key: await exportJWK(laocaiEs.registered.key), format: "jwk" });
    const ok = nodeVerify(
      "sha256",
      Buffer.from(`${s.protected}.${record.payload}`, "ascii"),
      { key, dsaEncoding: "ieee-p1363" },
      Buffer.from(s.signature, "base64url"),
    );
    expect(ok).toBe(true);
  });
});

describe("countersignHandoverRecord refusals", () => {
  it("refuses a record that already holds two signatures", async () => {
    await expectRefused(
      countersignHandoverRecord(both, thai.signing),
      /already holds 2 signatures/,
    );
  });

  it("refuses a second signature with the key that made the first", async () => {
    const first = await signHandoverRecord(RECORD, hekou.signing);
    await expectRefused(
      countersignHandoverRecord(first, hekou.signing),
      /already signed with this key/,
    );
  });

  it("refuses a malformed record rather than signing it", async () => {
    await expectRefused(
      countersignHandoverRecord({ payload: both.payload, signatures: [] }, laocai.signing),
      /1 to 2 signatures/,
    );
    const record = { ...both, signatures: [both.signatures[0]] } as HandoverRecord;
    await expectRefused(
      countersignHandoverRecord({ ...record, payload: `${record.payload}=` }, laocai.signing),
      /not canonical/,
    );
  });
});

describe("signHandoverRecord refusals", () => {
  it("refuses to sign what a verifier must refuse: too deep, or unstorable strings", async () => {
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = [deep];
    await expectRefused(signHandoverRecord({ deep }, hekou.signing), /nests deeper than 32/);
    await expectRefused(
      signHandoverRecord({ caseRef: "A\u0000B" }, hekou.signing),
      /U\+0000 or a lone surrogate/,
    );
  });
});
