/**
 * Every illegal transition of a victim's case, refused on both real paths between two gateways:
 * Hekou (CN-MPS-HEKOU, the identifying party) and Lao Cai (VN-BGC-LAOCAI, the origin party),
 * each with its own key directory (signing and encryption keys), keyring, partner registry (both
 * parties in both), store (PGlite in memory; on PostgreSQL too with
 * LIAISON_TEST_CASE_DRIVERS=pglite,postgres), CaseBook, Submitter and Inbox — two gateways without
 * NATS and HTTP. A step submitted at one side is taken from its message log (the signed JWS) and
 * handed as bytes to the other side's inbox: the transport is not part of this test (the e2e
 * tests cover it). One database per side holds every case (a case ref per case).
 *
 * For every case state, a case is played up to that state with the journey's example messages
 * (docs/examples/messages); then every (step type, sender) the state does not allow is
 *
 * - submitted by its sender: refused with its code, nothing logged, the case row unchanged;
 * - built and signed as its sender would (personal data sealed to both parties, a handover record
 *   signed or countersigned) and handed to the receiver's inbox: quarantined with the code and a
 *   negative receipt carrying it, nothing logged, the case row unchanged; the same bytes again are
 *   refused again and kept once.
 *
 * Also: replies that name no or the wrong request (reply_unmatched), handover records signed by
 * the wrong party, naming another proposal, or answered with one signature
 * (handover_record_invalid, handover_record_incomplete), every allowed transition applied on both
 * paths, and steps refused on the wire that the sender had admitted: the sender's case drops them
 * when the negative receipt arrives, and the refusal is final.
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { and, count, eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { CaseBook } from "../../src/cases/case-book.ts";
import {
  CASE_STATES,
  type CaseState,
  REMINDER_TYPE,
  STEP_TYPES,
  type StepType,
} from "../../src/cases/case-types.ts";
import { loadSchemaRegistry } from "../../src/config/schema-files.ts";
import { Inbox, type InboxOutcome } from "../../src/delivery/inbox.ts";
import type { Store } from "../../src/delivery/ports.ts";
import { ReceiptIssuer } from "../../src/delivery/receipt-issuer.ts";
import { type SubmitRequest, Submitter } from "../../src/delivery/submitter.ts";
import { WakeSignal } from "../../src/delivery/wake-signal.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { buildEnvelope } from "../../src/protocol/build-envelope.ts";
import { LiaisonError, type WireErrorCode } from "../../src/protocol/errors.ts";
import {
  countersignHandoverRecord,
  type HandoverRecord,
  signHandoverRecord,
} from "../../src/protocol/handover-record.ts";
import { MESSAGE_TYP } from "../../src/protocol/jws-profile.ts";
import { sealPersonalData } from "../../src/protocol/personal-data.ts";
import type { Envelope, PartyRecord, SigningKey } from "../../src/protocol/types.ts";
import {
  currentSigningKey,
  generateEncryptionKeyFile,
  generateKeyFile,
  loadKeyFiles,
} from "../../src/registry/key-files.ts";
import { OwnKeyring } from "../../src/registry/own-keyring.ts";
import { PartnerRegistry } from "../../src/registry/partner-registry.ts";
import { type Database, openDatabase } from "../../src/store/database.ts";
import { SqlPartyStore } from "../../src/store/party-store.ts";
import {
  cases,
  deliveries,
  messages,
  quarantine,
  receiptBatches,
  receipts,
} from "../../src/store/schema.ts";
import { createStore } from "../../src/store/store.ts";
import { createTestDatabase } from "../helpers/databases.ts";
import { DEADLINES } from "../helpers/protocol-fixtures.ts";

// ─── the two gateways ────────────────────────────────────────────────────────────────────────

const HEKOU: PartyRecord = {
  id: "CN-MPS-HEKOU",
  name: "Hekou",
  country: "CN",
  kind: "border-police-liaison-office",
  inboundSubject: "liaison.inbox.CN-MPS-HEKOU",
};
const LAOCAI: PartyRecord = {
  id: "VN-BGC-LAOCAI",
  name: "Lao Cai",
  country: "VN",
  kind: "border-police-liaison-office",
  inboundSubject: "liaison.inbox.VN-BGC-LAOCAI",
};
const TTL_MS = 3_600_000;

/**
 * PGlite (in memory) by default; LIAISON_TEST_CASE_DRIVERS=pglite,postgres runs the whole file on
 * PostgreSQL too (a database of its own per gateway on the server of tests/global-setup.ts),
 * which doubles its runtime.
 */
const DRIVERS = (process.env.LIAISON_TEST_CASE_DRIVERS ?? "pglite").split(",").map((d) => {
  const driver = d.trim();
  if (driver !== "pglite" && driver !== "postgres") throw new Error(`unknown driver ${driver}`);
  return driver;
});
const MAX_BYTES = 262_144;

type Role = "identifying" | "origin";
const ROLES: readonly Role[] = ["identifying", "origin"];

interface Gateway {
  party: PartyRecord;
  dir: string;
  database: Database;
  store: Store;
  registry: PartnerRegistry;
  keyring: OwnKeyring;
  submitter: Submitter;
  inbox: Inbox;
  /** The signing key valid now, for handover records built by the test (the wire path). */
  signing: SigningKey;
  /** Closes the store and removes what the gateway made (key directory, test database). */
  close(): Promise<void>;
}

/**
 * One clock for both gateways, strictly increasing: the steps of a case get distinct, ordered
 * sentAt values, so the fold's order is the order they were made in, whichever party sent them.
 */
let last = 0;
const clock = () => {
  last = Math.max(Date.now(), last + 1);
  return new Date(last);
};

let hekou: Gateway;
let laocai: Gateway;
const gatewayOf = (role: Role) => (role === "identifying" ? hekou : laocai);
const otherOf = (g: Gateway) => (g === hekou ? laocai : hekou);
const schemas = loadSchemaRegistry();
const encoder = new TextEncoder();

