/**
 * The case fold (src/cases/fold-case.ts): the journey's transitions, every illegal one refused
 * with its code, replies that must name the open request, the two-signature handover record,
 * messages that cross on the wire, and an order-independent result.
 */
import { describe, expect, it } from "vitest";
import {
  CASE_STATES,
  type CaseMessage,
  type CaseState,
  type DeadlinePolicy,
  STEP_TYPES,
  type StepType,
} from "../../src/cases/case-types.ts";
import { admitToCase, allowedNext, foldCase } from "../../src/cases/fold-case.ts";

const A = "CN-MPS-HEKOU"; // identifying: found the person, hands them over
const B = "VN-BGC-LAOCAI"; // origin: the person's country
const C = "TH-RTP-ATPD"; // not a party of the case
const REF = "CN-HEKOU-2026-0107";
const CROSSING = "CN-VN-HEKOU-LAOCAI";
const DAY = 86_400_000;
const POLICY: DeadlinePolicy = {
  verificationAnswerMs: 7 * DAY,
  repatriationAnswerMs: 14 * DAY,
  handoverConfirmationLeadMs: DAY,
  countersignatureMs: DAY,
};
const policy = () => POLICY;

let clock = Date.parse("2026-11-01T08:00:00Z");
let seq = 0;
function msg(
  type: string,
  from: string,
  body: Record<string, unknown> = {},
  extra: Partial<CaseMessage> = {},
): CaseMessage {
  clock += 60_000;
  seq += 1;
  return {
    id: `00000000-0000-4000-8000-${String(seq).padStart(12, "0")}`,
    type,
    from,
    to: [from === A ? B : A],
    caseRef: REF,
    sentAt: new Date(clock).toISOString(),
    body,
    ...extra,
  };
}

const enc = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
function record(proposalId: string, signatures: number, payload?: Record<string, unknown>) {
  return {
    payload: enc(
      payload ?? {
        caseRef: REF,
        proposalId,
        handedOverAt: "2026-11-20T09:00:00Z",
        borderCrossingId: CROSSING,
        handedOverBy: A,
        receivedBy: B,
      },
    ),
    signatures: Array.from({ length: signatures }, (_, i) => ({
      protected: enc({ alg: "EdDSA", kid: `k${i}`, typ: "liaison-handover-record+jws" }),
      signature: `sig${i}`,
    })),
  };
}

/** Messages that bring a case into `state`, with the ids a next step may need. */
function journeyTo(state: CaseState): { messages: CaseMessage[]; open: string | null } {
  const m: CaseMessage[] = [];
  const add = (x: CaseMessage) => {
    m.push(x);
    return x;
  };
  const done = (open: string | null = null) => ({ messages: m, open });
  add(msg("victim.identified", A, { minor: true }));
  if (state === "identified") return done();
  let request = add(msg("identity.verification.request", A));
  if (state === "verification-requested") return done(request.id);
  if (state === "more-information-needed") {
    add(
      msg(
        "identity.verification.response",
        B,
        { result: "more-information-needed" },
        { inReplyTo: request.id },
      ),
    );
    return done();
  }
  if (state === "identity-not-confirmed") {
    add(
      msg(
        "identity.verification.response",
        B,
        { result: "not-confirmed" },
        { inReplyTo: request.id },
      ),
    );
    return done();
  }
  add(msg("identity.verification.response", B, { result: "confirmed" }, { inReplyTo: request.id }));
  if (state === "identity-confirmed") return done();
  request = add(msg("repatriation.request", A, { minor: true }));
  if (state === "repatriation-requested") return done(request.id);
  if (state === "repatriation-declined") {
    add(msg("repatriation.response", B, { decision: "declined" }, { inReplyTo: request.id }));
    return done();
  }
  add(msg("repatriation.response", B, { decision: "accepted" }, { inReplyTo: request.id }));
  if (state === "repatriation-accepted") return done();
  add(msg("travel-document.issued", B));
  if (state === "travel-document-issued") return done();
  const proposal = add(
    msg("handover.proposal", A, {
      scheduledAt: "2026-11-20T09:00:00Z",
      borderCrossingId: CROSSING,
    }),
  );
  if (state === "handover-proposed") return done(proposal.id);
  add(msg("handover.confirmation", B, { decision: "confirmed" }, { inReplyTo: proposal.id }));
  if (state === "handover-confirmed") return done(proposal.id);
  const first = add(
    msg("handover.completed", A, { record: record(proposal.id, 1) }, { recordSigners: [A] }),
  );
  if (state === "handover-signed") return done(first.id);
  const both = record(proposal.id, 2);
  both.signatures[0] = record(proposal.id, 1).signatures[0] as (typeof both.signatures)[0];
  add(
    msg("handover.completed", B, { record: both }, { inReplyTo: first.id, recordSigners: [A, B] }),
  );
  if (state === "handover-completed") return done();
  add(msg("reintegration.update", B, { status: "in-shelter" }));
  if (state === "reintegration") return done();
  add(msg("case.closed", B, { reason: "reintegration-completed" }));
  return done();
}

