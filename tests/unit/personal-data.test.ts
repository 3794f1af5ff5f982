/**
 * body.personalData: JWE (RFC 7516, General JSON Serialization), ECDH-ES+A256KW on X25519,
 * A256GCM. Real keys and real crypto throughout.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { base64url, GeneralEncrypt } from "jose";
import { afterEach, describe, expect, it } from "vitest";
import {
  type EncryptedPersonalData,
  type OpenedPersonalData,
  openPersonalData,
  PERSONAL_DATA_ALG,
  PERSONAL_DATA_CTY,
  PERSONAL_DATA_ENC,
  profileViolation,
  sealPersonalData,
} from "../../src/protocol/personal-data.ts";
import { generateEncryptionKeyFile, generateKeyFile } from "../../src/registry/key-files.ts";
import { OwnKeyring } from "../../src/registry/own-keyring.ts";
import { makeEncryptionKey, type TestEncryptionKey } from "../helpers/protocol-fixtures.ts";

/** Appears in the plaintext of every test; must never appear in a detail. */
const CANARY = "Nguyen-Thi-CANARY-7c1f";

const CONTENT = {
  person: { familyName: CANARY, givenName: "Lan", dateOfBirth: "2009-03-14" },
  documents: [{ kind: "passport", number: `P-${CANARY}` }],
};

const pub = (k: TestEncryptionKey) => ({ kid: k.kid, key: k.publicKey });
const priv = (k: TestEncryptionKey) => ({ kid: k.kid, key: k.privateKey });
const clone = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;
const decodeJson = (segment: string): unknown =>
  JSON.parse(new TextDecoder().decode(base64url.decode(segment)));
const encodeJson = (value: unknown): string =>
  base64url.encode(new TextEncoder().encode(JSON.stringify(value)));

/** Flips one bit in the middle of a base64url segment's bytes, keeping it canonical. */
function flip(segment: string): string {
  const bytes = base64url.decode(segment);
  const i = Math.floor(bytes.length / 2);
  bytes[i] = (bytes[i] ?? 0) ^ 0x01;
  return base64url.encode(bytes);
}

function expectRefused(
  result: OpenedPersonalData,
  code: "personal_data_not_for_us" | "personal_data_undecryptable",
  detail?: RegExp,
) {
  expect(result.ok).toBe(false);
  if (result.ok) return;
  expect(result.code).toBe(code);
  if (detail !== undefined) expect(result.detail).toMatch(detail);
  expect(result.detail).not.toContain(CANARY);
  expect(result.detail).not.toContain("Lan");
  expect(result.detail).not.toContain("passport");
}

/** A JWE with exactly the profile's protected header and one recipient, but `plaintext` inside. */
async function sealRaw(plaintext: string, to: TestEncryptionKey, other: TestEncryptionKey) {
  const jwe = new GeneralEncrypt(new TextEncoder().encode(plaintext)).setProtectedHeader({
    enc: PERSONAL_DATA_ENC,
    cty: PERSONAL_DATA_CTY,
  });
  // Two recipients, so that jose keeps each epk in its recipient header.
  for (const k of [to, other]) {
    jwe.addRecipient(k.publicKey).setUnprotectedHeader({ alg: PERSONAL_DATA_ALG, kid: k.kid });
  }
  return jwe.encrypt();
}

