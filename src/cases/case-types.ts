/**
 * The values of a victim's case: the message types that are steps of the journey, the states a
 * case passes through, what the fold reads of each message, and what it computes. See
 * docs/cases.md for the state diagram; src/cases/fold-case.ts for the rules.
 */
import type { PartyId } from "../protocol/types.ts";

/** The message types that move a case, in journey order. */
export const STEP_TYPES = [
  "victim.identified",
  "identity.verification.request",
  "identity.verification.response",
  "repatriation.request",
  "repatriation.response",
  "travel-document.issued",
  "handover.proposal",
  "handover.confirmation",
  "handover.completed",
  "reintegration.update",
  "case.closed",
] as const;
export type StepType = (typeof STEP_TYPES)[number];

/** Signed reminder that a step is overdue: belongs to a case, never moves it. */
export const REMINDER_TYPE = "case.reminder";

/** Every type the case workflow reads: the steps and the reminder. */
export const CASE_TYPES: readonly string[] = [...STEP_TYPES, REMINDER_TYPE];

export function isCaseType(type: string): boolean {
  return CASE_TYPES.includes(type);
}

export const CASE_STATES = [
  "identified",
  "verification-requested",
  "more-information-needed",
  "identity-confirmed",
  "identity-not-confirmed",
  "repatriation-requested",
  "repatriation-accepted",
  "repatriation-declined",
  "travel-document-issued",
  "handover-proposed",
  "handover-confirmed",
  "handover-signed",
  "handover-completed",
  "reintegration",
  "closed",
] as const;
export type CaseState = (typeof CASE_STATES)[number];

/** The two sides of a case. */
export type CaseRole = "identifying" | "origin";

/**
 * What the fold reads of one message of the case. `recordSigners` is the verified list of the
 * parties that signed a handover.completed record, in signature order (the caller verified the
 * signatures: at submit it made them, on the wire verify-inbound checked them, from the log the
 * kids map to the parties that were verified when the message was logged).
 */
export interface CaseMessage {
  id: string;
  type: string;
  from: PartyId;
  to: PartyId[];
  caseRef: string;
  sentAt: string;
  inReplyTo?: string | undefined;
  body: Record<string, unknown>;
  recordSigners?: PartyId[] | undefined;
}

/** How long a party has for the steps that wait on it; may differ per owing partner. */
export interface DeadlinePolicy {
  /** Identity verification answer: after the request was sent. */
  verificationAnswerMs: number;
  /** Repatriation answer: after the request was sent. */
  repatriationAnswerMs: number;
  /** Handover confirmation: this long before the proposed handover time. */
  handoverConfirmationLeadMs: number;
  /** Countersignature of the handover record: after the signed record was sent. */
  countersignatureMs: number;
}

/** Who owes the next step, which types it may send, and by when (when a deadline applies). */
export interface Awaiting {
  party: PartyId;
  types: StepType[];
  /** The request the step answers, when it is a reply. */
  requestId?: string;
  /** When the wait began: the sentAt of the message that made it. */
  since: string;
  /** The step is overdue after this instant (ISO 8601, UTC); absent when no deadline applies. */
  dueAt?: string;
}

/** A message of the case that the fold did not apply, and why. */
/** The codes a case refuses a message with: once refused, a message stays refused. */
export const CASE_REFUSAL_CODES = [
  "transition_not_allowed",
  "reply_unmatched",
  "handover_record_invalid",
  "handover_record_incomplete",
] as const;

export interface SkippedMessage {
  id: string;
  from: PartyId;
  code:
    | "transition_not_allowed"
    | "reply_unmatched"
    | "handover_record_invalid"
    | "handover_record_incomplete";
  detail: string;
}

export interface CaseView {
  caseRef: string;
  state: CaseState;
  /** The party that found the person (sent victim.identified) and hands them over. */
  identifying: PartyId;
  /** The party of the person's presumed nationality, that receives them. */
  origin: PartyId;
  minor: boolean;
  openedAt: string;
  /** sentAt of the last applied step. */
  updatedAt: string;
  /** Null once the case is closed. */
  awaiting: Awaiting[];
  /** Ids of the applied messages, in fold order (steps and reminders). */
  applied: string[];
  skipped: SkippedMessage[];
  /** The open request a reply must name (verification, repatriation, proposal, signed record). */
  openRequestId: string | null;
  /** The confirmed or proposed handover time, once a proposal is open or confirmed. */
  handoverScheduledAt: string | null;
  /** The border crossing of that proposal: the handover record must name it. */
  handoverBorderCrossingId: string | null;
  /** The first (singly signed) handover record, once sent: what the countersignature covers. */
  signedRecord: { messageId: string; payload: string; firstSignature: string } | null;
}
