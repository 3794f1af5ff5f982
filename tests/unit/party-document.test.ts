import { calculateJwkThumbprint, exportJWK, generateKeyPair } from "jose";
import { describe, expect, it } from "vitest";
import type { LiaisonError } from "../../src/protocol/errors.ts";
import type { KeyRecord, PartyRecord } from "../../src/protocol/types.ts";
import { PartnerRegistry, type PartyStorage } from "../../src/registry/partner-registry.ts";
import { buildPartyDocument, parsePartyDocument } from "../../src/registry/party-document.ts";

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
  it("reads the party, its signing keys and its encryption keys, each with its use", async () => {
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
        {
          ...encKey,
          alg: "ECDH-ES+A256KW",
          use: "enc",
          validFrom: "2026-01-01T00:00:00Z",
          validUntil: "2027-01-01T00:00:00Z",
        },
      ],
    });
    expect(party).toEqual(PARTY);
    expect(keys.map((k) => [k.kid, k.use, k.alg])).toEqual([
      [sig.kid, "sig", "EdDSA"],
      [encKey.kid, "enc", "ECDH-ES+A256KW"],
    ]);
    expect(keys[0]?.revokedAt?.toISOString()).toBe("2026-05-31T17:00:00.000Z");
    const { kid: _kid, ...encJwk } = encKey;
    expect(keys[1]).toMatchObject({
      publicJwk: encJwk,
      validFrom: new Date("2026-01-01T00:00:00Z"),
      validUntil: new Date("2027-01-01T00:00:00Z"),
      revokedAt: null,
    });
  });

  it("publishes both uses and reads back what it published", async () => {
    const sig = await publicKey("EdDSA");
    const encKey = await publicKey("ECDH-ES");
    const strip = ({ kid: _kid, ...jwk }: Record<string, unknown>) => jwk;
    const validity = {
      validFrom: new Date("2026-01-01T00:00:00Z"),
      validUntil: null,
      revokedAt: new Date("2026-09-01T00:00:00Z"),
    };
    const records = [
      {
        kid: sig.kid,
        partyId: PARTY.id,
        use: "sig" as const,
        alg: "EdDSA",
        publicJwk: strip(sig),
        ...validity,
      },
      {
        kid: encKey.kid,
        partyId: PARTY.id,
        use: "enc" as const,
        alg: "ECDH-ES+A256KW",
        publicJwk: strip(encKey),
        ...validity,
      },
    ];
    const doc = buildPartyDocument(PARTY, records);
    expect(doc.keys.map((k) => [k.use, k.alg])).toEqual([
      ["sig", "EdDSA"],
      ["enc", "ECDH-ES+A256KW"],
    ]);
    expect(doc.keys[1]).toMatchObject({
      kty: "OKP",
      crv: "X25519",
      revokedAt: "2026-09-01T00:00:00.000Z",
    });
    expect((await parsePartyDocument(JSON.parse(JSON.stringify(doc)))).keys).toEqual(records);
    // A record without use is a signing key.
    const { use: _use, ...legacy } = records[0] ?? (undefined as never);
    expect(buildPartyDocument(PARTY, [legacy]).keys[0]?.use).toBe("sig");
  });

  it("refuses an encryption key with a private part, on another curve, with another alg, with a kid that is not its thumbprint, or without validFrom", async () => {
    const sig = { ...(await publicKey("EdDSA")), alg: "EdDSA", validFrom: "2026-01-01T00:00:00Z" };
    const x = await publicKey("ECDH-ES");
    const enc = { ...x, alg: "ECDH-ES+A256KW", use: "enc", validFrom: "2026-01-01T00:00:00Z" };
    expect(await code({ party: PARTY, keys: [sig, enc] })).toBe("accepted");
    const ed = await publicKey("EdDSA");
    const p256 = await publicKey("ES256");
    const cases: Array<[string, unknown, RegExp]> = [
      ["private key", { ...enc, d: "secret" }, /private key/],
      [
        "Ed25519 as enc",
        { ...ed, alg: "ECDH-ES+A256KW", use: "enc", validFrom: enc.validFrom },
        /X25519/,
      ],
      [
        "P-256 as enc",
        { ...p256, alg: "ECDH-ES+A256KW", use: "enc", validFrom: enc.validFrom },
        /X25519/,
      ],
      ["wrong crv", { ...enc, crv: "X448" }, /X25519/],
      ["direct ECDH-ES", { ...enc, alg: "ECDH-ES" }, /alg must be ECDH-ES\+A256KW/],
      ["A128KW", { ...enc, alg: "ECDH-ES+A128KW" }, /alg must be ECDH-ES\+A256KW/],
      ["no alg", { ...enc, alg: undefined }, /alg must be/],
      ["kid not the thumbprint", { ...enc, kid: sig.kid }, /thumbprint/],
      ["kid of another format", { ...enc, kid: "enc-1" }, /thumbprint/],
      ["no validFrom", { ...enc, validFrom: undefined }, /validFrom is missing/],
      ["zoneless validFrom", { ...enc, validFrom: "2026-01-01 00:00:00" }, /validFrom/],
      ["validUntil before validFrom", { ...enc, validUntil: "2025-01-01T00:00:00Z" }, /validUntil/],
      ["x of the wrong length", { ...enc, x: "AAAA", kid: undefined }, /thumbprint|import/],
    ];
    for (const [name, key, why] of cases) {
      const err = await refusal({ party: PARTY, keys: [sig, JSON.parse(JSON.stringify(key))] });
      expect(err.code, name).toBe("request_invalid");
      expect(err.message, name).toMatch(why);
    }
    // An X25519 key that does not say use "enc" is taken for a signing key, and refused.
    expect(await code({ party: PARTY, keys: [sig, { ...enc, use: "sig" }] })).toBe(
      "request_invalid",
    );
    expect(await code({ party: PARTY, keys: [sig, { ...enc, use: undefined }] })).toBe(
      "request_invalid",
    );
  });

  it("still needs a signing key: encryption keys alone are refused", async () => {
    const enc = {
      ...(await publicKey("ECDH-ES")),
      alg: "ECDH-ES+A256KW",
      use: "enc",
      validFrom: "2026-01-01T00:00:00Z",
    };
    const err = await refusal({ party: PARTY, keys: [enc] });
    expect(err.code).toBe("request_invalid");
    expect(err.message).toContain("no signing key");
  });

  it("never lets an encryption key verify a signature: keyById answers signing keys only", async () => {
    const sig = await publicKey("EdDSA");
    const encKey = await publicKey("ECDH-ES");
    const { party, keys } = await parsePartyDocument({
      party: PARTY,
      keys: [
        { ...sig, alg: "EdDSA", use: "sig", validFrom: "2026-01-01T00:00:00Z" },
        { ...encKey, alg: "ECDH-ES+A256KW", use: "enc", validFrom: "2026-01-01T00:00:00Z" },
      ],
    });
    const registry = await PartnerRegistry.load(memoryStorage());
    await registry.add(party, keys);
    expect(registry.keyById(sig.kid)?.alg).toBe("EdDSA");
    expect(registry.keyById(encKey.kid)).toBeUndefined();
    const now = new Date("2026-06-01T00:00:00Z");
    expect(registry.encryptionKeyOf(PARTY.id, now)?.kid).toBe(encKey.kid);
    expect(registry.encryptionKeyOf(PARTY.id, now)?.key.algorithm.name).toBe("X25519");
    expect(registry.encryptionKeyOf(PARTY.id, new Date("2025-06-01T00:00:00Z"))).toBeUndefined();
    expect(registry.encryptionKeyOf("TH-RTP-ATPD", now)).toBeUndefined();
  });

  it("gives the newest encryption key valid at the time asked, never a revoked or expired one", async () => {
    const sig = await publicKey("EdDSA");
    const [old, current, revoked, future] = await Promise.all(
      [1, 2, 3, 4].map(() => publicKey("ECDH-ES")),
    );
    const enc = (k: Record<string, unknown> | undefined, extra: Record<string, string>) => ({
      ...k,
      alg: "ECDH-ES+A256KW",
      use: "enc",
      ...extra,
    });
    const { party, keys } = await parsePartyDocument({
      party: PARTY,
      keys: [
        { ...sig, alg: "EdDSA", validFrom: "2025-01-01T00:00:00Z" },
        enc(old, { validFrom: "2025-01-01T00:00:00Z", validUntil: "2026-01-01T00:00:00Z" }),
        enc(current, { validFrom: "2026-01-01T00:00:00Z" }),
        enc(revoked, { validFrom: "2026-03-01T00:00:00Z", revokedAt: "2026-05-01T00:00:00Z" }),
        enc(future, { validFrom: "2027-01-01T00:00:00Z" }),
      ],
    });
    const registry = await PartnerRegistry.load(memoryStorage());
    await registry.add(party, keys);
    const at = (t: string) => registry.encryptionKeyOf(PARTY.id, new Date(t))?.kid;
    expect(at("2025-06-01T00:00:00Z")).toBe(old?.kid);
    expect(at("2026-02-01T00:00:00Z")).toBe(current?.kid);
    expect(at("2026-04-01T00:00:00Z")).toBe(revoked?.kid);
    expect(at("2026-06-01T00:00:00Z")).toBe(current?.kid);
    expect(at("2027-06-01T00:00:00Z")).toBe(future?.kid);
    expect(at("2024-06-01T00:00:00Z")).toBeUndefined();
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
      alg: "ECDH-ES+A256KW",
      use: "enc",
      validFrom: "2026-01-01T00:00:00Z",
      d: "secret",
    };
    expect(await code({ party: PARTY, keys: [base, encWithPrivate] })).toBe("request_invalid");
    expect(
      await code({
        party: PARTY,
        keys: [
          {
            ...(await publicKey("ECDH-ES")),
            alg: "ECDH-ES+A256KW",
            use: "enc",
            validFrom: "2026-01-01T00:00:00Z",
          },
        ],
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

  it("reads a federated party's JetStream domain, and refuses one that is not a subject token", async () => {
    const k = await publicKey("EdDSA");
    const key = { ...k, alg: "EdDSA", validFrom: "2026-01-01T00:00:00Z" };
    const parsed = await parsePartyDocument({ party: { ...PARTY, natsDomain: "VN" }, keys: [key] });
    expect(parsed.party.natsDomain).toBe("VN");
    expect((await parsePartyDocument({ party: PARTY, keys: [key] })).party).not.toHaveProperty(
      "natsDomain",
    );
    for (const natsDomain of ["", "V.N", "VN>", "*", 7, "x".repeat(33)]) {
      expect(await code({ party: { ...PARTY, natsDomain }, keys: [key] })).toBe("request_invalid");
    }
  });

  it("reads whether a party accepts batch receipts (absent: it does not), and refuses a non-boolean", async () => {
    const k = await publicKey("EdDSA");
    const key = { ...k, alg: "EdDSA", validFrom: "2026-01-01T00:00:00Z" };
    const parsed = await parsePartyDocument({
      party: { ...PARTY, receiptBatches: true },
      keys: [key],
    });
    expect(parsed.party.receiptBatches).toBe(true);
    for (const party of [PARTY, { ...PARTY, receiptBatches: false }]) {
      expect((await parsePartyDocument({ party, keys: [key] })).party).not.toHaveProperty(
        "receiptBatches",
      );
    }
    for (const receiptBatches of ["true", 1, null, {}]) {
      expect(await code({ party: { ...PARTY, receiptBatches }, keys: [key] })).toBe(
        "request_invalid",
      );
    }
  });

  it("tells its listeners after a registration, with the party in place, and registers even when one fails", async () => {
    const sig = await publicKey("EdDSA");
    const { party, keys } = await parsePartyDocument({
      party: { ...PARTY, natsDomain: "VN" },
      keys: [{ ...sig, alg: "EdDSA", validFrom: "2026-01-01T00:00:00Z" }],
    });
    const registry = await PartnerRegistry.load(memoryStorage());
    const seen: Array<string | undefined> = [];
    registry.onAdded(async () => {
      seen.push(registry.party(PARTY.id)?.natsDomain);
    });
    registry.onAdded(async () => {
      throw new Error("the broker is down");
    });
    await registry.add(party, keys);
    expect(seen).toEqual(["VN"]);
    expect(registry.hasParty(PARTY.id)).toBe(true);
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

/** The registry's storage in memory, with the store's one-way rules left out. */
function memoryStorage(): PartyStorage {
  const parties = new Map<string, PartyRecord>();
  const keys = new Map<string, KeyRecord>();
  return {
    register: async (party, records) => {
      parties.set(party.id, party);
      for (const k of records) if (!keys.has(k.kid)) keys.set(k.kid, k);
    },
    listParties: async () => [...parties.values()],
    listKeys: async () => [...keys.values()],
  };
}