describe("sealPersonalData / openPersonalData", () => {
  it("seals to three recipients, each of which opens it with its own key and learns its kid", async () => {
    const [a, b, c] = await Promise.all([
      makeEncryptionKey(),
      makeEncryptionKey(),
      makeEncryptionKey(),
    ]);
    if (a === undefined || b === undefined || c === undefined) throw new Error("no keys");
    const sealed = await sealPersonalData(CONTENT, [pub(a), pub(b), pub(c)]);
    for (const k of [a, b, c]) {
      expect(await openPersonalData(sealed, [priv(k)])).toEqual({
        ok: true,
        content: CONTENT,
        kid: k.kid,
      });
    }
    // The ciphertext carries nothing readable.
    expect(JSON.stringify(sealed)).not.toContain(CANARY);
  });

  it("emits exactly the profile: protected {enc, cty}, per recipient {alg, kid, epk} and encrypted_key, then iv, ciphertext, tag", async () => {
    const [a, b] = [await makeEncryptionKey(), await makeEncryptionKey()];
    const sealed = await sealPersonalData(CONTENT, [pub(a), pub(b), pub(a)]);
    expect(Object.keys(sealed).sort()).toEqual(
      ["ciphertext", "iv", "protected", "recipients", "tag"].sort(),
    );
    expect(decodeJson(sealed.protected)).toEqual({
      enc: "A256GCM",
      cty: "liaison-personal-data+json",
    });
    // Recipients deduplicated by kid, in the order given.
    expect(sealed.recipients.map((r) => r.header.kid)).toEqual([a.kid, b.kid]);
    for (const r of sealed.recipients) {
      expect(Object.keys(r).sort()).toEqual(["encrypted_key", "header"]);
      expect(Object.keys(r.header).sort()).toEqual(["alg", "epk", "kid"]);
      expect(r.header.alg).toBe("ECDH-ES+A256KW");
      expect(Object.keys(r.header.epk).sort()).toEqual(["crv", "kty", "x"]);
      expect(r.header.epk).toMatchObject({ kty: "OKP", crv: "X25519" });
      expect(base64url.decode(r.header.epk.x)).toHaveLength(32);
      expect(base64url.decode(r.encrypted_key)).toHaveLength(40);
    }
    // Each recipient has its own ephemeral key.
    expect(sealed.recipients[0]?.header.epk.x).not.toBe(sealed.recipients[1]?.header.epk.x);
    expect(base64url.decode(sealed.iv)).toHaveLength(12);
    expect(base64url.decode(sealed.tag)).toHaveLength(16);
    expect(profileViolation(sealed)).toBeNull();
  });

  it("keeps the epk in the recipient header for a single recipient too (jose would put it in the protected header)", async () => {
    const a = await makeEncryptionKey();
    const sealed = await sealPersonalData(CONTENT, [pub(a)]);
    expect(decodeJson(sealed.protected)).toEqual({
      enc: PERSONAL_DATA_ENC,
      cty: PERSONAL_DATA_CTY,
    });
    expect(sealed.recipients).toHaveLength(1);
    expect(sealed.recipients[0]?.header.kid).toBe(a.kid);
    expect(await openPersonalData(sealed, [priv(a)])).toEqual({
      ok: true,
      content: CONTENT,
      kid: a.kid,
    });
  });

  it("refuses to seal without a recipient, to a private or non-X25519 key, or content a receiver would refuse", async () => {
    const a = await makeEncryptionKey();
    await expect(sealPersonalData(CONTENT, [])).rejects.toMatchObject({ code: "request_invalid" });
    await expect(sealPersonalData(CONTENT, [priv(a)])).rejects.toMatchObject({ code: "internal" });
    await expect(sealPersonalData({ name: "a\u0000b" }, [pub(a)])).rejects.toMatchObject({
      code: "request_invalid",
    });
    let deep: unknown = {};
    for (let i = 0; i < 40; i++) deep = { d: deep };
    await expect(sealPersonalData({ deep }, [pub(a)])).rejects.toMatchObject({
      code: "request_invalid",
    });
  });

  it("is personal_data_not_for_us when no entry names one of our keys", async () => {
    const [a, b, stranger] = [
      await makeEncryptionKey(),
      await makeEncryptionKey(),
      await makeEncryptionKey(),
    ];
    const sealed = await sealPersonalData(CONTENT, [pub(a), pub(b)]);
    expectRefused(await openPersonalData(sealed, [priv(stranger)]), "personal_data_not_for_us");
    expectRefused(await openPersonalData(sealed, []), "personal_data_not_for_us");
    // Our kid with a key that is not ours (or not a private key) is no key of ours either.
    expectRefused(
      await openPersonalData(sealed, [{ kid: a.kid, key: a.publicKey }]),
      "personal_data_not_for_us",
    );
  });

  it("is personal_data_undecryptable when the ciphertext, tag, iv, protected header or our encrypted_key or epk was tampered with", async () => {
    const [a, b] = [await makeEncryptionKey(), await makeEncryptionKey()];
    const sealed = await sealPersonalData(CONTENT, [pub(a), pub(b)]);
    const tampered: Array<(j: EncryptedPersonalData) => void> = [
      (j) => {
        j.ciphertext = flip(j.ciphertext);
      },
      (j) => {
        j.tag = flip(j.tag);
      },
      (j) => {
        j.iv = flip(j.iv);
      },
      (j) => {
        const r = j.recipients[0];
        if (r !== undefined) r.encrypted_key = flip(r.encrypted_key);
      },
      (j) => {
        const r = j.recipients[0];
        if (r !== undefined) r.header.epk.x = flip(r.header.epk.x);
      },
      // The same protected header, serialised with other whitespace: other AAD.
      (j) => {
        j.protected = base64url.encode(
          new TextEncoder().encode(JSON.stringify(decodeJson(j.protected), null, 1)),
        );
      },
      // Another recipient's wrapped key under our kid.
      (j) => {
        const [r0, r1] = j.recipients;
        if (r0 !== undefined && r1 !== undefined) r0.encrypted_key = r1.encrypted_key;
      },
    ];
    for (const tamper of tampered) {
      const copy = clone(sealed);
      tamper(copy);
      expectRefused(await openPersonalData(copy, [priv(a)]), "personal_data_undecryptable");
    }
    // Tampering with another recipient's entry does not stop us.
    const theirs = clone(sealed);
    const r1 = theirs.recipients[1];
    if (r1 !== undefined) r1.encrypted_key = flip(r1.encrypted_key);
    expect((await openPersonalData(theirs, [priv(a)])).ok).toBe(true);
  });

  it("refuses every departure from the profile as personal_data_undecryptable, naming the rule", async () => {
    const [a, b] = [await makeEncryptionKey(), await makeEncryptionKey()];
    const sealed = await sealPersonalData(CONTENT, [pub(a), pub(b)]);
    const header = decodeJson(sealed.protected) as Record<string, unknown>;
    const violations: Array<[string, (j: Record<string, unknown>) => void, RegExp]> = [
      [
        "extra protected member",
        (j) => (j.protected = encodeJson({ ...header, kid: a.kid })),
        /exactly enc and cty/,
      ],
      ["zip", (j) => (j.protected = encodeJson({ ...header, zip: "DEF" })), /exactly enc and cty/],
      [
        "missing cty",
        (j) => (j.protected = encodeJson({ enc: header.enc })),
        /exactly enc and cty/,
      ],
      [
        "wrong enc",
        (j) => (j.protected = encodeJson({ ...header, enc: "A128GCM" })),
        /enc must be A256GCM/,
      ],
      ["wrong cty", (j) => (j.protected = encodeJson({ ...header, cty: "json" })), /cty must be/],
      ["aad", (j) => (j.aad = encodeJson("x")), /must not have the member aad/],
      [
        "unprotected",
        (j) => (j.unprotected = { kid: a.kid }),
        /must not have the member unprotected/,
      ],
      ["other top-level member", (j) => (j.note = CANARY), /member other than/],
      ["flattened header", (j) => (j.header = {}), /must not have the member header/],
      ["missing tag", (j) => delete j.tag, /tag is missing/],
      ["padded iv", (j) => (j.iv = `${j.iv}==`), /iv must be 12 bytes/],
      [
        "non-canonical ciphertext",
        (j) => (j.ciphertext = `${j.ciphertext}A`),
        /ciphertext|decrypt/,
      ],
      ["no recipients", (j) => (j.recipients = []), /non-empty array/],
      [
        "wrong alg",
        (j) => (recipient(j).header.alg = "ECDH-ES+A128KW"),
        /alg must be ECDH-ES\+A256KW/,
      ],
      ["ECDH-ES direct", (j) => (recipient(j).header.alg = "ECDH-ES"), /alg must be/],
      [
        "extra recipient header member",
        (j) => (recipient(j).header.enc = "A256GCM"),
        /exactly alg, kid and epk/,
      ],
      [
        "zip in recipient header",
        (j) => (recipient(j).header.zip = "DEF"),
        /exactly alg, kid and epk/,
      ],
      [
        "missing epk",
        (j) => Reflect.deleteProperty(recipient(j).header, "epk"),
        /exactly alg, kid and epk/,
      ],
      [
        "epk on P-256",
        (j) => (recipient(j).header.epk = { ...recipient(j).header.epk, crv: "P-256" }),
        /OKP key on X25519/,
      ],
      [
        "epk with d",
        (j) => (recipient(j).header.epk = { ...recipient(j).header.epk, d: "AA" }),
        /exactly kty, crv and x/,
      ],
      [
        "extra recipient member",
        (j) => (recipient(j).note = 1),
        /exactly header and encrypted_key/,
      ],
      ["kid not a thumbprint", (j) => (recipient(j).header.kid = "key-1"), /thumbprint/],
      [
        "repeated kid",
        (j) => {
          const rs = j.recipients as Array<{ header: { kid: string } }>;
          if (rs[1] !== undefined) rs[1].header.kid = a.kid;
        },
        /repeats the kid/,
      ],
      [
        "short encrypted_key",
        (j) => (recipient(j).encrypted_key = "AAAA"),
        /encrypted_key must be 40 bytes/,
      ],
    ];
    for (const [name, change, detail] of violations) {
      const copy = clone(sealed) as unknown as Record<string, unknown>;
      change(copy);
      const result = await openPersonalData(copy, [priv(a)]);
      expect(result, name).toMatchObject({ ok: false, code: "personal_data_undecryptable" });
      if (!result.ok) {
        expect(result.detail, name).toMatch(detail);
        expect(result.detail, name).not.toContain(CANARY);
      }
    }
    for (const notAJwe of [null, "text", [sealed], 42]) {
      expectRefused(await openPersonalData(notAJwe, [priv(a)]), "personal_data_undecryptable");
    }
  });

  it("refuses a plaintext that is not a JSON object, not JSON, not UTF-8 or too deep, without quoting it", async () => {
    const [a, b] = [await makeEncryptionKey(), await makeEncryptionKey()];
    const cases: Array<[string, RegExp]> = [
      [JSON.stringify([CANARY]), /not a JSON object/],
      [JSON.stringify(CANARY), /not a JSON object/],
      ["null", /not a JSON object/],
      [`{"name": "${CANARY}"`, /not JSON/],
      [`${'{"a":'.repeat(33)}"${CANARY}"${"}".repeat(33)}`, /deeper than 32 levels/],
      [`{"${CANARY}": "\\u0000"}`, /U\+0000 or a lone surrogate/],
      [`{"name": "${CANARY}\\ud800"}`, /U\+0000 or a lone surrogate/],
    ];
    for (const [plaintext, detail] of cases) {
      const jwe = await sealRaw(plaintext, a, b);
      expectRefused(await openPersonalData(jwe, [priv(a)]), "personal_data_undecryptable", detail);
    }
    // Bytes that are not UTF-8.
    const latin1 = new GeneralEncrypt(
      Uint8Array.from([0x7b, 0x22, 0xe9, 0x22, 0x3a, 0x31, 0x7d]),
    ).setProtectedHeader({ enc: PERSONAL_DATA_ENC, cty: PERSONAL_DATA_CTY });
    for (const k of [a, b]) {
      latin1.addRecipient(k.publicKey).setUnprotectedHeader({ alg: PERSONAL_DATA_ALG, kid: k.kid });
    }
    expectRefused(
      await openPersonalData(await latin1.encrypt(), [priv(a)]),
      "personal_data_undecryptable",
      /not UTF-8/,
    );
    // 32 levels is within the limit.
    const deepest = `${'{"a":'.repeat(31)}{}${"}".repeat(31)}`;
    expect((await openPersonalData(await sealRaw(deepest, a, b), [priv(a)])).ok).toBe(true);
  });
});

