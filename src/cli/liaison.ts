/**
 * The `liaison` command. Offline commands (keys, partners, db) work on the key directory and the
 * store named by LIAISON_DATA_DIR / LIAISON_KEYS_DIR / DATABASE_URL; `serve` runs the gateway.
 * Errors print their code and exit non-zero; nothing secret is printed.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { databaseTarget, loadStorageConfig } from "../config/config.ts";
import { LiaisonError } from "../protocol/errors.ts";
import { MAX_JSON_DEPTH, parseJsonText } from "../protocol/json-limits.ts";
import { ALLOWED_ALGS, type SigningAlg } from "../protocol/jws-profile.ts";
import {
  generateEncryptionKeyFile,
  generateKeyFile,
  loadKeyFiles,
  revokeKeyFile,
} from "../registry/key-files.ts";
import { PartnerRegistry } from "../registry/partner-registry.ts";
import { parsePartyDocument } from "../registry/party-document.ts";
import { openDatabase } from "../store/database.ts";
import { SqlPartyStore } from "../store/party-store.ts";
import { reportFailure } from "./report-failure.ts";

const USAGE = `usage: liaison <command>

  keys generate [--alg EdDSA|ES256] [--valid-from <RFC 3339 time>] [--only sig|enc]
                                        write a new signing key and a new encryption key (X25519,
                                        for personal data) to the keys directory (files of mode 0600);
                                        --only sig or --only enc writes just one of them;
                                        a future --valid-from publishes the keys before they are used
  keys list                             list our keys (use sig or enc) and their validity
  keys revoke --kid=<kid> [--at=<time>] revoke one of our keys, of either use (published; a signing
                                        key no longer signs, an encryption key is no longer offered);
                                        write --kid=<kid>: a kid may begin with "-"
  partners add --jwks <file|url>        register a partner from its published party document (JWKS)
  partners list                         list registered parties and their keys
  db migrate                            apply the SQL migrations in drizzle/ to the store
  serve                                 run the gateway (configuration: docs/operations.md)

settings: LIAISON_DATA_DIR, LIAISON_KEYS_DIR, DATABASE_URL (and for serve, docs/operations.md)`;

export async function runCli(argv: string[]): Promise<void> {
  const [group, command, ...rest] = argv;
  const key = command === undefined ? group : `${group} ${command}`;
  switch (key) {
    case "keys generate": {
      const { values } = parseArgs({
        args: rest,
        options: {
          alg: { type: "string", default: "EdDSA" },
          "valid-from": { type: "string" },
          only: { type: "string" },
        },
      });
      const alg = values.alg as string;
      if (!(ALLOWED_ALGS as readonly string[]).includes(alg)) {
        throw new LiaisonError(
          "request_invalid",
          `--alg must be one of ${ALLOWED_ALGS.join(", ")}`,
        );
      }
      const only = values.only;
      if (only !== undefined && only !== "sig" && only !== "enc") {
        throw new LiaisonError("request_invalid", "--only must be sig or enc");
      }
      const validFrom = timeOption(values["valid-from"], "--valid-from");
      const dir = loadStorageConfig().keysDir;
      const validity = validFrom === undefined ? {} : { validFrom };
      // Printed as one JSON object: the signing key's members at the top, as before encryption
      // keys existed, and the encryption key under "encryption".
      const printed: Record<string, unknown> = {};
      const describe = (
        use: "sig" | "enc",
        key: { kid: string; alg: string; validFrom: Date; publicJwk: object },
      ) => ({
        kid: key.kid,
        use,
        alg: key.alg,
        validFrom: key.validFrom.toISOString(),
        publicJwk: key.publicJwk,
      });
      if (only !== "enc") {
        const signing = await generateKeyFile(dir, { alg: alg as SigningAlg, ...validity });
        Object.assign(printed, describe("sig", signing));
      }
      if (only !== "sig") {
        const encryption = describe("enc", await generateEncryptionKeyFile(dir, validity));
        if (only === "enc") Object.assign(printed, encryption);
        else printed.encryption = encryption;
      }
      console.log(JSON.stringify(printed, null, 2));
      return;
    }
    case "keys list": {
      for (const k of await loadKeyFiles(loadStorageConfig().keysDir)) {
        const until = k.validUntil === null ? "" : ` until ${k.validUntil.toISOString()}`;
        const revoked = k.revokedAt === null ? "" : ` revoked ${k.revokedAt.toISOString()}`;
        console.log(
          `${k.kid} ${k.alg} ${k.use} valid from ${k.validFrom.toISOString()}${until}${revoked}`,
        );
      }
      return;
    }
    case "keys revoke": {
      const { values } = parseArgs({
        args: rest,
        options: { kid: { type: "string" }, at: { type: "string" } },
      });
      if (values.kid === undefined) throw new LiaisonError("request_invalid", "--kid is required");
      const at = timeOption(values.at, "--at") ?? new Date();
      if (!revokeKeyFile(loadStorageConfig().keysDir, values.kid, at)) {
        throw new LiaisonError("not_found", `no key file for kid ${values.kid}`);
      }
      console.log(
        `revoked ${values.kid} from ${at.toISOString()}; a running gateway publishes it within 30 s`,
      );
      return;
    }
    case "partners add": {
      const { values } = parseArgs({ args: rest, options: { jwks: { type: "string" } } });
      if (values.jwks === undefined)
        throw new LiaisonError("request_invalid", "--jwks <file|url> is required");
      const doc = await readDocument(values.jwks);
      const { party, keys } = await parsePartyDocument(doc);
      // As POST /v1/partners: our own record and keys are the gateway's (its key directory, at
      // start), never a partner's. The CLI knows our id when run with the gateway's settings.
      if (party.id === process.env.LIAISON_PARTY_ID) {
        throw new LiaisonError(
          "request_invalid",
          "this gateway's own keys come from its key directory",
        );
      }
      await withStore(async (store) => {
        const registry = await PartnerRegistry.load(store);
        await registry.add(party, keys);
      });
      const enc = keys.filter((k) => k.use === "enc").length;
      console.log(
        `registered ${party.id} (${party.name}) with ${keys.length - enc} signing key(s) and ${enc} encryption key(s), inbound subject ${party.inboundSubject}`,
      );
      return;
    }
    case "partners list": {
      await withStore(async (store) => {
        const [parties, keys] = await Promise.all([store.listParties(), store.listKeys()]);
        for (const p of parties) {
          console.log(`${p.id}\t${p.country}\t${p.kind}\t${p.inboundSubject}\t${p.name}`);
          for (const k of keys.filter((k) => k.partyId === p.id)) {
            const state =
              k.revokedAt !== null
                ? `revoked ${k.revokedAt.toISOString()}`
                : `valid from ${k.validFrom.toISOString()}${k.validUntil ? ` until ${k.validUntil.toISOString()}` : ""}`;
            console.log(`  key ${k.kid} ${k.alg} ${k.use ?? "sig"} ${state}`);
          }
        }
      });
      return;
    }
    case "db migrate": {
      await withStore(async () => {});
      console.log("migrations applied");
      return;
    }
    case "serve": {
      // Loaded only here: the other commands need none of the gateway (HTTP, NATS, docs).
      const { serveFromEnvironment } = await import("../serve.ts");
      await serveFromEnvironment();
      return;
    }
    default:
      console.error(USAGE);
      process.exitCode = group === undefined || group === "help" || group === "--help" ? 0 : 2;
  }
}

async function withStore(fn: (store: SqlPartyStore) => Promise<void>): Promise<void> {
  const database = await openDatabase(databaseTarget(loadStorageConfig()));
  try {
    await fn(new SqlPartyStore(database.db));
  } finally {
    await database.close();
  }
}

/** The same limits as POST /v1/partners: 64 KiB, strict UTF-8, bounded depth. */
const MAX_DOCUMENT_BYTES = 64 * 1024;
const utf8 = new TextDecoder("utf-8", { fatal: true });