/**
 * The allowed steps per state, written out independently of the implementation: type → sender.
 * Every (type, sender) pair not listed is illegal in that state. Replies also need inReplyTo.
 */
const STEPS: Record<CaseState, Array<[StepType, "A" | "B"]>> = {
  identified: [["identity.verification.request", "A"]],
  "verification-requested": [["identity.verification.response", "B"]],
  "more-information-needed": [["identity.verification.request", "A"]],
  "identity-confirmed": [["repatriation.request", "A"]],
  "identity-not-confirmed": [],
  "repatriation-requested": [["repatriation.response", "B"]],
  "repatriation-accepted": [["travel-document.issued", "B"]],
  "repatriation-declined": [],
  "travel-document-issued": [["handover.proposal", "A"]],
  "handover-proposed": [
    ["handover.proposal", "A"],
    ["handover.confirmation", "B"],
  ],
  "handover-confirmed": [
    ["handover.proposal", "A"],
    ["handover.completed", "A"],
  ],
  "handover-signed": [["handover.completed", "B"]],
  "handover-completed": [["reintegration.update", "B"]],
  reintegration: [["reintegration.update", "B"]],
  closed: [],
};
/** Either party may close an open case. */
const ALLOWED = Object.fromEntries(
  Object.entries(STEPS).map(([state, steps]) => [
    state,
    state === "closed" ? steps : [...steps, ["case.closed", "A"], ["case.closed", "B"]],
  ]),
) as Record<CaseState, Array<[StepType, "A" | "B"]>>;

/** A body and reply link that would make `type` acceptable where it is allowed. */
function candidate(type: StepType, from: string, open: string | null, messages: CaseMessage[]) {
  const body: Record<string, unknown> =
    {
      "identity.verification.response": { result: "confirmed" },
      "repatriation.response": { decision: "accepted" },
      "handover.proposal": { scheduledAt: "2026-11-21T09:00:00Z", borderCrossingId: CROSSING },
      "handover.confirmation": { decision: "confirmed" },
      "case.closed": { reason: "other" },
    }[type as string] ?? {};
  const extra: Partial<CaseMessage> = open === null ? {} : { inReplyTo: open };
  if (type === "handover.completed") {
    const proposalId =
      [...messages].reverse().find((m) => m.type === "handover.proposal")?.id ?? "none";
    if (from === A)
      return msg(type, from, { record: record(proposalId, 1) }, { ...extra, recordSigners: [A] });
    const first = messages.find((m) => m.type === "handover.completed");
    const both = record(proposalId, 2);
    if (first !== undefined) {
      both.signatures[0] = (first.body.record as ReturnType<typeof record>)
        .signatures[0] as (typeof both.signatures)[0];
    }
    return msg(type, from, { record: both }, { ...extra, recordSigners: [A, B] });
  }
  return msg(type, from, body, extra);
}

describe("the journey", () => {
  it("goes from identified to closed, each step applied, in order", () => {
    const { messages } = journeyTo("closed");
    const { view, outcomes } = foldCase(messages, policy);
    expect(view?.state).toBe("closed");
    expect(view?.identifying).toBe(A);
    expect(view?.origin).toBe(B);
    expect(view?.minor).toBe(true);
    expect(view?.applied).toEqual(messages.map((m) => m.id));
    expect([...outcomes.values()].every((o) => o.applied)).toBe(true);
    expect(view?.awaiting).toEqual([]);
  });

  for (const state of CASE_STATES) {
    it(`reaches ${state}`, () => {
      expect(foldCase(journeyTo(state).messages, policy).view?.state).toBe(state);
    });
  }

  it("the result does not depend on the order the messages are given in", () => {
    const { messages } = journeyTo("reintegration");
    const reference = foldCase(messages, policy).view;
    for (let i = 0; i < 10; i += 1) {
      const shuffled = [...messages].sort(() => (i % 2 === 0 ? 1 : -1) * (Math.random() - 0.3));
      expect(foldCase(shuffled, policy).view).toEqual(reference);
    }
  });
});

