/**
 * Generates docs/examples/: two fictional parties' public party documents (JWKS: an Ed25519
 * signing key and an X25519 encryption key each; both accept batch receipts), one real signed
 * case.notice from CN-MPS-HEKOU to VN-BGC-LAOCAI and Lao Cai's accepted receipt for it, one real
 * signed victim.identified whose personal data is encrypted to both parties, Lao Cai's batch
 * receipt accepting both messages, and one handover record signed by Hekou and countersigned by
 * Lao Cai.
 *
 *   npx tsx scripts/make-protocol-examples.ts
 *
 * Everything is built with the gateway's own functions (buildEnvelope, signCompact,
 * buildReceipt, sha256Hex, buildPartyDocument, sealPersonalData, signHandoverRecord,
 * countersignHandoverRecord) and checked (verifyInbound, openPersonalData,
 * verifyHandoverRecord) before anything is written. Ids and times are fixed, so a re-run changes
 * only the keys, the `kid`s, the signatures, the ciphertexts and the digests.
 *
 * The private keys are generated non-extractable, live only in this process and are thrown away
 * when it ends: they are never written anywhere. ONE exception, on purpose: the recipient's
 * X25519 private key is written to recipient-encryption-private.jwk.json so that a partner can
 * check its decryption against the example. It is a throwaway key of a fictional party, made for
 * the docs, and must never be used for anything else.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { isDeepStrictEqual } from "node:util";
import {
  type CryptoKey,
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JWK,
} from "jose";
import { loadSchemaRegistry } from "../src/config/schema-files.ts";
import { buildEnvelope } from "../src/protocol/build-envelope.ts";
import { buildReceipt } from "../src/protocol/build-receipt.ts";
import { sha256Hex } from "../src/protocol/digest.ts";
import {
  countersignHandoverRecord,
  signHandoverRecord,
  verifyHandoverRecord,
} from "../src/protocol/handover-record.ts";
import { MESSAGE_TYP, RECEIPT_BATCH_TYP, RECEIPT_TYP } from "../src/protocol/jws-profile.ts";
import {
  openPersonalData,
  PERSONAL_DATA_ALG,
  type PersonalDataKey,
  sealPersonalData,
} from "../src/protocol/personal-data.ts";
import { signCompact } from "../src/protocol/sign.ts";
import type {
  Handling,
  KeyRecord,
  KeyResolver,
  PartyId,
  PartyRecord,
  ReceiptBatch,
  RegisteredKey,
  SigningKey,
} from "../src/protocol/types.ts";
import { verifyInbound } from "../src/protocol/verify-inbound.ts";
import {
  buildPartyDocument,
  type PartyDocument,
  parsePartyDocument,
} from "../src/registry/party-document.ts";

const REPO = fileURLToPath(new URL("../", import.meta.url));
const OUT = join(REPO, "docs", "examples");
const JOURNEY = join(OUT, "messages");

const SENDER: PartyId = "CN-MPS-HEKOU";
const RECIPIENT: PartyId = "VN-BGC-LAOCAI";

/** Fixed ids: UUIDv7 whose timestamp is the instant the message / receipt is signed. */
const MESSAGE_ID = "01a20c91-a000-7c4e-9a51-3f6d2b8e0c17";
const RECEIPT_ID = "01a20c91-a7d0-7e12-8b3a-5c9d4f2a6e81";
/** The victim.identified, signed at VICTIM_SENT_AT. */
const VICTIM_MESSAGE_ID = "01a1f71c-7600-7b3e-8d41-6c2a9e5f1b08";
/**
 * The handover.proposal the record names (docs/examples/messages/07, `@07-handover.proposal` in
 * 09): a UUIDv7 of 2026-12-08T01:00:00.000Z. No such message is among the examples.
 */
const PROPOSAL_ID = "01a2532a-2280-7d19-a6c4-2e8b7f3d9a50";

