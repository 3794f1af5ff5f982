/**
 * The `liaison` command as a user runs it: real processes, a real PGlite data directory, and
 * `serve` against the real nats-server of the global setup.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, inject, it } from "vitest";
import { freePort } from "../../src/devtools/free-port.ts";
import { generateEncryptionKeyFile, generateKeyFile } from "../../src/registry/key-files.ts";
import { buildPartyDocument } from "../../src/registry/party-document.ts";

const BIN = new URL("../../bin/liaison.js", import.meta.url).pathname;
const dirs: string[] = [];
const children: ChildProcess[] = [];

afterAll(() => {
  for (const c of children) c.kill("SIGKILL");
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "liaison-cli-"));
  dirs.push(d);
  return d;
}

function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith("LIAISON_") && k !== "DATABASE_URL") env[k] = v;
  return { ...env, ...extra };
}

function liaison(args: string[], env: Record<string, string>) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    env: cleanEnv(env),
    encoding: "utf8",
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("liaison CLI", () => {
  it("generates a key file, registers a partner from a JWKS file and lists both", async () => {
    const data = tempDir();
    const env = { LIAISON_DATA_DIR: data };
    const gen = liaison(["keys", "generate"], env);
    expect(gen.code).toBe(0);
    // A signing key and an encryption key: the signing key's members at the top.
    const generated = JSON.parse(gen.stdout) as {
      kid: string;
      use: string;
      alg: string;
      encryption: { kid: string; use: string; alg: string; publicJwk: Record<string, unknown> };
    };
    const { kid } = generated;
    expect(generated).toMatchObject({ use: "sig", alg: "EdDSA" });
    expect(generated.encryption).toMatchObject({ use: "enc", alg: "ECDH-ES+A256KW" });
    expect(generated.encryption.publicJwk).toMatchObject({ kty: "OKP", crv: "X25519" });
    for (const k of [kid, generated.encryption.kid]) {
      expect(statSync(join(data, "keys", `${k}.jwk.json`)).mode & 0o777).toBe(0o600);
    }
    expect(gen.stdout).not.toContain('"d"');
    const keys = liaison(["keys", "list"], env).stdout;
    expect(keys).toContain(`${kid} EdDSA sig valid from`);
    expect(keys).toContain(`${generated.encryption.kid} ECDH-ES+A256KW enc valid from`);

    const partnerKey = await generateKeyFile(join(tempDir(), "keys"));
    const { kid: _k, alg: _a, use: _u, ...jwk } = partnerKey.publicJwk;
    const party = {
      id: "VN-BGC-LAOCAI",
      name: "Lao Cai",
      country: "VN",
      kind: "border-police-liaison-office",
      inboundSubject: "liaison.inbox.VN-BGC-LAOCAI",
    };
    const docPath = join(tempDir(), "laocai.jwks.json");
    writeFileSync(
      docPath,
      JSON.stringify(
        buildPartyDocument(party, [
          {
            kid: partnerKey.kid,
            partyId: party.id,
            alg: "EdDSA",
            publicJwk: jwk,
            validFrom: partnerKey.validFrom,
            validUntil: null,
            revokedAt: null,
          },
        ]),
      ),
    );

    // Our own party id (the gateway's LIAISON_PARTY_ID) is refused, as by POST /v1/partners.
    const asSelf = liaison(["partners", "add", "--jwks", docPath], {
      ...env,
      LIAISON_PARTY_ID: party.id,
    });
    expect(asSelf.code).toBe(2);
    expect(asSelf.stderr).toBe(
      "liaison: request_invalid: this gateway's own keys come from its key directory\n",
    );
    expect(liaison(["partners", "list"], env).stdout).not.toContain(party.id);

    const add = liaison(["partners", "add", "--jwks", docPath], env);
    expect(add.stderr).toBe("");
    expect(add.code).toBe(0);
    expect(add.stdout).toContain("registered VN-BGC-LAOCAI");
    const list = liaison(["partners", "list"], env);
    expect(list.code).toBe(0);
    expect(list.stdout).toContain("VN-BGC-LAOCAI");
    expect(list.stdout).toContain(`key ${partnerKey.kid} EdDSA sig`);

    // The partner publishes an encryption key next to it.
    const partnerEnc = await generateEncryptionKeyFile(join(tempDir(), "keys"));
    const { kid: _ek, alg: _ea, use: _eu, ...encJwk } = partnerEnc.publicJwk;
    const withEnc = buildPartyDocument(party, [
      {
        kid: partnerKey.kid,
        partyId: party.id,
        alg: "EdDSA",
        publicJwk: jwk,
        validFrom: partnerKey.validFrom,
        validUntil: null,
        revokedAt: null,
      },
      {
        kid: partnerEnc.kid,
        partyId: party.id,
        use: "enc",
        alg: "ECDH-ES+A256KW",
        publicJwk: encJwk,
        validFrom: partnerEnc.validFrom,
        validUntil: null,
        revokedAt: null,
      },
    ]);
    writeFileSync(docPath, JSON.stringify(withEnc));
    const again = liaison(["partners", "add", "--jwks", docPath], env);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("1 signing key(s) and 1 encryption key(s)");
    expect(liaison(["partners", "list"], env).stdout).toContain(
      `key ${partnerEnc.kid} ECDH-ES+A256KW enc`,
    );
    // Six CLI processes, each starting Node and the embedded PGlite store: 20 s on a quiet
    // machine, 43 s in a CI run beside other work, past the suite's 30 s default.
  }, 120_000);

  it("pre-publishes a key with a future validity, lists and revokes keys", () => {
    const data = tempDir();
    const env = { LIAISON_DATA_DIR: data };
    const future = liaison(["keys", "generate", "--valid-from", "2030-01-01T00:00:00Z"], env);
    expect(future.code).toBe(0);
    const { kid } = JSON.parse(future.stdout) as { kid: string };
    expect(liaison(["keys", "generate", "--valid-from", "next tuesday"], env)).toMatchObject({
      code: 2,
    });
    expect(liaison(["keys", "revoke", `--kid=${kid}`, "--at=2030-06-01T00:00:00Z"], env).code).toBe(
      0,
    );
    const list = liaison(["keys", "list"], env);
    expect(list.stdout).toContain(
      `${kid} EdDSA sig valid from 2030-01-01T00:00:00.000Z revoked 2030-06-01T00:00:00.000Z`,
    );
    // The encryption key generated with it: revoked the same way.
    const encKid = (JSON.parse(future.stdout) as { encryption: { kid: string } }).encryption.kid;
    expect(list.stdout).toContain(
      `${encKid} ECDH-ES+A256KW enc valid from 2030-01-01T00:00:00.000Z\n`,
    );
    expect(
      liaison(["keys", "revoke", `--kid=${encKid}`, "--at=2030-03-01T00:00:00Z"], env).code,
    ).toBe(0);
    expect(liaison(["keys", "list"], env).stdout).toContain(
      `${encKid} ECDH-ES+A256KW enc valid from 2030-01-01T00:00:00.000Z revoked 2030-03-01T00:00:00.000Z`,
    );
    // One kind only.
    const sigOnly = JSON.parse(liaison(["keys", "generate", "--only", "sig"], env).stdout);
    expect(sigOnly).toMatchObject({ use: "sig", alg: "EdDSA" });
    expect(sigOnly).not.toHaveProperty("encryption");
    const encOnly = JSON.parse(liaison(["keys", "generate", "--only=enc"], env).stdout);
    expect(encOnly).toMatchObject({ use: "enc", alg: "ECDH-ES+A256KW" });
    expect(readdirSync(join(data, "keys")).sort()).toEqual(
      [kid, encKid, sigOnly.kid, encOnly.kid].map((k) => `${k}.jwk.json`).sort(),
    );
    expect(liaison(["keys", "generate", "--only", "both"], env).code).toBe(2);
    const ambiguous = liaison(["keys", "revoke", "--kid", "-starts-with-a-dash"], env);
    expect(ambiguous.code).toBe(2);
    expect(ambiguous.stderr).toMatch(/^liaison: request_invalid: /);
    const missing = liaison(["keys", "revoke", "--kid", "nope"], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("not_found");
  });

  it("refuses a party document whose kid is not the key's thumbprint, with its code", async () => {
    const data = tempDir();
    const docPath = join(data, "bad.json");
    writeFileSync(
      docPath,
      JSON.stringify({
        party: { id: "VN-BGC-LAOCAI", name: "x", country: "VN", kind: "k", inboundSubject: "s" },
        keys: [
          {
            kty: "OKP",
            crv: "Ed25519",
            x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            kid: "wrong",
            alg: "EdDSA",
            validFrom: "2026-01-01T00:00:00Z",
          },
        ],
      }),
    );
    const add = liaison(["partners", "add", "--jwks", docPath], { LIAISON_DATA_DIR: data });
    expect(add.code).toBe(2);
    expect(add.stderr).toMatch(/^liaison: request_invalid: /);
  });

  it("refuses a party document file that is not UTF-8 or nests too deep, with request_invalid", () => {
    const data = tempDir();
    const notUtf8 = join(data, "latin1.json");
    writeFileSync(notUtf8, Buffer.from([0x7b, 0x22, 0xe9, 0x22, 0x3a, 0x31, 0x7d])); // {"é":1} in Latin-1
    const deep = join(data, "deep.json");
    writeFileSync(deep, `${'{"a":'.repeat(5000)}1${"}".repeat(5000)}`);
    for (const [path, why] of [
      [notUtf8, "not UTF-8"],
      [deep, "nests deeper"],
    ] as const) {
      const add = liaison(["partners", "add", "--jwks", path], { LIAISON_DATA_DIR: data });
      expect(add.code).toBe(2);
      expect(add.stderr).toMatch(/^liaison: request_invalid: /);
      expect(add.stderr).toContain(why);
    }
  });

  it("serve stops at start naming a wrong setting", () => {
    const r = liaison(["serve"], {
      LIAISON_PARTY_ID: "CN-MPS-HEKOU",
      LIAISON_API_TOKEN: "x".repeat(32),
      LIAISON_HTTP_PROT: "1",
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("config_invalid: LIAISON_HTTP_PROT: unknown setting");
  });

  it("names a DATABASE_URL it cannot parse without printing its password", () => {
    // Node's URL error keeps the whole URL; printed as an uncaught error, the password went too.
    const r = liaison(["db", "migrate"], {
      DATABASE_URL: "postgres://liaison:S3cretPW@127.0.0.1:99999/db",
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("config_invalid: DATABASE_URL is not a valid postgres:// URL");
    expect(`${r.stdout}${r.stderr}`).not.toContain("S3cretPW");
  });

  it("serve runs a gateway that answers /readyz and stops cleanly on SIGTERM", async () => {
    const data = tempDir();
    expect(liaison(["keys", "generate"], { LIAISON_DATA_DIR: data }).code).toBe(0);
    const port = await freePort();
    const child = spawn(process.execPath, [BIN, "serve"], {
      env: cleanEnv({
        LIAISON_PARTY_ID: "CN-MPS-HEKOU",
        LIAISON_API_TOKEN: "x".repeat(32),
        LIAISON_DATA_DIR: data,
        LIAISON_HTTP_PORT: String(port),
        LIAISON_NATS_URL: inject("natsUrl"),
        LIAISON_INBOUND_SUBJECT: `test.cli${port}.inbox.CN-MPS-HEKOU`,
        LIAISON_STREAM: `T_cli${port}`,
      }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(child);
    let ready = false;
    for (let i = 0; i < 200 && !ready; i++) {
      await new Promise((r) => setTimeout(r, 100));
      ready = await fetch(`http://127.0.0.1:${port}/readyz`).then(
        (r) => r.ok,
        () => false,
      );
    }
    expect(ready).toBe(true);
    const jwks = (await (await fetch(`http://127.0.0.1:${port}/.well-known/jwks.json`)).json()) as {
      keys: Array<{ kid: string; use: string }>;
    };
    // Both keys `keys generate` wrote, the encryption key too.
    expect(jwks.keys.map((k) => `${k.kid}.jwk.json`).sort()).toEqual(
      readdirSync(join(data, "keys")).sort(),
    );
    expect(jwks.keys.map((k) => k.use).sort()).toEqual(["enc", "sig"]);
    const exited = new Promise<number | null>((resolve) =>
      child.once("exit", (code) => resolve(code)),
    );
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
  });
});
