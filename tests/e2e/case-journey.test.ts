/**
 * A victim's case between two real gateways on the real nats-server: Hekou (CN-MPS-HEKOU, the
 * identifying party) and Lao Cai (VN-BGC-LAOCAI, the origin party), one on PostgreSQL and one on
 * PGlite, in two pairs:
 *
 * - `main` (Hekou on PostgreSQL, Lao Cai on PGlite, system clocks): the whole journey of
 *   docs/examples/messages; steps refused at submit and on the wire; the walks of
 *   docs/cases.md "When two messages cross on the wire", made by the gateways themselves with
 *   their dispatchers paused; the privacy canary.
 * - `clocked` (Hekou on PGlite, Lao Cai on PostgreSQL): both gateways on one injected clock that
 *   the test moves forward, for deadlines and reminders; Lao Cai gives Hekou 48 h instead of
 *   168 h to answer a verification request (LIAISON_DEADLINES_BY_PARTNER); the case list API.
 *
 * The victim's given name is a canary wherever the examples carry a name; the last test looks
 * for it in every log line, API error body, wire byte and database row of the file's gateways.
 * Every case has a reference of its own, so the file runs alongside the other e2e files.
 */
import { randomBytes } from "node:crypto";
import { eq } from "drizzle-orm";
import { compactVerify, createLocalJWKSet, type JSONWebKeySet } from "jose";
import { connect, type NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { sha256Hex } from "../../src/protocol/digest.ts";
import {
  countersignHandoverRecord,
  signHandoverRecord,
} from "../../src/protocol/handover-record.ts";
import { MESSAGE_TYP } from "../../src/protocol/jws-profile.ts";
import {
  type EncryptedPersonalData,
  type PersonalDataKey,
  sealPersonalData,
} from "../../src/protocol/personal-data.ts";
import { signCompact } from "../../src/protocol/sign.ts";
import { messages, quarantine, receipts } from "../../src/store/schema.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/databases.ts";
import {
  Api,
  COUNTERSIGNED,
  exampleStep,
  forCase,
  HEKOU,
  Journey,
  type JourneyStep,
  LAOCAI,
  leaksOf,
  payloadOf,
  publishedKeys,
  publishTo,
  quarantineBytes,
  quarantinedAt,
  rowsAsText,
  signedEnvelope,
  type TimelineItem,
  timelineOf,
  uniqueCaseRef,
  verifyRecordOffline,
} from "../helpers/journey.ts";
import { type Pair, startPair, type TestNode, uniqueTag, waitFor } from "../helpers/network.ts";
import { makeEncryptionKey } from "../helpers/protocol-fixtures.ts";

const HOUR = 3_600_000;
const CANARY = `CANARY-${randomBytes(8).toString("hex").toUpperCase()}`;
const THIRD = "TH-RTP-ATHD";

const api = new Api();
const lines: string[] = [];
/** Every byte published onto the four gateways' inbound subjects, as a NATS subscriber saw it. */
const wire: Array<{ subject: string; data: Uint8Array }> = [];

/** The clocked pair's clock: the system clock moved forward by the test. */
let offsetMs = 0;
const clock = () => new Date(Date.now() + offsetMs);

let main: Pair;
let clocked: Pair;
let nc: NatsConnection;
const databases: TestDatabase[] = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  const natsUrl = inject("natsUrl");
  databases.push(
    ...(await Promise.all([
      createTestDatabase(inject("databaseUrl")),
      createTestDatabase(inject("databaseUrl")),
    ])),
  );
  const [mainDb, clockedDb] = databases as [TestDatabase, TestDatabase];
  const logged = { logLines: lines, logLevel: "debug" };
  // No reminder sweep on its own: the tests call reminders.sweep() at the instants they choose.
  const noSweep = { LIAISON_REMINDER_CHECK_SECONDS: "86400" };
  const started = await Promise.allSettled([
    startPair(natsUrl, { hekou: { ...logged, databaseUrl: mainDb.url }, laocai: logged }),
    startPair(natsUrl, {
      hekou: { ...logged, clock, env: noSweep },
      laocai: {
        ...logged,
        clock,
        databaseUrl: clockedDb.url,
        env: {
          ...noSweep,
          LIAISON_DEADLINES_BY_PARTNER: JSON.stringify({
            [HEKOU]: { verificationAnswerHours: 48 },
          }),
        },
      },
    }),
  ]);
  const failed = started.find((s) => s.status === "rejected");
  if (failed !== undefined) {
    for (const s of started) if (s.status === "fulfilled") await s.value.stop();
    throw (failed as PromiseRejectedResult).reason;
  }
  [main, clocked] = started.map((s) => (s as PromiseFulfilledResult<Pair>).value) as [Pair, Pair];
  nc = await connect({ servers: natsUrl });
  for (const node of nodes()) {
    nc.subscribe(node.gateway.config.inboundSubject, {
      callback: (_err, msg) => void wire.push({ subject: msg.subject, data: msg.data.slice() }),
    });
  }
  await nc.flush();
}, 120_000);

afterAll(async () => {
  await nc?.drain();
  await main?.stop();
  await clocked?.stop();
  await Promise.all(databases.map((d) => d.drop()));
});

function nodes(): TestNode[] {
  return [main, clocked].filter((p) => p !== undefined).flatMap((p) => [p.hekou, p.laocai]);
}

/** Submits a request at `node` and waits for its delivery; returns its id and sentAt. */
async function sendAs(
  node: TestNode,
  request: Record<string, unknown>,
): Promise<{ id: string; sentAt: string }> {
  const res = await api.submit(node, request);
  expect(res.status, `submit ${request.type}: ${res.body.code}`).toBe(202);
  const done = await api.finalStatus(node, res.body.id as string);
  expect(done.status).toBe("delivered");
  return { id: done.id as string, sentAt: done.sentAt as string };
}

/** Messages of a case in a gateway's log (either direction). */
async function loggedInCase(node: TestNode, caseRef: string): Promise<number> {
  const rows = await node.gateway.database.db
    .select({ id: messages.id })
    .from(messages)
    .where(eq(messages.caseRef, caseRef));
  return rows.length;
}

async function jwksOf(node: TestNode): Promise<ReturnType<typeof createLocalJWKSet>> {
  return createLocalJWKSet({ keys: await publishedKeys(node) } as JSONWebKeySet);
}

/** What a case looks like at a gateway, without the parts that move with time. */
async function caseShape(node: TestNode, caseRef: string) {
  const view = await api.caseAt(node, caseRef);
  return {
    state: view.state,
    awaiting: view.awaiting,
    allowedNext: view.allowedNext,
    timeline: timelineOf(view).map((t) => `${t.type} ${t.id} ${t.outcome}`),
  };
}

/**
 * A step signed with `sender`'s key and published onto `receiver`'s subject was refused on
 * arrival with `code`: kept in quarantine with that code and answered with a signed negative
 * receipt carrying it; never logged by the receiver. The sender's gateway never logged the
 * message (it was signed beside it), so it keeps the receipt in its own quarantine as
 * `message_unknown` — and the receipt's bytes verify with the receiver's published key.
 */
