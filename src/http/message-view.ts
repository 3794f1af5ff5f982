/**
 * How the log's rows are shown by the API (schemas `MessageSummary` and `MessageDetail` in
 * api-schemas.ts). The member order is part of the answer's bytes: keep it.
 */
import type { MessageDetail, MessageRow } from "../store/read-queries.ts";

export function messageSummary(m: MessageRow) {
  return {
    id: m.id,
    direction: m.direction,
    type: m.type,
    schemaVersion: m.schemaVersion,
    from: m.fromParty,
    to: m.toParties,
    caseRef: m.caseRef,
    inReplyTo: m.inReplyTo,
    sentAt: m.sentAt.toISOString(),
    expiresAt: m.expiresAt.toISOString(),
    classification: m.classification,
    loggedAt: m.loggedAt.toISOString(),
  };
}

/** One status for a message to several recipients: the least advanced delivery decides. */
export function overallStatus(statuses: string[]): string {
  for (const s of ["queued", "sent", "failed", "rejected"]) if (statuses.includes(s)) return s;
  return statuses.length === 0 ? "queued" : "delivered";
}

export function messageDetail(found: MessageDetail) {
  const { message } = found;
  return {
    ...messageSummary(message),
    status:
      message.direction === "outbound"
        ? overallStatus(found.deliveries.map((d) => d.status))
        : "accepted",
    deliveries: found.deliveries.map((d) => ({
      recipient: d.recipient,
      status: d.status,
      attempts: d.attempts,
      lastError: d.lastError,
      receiptId: d.receiptId,
      updatedAt: d.updatedAt.toISOString(),
    })),
    receipts: found.receipts.map((r) => ({
      id: r.id,
      from: r.fromParty,
      to: r.toParty,
      status: r.status,
      errors: r.errors,
      jws: r.jws,
      digest: r.digest,
      messageDigest: r.messageDigest,
    })),
    jws: message.jws,
    digest: message.digest,
  };
}