const KEYS_VALID_FROM = new Date("2026-11-01T00:00:00.000Z");
const SENDER_KEY_VALID_UNTIL = new Date("2028-11-01T00:00:00.000Z");
const SENT_AT = new Date("2026-11-24T08:00:00.000Z");
const EXPIRES_AT = new Date("2027-11-24T08:00:00.000Z");
const RECEIPT_SENT_AT = new Date("2026-11-24T08:00:02.000Z");
/** Lao Cai's batch receipt for both example messages: a UUIDv7 of its sentAt. */
const RECEIPT_BATCH_ID = "01a20c91-abb8-7c3a-9e27-4b8d1f6a2c05";
const RECEIPT_BATCH_SENT_AT = new Date("2026-11-24T08:00:03.000Z");
/** When the examples are checked: a minute after the message was sent. */
const CHECKED_AT = new Date("2026-11-24T08:01:00.000Z");
/** The victim.identified: 45 minutes after the identification (its body's identifiedAt). */
const VICTIM_SENT_AT = new Date("2026-11-20T04:00:00.000Z");
const VICTIM_EXPIRES_AT = new Date("2027-11-20T04:00:00.000Z");
const VICTIM_CHECKED_AT = new Date("2026-11-20T04:01:00.000Z");
/** The handover record is checked 40 minutes after the handover (its handedOverAt). */
const RECORD_CHECKED_AT = new Date("2026-12-15T03:00:00.000Z");

interface SeedMessage {
  from: PartyId;
  to: PartyId[];
  type: string;
  caseRef: string;
  handling: Handling;
  body: Record<string, unknown>;
}

/** A local submit request of docs/examples/messages. */
interface JourneyMessage extends SeedMessage {
  personalData?: Record<string, unknown>;
  handoverRecord?: Record<string, unknown>;
}