async function expectRefusedOnWire(
  sender: TestNode,
  receiver: TestNode,
  sent: { envelope: { id: string }; jws: string },
  code: string,
): Promise<void> {
  const id = sent.envelope.id;
  const kept = await quarantinedAt(api, receiver, id, "message");
  expect(kept).toMatchObject({ code, kind: "message", claimedFrom: sender.gateway.self.id });
  expect(kept.digest).toBe(sha256Hex(sent.jws));
  expect(kept.receiptId).toEqual(expect.any(String));

  const issued = await waitFor(`negative receipt for ${id} published`, async () => {
    const [row] = await receiver.gateway.database.db
      .select()
      .from(receipts)
      .where(eq(receipts.id, kept.receiptId as string));
    return row?.publishedAt != null ? row : undefined;
  });
  expect(issued).toMatchObject({
    direction: "issued",
    messageId: id,
    messageDigest: sha256Hex(sent.jws),
    toParty: sender.gateway.self.id,
    status: "rejected",
  });
  expect(issued.errors.length).toBeGreaterThan(0);
  expect(new Set(issued.errors.map((e) => e.code))).toEqual(new Set([code]));

  // At the sender: the receipt matches nothing it sent.
  const atSender = await quarantinedAt(api, sender, id, "receipt");
  expect(atSender).toMatchObject({
    code: "message_unknown",
    claimedFrom: receiver.gateway.self.id,
    receiptId: null,
  });
  const [raw] = await sender.gateway.database.db
    .select({ raw: quarantine.raw })
    .from(quarantine)
    .where(eq(quarantine.digest, atSender.digest));
  if (raw === undefined) throw new Error("the receipt's bytes are not in the sender's quarantine");
  const { payload } = await compactVerify(
    new TextDecoder().decode(raw.raw),
    await jwksOf(receiver),
  );
  const receipt = JSON.parse(new TextDecoder().decode(payload));
  expect(receipt).toMatchObject({
    id: kept.receiptId,
    messageId: id,
    from: receiver.gateway.self.id,
    to: sender.gateway.self.id,
    status: "rejected",
    digest: { alg: "sha-256", value: sha256Hex(sent.jws) },
  });
  expect(receipt.errors.map((e: { code: string }) => e.code)).toContain(code);

  // Logged by neither side.
  expect((await api.call(receiver, `/v1/messages/${id}`)).status).toBe(404);
  expect((await api.call(sender, `/v1/messages/${id}`)).status).toBe(404);
}

/** A problem+json answer with this status and code, its `type` linking to docs/errors.md. */
async function expectProblem(res: Response, status: number, code: string): Promise<void> {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toContain("application/problem+json");
  const problem = (await res.json()) as Record<string, unknown>;
  expect(problem.code).toBe(code);
  expect(problem.type).toMatch(new RegExp(`errors\\.md#${code}$`));
}

/** Runs `fn` with these gateways' dispatchers stopped: what they submit stays in their outbox. */
async function withDispatchersPaused<T>(paused: TestNode[], fn: () => Promise<T>): Promise<T> {
  await Promise.all(paused.map((n) => n.gateway.dispatcher.stop()));
  try {
    return await fn();
  } finally {
    for (const n of paused) n.gateway.dispatcher.start();
  }
}

/**
 * Two messages that really cross, made by the gateways themselves: both dispatchers paused,
 * `first` is submitted, then `second` (sentAt later), each admitted by its own gateway without
 * having seen the other. The first sender's dispatcher resumes first, so the first message
 * reaches the second sender while the second message is still in its outbox: the case as the
 * second sender sees it then is returned, before its own message has left.
 */
async function cross(
  caseRef: string,
  first: { node: TestNode; request: Record<string, unknown> },
  second: { node: TestNode; request: Record<string, unknown> },
): Promise<{ firstId: string; secondId: string; secondSees: Record<string, unknown> }> {
  return withDispatchersPaused([first.node, second.node], async () => {
    const a = await api.submit(first.node, first.request);
    expect(a.status, `${first.request.type}: ${a.body.code}`).toBe(202);
    await sleep(5);
    const b = await api.submit(second.node, second.request);
    expect(b.status, `${second.request.type}: ${b.body.code}`).toBe(202);
    expect(Date.parse(b.body.sentAt as string)).toBeGreaterThan(
      Date.parse(a.body.sentAt as string),
    );
    const firstId = a.body.id as string;
    first.node.gateway.dispatcher.start();
    const secondSees = await waitFor("the first message at the second sender", async () => {
      const view = await api.caseAt(second.node, caseRef);
      return timelineOf(view).some((t) => t.id === firstId) ? view : undefined;
    });
    return { firstId, secondId: b.body.id as string, secondSees };
  });
}

/**
 * Both sides hold the same messages with the same outcomes; a sender also shows its own steps
 * the other side refused (`refused`), which never became part of the case, and the receiver
 * never logged.
 */
async function sameTimelines(caseRef: string): Promise<TimelineItem[]> {
  const counted = (items: TimelineItem[]) => items.filter((t) => t.outcome !== "refused");
  const atHekou = counted(timelineOf(await api.caseAt(main.hekou, caseRef)));
  const atLaocai = counted(timelineOf(await api.caseAt(main.laocai, caseRef)));
  expect(atLaocai.map((t) => `${t.id} ${t.outcome}`)).toEqual(
    atHekou.map((t) => `${t.id} ${t.outcome}`),
  );
  return atHekou;
}

function flipFirstByte(segment: string): string {
  const bytes = Buffer.from(segment, "base64url");
  bytes[0] = (bytes[0] as number) ^ 0x01;
  return bytes.toString("base64url");
}