describe("every illegal transition is refused, never applied", () => {
  for (const state of CASE_STATES) {
    for (const type of STEP_TYPES) {
      for (const sender of ["A", "B"] as const) {
        const allowed = ALLOWED[state].some(([t, s]) => t === type && s === sender);
        it(`${type} by ${sender === "A" ? "the identifying" : "the origin"} party in ${state}: ${allowed ? "applied" : "refused"}`, () => {
          const { messages, open } = journeyTo(state);
          const next = candidate(type, sender === "A" ? A : B, open, messages);
          const result = admitToCase(messages, next, policy);
          if (allowed) {
            expect(result.ok).toBe(true);
            return;
          }
          expect(result).toMatchObject({ ok: false, code: "transition_not_allowed" });
          // The case is what it was.
          const after = foldCase([...messages, next], policy);
          expect(after.view?.state).toBe(state);
          expect(after.view?.applied).not.toContain(next.id);
          expect(after.view?.skipped.map((s) => s.id)).toContain(next.id);
        });
      }
    }
  }

  it("allowedNext lists exactly the allowed steps of each party", () => {
    for (const state of CASE_STATES) {
      const { view } = foldCase(journeyTo(state).messages, policy);
      for (const [party, letter] of [
        [A, "A"],
        [B, "B"],
      ] as const) {
        const expected = ALLOWED[state].filter(([, s]) => s === letter).map(([t]) => t);
        const listed = allowedNext(view, party).filter((t) => t !== "case.reminder");
        expect({ state, party, types: [...listed].sort() }).toEqual({
          state,
          party,
          types: [...new Set(expected)].sort(),
        });
      }
      expect(allowedNext(view, C)).toEqual([]);
    }
  });

  it("only victim.identified opens a case", () => {
    for (const type of STEP_TYPES.filter((t) => t !== "victim.identified")) {
      expect(admitToCase([], msg(type, A), policy)).toMatchObject({
        ok: false,
        code: "transition_not_allowed",
      });
    }
    expect(admitToCase([], msg("victim.identified", A), policy).ok).toBe(true);
  });

  it("refuses a step from a party outside the case, or addressed to a third party", () => {
    const { messages } = journeyTo("identified");
    const outsider = msg("identity.verification.request", C, {}, { to: [B] });
    expect(admitToCase(messages, outsider, policy)).toMatchObject({
      code: "transition_not_allowed",
    });
    const copied = msg("identity.verification.request", A, {}, { to: [B, C] });
    expect(admitToCase(messages, copied, policy)).toMatchObject({
      code: "transition_not_allowed",
    });
  });

  it("victim.identified goes to exactly one other party", () => {
    expect(admitToCase([], msg("victim.identified", A, {}, { to: [B, C] }), policy)).toMatchObject({
      code: "transition_not_allowed",
    });
    expect(admitToCase([], msg("victim.identified", A, {}, { to: [A] }), policy)).toMatchObject({
      code: "transition_not_allowed",
    });
  });

  it("a reminder joins an open case without moving it, and not a closed one", () => {
    const { messages } = journeyTo("verification-requested");
    const reminder = msg("case.reminder", A, { awaitedType: "identity.verification.response" });
    const result = admitToCase(messages, reminder, policy);
    expect(result.ok && result.fold.view?.state).toBe("verification-requested");
    const closed = journeyTo("closed").messages;
    expect(admitToCase(closed, msg("case.reminder", A), policy)).toMatchObject({
      code: "transition_not_allowed",
    });
  });
});

