/**
 * The state of a case is a fold over its messages: pure, deterministic, the same on every
 * gateway that holds the same messages. Messages are ordered by `sentAt`, then sender, then id
 * (ordinal comparison), and applied one by one; a message the case does not allow at its place
 * is skipped with the code that says why. A new message is admitted (at submit, or on arrival)
 * only when the fold of the case with it applies it; otherwise it is refused with that code.
 *
 * Why a fold rather than "apply to the stored state": two messages can cross on the wire (each
 * side sends before it has seen the other's). Each side then holds both, and ordering by sentAt
 * makes both compute the same result: the earlier message applies, the later one is skipped
 * where it no longer fits — refused by its recipient with a negative receipt, and shown as
 * superseded by its sender. docs/cases.md walks through the cases.
 */
import type { PartyId } from "../protocol/types.ts";
import {
  type Awaiting,
  CASE_STATES,
  type CaseMessage,
  type CaseState,
  type CaseView,
  type DeadlinePolicy,
  REMINDER_TYPE,
  type SkippedMessage,
  STEP_TYPES,
  type StepType,
} from "./case-types.ts";

export type Refusal = Omit<SkippedMessage, "id" | "from">;
type StepResult = { ok: true; view: CaseView } | ({ ok: false } & Refusal);

/** `${from} ${id}`: message ids are unique per sender. */
export function caseMessageKey(m: { from: PartyId; id: string }): string {
  return `${m.from} ${m.id}`;
}

