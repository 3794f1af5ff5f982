/**
 * Generates docs/examples/: two fictional parties' public party documents (JWKS), one real
 * signed case.notice from CN-MPS-HEKOU to VN-BGC-LAOCAI and Lao Cai's accepted receipt for it.
 *
 *   npx tsx scripts/make-protocol-examples.ts
 *
 * Everything is built with the gateway's own functions (buildEnvelope, signCompact,
 * buildReceipt, sha256Hex, buildPartyDocument) and checked with verifyInbound before anything
 * is written. Ids and times are fixed, so a re-run changes only the keys, the `kid`s, the
 * signatures and the digests. The private keys are generated non-extractable, live only in this
 * process and are thrown away when it ends: they are never written anywhere.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type CryptoKey,
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
} from "jose";
import { loadSchemaRegistry } from "../src/config/schema-files.ts";
import { buildEnvelope } from "../src/protocol/build-envelope.ts";
import { buildReceipt } from "../src/protocol/build-receipt.ts";
import { sha256Hex } from "../src/protocol/digest.ts";
import { MESSAGE_TYP, RECEIPT_TYP } from "../src/protocol/jws-profile.ts";
import { signCompact } from "../src/protocol/sign.ts";
import type {
  Handling,
  KeyResolver,
  PartyId,
  PartyRecord,
  RegisteredKey,
  SigningKey,
} from "../src/protocol/types.ts";
import { verifyInbound } from "../src/protocol/verify-inbound.ts";
import { buildPartyDocument, parsePartyDocument } from "../src/registry/party-document.ts";

const REPO = fileURLToPath(new URL("../", import.meta.url));
const OUT = join(REPO, "docs", "examples");

const SENDER: PartyId = "CN-MPS-HEKOU";
const RECIPIENT: PartyId = "VN-BGC-LAOCAI";

/** Fixed ids: UUIDv7 whose timestamp is the instant the message / receipt is signed. */
const MESSAGE_ID = "01a20c91-a000-7c4e-9a51-3f6d2b8e0c17";
const RECEIPT_ID = "01a20c91-a7d0-7e12-8b3a-5c9d4f2a6e81";

const KEYS_VALID_FROM = new Date("2026-11-01T00:00:00.000Z");
const SENDER_KEY_VALID_UNTIL = new Date("2028-11-01T00:00:00.000Z");
const SENT_AT = new Date("2026-11-24T08:00:00.000Z");
const EXPIRES_AT = new Date("2027-11-24T08:00:00.000Z");
const RECEIPT_SENT_AT = new Date("2026-11-24T08:00:02.000Z");
/** When the examples are checked: a minute after the message was sent. */
const CHECKED_AT = new Date("2026-11-24T08:01:00.000Z");

interface SeedMessage {
  from: PartyId;
  to: PartyId[];
  type: string;
  caseRef: string;
  handling: Handling;
  body: Record<string, unknown>;
}

interface ExampleParty {
  record: PartyRecord;
  signing: SigningKey;
  document: ReturnType<typeof buildPartyDocument>;
}

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, "utf8")) as T;
}

function seedMessage(): SeedMessage {
  const dir = join(REPO, "seeds", "messages");
  const file = readdirSync(dir)
    .sort()
    .find((f) => f.startsWith("01-") && f.endsWith(".json"));
  if (file === undefined) throw new Error("seeds/messages/01-*.json is missing");
  const seed = readJson<SeedMessage>(join(dir, file));
  if (seed.type !== "case.notice" || seed.from !== SENDER || !seed.to.includes(RECIPIENT)) {
    throw new Error(`${file} is not a case.notice from ${SENDER} to ${RECIPIENT}`);
  }
  return seed;
}

function partyRecord(id: PartyId): PartyRecord {
  const parties = readJson<PartyRecord[]>(join(REPO, "seeds", "parties.json"));
  const party = parties.find((p) => p.id === id);
  if (party === undefined) throw new Error(`seeds/parties.json has no party ${id}`);
  return party;
}

/** A fresh Ed25519 key pair; the private half is non-extractable and never leaves memory. */
async function makeParty(id: PartyId, validUntil: Date | null): Promise<ExampleParty> {
  const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
  const publicJwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwk, "sha256");
  const record = partyRecord(id);
  const document = buildPartyDocument(record, [
    {
      kid,
      partyId: id,
      alg: "EdDSA",
      publicJwk: { ...publicJwk },
      validFrom: KEYS_VALID_FROM,
      validUntil,
      revokedAt: null,
    },
  ]);
  return { record, signing: { kid, alg: "EdDSA", key: privateKey }, document };
}