async function openGateway(party: PartyRecord, driver: "pglite" | "postgres"): Promise<Gateway> {
  const dir = mkdtempSync(join(tmpdir(), "liaison-transitions-"));
  const keys = join(dir, "keys");
  const validFrom = new Date(Date.now() - 60_000);
  await generateKeyFile(keys, { validFrom });
  await generateEncryptionKeyFile(keys, { validFrom });
  const testDatabase =
    driver === "postgres" ? await createTestDatabase(inject("databaseUrl")) : undefined;
  const database = await openDatabase(
    testDatabase === undefined ? { inMemory: true } : { url: testDatabase.url },
  );
  expect(database.driver).toBe(driver);
  const store = createStore(database.db);
  const registry = await PartnerRegistry.load(new SqlPartyStore(database.db));
  const keyring = await OwnKeyring.read({ dir: keys, self: party, clock });
  await keyring.register(registry);
  const cases = new CaseBook({ keys: registry, policy: () => DEADLINES });
  const wake = new WakeSignal();
  const submitter = new Submitter({
    self: party.id,
    store,
    recipients: registry,
    schemas,
    signer: keyring,
    clock,
    ids: randomUUID,
    ttlMs: TTL_MS,
    maxMessageBytes: MAX_BYTES,
    wake,
    cases,
    caseKeys: keyring,
    encryption: registry,
  });
  const inbox = new Inbox({
    self: party.id,
    store,
    keys: registry,
    schemas,
    receipts: new ReceiptIssuer(party.id, keyring, clock, randomUUID),
    clock,
    clockSkewMs: 300_000,
    maxMessageBytes: MAX_BYTES,
    log: createLogger("silent"),
    wake,
    cases,
    caseKeys: keyring,
  });
  const signing = currentSigningKey(await loadKeyFiles(keys), clock())?.signing;
  if (signing === undefined) throw new Error("no signing key");
  const close = async () => {
    await database.close();
    await testDatabase?.drop();
    rmSync(dir, { recursive: true, force: true });
  };
  return { party, dir, database, store, registry, keyring, submitter, inbox, signing, close };
}

// ─── what the gateways hold ──────────────────────────────────────────────────────────────────

async function caseRow(g: Gateway, caseRef: string) {
  const [row] = await g.database.db.select().from(cases).where(eq(cases.caseRef, caseRef));
  return row;
}

/**
 * What a refused step must leave as it was, in one query: the case's rows in the message log,
 * the outbox, and the case row, every column.
 */
async function snapshot(g: Gateway, caseRef: string) {
  const result = await g.database.db.execute(sql`
    select (select count(*)::int from messages where case_ref = ${caseRef}) as logged,
           (select count(*)::int from deliveries) as outbox,
           (select to_jsonb(c) from cases c where c.case_ref = ${caseRef}) as "case"`);
  // postgres.js answers the rows, PGlite an object holding them.
  const [row] = (Array.isArray(result) ? result : (result as { rows: unknown[] }).rows) as Array<{
    logged: number;
    outbox: number;
    case: Record<string, unknown> | null;
  }>;
  if (row === undefined) throw new Error("no snapshot");
  return row;
}

/** The JWS of a message `g` sent, as its outbound log holds it. */
async function sentJws(g: Gateway, id: string): Promise<string> {
  const [row] = await g.database.db
    .select({ jws: messages.jws })
    .from(messages)
    .where(
      and(
        eq(messages.id, id),
        eq(messages.direction, "outbound"),
        eq(messages.fromParty, g.party.id),
      ),
    );
  if (row === undefined) throw new Error(`${g.party.id} logged no outbound message ${id}`);
  return row.jws;
}

async function loggedWithId(g: Gateway, id: string): Promise<number> {
  const [row] = await g.database.db
    .select({ n: count() })
    .from(messages)
    .where(eq(messages.id, id));
  return row?.n ?? 0;
}

const quarantinedAs = (g: Gateway, id: string) =>
  g.database.db.select().from(quarantine).where(eq(quarantine.messageId, id));

const answersTo = (g: Gateway, id: string) =>
  g.database.db
    .select()
    .from(receipts)
    .where(and(eq(receipts.direction, "issued"), eq(receipts.messageId, id)));

const payloadOf = (jws: string) =>
  JSON.parse(Buffer.from(jws.split(".")[1] ?? "", "base64url").toString("utf8"));

/** The bytes `from` sent under `id`, handed to the other gateway's inbox. */
async function deliver(from: Gateway, id: string): Promise<InboxOutcome> {
  const to = otherOf(from);
  return to.inbox.handle(encoder.encode(await sentJws(from, id)), to.party.inboundSubject);
}

/** The receipt `from` issued for message `id`, handed back to its sender's inbox. */
async function returnReceipt(from: Gateway, id: string): Promise<InboxOutcome> {
  const [answer] = await answersTo(from, id);
  if (answer === undefined) throw new Error(`${from.party.id} issued no receipt for ${id}`);
  const to = otherOf(from);
  // An entry of a batch receipt: the batch's bytes are what was signed and sent.
  const jws =
    answer.jws ??
    (
      await from.database.db
        .select({ jws: receiptBatches.jws })
        .from(receiptBatches)
        .where(
          and(eq(receiptBatches.direction, "issued"), eq(receiptBatches.id, answer.batchId ?? "")),
        )
    )[0]?.jws;
  if (jws === undefined) throw new Error(`${from.party.id} kept no bytes for its answer to ${id}`);
  return to.inbox.handle(encoder.encode(jws), to.party.inboundSubject);
}

// ─── the journey's messages (docs/examples/messages) ─────────────────────────────────────────

interface Example {
  type: string;
  handling: SubmitRequest["handling"];
  body: Record<string, unknown>;
  personalData?: Record<string, unknown>;
  handoverRecord?: Record<string, unknown>;
}
const EXAMPLE_CASE_REF = "CN-HEKOU-2026-0107";
const EXAMPLES_DIR = new URL("../../docs/examples/messages/", import.meta.url);
const EXAMPLES = new Map<string, string>(
  readdirSync(EXAMPLES_DIR)
    .filter((f) => /^\d\d-.*\.json$/.test(f))
    .map((f) => {
      const text = readFileSync(new URL(f, EXAMPLES_DIR), "utf8");
      return [(JSON.parse(text) as Example).type, text];
    }),
);

