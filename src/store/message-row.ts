/** The `messages` row of a signed message, for either direction of the log. */
import { type SQL, sql } from "drizzle-orm";
import type { SignedMessage } from "../delivery/ports.ts";
import { pgArray } from "./set-sql.ts";

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

/**
 * A batch of rows as two parameters: the short columns as one JSON document (an array of rows)
 * and the signed bytes (`jws`) as a PostgreSQL text array, both in the batch's order. The
 * statement zips them back together (`rows from (json_to_recordset(…), unnest(…))`). The JWS
 * stays out of the JSON because PostgreSQL's JSON parser reads every character of a string
 * value: a 100-row batch of 6.6 kB case notices took 10–12 ms of the server's time to parse as
 * JSON, against 2–3 ms to read as an array (docs/performance.md). The two length-match by
 * construction; were they not to, `rows from` pads the shorter with nulls, which the NOT NULL
 * columns refuse, rather than pairing a row with another's bytes.
 */
export interface RowDocuments {
  json: string;
  jws: string;
}

/** Messages as RowDocuments, in the group's order. */
export function messageDocuments(group: SignedMessage[]): RowDocuments {
  return {
    json: JSON.stringify(
      group.map(({ envelope: e, kid, digest, idempotency }) => ({
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
        digest,
        // Only on outbound messages submitted with an Idempotency-Key (absent otherwise).
        idempotencyKey: idempotency?.key,
        requestDigest: idempotency?.requestDigest,
      })),
    ),
    jws: pgArray(group.map((m) => m.jws)),
  };
}

/** `MESSAGE_COLUMNS` and an outbound message's Idempotency-Key columns, in `outboundRowsFrom`'s order. */
export const OUTBOUND_COLUMNS = sql.raw(
  "id, direction, type, schema_version, from_party, to_parties, case_ref, in_reply_to, sent_at, expires_at, classification, kid, jws, digest, idempotency_key, request_digest",
);

/**
 * `select …` of the message rows in `documents` (see messageDocuments), in their order, for an
 * `insert into messages (MESSAGE_COLUMNS)`: one statement and two parameters for any number.
 * `json_to_recordset` parses the document once (a `->>` per field would scan each element's
 * text again for every field).
 */
export function messageRowsFrom(direction: "inbound" | "outbound", documents: RowDocuments): SQL {
  return sql`select id, ${direction}::text, type, v, "from", "to", "caseRef", "inReplyTo",
      "sentAt", "expiresAt", classification, kid, jws, digest
    ${rowsFrom(documents)}`;
}

/**
 * `messageRowsFrom("outbound", …)` with each message's Idempotency-Key and request digest (null
 * without a key), for an `insert into messages (OUTBOUND_COLUMNS)`.
 */
export function outboundRowsFrom(documents: RowDocuments): SQL {
  return sql`select id, 'outbound'::text, type, v, "from", "to", "caseRef", "inReplyTo",
      "sentAt", "expiresAt", classification, kid, jws, digest, "idempotencyKey", "requestDigest"
    ${rowsFrom(documents)}`;
}

function rowsFrom(documents: RowDocuments): SQL {
  return sql`from rows from (
        json_to_recordset(${documents.json}::json) as (id uuid, type text, v int, "from" text,
          "to" jsonb, "caseRef" text, "inReplyTo" uuid, "sentAt" timestamptz,
          "expiresAt" timestamptz, classification text, kid text, digest text,
          "idempotencyKey" text, "requestDigest" text),
        unnest(${documents.jws}::text[]))
      with ordinality as m(id, type, v, "from", "to", "caseRef", "inReplyTo", "sentAt",
        "expiresAt", classification, kid, digest, "idempotencyKey", "requestDigest", jws,
        ordinality)
    order by ordinality`;
}