/** What a partner registry holds after importing a published party document. */
async function resolverFromDocument(document: unknown): Promise<KeyResolver> {
  const { party, keys } = await parsePartyDocument(document);
  const registered = new Map<string, RegisteredKey>();
  for (const k of keys) {
    if (k.use === "enc") continue;
    registered.set(k.kid, {
      kid: k.kid,
      partyId: k.partyId,
      alg: k.alg as RegisteredKey["alg"],
      key: (await importJWK(k.publicJwk, k.alg)) as CryptoKey,
      validFrom: k.validFrom,
      validUntil: k.validUntil,
      revokedAt: k.revokedAt,
    });
  }
  // The examples publish no encryption keys.
  return {
    hasParty: (p) => p === party.id,
    keyById: (kid) => registered.get(kid),
    encryptionKeyOf: () => undefined,
  };
}

function decodePayload(jws: string): unknown {
  const payload = jws.split(".")[1] ?? "";
  return JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
}

/** JSON in the repository's Biome style, so that `biome check` leaves the files alone. */
function formatJson(value: unknown, file: string): string {
  const text = `${JSON.stringify(value, null, 2)}\n`;
  const biome = join(REPO, "node_modules", ".bin", "biome");
  if (!existsSync(biome)) return text;
  const result = spawnSync(biome, ["format", `--stdin-file-path=${relative(REPO, file)}`], {
    cwd: REPO,
    input: text,
    encoding: "utf8",
  });
  if (result.status !== 0 || result.stdout.trim() === "") return text;
  return result.stdout;
}

function writeJson(name: string, value: unknown): void {
  const file = join(OUT, name);
  writeFileSync(file, formatJson(value, file));
}

/** Compact JWS files hold exactly the bytes sent: no trailing newline. */
function writeJws(name: string, jws: string): void {
  writeFileSync(join(OUT, name), jws);
}

async function main(): Promise<void> {
  const schemas = loadSchemaRegistry();
  const seed = seedMessage();
  const sender = await makeParty(SENDER, SENDER_KEY_VALID_UNTIL);
  const recipient = await makeParty(RECIPIENT, null);

  const envelope = buildEnvelope(
    {
      type: seed.type,
      schemaVersion: 1,
      to: seed.to,
      caseRef: seed.caseRef,
      handling: seed.handling,
      body: seed.body,
    },
    {
      self: SENDER,
      clock: () => SENT_AT,
      ids: () => MESSAGE_ID,
      ttlMs: EXPIRES_AT.getTime() - SENT_AT.getTime(),
    },
  );
  const messageJws = await signCompact(envelope, sender.signing, MESSAGE_TYP);
  const messageDigest = sha256Hex(messageJws);

  const receipt = buildReceipt(
    { to: SENDER, messageId: envelope.id, digest: messageDigest, errors: [] },
    { self: RECIPIENT, clock: () => RECEIPT_SENT_AT, ids: () => RECEIPT_ID },
  );
  const receiptJws = await signCompact(receipt, recipient.signing, RECEIPT_TYP);

  // Check before writing: the recipient accepts the message, the sender accepts the receipt.
  const encoder = new TextEncoder();
  const common = {
    schemas,
    now: CHECKED_AT,
    clockSkewMs: 300_000,
    decryptionKeys: [],
    maxBytes: 256 * 1024,
  };
  const atRecipient = await verifyInbound(encoder.encode(messageJws), {
    ...common,
    self: RECIPIENT,
    keys: await resolverFromDocument(sender.document),
  });
  if (!atRecipient.ok || atRecipient.kind !== "message") {
    throw new Error(`the example message does not verify: ${JSON.stringify(atRecipient)}`);
  }
  const atSender = await verifyInbound(encoder.encode(receiptJws), {
    ...common,
    self: SENDER,
    keys: await resolverFromDocument(recipient.document),
  });
  if (!atSender.ok || atSender.kind !== "receipt") {
    throw new Error(`the example receipt does not verify: ${JSON.stringify(atSender)}`);
  }

  mkdirSync(OUT, { recursive: true });
  writeJson("sender-public.jwks.json", sender.document);
  writeJson("recipient-public.jwks.json", recipient.document);
  writeJws("message.jws", messageJws);
  writeJson("message.payload.json", decodePayload(messageJws));
  writeJws("receipt.jws", receiptJws);
  writeJson("receipt.payload.json", decodePayload(receiptJws));

  console.log(`wrote ${relative(REPO, OUT)}/`);
  console.log(`  sender kid    ${sender.signing.kid}`);
  console.log(`  recipient kid ${recipient.signing.kid}`);
  console.log(`  message id    ${envelope.id} (${encoder.encode(messageJws).byteLength} bytes)`);
  console.log(`  digest        ${messageDigest}`);
}

await main();