describe("personal data across a key rotation (OwnKeyring)", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it("opens content sealed to an old key with decryptionKeys() after a new key was generated, and encrypts to the new one", async () => {
    const base = mkdtempSync(join(tmpdir(), "liaison-pd-"));
    dirs.push(base);
    const dir = join(base, "keys");
    const self = {
      id: "CN-MPS-HEKOU",
      name: "Hekou",
      country: "CN",
      kind: "border-police-liaison-office",
      inboundSubject: "liaison.inbox.CN-MPS-HEKOU",
    };
    let now = new Date("2026-01-01T00:00:00Z");
    await generateKeyFile(dir, { validFrom: new Date("2025-01-01T00:00:00Z") });
    const old = await generateEncryptionKeyFile(dir, {
      validFrom: new Date("2025-01-01T00:00:00Z"),
    });
    const keyring = await OwnKeyring.read({ dir, self, clock: () => now });
    expect(keyring.encryptionKey()?.kid).toBe(old.kid);
    const own = keyring.encryptionKey();
    if (own === undefined) throw new Error("no encryption key");
    const sealedToOld = await sealPersonalData(CONTENT, [own]);

    // Rotation: a new key from June on; the old one is revoked later still.
    const fresh = await generateEncryptionKeyFile(dir, {
      validFrom: new Date("2026-06-01T00:00:00Z"),
    });
    expect(await keyring.reload()).not.toBeNull();
    now = new Date("2026-07-01T00:00:00Z");
    expect(keyring.encryptionKey()?.kid).toBe(fresh.kid);
    expect(
      keyring
        .publicKeys()
        .filter((k) => k.use === "enc")
        .map((k) => k.kid)
        .sort(),
    ).toEqual([old.kid, fresh.kid].sort());
    expect(
      keyring
        .decryptionKeys()
        .map((k) => k.kid)
        .sort(),
    ).toEqual([old.kid, fresh.kid].sort());
    expect(await openPersonalData(sealedToOld, keyring.decryptionKeys())).toEqual({
      ok: true,
      content: CONTENT,
      kid: old.kid,
    });
    const newest = keyring.encryptionKey();
    if (newest === undefined) throw new Error("no encryption key");
    const sealedToNew = await sealPersonalData(CONTENT, [newest]);
    expect(await openPersonalData(sealedToNew, keyring.decryptionKeys())).toMatchObject({
      ok: true,
      kid: fresh.kid,
    });
  });
});

function recipient(j: Record<string, unknown>): {
  header: Record<string, unknown> & { epk: Record<string, unknown> };
  encrypted_key: string;
  [member: string]: unknown;
} {
  const rs = j.recipients as Array<ReturnType<typeof recipient>>;
  const r = rs[0];
  if (r === undefined) throw new Error("no recipient");
  return r;
}