describe("replies name the open request", () => {
  const replies: Array<[CaseState, StepType, Record<string, unknown>]> = [
    ["verification-requested", "identity.verification.response", { result: "confirmed" }],
    ["repatriation-requested", "repatriation.response", { decision: "accepted" }],
    ["handover-proposed", "handover.confirmation", { decision: "confirmed" }],
  ];
  for (const [state, type, body] of replies) {
    it(`${type} without inReplyTo, or naming another message, is reply_unmatched`, () => {
      const { messages, open } = journeyTo(state);
      expect(open).not.toBeNull();
      expect(admitToCase(messages, msg(type, B, body), policy)).toMatchObject({
        code: "reply_unmatched",
      });
      const other = messages[0]?.id;
      expect(admitToCase(messages, msg(type, B, body, { inReplyTo: other }), policy)).toMatchObject(
        {
          code: "reply_unmatched",
        },
      );
      expect(admitToCase(messages, msg(type, B, body, { inReplyTo: open ?? "" }), policy).ok).toBe(
        true,
      );
    });
  }

  it("the countersigned record must answer the signed one", () => {
    const { messages } = journeyTo("handover-signed");
    const next = candidate("handover.completed", B, null, messages);
    expect(admitToCase(messages, next, policy)).toMatchObject({ code: "reply_unmatched" });
  });

  it("a confirmation of a superseded proposal is unmatched", () => {
    const { messages, open } = journeyTo("handover-proposed");
    const second = msg("handover.proposal", A, {
      scheduledAt: "2026-11-22T09:00:00Z",
      borderCrossingId: CROSSING,
    });
    const confirmation = msg(
      "handover.confirmation",
      B,
      { decision: "confirmed" },
      { inReplyTo: open ?? "" },
    );
    expect(admitToCase([...messages, second], confirmation, policy)).toMatchObject({
      code: "reply_unmatched",
    });
  });
});

describe("the handover record", () => {
  it("the first record has exactly one signature, by its sender, naming the confirmed proposal", () => {
    const { messages, open } = journeyTo("handover-confirmed");
    const proposalId = open ?? "";
    const twice = msg(
      "handover.completed",
      A,
      { record: record(proposalId, 2) },
      { recordSigners: [A, B] },
    );
    expect(admitToCase(messages, twice, policy)).toMatchObject({ code: "handover_record_invalid" });
    const byOther = msg(
      "handover.completed",
      A,
      { record: record(proposalId, 1) },
      { recordSigners: [B] },
    );
    expect(admitToCase(messages, byOther, policy)).toMatchObject({
      code: "handover_record_invalid",
    });
    const otherProposal = msg(
      "handover.completed",
      A,
      { record: record("11111111-1111-4111-8111-111111111111", 1) },
      { recordSigners: [A] },
    );
    expect(admitToCase(messages, otherProposal, policy)).toMatchObject({
      code: "handover_record_invalid",
    });
    const swapped = msg(
      "handover.completed",
      A,
      {
        record: record(proposalId, 1, {
          caseRef: REF,
          proposalId,
          handedOverBy: B,
          receivedBy: A,
        }),
      },
      { recordSigners: [A] },
    );
    expect(admitToCase(messages, swapped, policy)).toMatchObject({
      code: "handover_record_invalid",
    });
    const good = msg(
      "handover.completed",
      A,
      { record: record(proposalId, 1) },
      { recordSigners: [A] },
    );
    expect(admitToCase(messages, good, policy).ok).toBe(true);
  });

  it("the answer with one signature is incomplete; with another payload or first signature, invalid", () => {
    const { messages, open } = journeyTo("handover-signed");
    const first = messages.find((m) => m.id === open) as CaseMessage;
    const firstRecord = first.body.record as ReturnType<typeof record>;
    const proposalId = messages.find((m) => m.type === "handover.proposal")?.id ?? "";
    const one = msg(
      "handover.completed",
      B,
      { record: firstRecord },
      { inReplyTo: first.id, recordSigners: [A] },
    );
    expect(admitToCase(messages, one, policy)).toMatchObject({
      code: "handover_record_incomplete",
    });

    const otherPayload = record(proposalId, 2, {
      caseRef: REF,
      proposalId,
      handedOverAt: "2026-11-20T10:00:00Z",
      borderCrossingId: CROSSING,
      handedOverBy: A,
      receivedBy: B,
    });
    otherPayload.signatures[0] = firstRecord.signatures[0] as (typeof otherPayload.signatures)[0];
    const changed = msg(
      "handover.completed",
      B,
      { record: otherPayload },
      { inReplyTo: first.id, recordSigners: [A, B] },
    );
    expect(admitToCase(messages, changed, policy)).toMatchObject({
      code: "handover_record_invalid",
    });

    const resigned = record(proposalId, 2); // a first signature other than the logged one
    resigned.signatures[0] = {
      protected: enc({ alg: "EdDSA", kid: "k0", typ: "x" }),
      signature: "other",
    };
    const replaced = msg(
      "handover.completed",
      B,
      { record: resigned },
      { inReplyTo: first.id, recordSigners: [A, B] },
    );
    expect(admitToCase(messages, replaced, policy)).toMatchObject({
      code: "handover_record_invalid",
    });

    const good = candidate("handover.completed", B, first.id, messages);
    const wrongSigners = { ...good, id: `${good.id.slice(0, -1)}f`, recordSigners: [B, A] };
    expect(admitToCase(messages, wrongSigners, policy)).toMatchObject({
      code: "handover_record_invalid",
    });
    expect(admitToCase(messages, good, policy).ok).toBe(true);
  });
});

