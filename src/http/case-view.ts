/**
 * The case as the API shows it: the fold's result (state, who owes what by when, what this
 * gateway may send next) and the timeline of every message of the case with its outcome in the
 * fold, its deliveries and receipts. Never personal data: `hasPersonalData` only says a message
 * carries some (GET /v1/cases/{ref}/personal-data decrypts it).
 */
import type { CaseFile } from "../cases/case-book.ts";
import { CASE_STATES, CASE_TYPES } from "../cases/case-types.ts";
import { allowedNext } from "../cases/fold-case.ts";
import type { PartyId } from "../protocol/types.ts";
import type { CaseRow, DeliveryRow, ReceiptRow } from "../store/read-queries.ts";
import { DELIVERY_STATUSES } from "../store/schema.ts";
import { shared } from "./api-schemas.ts";
import type { JsonSchema } from "./route.ts";

const partyId = (description: string) => shared("common/v1", "/$defs/partyId", description);
const messageId = (description: string) => shared("common/v1", "/$defs/messageId", description);
const time = (description: string): JsonSchema => ({
  description,
  type: "string",
  format: "date-time",
});
const closed = (properties: Record<string, JsonSchema>, optional: string[] = []): JsonSchema => ({
  type: "object",
  additionalProperties: false,
  required: Object.keys(properties).filter((k) => !optional.includes(k)),
  properties,
});
const caseType = (description: string): JsonSchema => ({
  description,
  type: "string",
  enum: [...CASE_TYPES],
});

const AWAITING = closed(
  {
    party: partyId("the party that owes the step"),
    types: { type: "array", items: caseType("a type that takes the step") },
    requestId: messageId("the request the step answers"),
    since: time("when the wait began"),
    dueAt: time("the step is overdue after this instant"),
    overdue: { type: "boolean", description: "dueAt has passed" },
  },
  ["requestId", "dueAt"],
);

const SUMMARY_MEMBERS: Record<string, JsonSchema> = {
  caseRef: shared("common/v1", "/$defs/caseRef", "the case reference"),
  state: { type: "string", enum: [...CASE_STATES], description: "see docs/cases.md" },
  identifying: partyId("the party that identified the person and hands them over"),
  origin: partyId("the party of the person's presumed nationality, that receives them"),
  minor: { type: "boolean", description: "the person is a minor (as victim.identified said)" },
  openedAt: time("sentAt of victim.identified"),
  updatedAt: time("sentAt of the last applied step"),
  awaiting: { type: "array", items: AWAITING, description: "who owes which step, by when" },
  dueAt: {
    description: "the earliest deadline of an awaited step; null when none",
    anyOf: [time("deadline"), { type: "null" }],
  },
  overdue: { type: "boolean", description: "dueAt has passed" },
};

export const CASE_SUMMARY_SCHEMA = closed(SUMMARY_MEMBERS);

const TIMELINE_ITEM = closed(
  {
    id: messageId("the message id"),
    direction: { type: "string", enum: ["inbound", "outbound"] },
    type: caseType("the message type"),
    from: partyId("the sender"),
    to: { type: "array", items: partyId("a recipient") },
    sentAt: time("the envelope's sentAt"),
    inReplyTo: messageId("the request it answers"),
    outcome: {
      type: "string",
      enum: ["applied", "superseded", "refused"],
      description:
        "`applied`: the step moved the case; `superseded`: a message that crossed it on the wire took its place (see docs/cases.md), `code` says why; `refused`: one of our steps the other party refused with a negative receipt (`code`, its first error code): it never became part of the case",
    },
    code: { type: "string", description: "why it was superseded or refused (an error code)" },
    detail: { type: "string", description: "the rule, never content" },
    hasPersonalData: { type: "boolean", description: "it carries encrypted personal data" },
    deliveries: {
      description: "our messages: one delivery per recipient",
      type: "array",
      items: closed({
        recipient: partyId("the recipient"),
        status: { type: "string", enum: [...DELIVERY_STATUSES] },
        attempts: { type: "integer" },
        updatedAt: time("last change"),
      }),
    },
    receipts: {
      description: "receipts naming this message: the partner's (ours sent) or ours (received)",
      type: "array",
      items: closed(
        {
          id: messageId("the receipt id"),
          from: partyId("who signed it"),
          status: { type: "string", enum: ["accepted", "rejected"] },
          codes: { type: "array", items: { type: "string" } },
          at: time("when it was logged"),
        },
        [],
      ),
    },
  },
  ["inReplyTo", "code", "detail"],
);

