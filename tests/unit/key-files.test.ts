import {
  chmodSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { calculateJwkThumbprint, compactVerify, importJWK } from "jose";
import { afterEach, describe, expect, it } from "vitest";
import { LiaisonError } from "../../src/protocol/errors.ts";
import { MESSAGE_TYP } from "../../src/protocol/jws-profile.ts";
import { openPersonalData, sealPersonalData } from "../../src/protocol/personal-data.ts";
import { signCompact } from "../../src/protocol/sign.ts";
import {
  currentEncryptionKey,
  currentSigningKey,
  generateEncryptionKeyFile,
  generateKeyFile,
  loadKeyFiles,
  revokeKeyFile,
} from "../../src/registry/key-files.ts";

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), "liaison-keys-"));
  dirs.push(d);
  return join(d, "keys");
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("key files", () => {
  it("writes a 0600 file in a 0700 directory, named by the key's thumbprint, that signs verifiably", async () => {
    const dir = tempDir();
    const info = await generateKeyFile(dir);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const [name] = readdirSync(dir);
    expect(name).toBe(`${info.kid}.jwk.json`);
    expect(statSync(join(dir, name ?? "")).mode & 0o777).toBe(0o600);
    expect(info.publicJwk).not.toHaveProperty("d");

    const key = currentSigningKey(await loadKeyFiles(dir), new Date());
    const jws = await signCompact({ hello: 1 }, key?.signing ?? (undefined as never), MESSAGE_TYP);
    const { protectedHeader } = await compactVerify(jws, await importJWK(info.publicJwk, "EdDSA"));
    expect(protectedHeader).toEqual({ alg: "EdDSA", kid: info.kid, typ: MESSAGE_TYP });
  });

  it("refuses a key file that group or others can read", async () => {
    const dir = tempDir();
    const info = await generateKeyFile(dir);
    chmodSync(join(dir, `${info.kid}.jwk.json`), 0o644);
    await expect(loadKeyFiles(dir)).rejects.toMatchObject({ code: "key_store_invalid" });
  });

  it("refuses a key file whose kid is not the thumbprint of its key", async () => {
    const dir = tempDir();
    const a = await generateKeyFile(dir);
    const path = join(dir, `${a.kid}.jwk.json`);
    const file = JSON.parse(readFileSync(path, "utf8"));
    const other = await generateKeyFile(tempDir());
    writeFileSync(path, JSON.stringify({ ...file, kid: other.kid }), { mode: 0o600 });
    const err = await loadKeyFiles(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LiaisonError);
    expect((err as LiaisonError).code).toBe("key_store_invalid");
  });

  it("signs with the newest key valid now, and never with an expired or future one", async () => {
    const dir = tempDir();
    const now = new Date("2026-11-24T12:00:00Z");
    await generateKeyFile(dir, {
      validFrom: new Date("2025-01-01T00:00:00Z"),
      validUntil: new Date("2026-01-01T00:00:00Z"),
    });
    const current = await generateKeyFile(dir, { validFrom: new Date("2026-01-01T00:00:00Z") });
    await generateKeyFile(dir, { validFrom: new Date("2027-01-01T00:00:00Z") });
    const keys = await loadKeyFiles(dir);
    expect(keys).toHaveLength(3);
    expect(currentSigningKey(keys, now)?.kid).toBe(current.kid);
    expect(currentSigningKey(keys, new Date("2024-06-01T00:00:00Z"))).toBeUndefined();
  });

  it("stops signing with a revoked key and keeps its file, with the revocation, for publishing", async () => {
    const dir = tempDir();
    const now = new Date("2026-11-24T12:00:00Z");
    const old = await generateKeyFile(dir, { validFrom: new Date("2026-01-01T00:00:00Z") });
    const newer = await generateKeyFile(dir, { validFrom: new Date("2026-06-01T00:00:00Z") });
    expect(currentSigningKey(await loadKeyFiles(dir), now)?.kid).toBe(newer.kid);
    expect(revokeKeyFile(dir, newer.kid, new Date("2026-11-01T00:00:00Z"))).toBe(true);
    const keys = await loadKeyFiles(dir);
    expect(keys.find((k) => k.kid === newer.kid)?.revokedAt?.toISOString()).toBe(
      "2026-11-01T00:00:00.000Z",
    );
    expect(currentSigningKey(keys, now)?.kid).toBe(old.kid);
    expect(currentSigningKey(keys, new Date("2026-10-01T00:00:00Z"))?.kid).toBe(newer.kid);
    expect(statSync(join(dir, `${newer.kid}.jwk.json`)).mode & 0o777).toBe(0o600);
    expect(revokeKeyFile(dir, "no-such-kid", now)).toBe(false);
    // A later time does not postpone a revocation.
    revokeKeyFile(dir, newer.kid, new Date("2026-12-01T00:00:00Z"));
    expect(
      (await loadKeyFiles(dir)).find((k) => k.kid === newer.kid)?.revokedAt?.toISOString(),
    ).toBe("2026-11-01T00:00:00.000Z");
  });
});