/** The example of `type`, for case `caseRef` (every mention of the example's case replaced). */
function example(type: string, caseRef: string): Example {
  const text = EXAMPLES.get(type);
  if (text === undefined) throw new Error(`no example of ${type}`);
  return JSON.parse(text.replaceAll(EXAMPLE_CASE_REF, caseRef)) as Example;
}

/** Bodies of the journey's other branches (the examples follow the straight path). */
const BODIES = {
  moreInformation: {
    result: "more-information-needed",
    familyTracing: { status: "in-progress" },
    informationNeeded: "The school enrolment record of the commune, to compare the photograph.",
  },
  notConfirmed: {
    result: "not-confirmed",
    familyTracing: { status: "not-found" },
    reason: "No civil registration record of the commune matches the details given.",
  },
  declined: {
    decision: "declined",
    declineReason: {
      code: "other",
      explanation: "The receiving shelter cannot take a minor before the family assessment ends.",
    },
  },
  rejected: {
    decision: "rejected",
    reason: "The liaison office at the bridge is closed that day.",
  },
  countersigned: { notes: "Record countersigned on receipt of the person." },
};

/** A case as played so far, with what a next step needs to name. */
interface Journey {
  caseRef: string;
  /** Every step of the journey, in order. */
  steps: Envelope[];
  /** The request a reply must answer (verification, repatriation, proposal, signed record). */
  open: string | null;
  /** The newest handover proposal. */
  proposal: string | null;
  /** Hekou's singly signed handover.completed. */
  firstRecord: Envelope | null;
}

const newJourney = (caseRef: string): Journey => ({
  caseRef,
  steps: [],
  open: null,
  proposal: null,
  firstRecord: null,
});

const REPLIES: ReadonlySet<string> = new Set([
  "identity.verification.response",
  "repatriation.response",
  "handover.confirmation",
]);

/** The example's handover record payload, naming the case's newest proposal (or another id). */
function recordPayload(j: Journey, changes: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    ...example("handover.completed", j.caseRef).handoverRecord,
    proposalId: j.proposal ?? randomUUID(),
    ...changes,
  };
}

/**
 * The submit request the sender would make for `type` in the case as it stands: the example, to
 * the other party, a reply naming the open request; Hekou's handover.completed carries the record
 * payload to sign, Lao Cai's answers the signed record (countersigned by its gateway).
 */
function request(
  type: string,
  role: Role,
  j: Journey,
  changes: Partial<SubmitRequest> = {},
): SubmitRequest {
  const ex = example(type, j.caseRef);
  const from = gatewayOf(role);
  const countersign = type === "handover.completed" && role === "origin";
  const inReplyTo = countersign
    ? (j.firstRecord?.id ?? undefined)
    : REPLIES.has(type)
      ? (j.open ?? undefined)
      : undefined;
  const base: SubmitRequest = {
    type,
    to: [otherOf(from).party.id],
    caseRef: j.caseRef,
    inReplyTo,
    handling: ex.handling,
    body: countersign ? BODIES.countersigned : ex.body,
    personalData: ex.personalData,
    handoverRecord:
      type === "handover.completed" && role === "identifying" ? recordPayload(j) : undefined,
  };
  if (type === REMINDER_TYPE) {
    base.body = { ...ex.body, awaitedMessageId: j.steps[1]?.id ?? randomUUID() };
  }
  return { ...base, ...changes };
}

/** Submits at the sender, hands the logged bytes to the receiver: both must admit the step. */
async function play(j: Journey, role: Role, req: SubmitRequest): Promise<Envelope> {
  const from = gatewayOf(role);
  const envelope = await from.submitter.submit(req);
  const outcome = await deliver(from, envelope.id);
  if (outcome.outcome !== "accepted") {
    throw new Error(`${req.type} in ${j.caseRef} not accepted: ${JSON.stringify(outcome)}`);
  }
  j.steps.push(envelope);
  return envelope;
}

/** A fresh case played over both gateways up to `state`, as fold-case.test's journeyTo does. */
async function journeyTo(state: CaseState, caseRef: string): Promise<Journey> {
  const j = newJourney(caseRef);
  const step = (type: string, role: Role, changes: Partial<SubmitRequest> = {}) =>
    play(j, role, request(type, role, j, changes));
  await step("victim.identified", "identifying");
  if (state === "identified") return j;
  j.open = (await step("identity.verification.request", "identifying")).id;
  if (state === "verification-requested") return j;
  if (state === "more-information-needed" || state === "identity-not-confirmed") {
    const body = state === "more-information-needed" ? BODIES.moreInformation : BODIES.notConfirmed;
    await step("identity.verification.response", "origin", { body });
    j.open = null;
    return j;
  }
  await step("identity.verification.response", "origin");
  j.open = null;
  if (state === "identity-confirmed") return j;
  j.open = (await step("repatriation.request", "identifying")).id;
  if (state === "repatriation-requested") return j;
  if (state === "repatriation-declined") {
    await step("repatriation.response", "origin", { body: BODIES.declined });
    j.open = null;
    return j;
  }
  await step("repatriation.response", "origin");
  j.open = null;
  if (state === "repatriation-accepted") return j;
  await step("travel-document.issued", "origin");
  if (state === "travel-document-issued") return j;
  j.proposal = (await step("handover.proposal", "identifying")).id;
  j.open = j.proposal;
  if (state === "handover-proposed") return j;
  await step("handover.confirmation", "origin");
  if (state === "handover-confirmed") return j;
  j.firstRecord = await step("handover.completed", "identifying");
  j.open = j.firstRecord.id;
  if (state === "handover-signed") return j;
  await step("handover.completed", "origin");
  j.open = null;
  if (state === "handover-completed") return j;
  await step("reintegration.update", "origin");
  if (state === "reintegration") return j;
  await step("case.closed", "origin");
  return j;
}

// ─── the wire path: a message built and signed as its sender's gateway would ─────────────────

interface Built {
  envelope: Envelope;
  bytes: Uint8Array;
}

