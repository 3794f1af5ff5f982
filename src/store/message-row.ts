/** The `messages` row of a signed message, for either direction of the log. */
import type { SignedMessage } from "../delivery/ports.ts";

export function messageRow(direction: "inbound" | "outbound", m: SignedMessage) {
  const e = m.envelope;
  return {
    id: e.id,
    direction,
    type: e.type,
    schemaVersion: e.schemaVersion,
    fromParty: e.from,
    toParties: e.to,
    caseRef: e.caseRef,
    inReplyTo: e.inReplyTo ?? null,
    sentAt: new Date(e.sentAt),
    expiresAt: new Date(e.expiresAt),
    classification: e.handling.classification,
    kid: m.kid,
    jws: m.jws,
    digest: m.digest,
  };
}