export const CASE_DETAIL_SCHEMA = closed({
  ...SUMMARY_MEMBERS,
  allowedNext: {
    type: "array",
    items: caseType("a type this gateway may send in the case now"),
  },
  timeline: { type: "array", items: TIMELINE_ITEM, description: "in the fold's order" },
});

function awaitingView(file: CaseFile["view"]["awaiting"], now: Date) {
  return file.map((a) => ({
    ...a,
    overdue: a.dueAt !== undefined && Date.parse(a.dueAt) <= now.getTime(),
  }));
}

export function caseSummary(row: CaseRow, now: Date) {
  return {
    caseRef: row.caseRef,
    state: row.state,
    identifying: row.identifyingParty,
    origin: row.originParty,
    minor: row.minor,
    openedAt: row.openedAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    awaiting: awaitingView(row.awaiting as CaseFile["view"]["awaiting"], now),
    dueAt: row.dueAt?.toISOString() ?? null,
    overdue: row.dueAt !== null && row.dueAt.getTime() <= now.getTime(),
  };
}

export function caseDetail(
  file: CaseFile,
  timeline: { deliveries: DeliveryRow[]; receipts: ReceiptRow[] },
  self: PartyId,
  now: Date,
) {
  const { view } = file;
  const dueAt = view.awaiting
    .flatMap((a) => (a.dueAt === undefined ? [] : [a.dueAt]))
    .sort((a, b) => Date.parse(a) - Date.parse(b))[0];
  return {
    caseRef: view.caseRef,
    state: view.state,
    identifying: view.identifying,
    origin: view.origin,
    minor: view.minor,
    openedAt: new Date(view.openedAt).toISOString(),
    updatedAt: new Date(view.updatedAt).toISOString(),
    awaiting: awaitingView(view.awaiting, now),
    dueAt: dueAt === undefined ? null : new Date(dueAt).toISOString(),
    overdue: dueAt !== undefined && Date.parse(dueAt) <= now.getTime(),
    allowedNext: allowedNext(view, self),
    timeline: file.messages.map(({ message: m, direction, outcome, refusedByRecipient }) => ({
      id: m.id,
      direction,
      type: m.type,
      from: m.from,
      to: m.to,
      sentAt: new Date(m.sentAt).toISOString(),
      ...(m.inReplyTo === undefined ? {} : { inReplyTo: m.inReplyTo }),
      ...(refusedByRecipient
        ? {
            outcome: "refused",
            code:
              timeline.receipts.find(
                (r) =>
                  r.messageId === m.id && r.direction === "received" && r.status === "rejected",
              )?.errors[0]?.code ?? "rejected",
            detail: "refused by the other party's negative receipt",
          }
        : outcome.applied
          ? { outcome: "applied" }
          : { outcome: "superseded", code: outcome.code, detail: outcome.detail }),
      hasPersonalData: m.body.personalData !== undefined,
      deliveries:
        direction === "outbound"
          ? timeline.deliveries
              .filter((d) => d.messageId === m.id)
              .map((d) => ({
                recipient: d.recipient,
                status: d.status,
                attempts: d.attempts,
                updatedAt: d.updatedAt.toISOString(),
              }))
          : [],
      receipts: timeline.receipts
        .filter(
          (r) =>
            r.messageId === m.id &&
            (direction === "outbound"
              ? r.direction === "received" && r.fromParty !== self
              : r.direction === "issued" && r.toParty === m.from),
        )
        .map((r) => ({
          id: r.id,
          from: r.fromParty,
          status: r.status,
          codes: r.errors.map((e) => e.code),
          at: r.createdAt.toISOString(),
        })),
    })),
  };
}