describe("encryption key files", () => {
  it("writes an X25519 key for ECDH-ES+A256KW as a 0600 file named by its thumbprint, which opens what is sealed to its public key", async () => {
    const dir = tempDir();
    const info = await generateEncryptionKeyFile(dir);
    expect(info.alg).toBe("ECDH-ES+A256KW");
    expect(info.publicJwk).toMatchObject({
      kty: "OKP",
      crv: "X25519",
      kid: info.kid,
      alg: "ECDH-ES+A256KW",
      use: "enc",
    });
    expect(info.publicJwk).not.toHaveProperty("d");
    const { kid: _k, alg: _a, use: _u, ...jwk } = info.publicJwk;
    expect(await calculateJwkThumbprint(jwk, "sha256")).toBe(info.kid);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const path = join(dir, `${info.kid}.jwk.json`);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(path, "utf8"))).toMatchObject({
      kid: info.kid,
      use: "enc",
      alg: "ECDH-ES+A256KW",
    });

    const [key] = await loadKeyFiles(dir);
    if (key?.use !== "enc") throw new Error("not loaded as an encryption key");
    expect(key.publicJwk).toEqual(info.publicJwk);
    expect(key.decryption.extractable).toBe(false);
    const sealed = await sealPersonalData({ name: "x" }, [{ kid: key.kid, key: key.publicKey }]);
    expect(await openPersonalData(sealed, [{ kid: key.kid, key: key.decryption }])).toEqual({
      ok: true,
      content: { name: "x" },
      kid: key.kid,
    });
  });

  it("loads both kinds from one directory; signing never picks an encryption key, and the other way round", async () => {
    const dir = tempDir();
    const now = new Date("2026-11-24T12:00:00Z");
    const sig = await generateKeyFile(dir, { validFrom: new Date("2026-01-01T00:00:00Z") });
    // Newer than the signing key: still never chosen to sign.
    const enc = await generateEncryptionKeyFile(dir, {
      validFrom: new Date("2026-06-01T00:00:00Z"),
    });
    const keys = await loadKeyFiles(dir);
    expect(keys.map((k) => [k.kid, k.use]).sort()).toEqual(
      [
        [sig.kid, "sig"],
        [enc.kid, "enc"],
      ].sort(),
    );
    expect(currentSigningKey(keys, now)?.kid).toBe(sig.kid);
    expect(currentEncryptionKey(keys, now)?.kid).toBe(enc.kid);
    // Only encryption keys: nothing signs.
    const encOnly = tempDir();
    await generateEncryptionKeyFile(encOnly, { validFrom: new Date("2026-01-01T00:00:00Z") });
    expect(currentSigningKey(await loadKeyFiles(encOnly), now)).toBeUndefined();
  });

  it("offers the newest encryption key valid now and not revoked; revocation works on encryption keys too", async () => {
    const dir = tempDir();
    const now = new Date("2026-11-24T12:00:00Z");
    await generateEncryptionKeyFile(dir, {
      validFrom: new Date("2025-01-01T00:00:00Z"),
      validUntil: new Date("2026-01-01T00:00:00Z"),
    });
    const current = await generateEncryptionKeyFile(dir, {
      validFrom: new Date("2026-01-01T00:00:00Z"),
    });
    const newer = await generateEncryptionKeyFile(dir, {
      validFrom: new Date("2026-06-01T00:00:00Z"),
    });
    await generateEncryptionKeyFile(dir, { validFrom: new Date("2027-01-01T00:00:00Z") });
    expect(currentEncryptionKey(await loadKeyFiles(dir), now)?.kid).toBe(newer.kid);
    expect(revokeKeyFile(dir, newer.kid, new Date("2026-11-01T00:00:00Z"))).toBe(true);
    const keys = await loadKeyFiles(dir);
    expect(keys.find((k) => k.kid === newer.kid)?.revokedAt?.toISOString()).toBe(
      "2026-11-01T00:00:00.000Z",
    );
    expect(currentEncryptionKey(keys, now)?.kid).toBe(current.kid);
    expect(currentEncryptionKey(keys, new Date("2024-06-01T00:00:00Z"))).toBeUndefined();
    expect(statSync(join(dir, `${newer.kid}.jwk.json`)).mode & 0o777).toBe(0o600);
  });

  it("reads key files written before encryption keys existed (no use member) as signing keys", async () => {
    const dir = tempDir();
    const info = await generateKeyFile(dir);
    const path = join(dir, `${info.kid}.jwk.json`);
    const { use: _use, ...old } = JSON.parse(readFileSync(path, "utf8"));
    writeFileSync(path, JSON.stringify(old), { mode: 0o600 });
    const [key] = await loadKeyFiles(dir);
    expect(key?.use).toBe("sig");
    expect(currentSigningKey(await loadKeyFiles(dir), new Date())?.kid).toBe(info.kid);
  });

  it("refuses an encryption key file that is not X25519, or whose use or alg is unknown", async () => {
    const dir = tempDir();
    const sig = await generateKeyFile(dir);
    const path = join(dir, `${sig.kid}.jwk.json`);
    const file = JSON.parse(readFileSync(path, "utf8"));
    for (const changed of [
      { ...file, use: "enc", alg: "ECDH-ES+A256KW" }, // an Ed25519 key labelled enc
      { ...file, use: "wrap" },
      { ...file, alg: "RS256" },
    ]) {
      writeFileSync(path, JSON.stringify(changed), { mode: 0o600 });
      await expect(loadKeyFiles(dir)).rejects.toMatchObject({ code: "key_store_invalid" });
    }
  });
});