/**
 * What `role`'s gateway would put on the wire for `req`: personal data sealed to the receiver and
 * to the sender, `record` as body.record, the envelope signed with the sender's key.
 */
async function wire(
  role: Role,
  req: SubmitRequest,
  record?: HandoverRecord,
  sentAt?: Date,
): Promise<Built> {
  const from = gatewayOf(role);
  const to = otherOf(from);
  const body: Record<string, unknown> = { ...req.body };
  if (req.personalData !== undefined) {
    const theirs = from.registry.encryptionKeyOf(to.party.id, clock());
    const ours = from.keyring.encryptionKey();
    if (theirs === undefined || ours === undefined) throw new Error("no encryption key");
    body.personalData = await sealPersonalData(req.personalData, [theirs, ours]);
  }
  if (record !== undefined) body.record = record;
  const envelope = buildEnvelope(
    {
      type: req.type,
      schemaVersion: 1,
      to: [to.party.id],
      caseRef: req.caseRef,
      inReplyTo: req.inReplyTo,
      handling: req.handling ?? { classification: "restricted", onwardDissemination: "forbidden" },
      body,
    },
    {
      self: from.party.id,
      clock: sentAt === undefined ? clock : () => sentAt,
      ids: randomUUID,
      ttlMs: TTL_MS,
    },
  );
  const { jws } = await from.keyring.sign(envelope, MESSAGE_TYP);
  return { envelope, bytes: encoder.encode(jws) };
}

/** Hekou's record as its gateway signs it. */
const signedByHekou = (payload: Record<string, unknown>) =>
  signHandoverRecord(payload, hekou.signing);

/**
 * The record a handover.completed of `role` carries: Hekou signs the payload; Lao Cai
 * countersigns the case's signed record — or, where there is none, a record Hekou signed that
 * never became part of the case (what a gateway without the case's check would countersign).
 */
async function recordFor(role: Role, j: Journey, req: SubmitRequest): Promise<HandoverRecord> {
  if (role === "identifying") return signedByHekou(req.handoverRecord ?? recordPayload(j));
  const first =
    (j.firstRecord?.body.record as HandoverRecord | undefined) ??
    (await signedByHekou(recordPayload(j)));
  return countersignHandoverRecord(first, laocai.signing);
}

/** The wire message for `request(type, role, j, changes)`. */
async function wireStep(
  type: string,
  role: Role,
  j: Journey,
  changes: Partial<SubmitRequest> = {},
): Promise<Built> {
  const req = request(type, role, j, changes);
  return wire(role, req, type === "handover.completed" ? await recordFor(role, j, req) : undefined);
}

// ─── the two checks ──────────────────────────────────────────────────────────────────────────