describe("messages that cross on the wire", () => {
  it("a reschedule and a confirmation of the old proposal: both sides end awaiting the new one", () => {
    const { messages, open } = journeyTo("handover-proposed");
    // Lao Cai confirms the first proposal at t+2; Hekou reschedules at t+1: they cross.
    const reschedule = msg("handover.proposal", A, {
      scheduledAt: "2026-11-23T09:00:00Z",
      borderCrossingId: CROSSING,
    });
    const confirmation = msg(
      "handover.confirmation",
      B,
      { decision: "confirmed" },
      { inReplyTo: open ?? "" },
    );
    // Hekou holds its reschedule; the confirmation arrives and is refused.
    const atHekou = admitToCase([...messages, reschedule], confirmation, policy);
    expect(atHekou).toMatchObject({ ok: false, code: "reply_unmatched" });
    // Lao Cai holds its confirmation; the reschedule arrives, is admitted, and displaces it:
    // Hekou had not seen (acknowledged) the confirmation when it rescheduled.
    const unseen = () => false;
    const atLaoCai = admitToCase([...messages, confirmation], reschedule, policy, unseen);
    expect(atLaoCai.ok).toBe(true);
    if (!atLaoCai.ok) return;
    expect(atLaoCai.fold.outcomes.get(`${B} ${confirmation.id}`)).toMatchObject({
      applied: false,
      code: "reply_unmatched",
    });
    // Both sides: the same state, awaiting Lao Cai's answer to the new proposal.
    const hekou = foldCase([...messages, reschedule], policy).view;
    expect(atLaoCai.fold.view?.state).toBe("handover-proposed");
    expect(atLaoCai.fold.view?.openRequestId).toBe(reschedule.id);
    expect(atLaoCai.fold.view?.state).toBe(hekou?.state);
    expect(atLaoCai.fold.view?.awaiting).toEqual(hekou?.awaiting);
  });

  it("two closes crossing in a dead end: the earlier applies, the later is refused on both sides", () => {
    const { messages } = journeyTo("repatriation-declined");
    const byA = msg("case.closed", A, { reason: "repatriation-declined" });
    const byB = msg("case.closed", B, { reason: "repatriation-declined" });
    expect(admitToCase([...messages, byA], byB, policy)).toMatchObject({
      code: "transition_not_allowed",
    });
    const atB = admitToCase([...messages, byB], byA, policy, () => false);
    expect(atB.ok).toBe(true);
    if (!atB.ok) return;
    expect(atB.fold.view?.state).toBe("closed");
    expect(atB.fold.outcomes.get(`${B} ${byB.id}`)).toMatchObject({ applied: false });
  });

  it("equal sentAt: the sender id, then the message id, decide", () => {
    const { messages } = journeyTo("repatriation-declined");
    const byA = msg("case.closed", A, { reason: "other" });
    const byB = { ...msg("case.closed", B, { reason: "other" }), sentAt: byA.sentAt };
    const one = foldCase([...messages, byA, byB], policy);
    const other = foldCase([...messages, byB, byA], policy);
    // CN-… sorts before VN-…: Hekou's close applies on both sides.
    expect(one.outcomes.get(`${A} ${byA.id}`)).toEqual({ applied: true });
    expect(other.outcomes.get(`${A} ${byA.id}`)).toEqual({ applied: true });
    expect(one.view).toEqual(other.view);
  });
});