/** sentAt, then sender, then id: the same order on every gateway. */
export function compareCaseMessages(a: CaseMessage, b: CaseMessage): number {
  const t = Date.parse(a.sentAt) - Date.parse(b.sentAt);
  if (t !== 0) return t;
  if (a.from !== b.from) return a.from < b.from ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

export interface FoldResult {
  /** null when no message opened the case (no applied victim.identified). */
  view: CaseView | null;
  /** Every message's outcome, by caseMessageKey. */
  outcomes: Map<string, { applied: true } | ({ applied: false } & Refusal)>;
}

export function foldCase(
  messages: readonly CaseMessage[],
  policy: (owing: PartyId) => DeadlinePolicy,
): FoldResult {
  const ordered = [...messages].sort(compareCaseMessages);
  const outcomes: FoldResult["outcomes"] = new Map();
  let view = null as CaseView | null;
  for (const m of ordered) {
    const result = step(view, m);
    if (result.ok) {
      view = result.view;
      outcomes.set(caseMessageKey(m), { applied: true });
    } else {
      const { ok: _ok, ...refusal } = result;
      outcomes.set(caseMessageKey(m), { applied: false, ...refusal });
      if (view !== null)
        view = { ...view, skipped: [...view.skipped, { id: m.id, from: m.from, ...refusal }] };
    }
  }
  if (view !== null) view = { ...view, awaiting: awaitingOf(view, policy) };
  return { view, outcomes };
}

/**
 * Whether `candidate` may join the case now: the fold of the case with it must apply it, and it
 * may not displace a step that was already applied, except a step of the other party that the
 * candidate's sender had not acknowledged yet. That exception is two messages crossing on the
 * wire: each side sent before it saw the other's, and the fold orders them the same way on both
 * sides. Anything else would rewrite a history both sides had agreed on — a sender backdating
 * `sentAt` before its own earlier steps, or before steps it had accepted — and is refused.
 *
 * `acknowledged(step, party)`: whether `party` had accepted `step` (its signed receipt, or, for
 * a step the party received from us, our logging of it).
 */
export function admitToCase(
  messages: readonly CaseMessage[],
  candidate: CaseMessage,
  policy: (owing: PartyId) => DeadlinePolicy,
  acknowledged: (step: CaseMessage, party: PartyId) => boolean = () => true,
): { ok: true; fold: FoldResult } | ({ ok: false } & Refusal) {
  const before = foldCase(messages, policy);
  if (before.view !== null && candidate.type === "victim.identified") {
    return {
      ok: false,
      code: "transition_not_allowed",
      detail: "victim.identified: the case is already open",
    };
  }
  const fold = foldCase([...messages, candidate], policy);
  const outcome = fold.outcomes.get(caseMessageKey(candidate));
  if (outcome === undefined) throw new Error("the candidate has no outcome");
  if (!outcome.applied) {
    const { applied: _applied, ...refusal } = outcome;
    return { ok: false, ...refusal };
  }
  for (const step of messages) {
    const key = caseMessageKey(step);
    if (before.outcomes.get(key)?.applied !== true || fold.outcomes.get(key)?.applied !== false) {
      continue;
    }
    if (step.from === candidate.from || acknowledged(step, candidate.from)) {
      return {
        ok: false,
        code: "transition_not_allowed",
        detail: `${candidate.type}: its sentAt places it before a step its sender had already sent or accepted`,
      };
    }
  }
  return { ok: true, fold };
}

/** The types `party` may send in the case now: the transition table, read for its role. */
export function allowedNext(view: CaseView | null, party: PartyId): string[] {
  if (view === null) return ["victim.identified"];
  if (view.state === "closed") return [];
  const role = party === view.identifying ? "identifying" : party === view.origin ? "origin" : null;
  if (role === null) return [];
  const table = transitions[view.state];
  const steps: string[] = STEP_TYPES.filter((type) => {
    const by = table[type]?.by;
    return by === role || by === "either";
  });
  return [...steps, REMINDER_TYPE];
}

// ─── one step ────────────────────────────────────────────────────────────────────────────────

const refuse = (code: Refusal["code"], detail: string): StepResult => ({ ok: false, code, detail });

function step(view: CaseView | null, m: CaseMessage): StepResult {
  if (view === null) return open(m);
  if (m.type === "victim.identified") {
    return refuse("transition_not_allowed", "victim.identified: the case is already open");
  }
  if (view.state === "closed") {
    return refuse("transition_not_allowed", `${m.type} not allowed: the case is closed`);
  }
  const role =
    m.from === view.identifying ? "identifying" : m.from === view.origin ? "origin" : null;
  if (role === null) {
    return refuse("transition_not_allowed", `${m.type}: the sender is not a party of the case`);
  }
  const other = role === "identifying" ? view.origin : view.identifying;
  if (m.to.length !== 1 || m.to[0] !== other) {
    return refuse(
      "transition_not_allowed",
      `${m.type}: a case message is addressed to the other party of the case only`,
    );
  }
  if (m.type === REMINDER_TYPE)
    return { ok: true, view: { ...view, applied: [...view.applied, m.id] } };

  const expected = transitions[view.state][m.type as StepType];
  if (expected === undefined || (expected.by !== role && expected.by !== "either")) {
    return refuse(
      "transition_not_allowed",
      `${m.type} by the ${role} party is not allowed in state ${view.state}`,
    );
  }
  if (expected.reply && m.inReplyTo !== view.openRequestId) {
    return refuse(
      "reply_unmatched",
      `${m.type} must answer the open request of the case (inReplyTo)`,
    );
  }
  const next = expected.apply(view, m);
  if (!next.ok) return next;
  return {
    ok: true,
    view: { ...next.view, applied: [...view.applied, m.id], updatedAt: m.sentAt },
  };
}

function open(m: CaseMessage): StepResult {
  if (m.type !== "victim.identified") {
    return refuse("transition_not_allowed", `${m.type}: no case is open under this reference`);
  }
  const origin = m.to[0];
  if (m.to.length !== 1 || origin === undefined || origin === m.from) {
    return refuse(
      "transition_not_allowed",
      "victim.identified is addressed to exactly one party: the country of presumed nationality",
    );
  }
  return {
    ok: true,
    view: {
      caseRef: m.caseRef,
      state: "identified",
      identifying: m.from,
      origin,
      minor: m.body.minor === true,
      openedAt: m.sentAt,
      updatedAt: m.sentAt,
      awaiting: [],
      applied: [m.id],
      skipped: [],
      openRequestId: null,
      handoverScheduledAt: null,
      handoverBorderCrossingId: null,
      signedRecord: null,
    },
  };
}

interface Transition {
  by: "identifying" | "origin" | "either";
  /** The message must name the case's open request in inReplyTo. */
  reply?: boolean;
  apply(view: CaseView, m: CaseMessage): StepResult;
}

const to =
  (state: CaseState, extra: Partial<CaseView> = {}) =>
  (view: CaseView, _m: CaseMessage): StepResult => ({
    ok: true,
    view: { ...view, state, ...extra },
  });

const request =
  (state: CaseState) =>
  (view: CaseView, m: CaseMessage): StepResult => ({
    ok: true,
    view: { ...view, state, openRequestId: m.id },
  });

const verificationRequest: Transition = {
  by: "identifying",
  apply: request("verification-requested"),
};
const proposal: Transition = {
  by: "identifying",
  apply: (view, m) => ({
    ok: true,
    view: {
      ...view,
      state: "handover-proposed",
      openRequestId: m.id,
      handoverScheduledAt: typeof m.body.scheduledAt === "string" ? m.body.scheduledAt : null,
      handoverBorderCrossingId:
        typeof m.body.borderCrossingId === "string" ? m.body.borderCrossingId : null,
    },
  }),
};
const closing: Transition["apply"] = (view) => ({
  ok: true,
  view: { ...view, state: "closed", openRequestId: null },
});

/** What each state allows: by type, who sends it, and the state it leads to. */
const transitions: Record<CaseState, Partial<Record<StepType, Transition>>> = {
  identified: { "identity.verification.request": verificationRequest },
  "more-information-needed": { "identity.verification.request": verificationRequest },
  "verification-requested": {
    "identity.verification.response": {
      by: "origin",
      reply: true,
      apply: (view, m) => {
        const result = m.body.result;
        const state: CaseState =
          result === "confirmed"
            ? "identity-confirmed"
            : result === "not-confirmed"
              ? "identity-not-confirmed"
              : "more-information-needed";
        return { ok: true, view: { ...view, state, openRequestId: null } };
      },
    },
  },
  "identity-confirmed": {
    "repatriation.request": { by: "identifying", apply: request("repatriation-requested") },
  },
  "identity-not-confirmed": {},
  "repatriation-requested": {
    "repatriation.response": {
      by: "origin",
      reply: true,
      apply: (view, m) =>
        to(m.body.decision === "accepted" ? "repatriation-accepted" : "repatriation-declined", {
          openRequestId: null,
        })(view, m),
    },
  },
  "repatriation-declined": {},
  "repatriation-accepted": {
    "travel-document.issued": { by: "origin", apply: to("travel-document-issued") },
  },
  "travel-document-issued": { "handover.proposal": proposal },
  "handover-proposed": {
    "handover.proposal": proposal,
    "handover.confirmation": {
      by: "origin",
      reply: true,
      apply: (view, m) =>
        m.body.decision === "confirmed"
          ? to("handover-confirmed")(view, m)
          : to("travel-document-issued", {
              openRequestId: null,
              handoverScheduledAt: null,
              handoverBorderCrossingId: null,
            })(view, m),
    },
  },
  "handover-confirmed": {
    "handover.proposal": proposal,
    "handover.completed": { by: "identifying", apply: firstRecord },
  },
  "handover-signed": {
    "handover.completed": { by: "origin", reply: true, apply: countersignedRecord },
  },
  "handover-completed": { "reintegration.update": { by: "origin", apply: to("reintegration") } },
  reintegration: { "reintegration.update": { by: "origin", apply: to("reintegration") } },
  closed: {},
};

// Either party may close an open case at any time: the person withdrew consent, the case went to
// another procedure, the journey ended, or a signed handover record can never be countersigned.
for (const state of CASE_STATES) {
  if (state === "closed") continue;
  transitions[state]["case.closed"] = { by: "either", apply: closing };
}

interface RecordShape {
  payload: string;
  signatures: Array<{ protected: string; signature: string }>;
}

function recordOf(m: CaseMessage): RecordShape | null {
  const record = m.body.record as RecordShape | undefined;
  if (
    typeof record?.payload !== "string" ||
    !Array.isArray(record.signatures) ||
    record.signatures.length === 0
  ) {
    return null;
  }
  return record;
}

function recordPayload(record: RecordShape): Record<string, unknown> | null {
  try {
    const value = JSON.parse(Buffer.from(record.payload, "base64url").toString("utf8"));
    return typeof value === "object" && value !== null && !Array.isArray(value) ? value : null;
  } catch {
    return null;
  }
}

/** The handing-over side's record: signed by it alone, naming the confirmed proposal. */
function firstRecord(view: CaseView, m: CaseMessage): StepResult {
  const record = recordOf(m);
  const payload = record === null ? null : recordPayload(record);
  if (record === null || payload === null) {
    return refuse("handover_record_invalid", "handover.completed carries no readable record");
  }
  if (record.signatures.length !== 1 || m.recordSigners?.length !== 1) {
    return refuse(
      "handover_record_invalid",
      "the first handover record carries exactly one signature: the handing-over party's",
    );
  }
  if (m.recordSigners[0] !== view.identifying) {
    return refuse("handover_record_invalid", "the handover record is not signed by its sender");
  }
  const mismatch = recordMismatch(view, payload);
  if (mismatch !== null) return refuse("handover_record_invalid", mismatch);
  const [first] = record.signatures as [{ protected: string; signature: string }];
  return {
    ok: true,
    view: {
      ...view,
      state: "handover-signed",
      openRequestId: m.id,
      signedRecord: {
        messageId: m.id,
        payload: record.payload,
        firstSignature: `${first.protected}.${first.signature}`,
      },
    },
  };
}

/** The receiving side's answer: the same record, the first signature kept, its own added. */
function countersignedRecord(view: CaseView, m: CaseMessage): StepResult {
  const record = recordOf(m);
  const signed = view.signedRecord;
  if (record === null || signed === null) {
    return refuse("handover_record_invalid", "handover.completed carries no readable record");
  }
  if (record.signatures.length === 1) {
    return refuse(
      "handover_record_incomplete",
      "the answer to a signed handover record must carry both signatures",
    );
  }
  const [first] = record.signatures as [{ protected: string; signature: string }];
  if (record.payload !== signed.payload) {
    return refuse("handover_record_invalid", "the record differs from the one signed first");
  }
  if (`${first.protected}.${first.signature}` !== signed.firstSignature) {
    return refuse("handover_record_invalid", "the first signature is not the one logged");
  }
  const signers = m.recordSigners ?? [];
  if (signers.length !== 2 || signers[0] !== view.identifying || signers[1] !== view.origin) {
    return refuse(
      "handover_record_invalid",
      "the record must be signed by the handing-over party, then countersigned by its sender",
    );
  }
  return { ok: true, view: { ...view, state: "handover-completed", openRequestId: null } };
}

function recordMismatch(view: CaseView, payload: Record<string, unknown>): string | null {
  if (payload.caseRef !== view.caseRef) return "the record names another case";
  if (payload.proposalId !== view.openRequestId) {
    return "the record does not name the confirmed handover proposal";
  }
  if (payload.handedOverBy !== view.identifying || payload.receivedBy !== view.origin) {
    return "the record's parties are not the case's";
  }
  if (payload.borderCrossingId !== view.handoverBorderCrossingId) {
    return "the record names another border crossing than the confirmed proposal";
  }
  return null;
}

// ─── who owes what, and by when ──────────────────────────────────────────────────────────────

function awaitingOf(view: CaseView, policy: (owing: PartyId) => DeadlinePolicy): Awaiting[] {
  const since = view.updatedAt;
  const { identifying, origin } = view;
  const after = (ms: number) => new Date(Date.parse(since) + ms).toISOString();
  const wait = (party: PartyId, types: StepType[], extra: Partial<Awaiting> = {}): Awaiting => ({
    party,
    types,
    since,
    ...extra,
  });
  const request = view.openRequestId === null ? {} : { requestId: view.openRequestId };
  switch (view.state) {
    case "identified":
    case "more-information-needed":
      return [wait(identifying, ["identity.verification.request"])];
    case "verification-requested":
      return [
        wait(origin, ["identity.verification.response"], {
          ...request,
          dueAt: after(policy(origin).verificationAnswerMs),
        }),
      ];
    case "identity-confirmed":
      return [wait(identifying, ["repatriation.request"])];
    case "identity-not-confirmed":
    case "repatriation-declined":
      return [wait(identifying, ["case.closed"]), wait(origin, ["case.closed"])];
    case "repatriation-requested":
      return [
        wait(origin, ["repatriation.response"], {
          ...request,
          dueAt: after(policy(origin).repatriationAnswerMs),
        }),
      ];
    case "repatriation-accepted":
      return [wait(origin, ["travel-document.issued"])];
    case "travel-document-issued":
      return [wait(identifying, ["handover.proposal"])];
    case "handover-proposed": {
      const scheduled =
        view.handoverScheduledAt === null ? NaN : Date.parse(view.handoverScheduledAt);
      const due = scheduled - policy(origin).handoverConfirmationLeadMs;
      return [
        wait(origin, ["handover.confirmation"], {
          ...request,
          ...(Number.isFinite(due) ? { dueAt: new Date(due).toISOString() } : {}),
        }),
      ];
    }
    case "handover-confirmed":
      return [wait(identifying, ["handover.completed"])];
    case "handover-signed":
      return [
        wait(origin, ["handover.completed"], {
          ...request,
          dueAt: after(policy(origin).countersignatureMs),
        }),
      ];
    case "handover-completed":
    case "reintegration":
      return [wait(origin, ["reintegration.update", "case.closed"])];
    case "closed":
      return [];
  }
}
