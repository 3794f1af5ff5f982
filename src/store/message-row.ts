/** The `messages` row of a signed message, for either direction of the log. */
import { type SQL, sql } from "drizzle-orm";
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

/** The columns `messageRowsFrom` selects, in its order. */
export const MESSAGE_COLUMNS = sql.raw(
  "id, direction, type, schema_version, from_party, to_parties, case_ref, in_reply_to, sent_at, expires_at, classification, kid, jws, digest",
);

/** Messages as one JSON document: an array of rows, in the group's order. */
export function messageDocuments(group: SignedMessage[]): string {
  return JSON.stringify(
    group.map(({ envelope: e, kid, jws, digest }) => ({
      id: e.id,
      type: e.type,
      v: e.schemaVersion,
      from: e.from,
      to: e.to,
      caseRef: e.caseRef,
      inReplyTo: e.inReplyTo ?? null,
      sentAt: e.sentAt,
      expiresAt: e.expiresAt,
      classification: e.handling.classification,
      kid,
      jws,
      digest,
    })),
  );
}

/**
 * `select …` of the message rows in `documents` (see messageDocuments), in their order, for an
 * `insert into messages (MESSAGE_COLUMNS)`: one statement and one parameter for any number.
 * `json_to_recordset` parses the document once (a `->>` per field would scan each element's
 * text again for every field).
 */
export function messageRowsFrom(direction: "inbound" | "outbound", documents: string): SQL {
  return sql`select id, ${direction}::text, type, v, "from", "to", "caseRef", "inReplyTo",
      "sentAt", "expiresAt", classification, kid, jws, digest
    from rows from (json_to_recordset(${documents}::json) as (id uuid, type text, v int,
        "from" text, "to" jsonb, "caseRef" text, "inReplyTo" uuid, "sentAt" timestamptz,
        "expiresAt" timestamptz, classification text, kid text, jws text, digest text))
      with ordinality as m
    order by ordinality`;
}
