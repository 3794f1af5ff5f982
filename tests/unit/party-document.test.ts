import { calculateJwkThumbprint, exportJWK, generateKeyPair } from "jose";
import { describe, expect, it } from "vitest";
import type { LiaisonError } from "../../src/protocol/errors.ts";
import { parsePartyDocument } from "../../src/registry/party-document.ts";

const PARTY = {
  id: "VN-BGC-LAOCAI",
  name: "Lao Cai",
  country: "VN",
  kind: "border-police-liaison-office",
  inboundSubject: "liaison.inbox.VN-BGC-LAOCAI",
};

async function publicKey(alg: "EdDSA" | "ES256" | "ECDH-ES") {
  const { publicKey } = await generateKeyPair(
    alg,
    alg === "EdDSA" ? { crv: "Ed25519" } : alg === "ECDH-ES" ? { crv: "X25519" } : {},
  );
  const jwk = await exportJWK(publicKey);
  return { ...jwk, kid: await calculateJwkThumbprint(jwk, "sha256") };
}

async function code(doc: unknown): Promise<string> {
  return parsePartyDocument(doc).then(
    () => "accepted",
    (err: { code: string }) => err.code,
  );
}

/** The refusal itself, for its detail and issues. */
async function refusal(doc: unknown): Promise<LiaisonError> {
  return parsePartyDocument(doc).then(
    () => {
      throw new Error("the document was accepted");
    },
    (err: LiaisonError) => err,
  );
}

