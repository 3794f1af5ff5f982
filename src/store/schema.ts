/**
 * The drizzle schema: one definition for PostgreSQL (postgres.js) and PGlite. Migrations under
 * drizzle/ are generated from this file by drizzle-kit (`npm run db:generate`) and committed.
 *
 * Messages and receipts keep the exact JWS text and the SHA-256 of its bytes: that is the
 * evidence. Quarantine keeps the exact inbound bytes, whatever they were.
 */
import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  customType,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from "drizzle-orm/pg-core";
import type { WireErrorCode } from "../protocol/errors.ts";
import type { ReceiptError } from "../protocol/types.ts";

const bytea = customType<{ data: Uint8Array; driverData: Uint8Array }>({
  dataType: () => "bytea",
  toDriver: (value) => Buffer.from(value.buffer, value.byteOffset, value.byteLength),
  fromDriver: (value) => new Uint8Array(value),
});

const tstz = (name: string) => timestamp(name, { withTimezone: true, mode: "date" });

export const parties = pgTable("parties", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  country: text("country").notNull(),
  kind: text("kind").notNull(),
  inboundSubject: text("inbound_subject").notNull(),
  /**
   * The JetStream domain of the party's own nats-server when its country runs one (federation):
   * messages to it are offered in our outbound stream for it, and our inbound stream sources its
   * outbound stream for us. Null: it receives by direct publish to its inbound subject.
   */
  natsDomain: text("nats_domain"),
  /**
   * The party accepts batch receipts (`party.receiptBatches` in its party document,
   * docs/protocol.md "Batch receipts"): the accepted messages of one inbound batch from it are
   * answered by one signed batch receipt instead of one receipt each.
   */
  receiptBatches: boolean("receipt_batches").notNull().default(false),
  createdAt: tstz("created_at").notNull().defaultNow(),
  updatedAt: tstz("updated_at").notNull().defaultNow(),
});

export const partyKeys = pgTable(
  "party_keys",
  {
    kid: text("kid").primaryKey(),
    partyId: text("party_id")
      .notNull()
      .references(() => parties.id),
    alg: text("alg").notNull(),
    /** "sig": verifies JWS (messages, receipts); "enc": X25519 key for personal data (JWE). */
    use: text("use", { enum: ["sig", "enc"] })
      .notNull()
      .default("sig"),
    publicJwk: jsonb("public_jwk").$type<Record<string, unknown>>().notNull(),
    validFrom: tstz("valid_from").notNull(),
    validUntil: tstz("valid_until"),
    revokedAt: tstz("revoked_at"),
    createdAt: tstz("created_at").notNull().defaultNow(),
  },
  (t) => [index("party_keys_party_idx").on(t.partyId)],
);

/** The unique index that makes one message per Idempotency-Key (see `messages`). */
export const IDEMPOTENCY_KEY_INDEX = "messages_outbound_idempotency_key_uq";

export const messages = pgTable(
  "messages",
  {
    seq: bigint("seq", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    id: uuid("id").notNull(),
    direction: text("direction", { enum: ["inbound", "outbound"] }).notNull(),
    type: text("type").notNull(),
    schemaVersion: integer("schema_version").notNull(),
    fromParty: text("from_party").notNull(),
    toParties: jsonb("to_parties").$type<string[]>().notNull(),
    caseRef: text("case_ref").notNull(),
    inReplyTo: uuid("in_reply_to"),
    sentAt: tstz("sent_at").notNull(),
    expiresAt: tstz("expires_at").notNull(),
    classification: text("classification").notNull(),
    kid: text("kid").notNull(),
    jws: text("jws").notNull(),
    digest: text("digest").notNull(),
    loggedAt: tstz("logged_at").notNull().defaultNow(),
    /**
     * Outbound rows submitted with an `Idempotency-Key` (POST /v1/messages): the key as the
     * client sent it, and the SHA-256 (hex) of the request body's bytes it came with. A request
     * with the same key is answered from this row (the same bytes) or refused (other bytes).
     * Null for every other row.
     */
    idempotencyKey: text("idempotency_key"),
    requestDigest: text("request_digest"),
  },
  (t) => [
    // Ids are unique per sender: one partner cannot block another's message by reusing its id.
    uniqueIndex("messages_direction_from_id_uq").on(t.direction, t.fromParty, t.id),
    // One message per Idempotency-Key: of concurrent submits with one key, the first to commit
    // makes the message, the others fail here and answer with it (src/store/outbound-log.ts).
    uniqueIndex(IDEMPOTENCY_KEY_INDEX)
      .on(t.idempotencyKey)
      .where(sql`direction = 'outbound' and idempotency_key is not null`),
    index("messages_id_idx").on(t.id),
    index("messages_case_idx").on(t.caseRef),
  ],
);

export const DELIVERY_STATUSES = ["queued", "sent", "delivered", "rejected", "failed"] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

/** One row per outbound message and recipient; also the outbox the dispatcher drains. */
export const deliveries = pgTable(
  "deliveries",
  {
    messageId: uuid("message_id").notNull(),
    recipient: text("recipient")
      .notNull()
      .references(() => parties.id),
    status: text("status", { enum: DELIVERY_STATUSES }).notNull().default("queued"),
    attempts: integer("attempts").notNull().default(0),
    nextAttemptAt: tstz("next_attempt_at").notNull().defaultNow(),
    lastError: text("last_error"),
    receiptId: uuid("receipt_id"),
    updatedAt: tstz("updated_at").notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.messageId, t.recipient] }),
    index("deliveries_due_idx").on(t.nextAttemptAt).where(sql`status in ('queued', 'sent')`),
    // What the alert watch reads each pass (src/store/alert-log.ts); failed rows are few.
    index("deliveries_failed_idx").on(t.updatedAt).where(sql`status = 'failed'`),
  ],
);