async function readDocument(source: string): Promise<unknown> {
  const fail = (why: string): never => {
    throw new LiaisonError(
      "request_invalid",
      `cannot read the party document from ${source}: ${why}`,
    );
  };
  let bytes: Uint8Array;
  try {
    if (/^https?:\/\//.test(source)) {
      const res = await fetch(source, { signal: AbortSignal.timeout(10_000) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      bytes = new Uint8Array(await res.arrayBuffer());
    } else {
      bytes = readFileSync(source);
    }
  } catch (err) {
    return fail((err as Error).message);
  }
  if (bytes.byteLength > MAX_DOCUMENT_BYTES) fail("a party document is at most 64 KiB");
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return fail("it is not UTF-8");
  }
  const parsed = parseJsonText(text);
  if (!parsed.ok) {
    return fail(
      parsed.reason === "too_deep" ? `it nests deeper than ${MAX_JSON_DEPTH} levels` : "not JSON",
    );
  }
  return parsed.value;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await runCli(argv);
  } catch (err) {
    reportFailure(err);
  }
}

function timeOption(value: string | undefined, name: string): Date | undefined {
  if (value === undefined) return undefined;
  if (
    !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$/.test(value) ||
    Number.isNaN(Date.parse(value))
  ) {
    throw new LiaisonError("request_invalid", `${name} must be an RFC 3339 time with a zone`);
  }
  return new Date(value);
}