interface ExampleParty {
  record: PartyRecord;
  signing: SigningKey;
  /** The X25519 private key personal data to this party is opened with. */
  decryption: PersonalDataKey;
  document: PartyDocument;
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

/** docs/examples/messages/<file>: a message of the journey from SENDER to RECIPIENT only. */
function journeyMessage(file: string, type: string): JourneyMessage {
  const message = readJson<JourneyMessage>(join(JOURNEY, file));
  if (
    message.type !== type ||
    message.from !== SENDER ||
    message.to.length !== 1 ||
    message.to[0] !== RECIPIENT
  ) {
    throw new Error(`messages/${file} is not a ${type} from ${SENDER} to ${RECIPIENT} alone`);
  }
  return message;
}

function partyRecord(id: PartyId): PartyRecord {
  const parties = readJson<PartyRecord[]>(join(REPO, "seeds", "parties.json"));
  const party = parties.find((p) => p.id === id);
  if (party === undefined) throw new Error(`seeds/parties.json has no party ${id}`);
  // Both are reference gateways: they accept batch receipts (protocol.md, Batch receipts).
  return { ...party, receiptBatches: true };
}

/**
 * A fresh Ed25519 signing key pair and a fresh X25519 encryption key pair. The private halves
 * are non-extractable and never leave memory, except the X25519 private key when
 * `publishDecryptionKey` is set: it is then extractable and returned as a JWK, to be written.
 */
async function makeParty(
  id: PartyId,
  validUntil: Date | null,
  publishDecryptionKey: boolean,
): Promise<{ party: ExampleParty; decryptionJwk: JWK | undefined }> {
  const signing = await generateKeyPair("EdDSA", { crv: "Ed25519" });
  const signingJwk = await exportJWK(signing.publicKey);
  const signingKid = await calculateJwkThumbprint(signingJwk, "sha256");
  const encryption = await generateKeyPair(PERSONAL_DATA_ALG, {
    crv: "X25519",
    extractable: publishDecryptionKey,
  });
  const encryptionJwk = await exportJWK(encryption.publicKey);
  const encryptionKid = await calculateJwkThumbprint(encryptionJwk, "sha256");
  const validity = { partyId: id, validFrom: KEYS_VALID_FROM, validUntil, revokedAt: null };
  const keys: KeyRecord[] = [
    { kid: signingKid, use: "sig", alg: "EdDSA", publicJwk: { ...signingJwk }, ...validity },
    {
      kid: encryptionKid,
      use: "enc",
      alg: PERSONAL_DATA_ALG,
      publicJwk: { ...encryptionJwk },
      ...validity,
    },
  ];
  const record = partyRecord(id);
  let decryptionJwk: JWK | undefined;
  if (publishDecryptionKey) {
    const { kty, crv, x, d } = await exportJWK(encryption.privateKey);
    decryptionJwk = { kty, crv, x, d, kid: encryptionKid, alg: PERSONAL_DATA_ALG, use: "enc" };
  }
  return {
    party: {
      record,
      signing: { kid: signingKid, alg: "EdDSA", key: signing.privateKey },
      decryption: { kid: encryptionKid, key: encryption.privateKey },
      document: buildPartyDocument(record, keys),
    },
    decryptionJwk,
  };
}

/** What a partner registry holds after importing published party documents. */
async function resolverFromDocuments(...documents: unknown[]): Promise<KeyResolver> {
  const parties = new Set<PartyId>();
  const signing = new Map<string, RegisteredKey>();
  const encryption: Array<KeyRecord & { key: CryptoKey }> = [];
  for (const document of documents) {
    const { party, keys } = await parsePartyDocument(document);
    parties.add(party.id);
    for (const k of keys) {
      const key = (await importJWK(k.publicJwk, k.alg)) as CryptoKey;
      if (k.use === "enc") {
        encryption.push({ ...k, key });
        continue;
      }
      signing.set(k.kid, {
        kid: k.kid,
        partyId: k.partyId,
        alg: k.alg as RegisteredKey["alg"],
        key,
        validFrom: k.validFrom,
        validUntil: k.validUntil,
        revokedAt: k.revokedAt,
      });
    }
  }
  return {
    hasParty: (p) => parties.has(p),
    keyById: (kid) => signing.get(kid),
    // The party's newest encryption key valid at `at` (protocol.md, Personal data, Encrypting).
    encryptionKeyOf: (partyId, at) => {
      const t = at.getTime();
      const valid = encryption
        .filter(
          (k) =>
            k.partyId === partyId &&
            k.validFrom.getTime() <= t &&
            (k.validUntil === null || t < k.validUntil.getTime()) &&
            (k.revokedAt === null || t < k.revokedAt.getTime()),
        )
        .sort((a, b) => b.validFrom.getTime() - a.validFrom.getTime());
      const newest = valid[0];
      return newest === undefined ? undefined : { kid: newest.kid, key: newest.key };
    },
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

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`the examples are wrong: ${what}`);
}

async function main(): Promise<void> {
  const schemas = loadSchemaRegistry();
  const seed = seedMessage();
  const victim = journeyMessage("01-victim.identified.json", "victim.identified");
  const handover = journeyMessage("09-handover.completed.json", "handover.completed");
  const { party: sender } = await makeParty(SENDER, SENDER_KEY_VALID_UNTIL, false);
  const { party: recipient, decryptionJwk } = await makeParty(RECIPIENT, null, true);
  if (decryptionJwk === undefined) throw new Error("the recipient's decryption key is missing");
  const encoder = new TextEncoder();
  const common = {
    schemas,
    clockSkewMs: 300_000,
    decryptionKeys: [],
    maxBytes: 256 * 1024,
  };

  // ─── case.notice and its receipt ──────────────────────────────────────────────────────────
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
  const atRecipient = await verifyInbound(encoder.encode(messageJws), {
    ...common,
    now: CHECKED_AT,
    self: RECIPIENT,
    keys: await resolverFromDocuments(sender.document),
  });
  if (!atRecipient.ok || atRecipient.kind !== "message") {
    throw new Error(`the example message does not verify: ${JSON.stringify(atRecipient)}`);
  }
  const atSender = await verifyInbound(encoder.encode(receiptJws), {
    ...common,
    now: CHECKED_AT,
    self: SENDER,
    keys: await resolverFromDocuments(recipient.document),
  });
  if (!atSender.ok || atSender.kind !== "receipt") {
    throw new Error(`the example receipt does not verify: ${JSON.stringify(atSender)}`);
  }

  // ─── victim.identified: personal data encrypted to the recipient and to the sender ────────
  const personalData = victim.personalData;
  if (personalData === undefined) throw new Error("messages/01 has no personalData");
  check(schemas.validatePersonalData(personalData).ok, "messages/01's personal data is invalid");
  // As the sending gateway does: the addressee's current key from its party document, then ours.
  const published = await resolverFromDocuments(recipient.document, sender.document);
  const recipientKey = published.encryptionKeyOf(RECIPIENT, VICTIM_SENT_AT);
  const senderKey = published.encryptionKeyOf(SENDER, VICTIM_SENT_AT);
  if (recipientKey === undefined || senderKey === undefined) {
    throw new Error("a party document has no encryption key valid when the message is sent");
  }
  const sealed = await sealPersonalData(personalData, [recipientKey, senderKey]);
  const victimEnvelope = buildEnvelope(
    {
      type: victim.type,
      schemaVersion: 1,
      to: victim.to,
      caseRef: victim.caseRef,
      handling: victim.handling,
      body: { ...victim.body, personalData: sealed },
    },
    {
      self: SENDER,
      clock: () => VICTIM_SENT_AT,
      ids: () => VICTIM_MESSAGE_ID,
      ttlMs: VICTIM_EXPIRES_AT.getTime() - VICTIM_SENT_AT.getTime(),
    },
  );
  const victimJws = await signCompact(victimEnvelope, sender.signing, MESSAGE_TYP);

  // Check before writing, with the private key AS WRITTEN to the file: the recipient accepts
  // the message (signature, schema, its entry decrypts, personal-data v1), the plaintext is the
  // example's, and the sender can open its own entry.
  const publishedDecryptionKey: PersonalDataKey = {
    kid: decryptionJwk.kid ?? "",
    key: (await importJWK(decryptionJwk, PERSONAL_DATA_ALG)) as CryptoKey,
  };
  check(
    publishedDecryptionKey.kid === recipientKey.kid,
    "the published key is not the recipient's",
  );
  const victimAtRecipient = await verifyInbound(encoder.encode(victimJws), {
    ...common,
    now: VICTIM_CHECKED_AT,
    self: RECIPIENT,
    keys: await resolverFromDocuments(sender.document),
    decryptionKeys: [publishedDecryptionKey],
  });
  if (!victimAtRecipient.ok || victimAtRecipient.kind !== "message") {
    throw new Error(
      `the example victim.identified does not verify: ${JSON.stringify(victimAtRecipient)}`,
    );
  }
  check(
    sealed.recipients.map((r) => r.header.kid).join() === [recipientKey.kid, senderKey.kid].join(),
    "the recipient entries are not the recipient's and the sender's, in this order",
  );
  for (const key of [publishedDecryptionKey, sender.decryption]) {
    const opened = await openPersonalData(sealed, [key]);
    check(
      opened.ok && opened.kid === key.kid && isDeepStrictEqual(opened.content, personalData),
      `the entry of ${key.kid} does not open to messages/01's personal data`,
    );
  }

  // ─── the recipient's batch receipt accepting both messages ────────────────────────────────
  const batch: ReceiptBatch = {
    id: RECEIPT_BATCH_ID,
    type: "receipt.batch",
    schemaVersion: 1,
    from: RECIPIENT,
    to: SENDER,
    sentAt: RECEIPT_BATCH_SENT_AT.toISOString(),
    accepted: [victimJws, messageJws].map((jws) => ({
      messageId: (decodePayload(jws) as { id: string }).id,
      digest: { alg: "sha-256", value: sha256Hex(jws) },
    })),
  };
  const batchJws = await signCompact(batch, recipient.signing, RECEIPT_BATCH_TYP);
  const batchAtSender = await verifyInbound(encoder.encode(batchJws), {
    ...common,
    now: CHECKED_AT,
    self: SENDER,
    keys: await resolverFromDocuments(recipient.document),
  });
  if (!batchAtSender.ok || batchAtSender.kind !== "receipt-batch") {
    throw new Error(`the example batch receipt does not verify: ${JSON.stringify(batchAtSender)}`);
  }

  // ─── handover record: signed by the sender, countersigned by the recipient ────────────────
  if (handover.handoverRecord === undefined) throw new Error("messages/09 has no handoverRecord");
  const recordPayload: Record<string, unknown> = {
    ...handover.handoverRecord,
    proposalId: PROPOSAL_ID,
  };
  check(!JSON.stringify(recordPayload).includes('"@'), "the record still holds a placeholder");
  check(
    recordPayload.handedOverBy === SENDER && recordPayload.receivedBy === RECIPIENT,
    "the record is not handed over by the sender and received by the recipient",
  );
  check(schemas.validateHandoverRecord(recordPayload).ok, "the record's payload is invalid");
  const signed = await signHandoverRecord(recordPayload, sender.signing);
  const handoverRecord = await countersignHandoverRecord(signed, recipient.signing);
  const recordVerdict = await verifyHandoverRecord(handoverRecord, published, RECORD_CHECKED_AT);
  if (!recordVerdict.ok) {
    throw new Error(`the example handover record does not verify: ${recordVerdict.detail}`);
  }
  check(
    isDeepStrictEqual(recordVerdict.signers, [
      { partyId: SENDER, kid: sender.signing.kid },
      { partyId: RECIPIENT, kid: recipient.signing.kid },
    ]),
    "the record's signers are not the sender then the recipient",
  );
  check(isDeepStrictEqual(recordVerdict.payload, recordPayload), "the record's payload changed");
  // Each signature on its own: the record signed by the sender alone verifies too.
  const first = await verifyHandoverRecord(signed, published, RECORD_CHECKED_AT);
  check(first.ok, "the sender's signature alone does not verify");

  mkdirSync(OUT, { recursive: true });
  writeJson("sender-public.jwks.json", sender.document);
  writeJson("recipient-public.jwks.json", recipient.document);
  writeJws("message.jws", messageJws);
  writeJson("message.payload.json", decodePayload(messageJws));
  writeJws("receipt.jws", receiptJws);
  writeJson("receipt.payload.json", decodePayload(receiptJws));
  writeJws("receipt-batch.jws", batchJws);
  writeJson("receipt-batch.payload.json", decodePayload(batchJws));
  writeJws("victim-identified.jws", victimJws);
  writeJson("victim-identified.payload.json", decodePayload(victimJws));
  writeJson("victim-identified.personal-data.json", personalData);
  // On purpose, and the only private key ever written: see the comment at the top.
  writeJson("recipient-encryption-private.jwk.json", decryptionJwk);
  writeJson("handover-record.json", handoverRecord);
  writeJson("handover-record.payload.json", recordVerdict.payload);

  console.log(`wrote ${relative(REPO, OUT)}/`);
  console.log(`  sender kid        ${sender.signing.kid} (enc ${senderKey.kid})`);
  console.log(`  recipient kid     ${recipient.signing.kid} (enc ${recipientKey.kid})`);
  console.log(
    `  message id        ${envelope.id} (${encoder.encode(messageJws).byteLength} bytes)`,
  );
  console.log(`  digest            ${messageDigest}`);
  console.log(
    `  victim.identified ${victimEnvelope.id} (${encoder.encode(victimJws).byteLength} bytes)`,
  );
}

await main();