/** The sender's gateway refuses the request with `code`; nothing is logged, the case unchanged. */
async function expectSubmitRefused(role: Role, req: SubmitRequest, code: string): Promise<void> {
  const from = gatewayOf(role);
  const before = await snapshot(from, req.caseRef);
  const error = await from.submitter.submit(req).then(
    (envelope) => new Error(`submitted as ${envelope.id}`),
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(LiaisonError);
  expect((error as LiaisonError).code).toBe(code);
  expect(await snapshot(from, req.caseRef)).toEqual(before);
}

/**
 * The receiver quarantines the bytes with `code` and answers them with one negative receipt
 * carrying it; nothing is logged, its case is unchanged; the same bytes again are refused again,
 * kept once and answered once (receiptSent is false then: the earlier answer is queued again,
 * no second one is written — see tests/integration/inbox.test.ts).
 */
async function expectWireRefused(role: Role, built: Built, code: WireErrorCode): Promise<void> {
  const from = gatewayOf(role);
  const to = otherOf(from);
  const { envelope, bytes } = built;
  const before = await snapshot(to, envelope.caseRef);
  expect(await to.inbox.handle(bytes, to.party.inboundSubject)).toEqual({
    outcome: "quarantined",
    code,
    receiptSent: true,
  });
  const kept = await quarantinedAs(to, envelope.id);
  expect(kept).toHaveLength(1);
  expect(kept[0]).toMatchObject({ code, kind: "message", claimedFrom: from.party.id });
  const answers = await answersTo(to, envelope.id);
  expect(answers).toHaveLength(1);
  expect(answers[0]).toMatchObject({
    id: kept[0]?.receiptId,
    status: "rejected",
    fromParty: to.party.id,
    toParty: from.party.id,
  });
  expect(answers[0]?.errors.map((e) => e.code)).toEqual([code]);
  expect(payloadOf(answers[0]?.jws ?? "")).toMatchObject({
    messageId: envelope.id,
    status: "rejected",
    errors: [{ code }],
  });
  expect(await loggedWithId(to, envelope.id)).toBe(0);
  expect(await snapshot(to, envelope.caseRef)).toEqual(before);

  // Refused once, refused for good.
  expect(await to.inbox.handle(bytes, to.party.inboundSubject)).toEqual({
    outcome: "quarantined",
    code,
    receiptSent: false,
  });
  expect(await quarantinedAs(to, envelope.id)).toHaveLength(1);
  expect((await answersTo(to, envelope.id)).map((a) => a.id)).toEqual(answers.map((a) => a.id));
  expect(await snapshot(to, envelope.caseRef)).toEqual(before);
}

// ─── the transition table, written out independently of src/cases ───────────────────────────

/** The allowed steps per state: type, sender, and the state the example body leads to. */
const STEPS: Record<CaseState, Array<[StepType, Role, CaseState]>> = {
  identified: [["identity.verification.request", "identifying", "verification-requested"]],
  "verification-requested": [["identity.verification.response", "origin", "identity-confirmed"]],
  "more-information-needed": [
    ["identity.verification.request", "identifying", "verification-requested"],
  ],
  "identity-confirmed": [["repatriation.request", "identifying", "repatriation-requested"]],
  "identity-not-confirmed": [],
  "repatriation-requested": [["repatriation.response", "origin", "repatriation-accepted"]],
  "repatriation-accepted": [["travel-document.issued", "origin", "travel-document-issued"]],
  "repatriation-declined": [],
  "travel-document-issued": [["handover.proposal", "identifying", "handover-proposed"]],
  "handover-proposed": [
    ["handover.proposal", "identifying", "handover-proposed"],
    ["handover.confirmation", "origin", "handover-confirmed"],
  ],
  "handover-confirmed": [
    ["handover.proposal", "identifying", "handover-proposed"],
    ["handover.completed", "identifying", "handover-signed"],
  ],
  "handover-signed": [["handover.completed", "origin", "handover-completed"]],
  "handover-completed": [["reintegration.update", "origin", "reintegration"]],
  reintegration: [["reintegration.update", "origin", "reintegration"]],
  closed: [],
};
/** Either party may close an open case. */
const ALLOWED = Object.fromEntries(
  CASE_STATES.map((state) => [
    state,
    state === "closed"
      ? STEPS[state]
      : [
          ...STEPS[state],
          ["case.closed", "identifying", "closed"],
          ["case.closed", "origin", "closed"],
        ],
  ]),
) as Record<CaseState, Array<[StepType, Role, CaseState]>>;

const allowed = (state: CaseState, type: StepType, role: Role) =>
  ALLOWED[state].some(([t, r]) => t === type && r === role);

const ILLEGAL = CASE_STATES.flatMap((state) =>
  STEP_TYPES.flatMap((type) =>
    ROLES.filter((role) => !allowed(state, type, role)).map((role) => ({ state, type, role })),
  ),
);

const pad = (n: number) => String(n).padStart(2, "0");
const key = (...parts: string[]) => parts.join(" ");

// ─── setup ───────────────────────────────────────────────────────────────────────────────────

/** One case per state, for the refusals (refusals change nothing, so they share it). */
const journeys = new Map<CaseState, Journey>();
/** The wire message of every illegal (state, type, sender), built and signed concurrently. */
const illegalOnTheWire = new Map<string, Built>();

const journey = (state: CaseState) => {
  const j = journeys.get(state);
  if (j === undefined) throw new Error(`no case in ${state}`);
  return j;
};

// The suites below run one driver after the other: each driver's beforeAll opens its own two
// gateways and plays its own cases (the same case refs, in other databases).
describe.each(DRIVERS)("on %s", (driver) => {
  beforeAll(async () => {
    journeys.clear();
    illegalOnTheWire.clear();
    [hekou, laocai] = await Promise.all([openGateway(HEKOU, driver), openGateway(LAOCAI, driver)]);
    for (const [g, other] of [
      [hekou, laocai],
      [laocai, hekou],
    ] as const) {
      await g.registry.add(other.party, other.keyring.publicKeys());
    }
    const played = await Promise.all(
      CASE_STATES.map((state, i) => journeyTo(state, `CN-HEKOU-2026-9${pad(i + 1)}`)),
    );
    CASE_STATES.forEach((state, i) => {
      journeys.set(state, played[i] as Journey);
    });
    await Promise.all(
      ILLEGAL.map(async ({ state, type, role }) => {
        const j = journeys.get(state) as Journey;
        illegalOnTheWire.set(key(state, type, role), await wireStep(type, role, j));
      }),
    );
  });

  afterAll(async () => {
    await Promise.all([hekou?.close(), laocai?.close()]);
  });

  // ─── every illegal transition ────────────────────────────────────────────────────────────────

  describe.each(CASE_STATES.map((state) => [state]))("in state %s", (state: CaseState) => {
    it("both gateways hold the case in that state", async () => {
      const { caseRef, steps } = journey(state);
      for (const g of [hekou, laocai]) {
        expect(await caseRow(g, caseRef)).toMatchObject({ state, messageCount: steps.length });
      }
    });

    for (const { type, role } of ILLEGAL.filter((t) => t.state === state)) {
      // Lao Cai's handover.completed answers Hekou's signed record: its gateway countersigns the
      // record the case holds. With none to countersign (before Hekou signed one) the submitter
      // refuses it itself, with the same code the case would give.
      const noRecord = type === "handover.completed" && role === "origin";
      const submitCode = (_j: Journey) => "transition_not_allowed";

      it(`${type} by the ${role} party: refused at submit`, async () => {
        const j = journey(state);
        await expectSubmitRefused(role, request(type, role, j), submitCode(j));
      });

      if (noRecord) {
        it(`${type} by the ${role} party with a record of its own: refused at submit (transition_not_allowed)`, async () => {
          // The same step with a record Lao Cai's gateway signs itself: it reaches the case.
          const j = journey(state);
          await expectSubmitRefused(
            role,
            request(type, role, j, { handoverRecord: recordPayload(j) }),
            "transition_not_allowed",
          );
        });
      }

      it(`${type} by the ${role} party: refused on the wire`, async () => {
        const built = illegalOnTheWire.get(key(state, type, role));
        if (built === undefined) throw new Error("not built");
        await expectWireRefused(role, built, "transition_not_allowed");
      });
    }

    if (state === "closed") {
      // Not a step, but a case message too: a reminder is allowed in every state but closed.
      for (const role of ROLES) {
        it(`${REMINDER_TYPE} by the ${role} party: refused at submit and on the wire`, async () => {
          const j = journey(state);
          await expectSubmitRefused(
            role,
            request(REMINDER_TYPE, role, j),
            "transition_not_allowed",
          );
          await expectWireRefused(
            role,
            await wireStep(REMINDER_TYPE, role, j),
            "transition_not_allowed",
          );
        });
      }
    }
  });

  describe("refused for good, whichever way the bytes come back", () => {
    it("the same refused step twice in one batch: refused twice with the case's code, kept and answered once", async () => {
      const j = journey("identity-confirmed");
      const { envelope, bytes } = await wireStep("travel-document.issued", "origin", j);
      const before = await snapshot(hekou, j.caseRef);
      const subject = hekou.party.inboundSubject;
      expect(
        await hekou.inbox.handleBatch([
          { data: bytes, subject },
          { data: bytes, subject },
        ]),
      ).toEqual([
        { outcome: "quarantined", code: "transition_not_allowed", receiptSent: true },
        { outcome: "quarantined", code: "transition_not_allowed", receiptSent: false },
      ]);
      expect(await quarantinedAs(hekou, envelope.id)).toHaveLength(1);
      expect((await answersTo(hekou, envelope.id)).map((a) => a.errors.map((e) => e.code))).toEqual(
        [["transition_not_allowed"]],
      );
      expect(await snapshot(hekou, j.caseRef)).toEqual(before);
    });
  });

  // ─── replies that name no or the wrong request ───────────────────────────────────────────────

  describe("a reply must name the open request: reply_unmatched", () => {
    /** Where each reply type is allowed, and who sends it. */
    const REPLY_STATES: Array<[string, CaseState]> = [
      ["identity.verification.response", "verification-requested"],
      ["repatriation.response", "repatriation-requested"],
      ["handover.confirmation", "handover-proposed"],
      ["handover.completed", "handover-signed"],
    ];
    /** The wrong names: none, another message of the case, a message of another case. */
    const WRONG: Array<[string, (j: Journey) => string | undefined]> = [
      ["no inReplyTo", () => undefined],
      ["inReplyTo naming another message of the case", (j) => j.steps[0]?.id],
      ["inReplyTo naming a message of another case", () => journey("identified").steps[0]?.id],
    ];

    for (const [type, state] of REPLY_STATES) {
      for (const [what, wrong] of WRONG) {
        it(`${type} in ${state}, ${what}: refused at submit`, async () => {
          const j = journey(state);
          await expectSubmitRefused(
            "origin",
            request(type, "origin", j, { inReplyTo: wrong(j) }),
            "reply_unmatched",
          );
        });

        if (type === "handover.completed") {
          // The countersigning submit above is refused by the submitter itself (it finds no signed
          // record under that inReplyTo to countersign). With a record of its own, Lao Cai's step
          // reaches the case, which refuses the reply before it looks at the record.
          it(`${type} in ${state}, ${what}, with a record of its own: refused at submit by the case`, async () => {
            const j = journey(state);
            const req = request(type, "origin", j, {
              inReplyTo: wrong(j),
              handoverRecord: recordPayload(j),
            });
            await expectSubmitRefused("origin", req, "reply_unmatched");
          });
        }

        it(`${type} in ${state}, ${what}: refused on the wire`, async () => {
          const j = journey(state);
          await expectWireRefused(
            "origin",
            await wireStep(type, "origin", j, { inReplyTo: wrong(j) }),
            "reply_unmatched",
          );
        });
      }
    }

    describe("a confirmation naming a proposal that a reschedule replaced", () => {
      let j: Journey;
      let older: string;
      beforeAll(async () => {
        j = await journeyTo("handover-proposed", "CN-HEKOU-2026-9701");
        older = j.proposal as string;
        j.proposal = (
          await play(j, "identifying", request("handover.proposal", "identifying", j))
        ).id;
        j.open = j.proposal;
      });

      it("is refused at submit", async () => {
        await expectSubmitRefused(
          "origin",
          request("handover.confirmation", "origin", j, { inReplyTo: older }),
          "reply_unmatched",
        );
      });

      it("is refused on the wire", async () => {
        await expectWireRefused(
          "origin",
          await wireStep("handover.confirmation", "origin", j, { inReplyTo: older }),
          "reply_unmatched",
        );
      });

      it("and the newest proposal confirmed, a record naming the older one is refused on both paths (handover_record_invalid)", async () => {
        await play(j, "origin", request("handover.confirmation", "origin", j));
        const payload = recordPayload(j, { proposalId: older });
        await expectSubmitRefused(
          "identifying",
          request("handover.completed", "identifying", j, { handoverRecord: payload }),
          "handover_record_invalid",
        );
        await expectWireRefused(
          "identifying",
          await wireStep("handover.completed", "identifying", j, { handoverRecord: payload }),
          "handover_record_invalid",
        );
        for (const g of [hekou, laocai]) {
          expect((await caseRow(g, j.caseRef))?.state).toBe("handover-confirmed");
        }
      });
    });
  });

  // ─── the handover record ─────────────────────────────────────────────────────────────────────

  describe("the handover record", () => {
    describe("the first record (Hekou, in handover-confirmed): handover_record_invalid", () => {
      const state = "handover-confirmed";
      /** Payloads that do not fit the case, on both paths: the gateway signs whatever it is given. */
      const WRONG_PAYLOADS: Array<[string, (j: Journey) => Record<string, unknown>]> = [
        [
          "naming another message than the confirmed proposal",
          (j) => recordPayload(j, { proposalId: j.steps[0]?.id }),
        ],
        [
          "naming a proposal that does not exist",
          (j) => recordPayload(j, { proposalId: randomUUID() }),
        ],
        ["naming another case", (j) => recordPayload(j, { caseRef: "CN-HEKOU-2026-0107" })],
        [
          "with the parties swapped",
          (j) => recordPayload(j, { handedOverBy: LAOCAI.id, receivedBy: HEKOU.id }),
        ],
      ];
      for (const [what, payload] of WRONG_PAYLOADS) {
        it(`${what}: refused at submit and on the wire`, async () => {
          const j = journey(state);
          const handoverRecord = payload(j);
          await expectSubmitRefused(
            "identifying",
            request("handover.completed", "identifying", j, { handoverRecord }),
            "handover_record_invalid",
          );
          await expectWireRefused(
            "identifying",
            await wireStep("handover.completed", "identifying", j, { handoverRecord }),
            "handover_record_invalid",
          );
        });
      }

      // Not on the submit path: Hekou's gateway signs the record itself, once, with its own key,
      // so a record signed by the wrong party, or already carrying two signatures, cannot be
      // submitted. On the wire, a partner's gateway can send them.
      it("signed by the wrong party (Lao Cai): refused on the wire", async () => {
        const j = journey(state);
        const req = request("handover.completed", "identifying", j);
        const record = await signHandoverRecord(recordPayload(j), laocai.signing);
        await expectWireRefused(
          "identifying",
          await wire("identifying", req, record),
          "handover_record_invalid",
        );
      });

      it("carrying both signatures already: refused on the wire", async () => {
        const j = journey(state);
        const req = request("handover.completed", "identifying", j);
        const both = await countersignHandoverRecord(
          await signedByHekou(recordPayload(j)),
          laocai.signing,
        );
        await expectWireRefused(
          "identifying",
          await wire("identifying", req, both),
          "handover_record_invalid",
        );
      });
    });

    describe("the answer (Lao Cai, in handover-signed)", () => {
      const state = "handover-signed";
      const first = (j: Journey) => j.firstRecord?.body.record as HandoverRecord;

      it("with one signature, its own: refused at submit (handover_record_incomplete)", async () => {
        // Lao Cai's gateway signs a record it is given once: the answer then carries one signature.
        const j = journey(state);
        await expectSubmitRefused(
          "origin",
          request("handover.completed", "origin", j, { handoverRecord: recordPayload(j) }),
          "handover_record_incomplete",
        );
      });

      it("with one signature, its own: refused on the wire (handover_record_incomplete)", async () => {
        const j = journey(state);
        const req = request("handover.completed", "origin", j);
        const own = await signHandoverRecord(
          JSON.parse(Buffer.from(first(j).payload, "base64url").toString("utf8")),
          laocai.signing,
        );
        expect(own.payload).toBe(first(j).payload);
        await expectWireRefused(
          "origin",
          await wire("origin", req, own),
          "handover_record_incomplete",
        );
      });

      // Not on the submit path, from here on: without a record given, Lao Cai's gateway
      // countersigns exactly the record the case holds (same payload, Hekou's signature kept), so
      // a payload, a first signature or signers other than those cannot be submitted.
      it("with Hekou's signature only (the record sent back as it came): refused on the wire (handover_record_incomplete)", async () => {
        const j = journey(state);
        const req = request("handover.completed", "origin", j);
        await expectWireRefused(
          "origin",
          await wire("origin", req, first(j)),
          "handover_record_incomplete",
        );
      });

      it("countersigning another payload: refused on the wire (handover_record_invalid)", async () => {
        const j = journey(state);
        const req = request("handover.completed", "origin", j);
        const other = await signedByHekou(
          recordPayload(j, { handedOverAt: "2026-12-15T03:00:00Z" }),
        );
        await expectWireRefused(
          "origin",
          await wire("origin", req, await countersignHandoverRecord(other, laocai.signing)),
          "handover_record_invalid",
        );
      });

      it("with the signatures in the other order: refused on the wire (handover_record_invalid)", async () => {
        const j = journey(state);
        const req = request("handover.completed", "origin", j);
        const [hekouSignature, laocaiSignature] = (
          await countersignHandoverRecord(first(j), laocai.signing)
        ).signatures;
        if (hekouSignature === undefined || laocaiSignature === undefined)
          throw new Error("unsigned");
        const swapped = {
          payload: first(j).payload,
          signatures: [laocaiSignature, hekouSignature],
        };
        await expectWireRefused(
          "origin",
          await wire("origin", req, swapped),
          "handover_record_invalid",
        );
      });
    });
  });

  // ─── steps the sender admitted that the receiver refuses ─────────────────────────────────────

  describe("a step refused on the wire that its sender had admitted", () => {
    it("out of order: refused for good; the sender drops it on the negative receipt and sends it again", async () => {
      const j = newJourney("CN-HEKOU-2026-9801");
      const opened = await hekou.submitter.submit(request("victim.identified", "identifying", j));
      j.steps.push(opened);
      const early = await hekou.submitter.submit(
        request("identity.verification.request", "identifying", j),
      );
      expect((await caseRow(hekou, j.caseRef))?.state).toBe("verification-requested");

      // The request overtakes the case's opening: Lao Cai has no case to put it in.
      expect(await deliver(hekou, early.id)).toEqual({
        outcome: "quarantined",
        code: "transition_not_allowed",
        receiptSent: true,
      });
      expect(await returnReceipt(laocai, early.id)).toEqual({
        outcome: "receipt",
        messageId: early.id,
        status: "rejected",
        duplicate: false,
      });
      // Hekou's case drops the refused step: it never became part of the case.
      expect(await caseRow(hekou, j.caseRef)).toMatchObject({
        state: "identified",
        messageCount: 1,
      });
      const [delivery] = await hekou.database.db
        .select()
        .from(deliveries)
        .where(eq(deliveries.messageId, early.id));
      expect(delivery?.status).toBe("rejected");

      expect(await deliver(hekou, opened.id)).toEqual({
        outcome: "accepted",
        messageId: opened.id,
      });
      // The case would take the request now; its bytes are refused again all the same.
      expect(await deliver(hekou, early.id)).toEqual({
        outcome: "quarantined",
        code: "transition_not_allowed",
        receiptSent: false,
      });
      for (const g of [hekou, laocai]) {
        expect(await caseRow(g, j.caseRef)).toMatchObject({ state: "identified", messageCount: 1 });
      }

      // Sent again, with a new id: admitted on both sides.
      await play(j, "identifying", request("identity.verification.request", "identifying", j));
      for (const g of [hekou, laocai]) {
        expect((await caseRow(g, j.caseRef))?.state).toBe("verification-requested");
      }
    });

    it("two closes cross: the later one is refused by its receiver and dropped by its sender", async () => {
      const j = await journeyTo("identity-not-confirmed", "CN-HEKOU-2026-9802");
      const fromHekou = await hekou.submitter.submit(request("case.closed", "identifying", j));
      const fromLaocai = await laocai.submitter.submit(request("case.closed", "origin", j));
      // Lao Cai admits Hekou's earlier close; its own later one is superseded in its fold.
      expect(await deliver(hekou, fromHekou.id)).toEqual({
        outcome: "accepted",
        messageId: fromHekou.id,
      });
      expect(await deliver(laocai, fromLaocai.id)).toEqual({
        outcome: "quarantined",
        code: "transition_not_allowed",
        receiptSent: true,
      });
      expect(await returnReceipt(hekou, fromLaocai.id)).toMatchObject({
        outcome: "receipt",
        status: "rejected",
      });
      for (const g of [hekou, laocai]) {
        expect(await caseRow(g, j.caseRef)).toMatchObject({
          state: "closed",
          messageCount: j.steps.length + 1,
        });
      }
    });

    it("a reschedule crosses a confirmation: the confirmation is refused (reply_unmatched) and dropped", async () => {
      const j = await journeyTo("handover-proposed", "CN-HEKOU-2026-9803");
      const reschedule = await hekou.submitter.submit(
        request("handover.proposal", "identifying", j, {
          body: {
            ...example("handover.proposal", j.caseRef).body,
            scheduledAt: "2026-12-16T02:00:00Z",
          },
        }),
      );
      const confirmation = await laocai.submitter.submit(
        request("handover.confirmation", "origin", j),
      );
      expect(await deliver(hekou, reschedule.id)).toEqual({
        outcome: "accepted",
        messageId: reschedule.id,
      });
      expect(await deliver(laocai, confirmation.id)).toEqual({
        outcome: "quarantined",
        code: "reply_unmatched",
        receiptSent: true,
      });
      expect(await returnReceipt(hekou, confirmation.id)).toMatchObject({
        outcome: "receipt",
        status: "rejected",
      });
      for (const g of [hekou, laocai]) {
        expect(await caseRow(g, j.caseRef)).toMatchObject({
          state: "handover-proposed",
          messageCount: j.steps.length + 1,
        });
      }
    });
  });

  // ─── every allowed transition, on both paths ─────────────────────────────────────────────────

  // ─── a message may not rewrite what both sides agreed on ────────────────────────────────────

  describe("a backdated message cannot rewrite the agreed history", () => {
    const between = (a: Envelope, b: Envelope) =>
      new Date((Date.parse(a.sentAt) + Date.parse(b.sentAt)) / 2);

    it("a decline dated between the request and the sender's own accept is refused", async () => {
      const j = await journeyTo(
        "handover-proposed",
        `CN-HEKOU-2026-96${driver === "postgres" ? 1 : 2}1`,
      );
      const asked = j.steps.find((e) => e.type === "repatriation.request") as Envelope;
      const accepted = j.steps.find((e) => e.type === "repatriation.response") as Envelope;
      const decline = await wire(
        "origin",
        request("repatriation.response", "origin", j, {
          body: BODIES.declined,
          inReplyTo: asked.id,
        }),
        undefined,
        between(asked, accepted),
      );
      await expectWireRefused("origin", decline, "transition_not_allowed");
      expect((await caseRow(hekou, j.caseRef))?.state).toBe("handover-proposed");
    });

    it("a close dated before a step its sender had accepted is refused; before one it had not seen, it crosses", async () => {
      for (const [n, acceptedFirst] of [
        [2, true],
        [3, false],
      ] as const) {
        const j = await journeyTo(
          "verification-requested",
          `CN-HEKOU-2026-96${driver === "postgres" ? 1 : 2}${n}`,
        );
        const [opened, asked] = j.steps as [Envelope, Envelope];
        // Lao Cai's receipt for the request, back at Hekou: Lao Cai had accepted it.
        if (acceptedFirst) await returnReceipt(laocai, asked.id);
        const close = await wire(
          "origin",
          request("case.closed", "origin", j, { body: { reason: "person-withdrew-consent" } }),
          undefined,
          between(opened, asked),
        );
        if (acceptedFirst) {
          await expectWireRefused("origin", close, "transition_not_allowed");
          expect((await caseRow(hekou, j.caseRef))?.state).toBe("verification-requested");
        } else {
          expect(await hekou.inbox.handle(close.bytes, hekou.party.inboundSubject)).toMatchObject({
            outcome: "accepted",
          });
          expect((await caseRow(hekou, j.caseRef))?.state).toBe("closed");
        }
      }
    });
  });

  describe("every allowed transition is applied on both paths", () => {
    // The last allowed step of each state is taken by that state's refusal case (its refusals
    // are done by now: this suite runs last); the others get a case of their own.
    const CASES = CASE_STATES.flatMap((state, i) =>
      ALLOWED[state].map(([type, role, next], k) => ({
        state,
        type,
        role,
        next,
        body: undefined as Record<string, unknown> | undefined,
        caseRef: k === ALLOWED[state].length - 1 ? undefined : `CN-HEKOU-2026-8${pad(i + 1)}${k}`,
      })),
    );
    // A confirmation that rejects the proposal: back to travel-document-issued.
    CASES.push({
      state: "handover-proposed",
      type: "handover.confirmation",
      role: "origin",
      next: "travel-document-issued",
      body: BODIES.rejected,
      caseRef: "CN-HEKOU-2026-8109",
    });
    const played = new Map<string, Journey>();

    beforeAll(async () => {
      played.clear();
      await Promise.all(
        CASES.map(async ({ state, caseRef }) => {
          if (caseRef !== undefined) played.set(caseRef, await journeyTo(state, caseRef));
        }),
      );
    });

    for (const { state, type, role, next, body, caseRef } of CASES) {
      const what = body === undefined ? "" : ` (${body.decision})`;
      it(`${type}${what} by the ${role} party in ${state}: ${next}`, async () => {
        const j = caseRef === undefined ? journey(state) : (played.get(caseRef) as Journey);
        const from = gatewayOf(role);
        const to = otherOf(from);
        const before = await snapshot(from, j.caseRef);
        // The submit path: admitted, logged with its delivery, the sender's case moves.
        const envelope = await from.submitter.submit(
          request(type, role, j, body === undefined ? {} : { body }),
        );
        const after = await snapshot(from, j.caseRef);
        expect(after.logged).toBe(before.logged + 1);
        expect(after.outbox).toBe(before.outbox + 1);
        expect(await caseRow(from, j.caseRef)).toMatchObject({
          state: next,
          messageCount: j.steps.length + 1,
        });
        // The wire path: the receiver admits the same bytes, answers them, and its case moves too.
        expect(await deliver(from, envelope.id)).toEqual({
          outcome: "accepted",
          messageId: envelope.id,
        });
        expect(await caseRow(to, j.caseRef)).toMatchObject({
          state: next,
          messageCount: j.steps.length + 1,
        });
        expect((await answersTo(to, envelope.id)).map((a) => a.status)).toEqual(["accepted"]);
      });
    }
  });
});