describe("who owes the next step, and by when", () => {
  it("the origin party owes the verification answer, due after the configured time", () => {
    const { messages } = journeyTo("verification-requested");
    const request = messages.at(-1) as CaseMessage;
    const { view } = foldCase(messages, (owing) =>
      owing === B ? { ...POLICY, verificationAnswerMs: 3 * DAY } : POLICY,
    );
    expect(view?.awaiting).toEqual([
      {
        party: B,
        types: ["identity.verification.response"],
        requestId: request.id,
        since: request.sentAt,
        dueAt: new Date(Date.parse(request.sentAt) + 3 * DAY).toISOString(),
      },
    ]);
  });

  it("the handover confirmation is due the configured lead before the proposed time", () => {
    const { view } = foldCase(journeyTo("handover-proposed").messages, policy);
    expect(view?.awaiting[0]?.dueAt).toBe("2026-11-19T09:00:00.000Z");
  });

  it("the repatriation answer and the countersignature have deadlines; own steps have none", () => {
    expect(
      foldCase(journeyTo("repatriation-requested").messages, policy).view?.awaiting[0],
    ).toMatchObject({
      party: B,
      dueAt: expect.any(String),
    });
    expect(foldCase(journeyTo("handover-signed").messages, policy).view?.awaiting[0]).toMatchObject(
      {
        party: B,
        types: ["handover.completed"],
        dueAt: expect.any(String),
      },
    );
    expect(foldCase(journeyTo("identity-confirmed").messages, policy).view?.awaiting).toEqual([
      expect.objectContaining({ party: A, types: ["repatriation.request"] }),
    ]);
    expect(
      foldCase(journeyTo("identity-confirmed").messages, policy).view?.awaiting[0],
    ).not.toHaveProperty("dueAt");
  });
});

describe("a message may not rewrite what both sides agreed on", () => {
  const unseen = () => false;
  const at = (m: CaseMessage, iso: string): CaseMessage => ({ ...m, sentAt: iso });
  const between = (a: CaseMessage, b: CaseMessage) =>
    new Date((Date.parse(a.sentAt) + Date.parse(b.sentAt)) / 2).toISOString();

  it("refuses a step dated before its sender's own applied step (a decline slipped before an accept)", () => {
    const { messages } = journeyTo("handover-proposed");
    const request = messages.find((m) => m.type === "repatriation.request") as CaseMessage;
    const accept = messages.find((m) => m.type === "repatriation.response") as CaseMessage;
    const decline = at(
      msg("repatriation.response", B, { decision: "declined" }, { inReplyTo: request.id }),
      between(request, accept),
    );
    expect(admitToCase(messages, decline, policy, unseen)).toMatchObject({
      ok: false,
      code: "transition_not_allowed",
    });
    expect(foldCase(messages, policy).view?.state).toBe("handover-proposed");
  });

  it("refuses a step dated before steps of the other side its sender had accepted", () => {
    const { messages } = journeyTo("travel-document-issued");
    const opened = messages[0] as CaseMessage;
    // Lao Cai "closes" the case just after it opened: every later step would be skipped.
    const early = at(
      msg("case.closed", A, { reason: "other" }),
      between(opened, messages[1] as CaseMessage),
    );
    const accepted = (step: CaseMessage, party: string) => step.from !== party;
    expect(admitToCase(messages, early, policy, accepted)).toMatchObject({
      code: "transition_not_allowed",
    });
    // Even if it had accepted none of them, its own steps would be displaced: refused too.
    const byB = at(
      msg("case.closed", B, { reason: "other" }),
      between(opened, messages[1] as CaseMessage),
    );
    expect(admitToCase(messages, byB, policy, unseen)).toMatchObject({
      code: "transition_not_allowed",
    });
  });

  it("a crossing reschedule is admitted only while its sender had not accepted the confirmation it displaces", () => {
    const { messages, open } = journeyTo("handover-proposed");
    const confirmation = msg(
      "handover.confirmation",
      B,
      { decision: "confirmed" },
      { inReplyTo: open ?? "" },
    );
    const reschedule = at(
      msg("handover.proposal", A, {
        scheduledAt: "2026-11-23T09:00:00Z",
        borderCrossingId: CROSSING,
      }),
      new Date(Date.parse(confirmation.sentAt) - 1000).toISOString(),
    );
    expect(admitToCase([...messages, confirmation], reschedule, policy, unseen).ok).toBe(true);
    expect(
      admitToCase(
        [...messages, confirmation],
        reschedule,
        policy,
        (step, party) => step.id === confirmation.id && party === A,
      ),
    ).toMatchObject({ code: "transition_not_allowed" });
  });

  it("refuses a second victim.identified for an open case, even dated before the first (no takeover)", () => {
    const { messages } = journeyTo("repatriation-requested");
    const takeover = at(
      msg("victim.identified", C, { minor: false }, { to: [A] }),
      new Date(Date.parse((messages[0] as CaseMessage).sentAt) - 60_000).toISOString(),
    );
    expect(admitToCase(messages, takeover, policy, unseen)).toMatchObject({
      code: "transition_not_allowed",
    });
    expect(foldCase(messages, policy).view?.identifying).toBe(A);
  });
});