describe("parsePartyDocument", () => {
  it("reads the party and its signing keys, and leaves encryption keys aside", async () => {
    const sig = await publicKey("EdDSA");
    const encKey = await publicKey("ECDH-ES");
    const { party, keys } = await parsePartyDocument({
      party: PARTY,
      keys: [
        {
          ...sig,
          alg: "EdDSA",
          use: "sig",
          validFrom: "2026-01-01T00:00:00Z",
          revokedAt: "2026-06-01T00:00:00.000+07:00",
        },
        { ...encKey, alg: "ECDH-ES", use: "enc", validFrom: "2026-01-01T00:00:00Z" },
      ],
    });
    expect(party).toEqual(PARTY);
    expect(keys.map((k) => k.kid)).toEqual([sig.kid]);
    expect(keys[0]?.revokedAt?.toISOString()).toBe("2026-05-31T17:00:00.000Z");
  });

  it("refuses a key whose alg does not fit its key type, before anything is stored", async () => {
    expect(
      await code({
        party: PARTY,
        keys: [{ ...(await publicKey("EdDSA")), alg: "ES256", validFrom: "2026-01-01T00:00:00Z" }],
      }),
    ).toBe("request_invalid");
  });

  it("refuses a kid that is not the key's thumbprint, a private key, a zoneless time and a document with no signing key", async () => {
    const k = await publicKey("EdDSA");
    const base = { ...k, alg: "EdDSA", validFrom: "2026-01-01T00:00:00Z" };
    expect(await code({ party: PARTY, keys: [{ ...base, kid: "other" }] })).toBe("request_invalid");
    expect(await code({ party: PARTY, keys: [{ ...base, d: "secret" }] })).toBe("request_invalid");
    expect(
      await code({ party: PARTY, keys: [{ ...base, validFrom: "2026-01-01 00:00:00" }] }),
    ).toBe("request_invalid");
    expect(await code({ party: PARTY, keys: [null] })).toBe("request_invalid");
    expect(await code({ party: PARTY, keys: ["key"] })).toBe("request_invalid");
    for (const bad of [
      "2026-02-30T00:00:00Z",
      "2026-01-01T24:00:00Z",
      "2026-12-31T23:59:60Z",
      "2026-01-01T00:00:00+24:00",
      "2026-01-01T00:00:00+05:99",
    ]) {
      expect(await code({ party: PARTY, keys: [{ ...base, validFrom: bad }] })).toBe(
        "request_invalid",
      );
    }
    const encWithPrivate = {
      ...(await publicKey("ECDH-ES")),
      alg: "ECDH-ES",
      use: "enc",
      d: "secret",
    };
    expect(await code({ party: PARTY, keys: [base, encWithPrivate] })).toBe("request_invalid");
    expect(
      await code({
        party: PARTY,
        keys: [{ ...(await publicKey("ECDH-ES")), alg: "ECDH-ES", use: "enc" }],
      }),
    ).toBe("request_invalid");
    expect(await code({ party: { ...PARTY, id: "lao cai" }, keys: [base] })).toBe(
      "request_invalid",
    );
    expect(await code({ party: PARTY, keys: [base] })).toBe("accepted");
  });

  it("refuses a country that is not the id's prefix, a wildcard subject, a repeated kid and a validity that ends before it starts", async () => {
    const k = await publicKey("EdDSA");
    const key = { ...k, alg: "EdDSA", validFrom: "2026-01-01T00:00:00Z" };
    expect(await code({ party: { ...PARTY, country: "TH" }, keys: [key] })).toBe("request_invalid");
    expect(await code({ party: { ...PARTY, country: "vn" }, keys: [key] })).toBe("request_invalid");
    expect(
      await code({ party: { ...PARTY, inboundSubject: "liaison.inbox.*" }, keys: [key] }),
    ).toBe("request_invalid");
    expect(await code({ party: { ...PARTY, inboundSubject: "liaison inbox" }, keys: [key] })).toBe(
      "request_invalid",
    );
    expect(await code({ party: PARTY, keys: [key, key] })).toBe("request_invalid");
    expect(
      await code({ party: PARTY, keys: [{ ...key, validUntil: "2025-12-31T00:00:00Z" }] }),
    ).toBe("request_invalid");
  });

  it("refuses U+0000 and lone surrogates anywhere in the document, naming the place, not the value", async () => {
    const k = await publicKey("EdDSA");
    const key = { ...k, alg: "EdDSA", validFrom: "2026-01-01T00:00:00Z" };
    const cases: Array<[unknown, string]> = [
      [{ party: { ...PARTY, name: "Lao\u0000Cai" }, keys: [key] }, "/party/name"],
      [{ party: { ...PARTY, kind: "police\u0000" }, keys: [key] }, "/party/kind"],
      [{ party: { ...PARTY, name: "Lao \ud800Cai" }, keys: [key] }, "/party/name"],
      [{ party: PARTY, keys: [{ ...key, note: ["ok", "\udc00"] }] }, "/keys/0/note/1"],
      // An extra member whose name is unstorable: the object holding it is named.
      [{ party: { ...PARTY, "x\u0000": 1 }, keys: [key] }, "/party"],
    ];
    for (const [doc, path] of cases) {
      const err = await refusal(doc);
      expect(err.code).toBe("request_invalid");
      expect(err.issues).toEqual([{ path, message: expect.any(String) }]);
      expect(`${err.message} ${JSON.stringify(err.issues)}`).not.toMatch(/Lao|Cai|police/);
    }
  });

  it("refuses a document nested deeper than 32 levels, without a RangeError", async () => {
    const k = await publicKey("EdDSA");
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    const err = await refusal({
      party: PARTY,
      keys: [{ ...k, alg: "EdDSA", validFrom: "2026-01-01T00:00:00Z", deep }],
    });
    expect(err.code).toBe("request_invalid");
    expect(err.message).toContain("deeper than 32 levels");
  });

  it("refuses times outside the years 0001 to 9999 in UTC, naming the field", async () => {
    const k = await publicKey("EdDSA");
    const key = { ...k, alg: "EdDSA", validFrom: "2026-01-01T00:00:00Z" };
    for (const [field, value] of [
      ["validFrom", "0000-01-01T00:00:00Z"],
      ["validFrom", "0000-02-29T00:00:00Z"],
      ["revokedAt", "0000-06-01T00:00:00Z"],
      ["validUntil", "9999-12-31T23:00:00-05:00"],
      ["revokedAt", "0001-01-01T00:00:00+01:00"],
    ] as const) {
      const err = await refusal({ party: PARTY, keys: [{ ...key, [field]: value }] });
      expect(err.code).toBe("request_invalid");
      expect(err.message).toContain(`keys[0].${field}`);
    }
    for (const [field, value] of [
      ["validFrom", "0001-01-01T00:00:00Z"],
      ["validFrom", "0048-02-29T00:00:00Z"],
      ["validUntil", "9999-12-31T23:59:59.999Z"],
      ["revokedAt", "9999-12-31T23:59:59+00:00"],
    ] as const) {
      expect(await code({ party: PARTY, keys: [{ ...key, [field]: value }] })).toBe("accepted");
    }
  });
});