describe("a victim's case between Hekou and Lao Cai", () => {
  it("plays the whole journey, 01 … 11 and the countersigned record, each step once the previous is delivered; both close the case with the same timeline and a record anyone can verify", async () => {
    const caseRef = uniqueCaseRef();
    const journey = new Journey(main, api, caseRef, CANARY);
    const expected: Array<[string, string]> = [
      ["01", "identified"],
      ["02", "verification-requested"],
      ["03", "identity-confirmed"],
      ["04", "repatriation-requested"],
      ["05", "repatriation-accepted"],
      ["06", "travel-document-issued"],
      ["07", "handover-proposed"],
      ["08", "handover-confirmed"],
      ["09", "handover-signed"],
      ["09b", "handover-completed"],
      ["10", "reintegration"],
      ["11", "closed"],
    ];
    const steps = journey.journeySteps();
    expect(steps.map((s) => s.name.split("-")[0])).toEqual(expected.map(([n]) => n));
    for (const [i, step] of steps.entries()) {
      await journey.send(step); // throws unless delivered
      // Delivered: the receiver logged it with its receipt, and moved its case in that commit.
      const state = expected[i]?.[1];
      expect((await api.caseAt(main.hekou, caseRef)).state, step.name).toBe(state);
      expect((await api.caseAt(main.laocai, caseRef)).state, step.name).toBe(state);
    }

    const ids = steps.map((s) => journey.id(s.name));
    const atHekou = await api.caseAt(main.hekou, caseRef);
    const atLaocai = await api.caseAt(main.laocai, caseRef);
    for (const [view, self] of [
      [atHekou, HEKOU],
      [atLaocai, LAOCAI],
    ] as const) {
      expect(view).toMatchObject({
        caseRef,
        state: "closed",
        identifying: HEKOU,
        origin: LAOCAI,
        minor: true,
        awaiting: [],
        dueAt: null,
        overdue: false,
        allowedNext: [],
      });
      const timeline = timelineOf(view);
      expect(timeline.map((t) => t.id)).toEqual(ids);
      expect(timeline.every((t) => t.outcome === "applied")).toBe(true);
      for (const item of timeline) {
        if (item.from === self) {
          expect(item.direction).toBe("outbound");
          expect(item.deliveries.map((d) => d.status)).toEqual(["delivered"]);
          expect(item.receipts.map((r) => r.status)).toEqual(["accepted"]);
        } else {
          expect(item.direction).toBe("inbound");
          expect(item.receipts.map((r) => `${r.from} ${r.status}`)).toEqual([`${self} accepted`]);
        }
      }
    }

    // The countersigned record, as each side logged it: the same bytes, two signatures, each
    // verifying on its own with the published key of its country.
    const countersigned = journey.id(COUNTERSIGNED);
    const logged = await Promise.all(
      [main.hekou, main.laocai].map((n) => api.call(n, `/v1/messages/${countersigned}`)),
    );
    for (const { status } of logged) expect(status).toBe(200);
    const [hekouCopy, laocaiCopy] = logged.map((l) => l.body) as [
      Record<string, unknown>,
      Record<string, unknown>,
    ];
    expect(hekouCopy.direction).toBe("inbound");
    expect(laocaiCopy.direction).toBe("outbound");
    expect(hekouCopy.jws).toBe(laocaiCopy.jws);
    const envelope = payloadOf<{
      type: string;
      inReplyTo: string;
      body: {
        record: { payload: string; signatures: Array<{ protected: string; signature: string }> };
      };
    }>(hekouCopy.jws as string);
    expect(envelope.type).toBe("handover.completed");
    expect(envelope.inReplyTo).toBe(journey.id("09"));
    const { record } = envelope.body;
    expect(record.signatures).toHaveLength(2);
    const keys = [...(await publishedKeys(main.hekou)), ...(await publishedKeys(main.laocai))];
    expect(await verifyRecordOffline(record, keys)).toEqual([
      main.hekou.signingKey.kid,
      main.laocai.signingKey.kid,
    ]);
    // The first signature is Hekou's, byte for byte as it signed the record in 09.
    const first = payloadOf<{ body: { record: typeof record } }>(
      (await api.call(main.laocai, `/v1/messages/${journey.id("09")}`)).body.jws as string,
    ).body.record;
    expect(first.payload).toBe(record.payload);
    expect(first.signatures).toEqual([record.signatures[0]]);
    expect(JSON.parse(Buffer.from(record.payload, "base64url").toString("utf8"))).toMatchObject({
      caseRef,
      proposalId: journey.id("07"),
      handedOverBy: HEKOU,
      receivedBy: LAOCAI,
    });
  }, 90_000);

  it("refuses out-of-order steps, unmatched replies and bad personal data: at submit with problem+json and nothing logged; on the wire with quarantine and a negative receipt; the case unchanged", async () => {
    const { hekou, laocai } = main;
    const caseRef = uniqueCaseRef();
    const journey = new Journey(main, api, caseRef, CANARY);
    await journey.playThrough("02");
    const before = {
      hekou: await caseShape(hekou, caseRef),
      laocai: await caseShape(laocai, caseRef),
    };
    expect(before.hekou.state).toBe("verification-requested");
    // The same case on both sides; what each may send next is its own.
    expect({ ...before.laocai, allowedNext: [] }).toEqual({ ...before.hekou, allowedNext: [] });
    expect(before.laocai.allowedNext).toContain("identity.verification.response");
    expect(before.hekou.allowedNext).not.toContain("identity.verification.response");
    const answer = journey.request(exampleStep("03")); // replies to 02, with personal data
    const laocaiLogged = await loggedInCase(laocai, caseRef);

    // At submit (Lao Cai's gateway): refused before anything is signed or logged.
    const submit = (request: unknown) =>
      api.raw(laocai, "/v1/messages", { method: "POST", body: JSON.stringify(request) });
    await expectProblem(
      await submit(journey.request({ ...exampleStep("05"), inReplyTo: journey.id("02") })),
      409,
      "transition_not_allowed",
    );
    await expectProblem(
      await submit({ ...answer, inReplyTo: journey.id("01") }),
      409,
      "reply_unmatched",
    );
    await expectProblem(
      await submit({ ...answer, personalData: { unknownMember: 1 } }),
      422,
      "personal_data_invalid",
    );
    expect(await loggedInCase(laocai, caseRef)).toBe(laocaiLogged);

    // On the wire: the same refusals and the personal data ones, signed with Lao Cai's key
    // beside its gateway and published onto Hekou's subject.
    const hekouEnc = laocai.gateway.registry.encryptionKeyOf(HEKOU, new Date());
    const laocaiEnc = laocai.gateway.keyring.encryptionKey();
    if (hekouEnc === undefined || laocaiEnc === undefined) throw new Error("no encryption keys");
    const third = await makeEncryptionKey();
    const { personalData: _clear, ...answerBody } = answer.body as Record<string, unknown>;
    const clear = answer.personalData as Record<string, unknown>;
    const sealed = (content: Record<string, unknown>, to: PersonalDataKey[]) =>
      sealPersonalData(content, to);
    const undecryptable: EncryptedPersonalData = await sealed(clear, [hekouEnc, laocaiEnc]);
    undecryptable.ciphertext = flipFirstByte(undecryptable.ciphertext);
    const document = journey.request(exampleStep("06")) as {
      body: Record<string, unknown>;
      personalData: Record<string, unknown>;
    };
    const wireCases = [
      {
        code: "transition_not_allowed",
        type: "repatriation.response",
        inReplyTo: journey.id("02"),
        body: exampleStep("05").body,
      },
      {
        // A travel document before the identity is even confirmed: sent again further below.
        code: "transition_not_allowed",
        type: "travel-document.issued",
        body: {
          ...document.body,
          personalData: await sealed(document.personalData, [hekouEnc, laocaiEnc]),
        },
      },
      {
        code: "reply_unmatched",
        type: "identity.verification.response",
        inReplyTo: journey.id("01"),
        body: answerBody,
      },
      {
        code: "personal_data_not_for_us",
        type: "identity.verification.response",
        inReplyTo: journey.id("02"),
        body: {
          ...answerBody,
          personalData: await sealed(clear, [{ kid: third.kid, key: third.publicKey }]),
        },
      },
      {
        code: "personal_data_undecryptable",
        type: "identity.verification.response",
        inReplyTo: journey.id("02"),
        body: { ...answerBody, personalData: undecryptable },
      },
      {
        code: "personal_data_invalid",
        type: "identity.verification.response",
        inReplyTo: journey.id("02"),
        body: {
          ...answerBody,
          // Unknown members, one named by the canary, and a canary where a code belongs: the
          // refusal (receipt, quarantine) must name rules, never the plaintext (the last test
          // looks for the canary everywhere).
          personalData: await sealed({ unknownMember: 1, [CANARY]: CANARY, sex: CANARY }, [
            hekouEnc,
            laocaiEnc,
          ]),
        },
      },
    ];
    const sent = await Promise.all(
      wireCases.map(async (c) => ({
        code: c.code,
        signed: await signedEnvelope(laocai, { ...c, to: [HEKOU], caseRef }),
      })),
    );
    for (const { signed } of sent) await publishTo(nc, hekou, signed.jws);
    for (const { code, signed } of sent) await expectRefusedOnWire(laocai, hekou, signed, code);

    expect(await caseShape(hekou, caseRef)).toEqual(before.hekou);
    expect(await caseShape(laocai, caseRef)).toEqual(before.laocai);

    // Nothing of it sticks: the right answer, sent by Lao Cai's gateway, moves both sides.
    await journey.send(exampleStep("03"));
    expect((await api.caseAt(hekou, caseRef)).state).toBe("identity-confirmed");
    expect((await api.caseAt(laocai, caseRef)).state).toBe("identity-confirmed");

    // Refused once, refused for good: in repatriation-accepted a travel document is allowed,
    // but the one refused earlier stays refused, sent again as it was (its earlier negative
    // receipt goes out again, nothing new is kept) or under its id with other content (kept,
    // and refused with the earlier code).
    await journey.playThrough("05");
    const early = sent[1]?.signed;
    if (early === undefined) throw new Error("no early travel document");
    const keptFor = async (id: string) =>
      hekou.gateway.database.db.select().from(quarantine).where(eq(quarantine.messageId, id));
    const [firstKept] = await keptFor(early.envelope.id);
    await publishTo(nc, hekou, early.jws);
    await waitFor("the earlier negative receipt published again", async () => {
      const [row] = await hekou.gateway.database.db
        .select()
        .from(receipts)
        .where(eq(receipts.id, firstKept?.receiptId as string));
      return row !== undefined && row.publishAttempts >= 2 && row.publishedAt !== null
        ? row
        : undefined;
    });
    expect(await keptFor(early.envelope.id)).toHaveLength(1);
    const variant = await signCompact(
      { ...early.envelope, body: { ...early.envelope.body, validUntil: "2027-01-08" } },
      laocai.signingKey,
      MESSAGE_TYP,
    );
    await publishTo(nc, hekou, variant);
    const again = await waitFor("the variant kept", async () => {
      const rows = await keptFor(early.envelope.id);
      return rows.find((r) => r.digest === sha256Hex(variant));
    });
    expect(again).toMatchObject({ code: "transition_not_allowed", receiptId: expect.any(String) });
    expect((await api.caseAt(hekou, caseRef)).state).toBe("repatriation-accepted");
    expect((await api.call(hekou, `/v1/messages/${early.envelope.id}`)).status).toBe(404);
    await journey.send(exampleStep("06"));
    expect((await api.caseAt(hekou, caseRef)).state).toBe("travel-document-issued");
  }, 90_000);

  it("refuses on the wire an answer to the signed record that carries one signature, or a bad one; the right countersignature then completes the handover", async () => {
    const { hekou, laocai } = main;
    const caseRef = uniqueCaseRef();
    const journey = new Journey(main, api, caseRef, CANARY);
    await journey.playThrough("09");
    const before = await caseShape(hekou, caseRef);
    expect(before.state).toBe("handover-signed");
    const signed09 = payloadOf<{
      body: {
        record: { payload: string; signatures: Array<{ protected: string; signature: string }> };
      };
    }>((await api.call(laocai, `/v1/messages/${journey.id("09")}`)).body.jws as string).body.record;
    const answer = (record: unknown) =>
      signedEnvelope(laocai, {
        type: "handover.completed",
        to: [HEKOU],
        caseRef,
        inReplyTo: journey.id("09"),
        body: { notes: "Countersigned.", record },
      });

    // (f) Hekou's record sent back as it is: one signature.
    const incomplete = await answer(signed09);
    // (g) Countersigned, then the countersignature broken (still canonical base64url).
    const countersigned = await countersignHandoverRecord(signed09, laocai.signingKey);
    const [hekouSig, laocaiSig] = countersigned.signatures as [
      { protected: string; signature: string },
      { protected: string; signature: string },
    ];
    const forged = await answer({
      payload: countersigned.payload,
      signatures: [hekouSig, { ...laocaiSig, signature: flipFirstByte(laocaiSig.signature) }],
    });
    // (g') Both signatures valid, but over another record than the one Hekou signed in 09
    // (signed here with Hekou's key, as if taken from another message): the case's rule.
    const other = JSON.parse(Buffer.from(signed09.payload, "base64url").toString("utf8"));
    const otherRecord = await countersignHandoverRecord(
      await signHandoverRecord(
        { ...other, handedOverAt: "2026-12-15T03:00:00Z" },
        hekou.signingKey,
      ),
      laocai.signingKey,
    );
    const another = await answer(otherRecord);
    for (const m of [incomplete, forged, another]) await publishTo(nc, hekou, m.jws);
    await expectRefusedOnWire(laocai, hekou, incomplete, "handover_record_incomplete");
    await expectRefusedOnWire(laocai, hekou, forged, "handover_record_invalid");
    await expectRefusedOnWire(laocai, hekou, another, "handover_record_invalid");
    const details = await hekou.gateway.database.db
      .select({ id: quarantine.messageId, detail: quarantine.detail })
      .from(quarantine)
      .where(eq(quarantine.code, "handover_record_invalid"));
    expect(details.find((d) => d.id === forged.envelope.id)?.detail).toBe(
      "signature 2 does not verify with the registered key",
    );
    expect(details.find((d) => d.id === another.envelope.id)?.detail).toBe(
      "the record differs from the one signed first",
    );
    expect(await caseShape(hekou, caseRef)).toEqual(before);

    await journey.send(journey.countersignStep());
    expect((await api.caseAt(hekou, caseRef)).state).toBe("handover-completed");
    expect((await api.caseAt(laocai, caseRef)).state).toBe("handover-completed");
  }, 90_000);

  it("two messages crossing on the wire: Hekou's new proposal and Lao Cai's confirmation of the old one end the same on both sides", async () => {
    // A real crossing, made by the two gateways themselves: both dispatchers are paused, so
    // neither message leaves before the other is submitted. Hekou submits a new proposal P2;
    // then Lao Cai, which has not seen P2, confirms P1 (admitted at its submit, sentAt later
    // than P2's). Hekou's dispatcher resumes first: P2 reaches Lao Cai, whose fold (P1, P2, C)
    // applies P2 and shows its confirmation superseded. Then Lao Cai's resumes: the
    // confirmation reaches Hekou, which refuses it (it names P1, no longer the open proposal).
    const { hekou, laocai } = main;
    const caseRef = uniqueCaseRef();
    const journey = new Journey(main, api, caseRef, CANARY);
    await journey.playThrough("07");
    const p1 = journey.id("07");
    const reschedule = journey.request(exampleStep("07"));
    reschedule.body = { ...(reschedule.body as object), scheduledAt: "2026-12-16T02:00:00Z" };
    const confirmation = journey.request(exampleStep("08"));
    expect(confirmation.inReplyTo).toBe(p1);

    let p2 = "";
    let c = "";
    await Promise.all([hekou.gateway.dispatcher.stop(), laocai.gateway.dispatcher.stop()]);
    try {
      const r1 = await api.submit(hekou, reschedule);
      expect(r1.status).toBe(202);
      p2 = r1.body.id as string;
      await sleep(5);
      const r2 = await api.submit(laocai, confirmation);
      expect(r2.status).toBe(202);
      c = r2.body.id as string;
      expect(Date.parse(r2.body.sentAt as string)).toBeGreaterThan(
        Date.parse(r1.body.sentAt as string),
      );
      expect((await api.caseAt(laocai, caseRef)).state).toBe("handover-confirmed");
      expect((await api.caseAt(hekou, caseRef)).awaiting).toMatchObject([{ requestId: p2 }]);

      hekou.gateway.dispatcher.start();
      const crossed = await waitFor("P2 at Lao Cai", async () => {
        const view = await api.caseAt(laocai, caseRef);
        return timelineOf(view).some((t) => t.id === p2) ? view : undefined;
      });
      expect(crossed.state).toBe("handover-proposed");
      expect(crossed.awaiting).toMatchObject([
        { party: LAOCAI, types: ["handover.confirmation"], requestId: p2 },
      ]);
      const mine = timelineOf(crossed).find((t) => t.id === c);
      expect(mine).toMatchObject({
        outcome: "superseded",
        code: "reply_unmatched",
        deliveries: [{ recipient: HEKOU, status: "queued" }],
      });
      expect(timelineOf(crossed).find((t) => t.id === p2)?.outcome).toBe("applied");
    } finally {
      hekou.gateway.dispatcher.start();
      laocai.gateway.dispatcher.start();
    }

    const refused = await api.finalStatus(laocai, c);
    expect(refused.status).toBe("rejected");
    expect(refused.receipts).toMatchObject([
      { from: HEKOU, status: "rejected", errors: [{ code: "reply_unmatched" }] },
    ]);
    expect(await quarantinedAt(api, hekou, c, "message")).toMatchObject({
      code: "reply_unmatched",
      claimedFrom: LAOCAI,
      receiptId: expect.any(String),
    });
    expect((await api.finalStatus(hekou, p2)).status).toBe("delivered");

    // Both: handover-proposed, awaiting Lao Cai's answer to P2, holding the same messages. Once
    // refused by Hekou, the confirmation is no longer a message of the case at Lao Cai either
    // (docs/cases.md, "Which messages count"): Lao Cai's timeline shows it `refused`, with
    // Hekou's code, outside the fold.
    const [atHekou, atLaocai] = [
      await api.caseAt(hekou, caseRef),
      await api.caseAt(laocai, caseRef),
    ];
    for (const view of [atHekou, atLaocai]) {
      expect(view.state).toBe("handover-proposed");
      expect((view.awaiting as Array<{ requestId: string }>)[0]?.requestId).toBe(p2);
    }
    const counted = (view: Record<string, unknown>) =>
      timelineOf(view)
        .filter((t) => t.outcome !== "refused")
        .map((t) => t.id);
    expect(counted(atLaocai)).toEqual(counted(atHekou));
    expect(counted(atLaocai)).not.toContain(c);
    expect(timelineOf(atLaocai).find((t) => t.id === c)).toMatchObject({
      outcome: "refused",
      code: "reply_unmatched",
    });
    expect(timelineOf(atHekou).map((t) => t.id)).not.toContain(c);

    // Lao Cai answers P2: both move on.
    await sendAs(laocai, { ...confirmation, inReplyTo: p2 });
    expect((await api.caseAt(hekou, caseRef)).state).toBe("handover-confirmed");
    expect((await api.caseAt(laocai, caseRef)).state).toBe("handover-confirmed");
  }, 90_000);

  it("two closes crossing: the earlier applies on both sides, the later is refused by its recipient and superseded at its sender", async () => {
    const { hekou, laocai } = main;
    const caseRef = uniqueCaseRef();
    const journey = new Journey(main, api, caseRef, CANARY);
    await journey.playThrough("02");
    const close = (from: string, to: string) => ({
      ...journey.request({ ...exampleStep("11"), from, to: [to] }),
      body: { reason: "person-withdrew-consent" },
    });
    const { firstId, secondId, secondSees } = await cross(
      caseRef,
      { node: hekou, request: close(HEKOU, LAOCAI) },
      { node: laocai, request: close(LAOCAI, HEKOU) },
    );
    expect(secondSees.state).toBe("closed");
    expect(timelineOf(secondSees).find((t) => t.id === secondId)).toMatchObject({
      outcome: "superseded",
      code: "transition_not_allowed",
    });
    const refused = await api.finalStatus(laocai, secondId);
    expect(refused.status).toBe("rejected");
    expect(refused.receipts).toMatchObject([
      { from: HEKOU, status: "rejected", errors: [{ code: "transition_not_allowed" }] },
    ]);
    expect(await quarantinedAt(api, hekou, secondId, "message")).toMatchObject({
      code: "transition_not_allowed",
      claimedFrom: LAOCAI,
    });
    expect((await api.finalStatus(hekou, firstId)).status).toBe("delivered");
    for (const node of [hekou, laocai])
      expect((await api.caseAt(node, caseRef)).state).toBe("closed");
    const timeline = await sameTimelines(caseRef);
    expect(timeline.map((t) => t.id)).toEqual([journey.id("01"), journey.id("02"), firstId]);
  }, 90_000);

  it("a step crossing a reminder: nothing is refused, the step applies on both sides and the reminder stays in the timeline", async () => {
    const { hekou, laocai } = main;
    const caseRef = uniqueCaseRef();
    const journey = new Journey(main, api, caseRef, CANARY);
    await journey.playThrough("02");
    const reminder = {
      type: "case.reminder",
      to: [LAOCAI],
      caseRef,
      body: {
        awaitedType: "identity.verification.response",
        awaitedMessageId: journey.id("02"),
        dueAt: new Date().toISOString(),
      },
    };
    const { firstId, secondId, secondSees } = await cross(
      caseRef,
      { node: laocai, request: journey.request(exampleStep("03")) },
      { node: hekou, request: reminder },
    );
    expect(secondSees.state).toBe("identity-confirmed");
    expect((await api.finalStatus(laocai, firstId)).status).toBe("delivered");
    expect((await api.finalStatus(hekou, secondId)).status).toBe("delivered");
    for (const node of [hekou, laocai]) {
      expect((await api.caseAt(node, caseRef)).state).toBe("identity-confirmed");
    }
    const timeline = await sameTimelines(caseRef);
    expect(timeline.map((t) => `${t.type} ${t.outcome}`)).toEqual([
      "victim.identified applied",
      "identity.verification.request applied",
      "identity.verification.response applied",
      "case.reminder applied",
    ]);
  }, 90_000);

  it("a step that overtakes the one it follows (a retry) is refused by the receiver and dropped by the sender; sent again with a new id, it applies", async () => {
    const { hekou, laocai } = main;
    const caseRef = uniqueCaseRef();
    const journey = new Journey(main, api, caseRef, CANARY);
    const [opened, request] = await withDispatchersPaused([hekou], async () => {
      const ids: string[] = [];
      for (const step of [exampleStep("01"), exampleStep("02")]) {
        const res = await api.submit(hekou, journey.request(step));
        expect(res.status).toBe(202);
        ids.push(res.body.id as string);
      }
      expect((await api.caseAt(hekou, caseRef)).state).toBe("verification-requested");
      // The request's exact bytes, published ahead of the victim.identified they follow.
      const jws = (await api.call(hekou, `/v1/messages/${ids[1]}`)).body.jws as string;
      await publishTo(nc, laocai, jws);
      expect(await quarantinedAt(api, laocai, ids[1] as string, "message")).toMatchObject({
        code: "transition_not_allowed",
        claimedFrom: HEKOU,
      });
      // Lao Cai's negative receipt closes the delivery Hekou has not even published yet.
      const refused = await api.finalStatus(hekou, ids[1] as string);
      expect(refused.status).toBe("rejected");
      expect(refused.receipts).toMatchObject([
        { from: LAOCAI, errors: [{ code: "transition_not_allowed" }] },
      ]);
      return ids as [string, string];
    });
    // The sender's case dropped the refused step (shown `refused`, outside the fold); the
    // victim.identified goes out as queued.
    expect((await api.finalStatus(hekou, opened)).status).toBe("delivered");
    for (const node of [hekou, laocai]) {
      const view = await api.caseAt(node, caseRef);
      expect(view.state).toBe("identified");
      expect(
        timelineOf(view)
          .filter((t) => t.outcome !== "refused")
          .map((t) => t.id),
      ).toEqual([opened]);
    }
    expect(
      timelineOf(await api.caseAt(hekou, caseRef)).find((t) => t.id === request),
    ).toMatchObject({ outcome: "refused", code: "transition_not_allowed" });
    expect(await quarantinedAt(api, laocai, request, "message")).toMatchObject({
      code: "transition_not_allowed",
    });
    await journey.send(exampleStep("02"));
    expect(journey.id("02")).not.toBe(request);
    for (const node of [hekou, laocai]) {
      expect((await api.caseAt(node, caseRef)).state).toBe("verification-requested");
    }
    expect((await sameTimelines(caseRef)).map((t) => t.id)).toEqual([opened, journey.id("02")]);
  }, 90_000);

  it("deadlines from configuration, per partner; overdue steps listed and reminded once, with a signed case.reminder, the case unchanged", async () => {
    const { hekou, laocai } = clocked;
    // A: Hekou identifies, Lao Cai owes the verification answer. Neither configures a deadline
    // for Lao Cai: 168 h on both sides.
    const a = new Journey(clocked, api, uniqueCaseRef(), CANARY);
    await a.playThrough("02");
    const aRequest = (await api.call(hekou, `/v1/messages/${a.id("02")}`)).body;
    const aDue = new Date(Date.parse(aRequest.sentAt as string) + 168 * HOUR).toISOString();
    // B: Lao Cai identifies, Hekou owes the answer. Lao Cai gives Hekou 48 h
    // (LIAISON_DEADLINES_BY_PARTNER); Hekou itself knows only the default, 168 h.
    const bRef = uniqueCaseRef("VN-LAOCAI");
    const swap = (step: JourneyStep) => {
      const { name: _n, from: _f, personalData, ...request } = forCase(step, bRef);
      const names = personalData?.names as Record<string, unknown> | undefined;
      if (names !== undefined) names.given = CANARY;
      return { ...request, to: [HEKOU], personalData };
    };
    const opened = swap(exampleStep("01"));
    opened.body = {
      ...opened.body,
      place: { country: "VN", adminArea: "Lao Cai", locality: "Lao Cai" },
      presumedNationality: "CN",
      languages: ["zh"],
    };
    await sendAs(laocai, opened);
    const bRequest = await sendAs(laocai, swap(exampleStep("02")));
    const bDueAtLaocai = new Date(Date.parse(bRequest.sentAt) + 48 * HOUR).toISOString();
    const bDueAtHekou = new Date(Date.parse(bRequest.sentAt) + 168 * HOUR).toISOString();

    const awaitingOf = async (node: TestNode, caseRef: string) =>
      (await api.caseAt(node, caseRef)).awaiting;
    const answerTo = (requestId: string, party: string, dueAt: string, overdue: boolean) => [
      {
        party,
        types: ["identity.verification.response"],
        requestId,
        since: expect.any(String),
        dueAt,
        overdue,
      },
    ];
    expect(await awaitingOf(hekou, a.caseRef)).toEqual(answerTo(a.id("02"), LAOCAI, aDue, false));
    expect(await awaitingOf(laocai, a.caseRef)).toEqual(answerTo(a.id("02"), LAOCAI, aDue, false));
    expect(await awaitingOf(laocai, bRef)).toEqual(
      answerTo(bRequest.id, HEKOU, bDueAtLaocai, false),
    );
    expect(await awaitingOf(hekou, bRef)).toEqual(answerTo(bRequest.id, HEKOU, bDueAtHekou, false));
    const shapes = async () => ({
      a: [await api.caseAt(hekou, a.caseRef), await api.caseAt(laocai, a.caseRef)].map(
        (v) => `${v.state} ${JSON.stringify((v.awaiting as Array<{ dueAt: string }>)[0]?.dueAt)}`,
      ),
      b: [await api.caseAt(hekou, bRef), await api.caseAt(laocai, bRef)].map(
        (v) => `${v.state} ${JSON.stringify((v.awaiting as Array<{ dueAt: string }>)[0]?.dueAt)}`,
      ),
    });
    const unchanged = await shapes();
    const overdueAt = async (node: TestNode) => {
      const { status, body } = await api.call(node, "/v1/cases?overdue=true&limit=100");
      expect(status).toBe(200);
      return (body.items as Array<{ caseRef: string; overdue: boolean }>).filter((i) =>
        [a.caseRef, bRef].includes(i.caseRef),
      );
    };
    expect(await overdueAt(hekou)).toEqual([]);
    expect(await overdueAt(laocai)).toEqual([]);
    expect(await hekou.gateway.reminders.sweep()).toEqual([]);
    expect(await laocai.gateway.reminders.sweep()).toEqual([]);

    // 50 h later (both gateways' clocks): only Lao Cai's 48 h for Hekou has passed.
    offsetMs = 50 * HOUR;
    expect(await overdueAt(hekou)).toEqual([]);
    expect(await overdueAt(laocai)).toMatchObject([{ caseRef: bRef, overdue: true }]);
    expect(await hekou.gateway.reminders.sweep()).toEqual([]);
    const [toHekou, ...moreToHekou] = await laocai.gateway.reminders.sweep();
    expect(moreToHekou).toEqual([]);
    expect(toHekou).toMatchObject({ caseRef: bRef, to: HEKOU });
    const toHekouDone = await api.finalStatus(laocai, toHekou?.messageId as string);
    expect(toHekouDone.status).toBe("delivered");
    expect(payloadOf(toHekouDone.jws as string)).toMatchObject({
      type: "case.reminder",
      from: LAOCAI,
      to: [HEKOU],
      caseRef: bRef,
      body: {
        awaitedType: "identity.verification.response",
        awaitedMessageId: bRequest.id,
        dueAt: bDueAtLaocai,
      },
    });
    expect(await laocai.gateway.reminders.sweep()).toEqual([]);

    // 170 h later: the default 168 h have passed too.
    offsetMs = 170 * HOUR;
    const listed = await overdueAt(hekou);
    expect(listed.map((i) => i.caseRef).sort()).toEqual([a.caseRef, bRef].sort());
    expect(listed.every((i) => i.overdue)).toBe(true);
    // Hekou reminds Lao Cai of A; B is Hekou's own step: listed, never reminded to itself.
    const reminded = await hekou.gateway.reminders.sweep();
    expect(reminded).toEqual([{ caseRef: a.caseRef, to: LAOCAI, messageId: expect.any(String) }]);
    const reminder = reminded[0]?.messageId as string;
    const done = await api.finalStatus(hekou, reminder);
    expect(done.status).toBe("delivered");
    const atLaocai = (await api.call(laocai, `/v1/messages/${reminder}`)).body;
    expect(atLaocai.jws).toBe(done.jws);
    const { payload } = await compactVerify(atLaocai.jws as string, await jwksOf(hekou));
    expect(JSON.parse(new TextDecoder().decode(payload))).toMatchObject({
      type: "case.reminder",
      from: HEKOU,
      to: [LAOCAI],
      caseRef: a.caseRef,
      body: {
        awaitedType: "identity.verification.response",
        awaitedMessageId: a.id("02"),
        dueAt: aDue,
      },
    });
    expect(await hekou.gateway.reminders.sweep()).toEqual([]);
    // Lao Cai: A is its own overdue step, B was reminded for this deadline already.
    expect(await laocai.gateway.reminders.sweep()).toEqual([]);
    expect(
      lines.some(
        (l) =>
          l.includes('"overdue step: reminder sent"') &&
          l.includes(a.caseRef) &&
          l.includes(reminder),
      ),
    ).toBe(true);

    // Reminders never move a case: the same states and deadlines, the reminders applied.
    expect(await shapes()).toEqual(unchanged);
    for (const [node, ref, id] of [
      [hekou, a.caseRef, reminder],
      [laocai, a.caseRef, reminder],
      [hekou, bRef, toHekou?.messageId],
      [laocai, bRef, toHekou?.messageId],
    ] as const) {
      const item = timelineOf(await api.caseAt(node, ref)).find((t) => t.id === id);
      expect(item).toMatchObject({ type: "case.reminder", outcome: "applied" });
    }
  }, 90_000);

  it("lists cases filtered by state, party and overdue, in pages; an unknown case is 404 not_found", async () => {
    const { hekou } = clocked;
    // A third party, known to Hekou only (no gateway listens: its delivery just stays queued).
    const third = await makeEncryptionKey();
    await hekou.gateway.registry.add(
      {
        id: THIRD,
        name: "Thai test office",
        country: "TH",
        kind: "anti-trafficking-police",
        inboundSubject: `test.${uniqueTag()}.inbox.${THIRD}`,
      },
      [
        {
          kid: third.kid,
          partyId: THIRD,
          use: "enc",
          alg: "ECDH-ES+A256KW",
          publicJwk: third.publicJwk as Record<string, unknown>,
          validFrom: new Date(Date.now() - 86_400_000),
          validUntil: null,
          revokedAt: null,
        },
      ],
    );
    const withThird = new Journey(clocked, api, uniqueCaseRef(), CANARY);
    const opened = await api.submit(hekou, {
      ...withThird.request(exampleStep("01")),
      to: [THIRD],
    });
    expect(opened.status).toBe(202);
    const closed = new Journey(clocked, api, uniqueCaseRef(), CANARY);
    await closed.playThrough("01");
    await sendAs(hekou, { ...closed.request(exampleStep("11")), to: [LAOCAI] });
    const late = new Journey(clocked, api, uniqueCaseRef(), CANARY);
    await late.playThrough("02");
    offsetMs += 169 * HOUR; // past the verification deadline of `late`
    const ours = [withThird.caseRef, closed.caseRef, late.caseRef];

    type Summary = {
      caseRef: string;
      state: string;
      identifying: string;
      origin: string;
      overdue: boolean;
      dueAt: string | null;
    };
    const list = async (query: string): Promise<Summary[]> => {
      const items: Summary[] = [];
      let cursor: string | null = null;
      for (let page = 0; page < 100; page++) {
        const { status, body } = await api.call(
          hekou,
          `/v1/cases?${query}${cursor === null ? "" : `&cursor=${cursor}`}`,
        );
        expect(status).toBe(200);
        items.push(...(body.items as Summary[]));
        cursor = body.nextCursor as string | null;
        if (cursor === null) return items;
      }
      throw new Error("more than 100 pages");
    };
    const refs = (items: Summary[]) => items.map((i) => i.caseRef);
    const oursIn = (items: Summary[]) => refs(items).filter((r) => ours.includes(r));

    const all = await list("limit=100");
    expect(oursIn(all).sort()).toEqual([...ours].sort());
    expect(refs(all)).toEqual([...refs(all)].sort());
    expect(all.find((i) => i.caseRef === withThird.caseRef)).toMatchObject({
      state: "identified",
      identifying: HEKOU,
      origin: THIRD,
      overdue: false,
    });
    // Pages of one and of two, followed by their cursors, give the same list.
    expect(refs(await list("limit=1"))).toEqual(refs(all));
    expect(refs(await list("limit=2"))).toEqual(refs(all));
    const first = await api.call(hekou, "/v1/cases?limit=1");
    expect(first.body.items).toHaveLength(1);
    expect(first.body.nextCursor).toEqual(expect.any(String));

    const byState = await list("state=closed&limit=100");
    expect(byState.every((i) => i.state === "closed")).toBe(true);
    expect(oursIn(byState)).toEqual([closed.caseRef]);
    const identified = await list("state=identified&limit=1");
    expect(identified.every((i) => i.state === "identified")).toBe(true);
    expect(oursIn(identified)).toEqual([withThird.caseRef]);

    expect(refs(await list(`party=${THIRD}&limit=100`))).toEqual([withThird.caseRef]);
    const withLaocai = await list(`party=${LAOCAI}&limit=100`);
    expect(withLaocai.every((i) => [i.identifying, i.origin].includes(LAOCAI))).toBe(true);
    expect(oursIn(withLaocai).sort()).toEqual([closed.caseRef, late.caseRef].sort());

    const now = clock().getTime();
    const overdue = await list("overdue=true&limit=100");
    expect(overdue.every((i) => i.overdue && i.dueAt !== null && Date.parse(i.dueAt) <= now)).toBe(
      true,
    );
    expect(oursIn(overdue)).toEqual([late.caseRef]);
    const combined = await list(
      `state=verification-requested&party=${LAOCAI}&overdue=true&limit=1`,
    );
    expect(
      combined.every(
        (i) =>
          i.state === "verification-requested" &&
          [i.identifying, i.origin].includes(LAOCAI) &&
          i.overdue,
      ),
    ).toBe(true);
    expect(oursIn(combined)).toEqual([late.caseRef]);
    expect(oursIn(await list("state=verification-requested&overdue=false&limit=100"))).toEqual([
      late.caseRef,
    ]);

    await expectProblem(await api.raw(hekou, "/v1/cases?state=pending"), 400, "request_invalid");
    await expectProblem(await api.raw(hekou, "/v1/cases?cursor=!!"), 400, "request_invalid");
    await expectProblem(await api.raw(hekou, "/v1/cases/CN-HEKOU-T0000000000"), 404, "not_found");
    await expectProblem(await api.raw(hekou, "/v1/cases/not-a-case"), 404, "not_found");
    await expectProblem(
      await api.raw(hekou, "/v1/cases/CN-HEKOU-T0000000000/personal-data"),
      404,
      "not_found",
    );
  }, 90_000);

  it("the victim's name (a canary) reaches no log line, error body, wire byte or database row; both gateways decrypt it on request, and the read is audited", async () => {
    // Leak detection is not vacuous: it finds the canary in any base64url alignment and inside
    // a signed payload.
    expect(
      leaksOf(CANARY, [
        { where: "b64u", text: Buffer.from(`xy${CANARY}`).toString("base64url") },
        {
          where: "jws",
          text: `eyJhbGciOiJFZERTQSJ9.${Buffer.from(JSON.stringify({ n: CANARY })).toString("base64url")}.c2lnbmF0dXJlLWJ5dGVz`,
        },
        { where: "clean", text: "nothing here" },
      ]),
    ).toEqual(["b64u", "jws"]);

    const { hekou, laocai } = main;
    const caseRef = uniqueCaseRef();
    const journey = new Journey(main, api, caseRef, CANARY);
    await journey.playThrough("02");
    // Refused submits that carry the canary: in clear personal data answered 409 (after it was
    // encrypted), as the value of an unknown personal data member, and as a body member the
    // schema does not know (both 422). Their answers are searched below.
    const answer = journey.request(exampleStep("03")) as {
      body: Record<string, unknown>;
      personalData: Record<string, unknown>;
    };
    const refusals = [
      { request: { ...answer, inReplyTo: journey.id("01") }, status: 409 },
      {
        request: { ...answer, personalData: { ...answer.personalData, nickname: CANARY } },
        status: 422,
      },
      { request: { ...answer, body: { ...answer.body, victimName: CANARY } }, status: 422 },
    ];
    for (const { request, status } of refusals) {
      expect((await api.submit(laocai, request)).status).toBe(status);
    }
    await journey.send(exampleStep("03"));

    // Both sides decrypt it: Lao Cai as the addressee, Hekou as the sender (it encrypts to
    // itself too). The canary is compared, never printed.
    for (const node of [hekou, laocai]) {
      const { status, body } = await api.call(node, `/v1/cases/${caseRef}/personal-data`);
      expect(status).toBe(200);
      const items = body.items as Array<{
        messageId: string;
        type: string;
        personalData?: { names?: { given?: string } };
        error?: string;
      }>;
      expect(items.map((i) => i.type)).toEqual([
        "victim.identified",
        "identity.verification.request",
        "identity.verification.response",
      ]);
      expect(items.every((i) => i.error === undefined)).toBe(true);
      const identified = items.find((i) => i.messageId === journey.id("01"));
      expect(identified?.personalData?.names?.given === CANARY).toBe(true);
      const audit = lines
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter(
          (l) =>
            l.audit === "personal_data_read" &&
            l.caseRef === caseRef &&
            l.party === node.gateway.self.id,
        );
      expect(audit).toHaveLength(1);
      expect(audit[0]?.messageIds).toEqual(items.map((i) => i.messageId));
      expect(leaksOf(CANARY, [{ where: "audit line", text: JSON.stringify(audit[0]) }])).toEqual(
        [],
      );
    }

    // Everything this file's gateways wrote, answered, published and stored.
    const texts: Array<{ where: string; text: string }> = [];
    lines.forEach((text, i) => void texts.push({ where: `log line ${i}`, text }));
    api.errors.forEach(
      (e, i) => void texts.push({ where: `error ${i} (${e.status} ${e.path})`, text: e.text }),
    );
    const decoder = new TextDecoder();
    wire.forEach(
      (m, i) =>
        void texts.push({ where: `wire ${i} on ${m.subject}`, text: decoder.decode(m.data) }),
    );
    const jsm = await nc.jetstreamManager();
    for (const node of nodes()) {
      const stream = node.gateway.config.streamName;
      const { state } = await jsm.streams.info(stream);
      // Every message the stream ever stored was seen on the wire by our subscriber too.
      const seen = wire.filter((m) => m.subject === node.gateway.config.inboundSubject).length;
      expect(seen).toBeGreaterThanOrEqual(state.last_seq);
      for (let seq = state.first_seq; state.messages > 0 && seq <= state.last_seq; seq++) {
        const msg = await jsm.streams.getMessage(stream, { seq }).catch(() => undefined);
        // Work-queue streams: a message acked after its commit is gone; whatever is left is read.
        if (msg === undefined) continue;
        texts.push({ where: `stream ${stream} seq ${seq}`, text: decoder.decode(msg.data) });
      }
      for (const table of ["messages", "receipts", "quarantine", "cases", "deliveries"]) {
        for (const [i, text] of (await rowsAsText(node, table)).entries()) {
          texts.push({ where: `${node.gateway.self.id} ${table} row ${i}`, text });
        }
      }
      for (const [i, raw] of (await quarantineBytes(node)).entries()) {
        texts.push({ where: `${node.gateway.self.id} quarantine raw ${i}`, text: raw.toString() });
      }
    }

    // The places searched hold what they should: the case's lines, refusals, the encrypted
    // victim.identified on the wire and in both logs.
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.some((l) => l.includes(caseRef) && l.includes('"message accepted"'))).toBe(true);
    expect(api.errors.some((e) => e.status === 409)).toBe(true);
    const onWire = wire
      .map((m) => decoder.decode(m.data))
      .filter((t) => /^[\w-]+\.[\w-]+\.[\w-]+$/.test(t))
      .map((t) => payloadOf<{ type?: string; caseRef?: string; body?: Record<string, unknown> }>(t))
      .find((e) => e.type === "victim.identified" && e.caseRef === caseRef);
    // (Checked without printing it: were it in clear, a failure message would show it.)
    const sealedOnWire = onWire?.body?.personalData as { ciphertext?: unknown } | undefined;
    expect(typeof sealedOnWire?.ciphertext).toBe("string");
    for (const node of [hekou, laocai]) {
      const rows = await node.gateway.database.db
        .select({ jws: messages.jws })
        .from(messages)
        .where(eq(messages.id, journey.id("01")));
      expect(rows).toHaveLength(1);
    }

    expect(leaksOf(CANARY, texts)).toEqual([]);
  }, 90_000);
});