/**
 * Receipts both ways. `issued` rows are ours, answering inbound messages, and double as the
 * receipt outbox (`published_at` null until the broker acknowledged them); `received` rows are
 * partners' receipts for our messages.
 *
 * A batch receipt (`receipt_batches`) has one row here per message it answers, an entry row:
 * `batch_id` names the batch, `jws` and `digest` are null (the batch's signed bytes are kept
 * once, in its own row), `status` is accepted and `errors` empty; its `id` is derived from the
 * batch's id and the message id (the first 128 bits of their SHA-256, as a uuid), since the wire
 * gives an entry no id of its own. Entry rows are never published themselves: the batch is;
 * issued ones are written with `published_at` set, outside every claim of single receipts.
 */
export const receipts = pgTable(
  "receipts",
  {
    seq: bigint("seq", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    id: uuid("id").notNull(),
    direction: text("direction", { enum: ["issued", "received"] }).notNull(),
    messageId: uuid("message_id"),
    messageDigest: text("message_digest").notNull(),
    fromParty: text("from_party").notNull(),
    toParty: text("to_party").notNull(),
    status: text("status", { enum: ["accepted", "rejected"] }).notNull(),
    errors: jsonb("errors").$type<ReceiptError[]>().notNull(),
    /** Null for an entry row of a batch receipt (`batch_id`): the batch keeps the bytes. */
    jws: text("jws"),
    digest: text("digest"),
    createdAt: tstz("created_at").notNull().defaultNow(),
    publishedAt: tstz("published_at"),
    publishAttempts: integer("publish_attempts").notNull().default(0),
    nextPublishAt: tstz("next_publish_at").notNull().defaultNow(),
    /**
     * An issued receipt whose signing key was revoked (or expired) before it was published
     * again: the id of the receipt that replaced it, signed with a key valid then. Kept as
     * evidence of what we signed; never published again.
     */
    supersededBy: uuid("superseded_by"),
    /** An entry row: the id of the batch receipt (`receipt_batches`, same direction) it is in. */
    batchId: uuid("batch_id"),
  },
  (t) => [
    uniqueIndex("receipts_direction_id_uq").on(t.direction, t.id),
    index("receipts_message_idx").on(t.messageId),
    index("receipts_unpublished_idx")
      .on(t.nextPublishAt)
      .where(sql`direction = 'issued' and published_at is null and batch_id is null`),
  ],
);

/**
 * Batch receipts both ways (docs/protocol.md "Batch receipts"), each signed once and kept once:
 * the JWS (at most 65,536 bytes) of up to 300 accepted answers. `issued` rows are ours and are
 * the batch receipt outbox (`published_at` null until the broker acknowledged them), leased and
 * renewed like receipts; `received` rows are partners'. The messages each one answers are its
 * entry rows in `receipts`.
 */
export const receiptBatches = pgTable(
  "receipt_batches",
  {
    seq: bigint("seq", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    id: uuid("id").notNull(),
    direction: text("direction", { enum: ["issued", "received"] }).notNull(),
    fromParty: text("from_party").notNull(),
    toParty: text("to_party").notNull(),
    /** How many messages it answers (its entry rows). */
    entries: integer("entries").notNull(),
    jws: text("jws").notNull(),
    digest: text("digest").notNull(),
    createdAt: tstz("created_at").notNull().defaultNow(),
    publishedAt: tstz("published_at"),
    publishAttempts: integer("publish_attempts").notNull().default(0),
    nextPublishAt: tstz("next_publish_at").notNull().defaultNow(),
    /**
     * An issued batch whose signing key was revoked (or expired) before it was published again:
     * the id of the batch that replaced it (the same entries, signed again). Kept as evidence;
     * never published again.
     */
    supersededBy: uuid("superseded_by"),
  },
  (t) => [
    uniqueIndex("receipt_batches_direction_id_uq").on(t.direction, t.id),
    index("receipt_batches_unpublished_idx")
      .on(t.nextPublishAt)
      .where(sql`direction = 'issued' and published_at is null`),
  ],
);

/** Every inbound byte that was not accepted, exactly as received, with the reason. */
export const quarantine = pgTable(
  "quarantine",
  {
    seq: bigint("seq", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    receivedAt: tstz("received_at").notNull().defaultNow(),
    subject: text("subject").notNull(),
    raw: bytea("raw").notNull(),
    digest: text("digest").notNull(),
    code: text("code").$type<WireErrorCode>().notNull(),
    detail: text("detail").notNull(),
    issues: jsonb("issues").$type<Array<{ path: string; message: string }>>().notNull(),
    kind: text("kind").notNull(),
    claimedFrom: text("claimed_from"),
    messageId: text("message_id"),
    receiptId: uuid("receipt_id"),
  },
  // The same bytes are quarantined (and answered) once, however often they are redelivered.
  (t) => [
    index("quarantine_code_idx").on(t.code),
    uniqueIndex("quarantine_digest_uq").on(t.digest),
  ],
);

/**
 * Each victim's case as the fold over its messages last computed it (src/cases/fold-case.ts):
 * a summary kept in step with the message log in the same transaction, for listing and
 * filtering. The messages are the truth; this row can always be recomputed from them.
 */
export const cases = pgTable(
  "cases",
  {
    caseRef: text("case_ref").primaryKey(),
    state: text("state").notNull(),
    identifyingParty: text("identifying_party").notNull(),
    originParty: text("origin_party").notNull(),
    minor: boolean("minor").notNull(),
    openedAt: tstz("opened_at").notNull(),
    /** sentAt of the last applied step. */
    updatedAt: tstz("updated_at").notNull(),
    awaiting: jsonb("awaiting").$type<unknown[]>().notNull(),
    /** The earliest deadline of an awaited step, and the party that owes it. */
    dueAt: tstz("due_at"),
    owingParty: text("owing_party"),
    /** The deadline the last reminder was sent for: one reminder per deadline. */
    remindedDueAt: tstz("reminded_due_at"),
    messageCount: integer("message_count").notNull(),
    changedAt: tstz("changed_at").notNull().defaultNow(),
  },
  (t) => [
    index("cases_state_idx").on(t.state),
    index("cases_due_idx").on(t.dueAt).where(sql`due_at is not null`),
  ],
);

export const ALERT_KINDS = ["delivery_failed"] as const;
export type AlertKind = (typeof ALERT_KINDS)[number];

/**
 * Alerts an operator must see (src/delivery/alert-watch.ts): `delivery_failed` while deliveries
 * to a partner fail (retry budget spent or expired) and none reached it since. One row per
 * episode: `since` is the first failure, `last_failure_at` the latest, `count` the failed
 * deliveries; `resolved_at` is when a later delivery to the partner closed with its receipt.
 * At most one active (unresolved) alert per kind and partner.
 */
export const alerts = pgTable(
  "alerts",
  {
    id: bigint("id", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    kind: text("kind", { enum: ALERT_KINDS }).notNull(),
    partner: text("partner").notNull(),
    since: tstz("since").notNull(),
    lastFailureAt: tstz("last_failure_at").notNull(),
    count: integer("count").notNull(),
    resolvedAt: tstz("resolved_at"),
  },
  (t) => [
    uniqueIndex("alerts_active_uq").on(t.kind, t.partner).where(sql`resolved_at is null`),
    index("alerts_partner_idx").on(t.kind, t.partner, t.id),
  ],
);

/**
 * How far the alert watch has read the deliveries, per alert kind: one row each, locked by the
 * pass that reads and moves it, so that replicas sharing the database take turns.
 */
export const alertWatch = pgTable("alert_watch", {
  kind: text("kind", { enum: ALERT_KINDS }).primaryKey(),
  /** Deliveries that failed after this (less an overlap) are read by the next pass. */
  watermark: tstz("watermark"),
});
