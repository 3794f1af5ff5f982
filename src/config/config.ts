/**
 * The one place that reads the environment. `loadConfig(env)` validates every setting into a
 * typed object once, at start; a wrong or unknown LIAISON_* setting stops the start with a
 * LiaisonError("config_invalid") that names the setting (and never echoes secrets).
 */
import { resolve } from "node:path";
import type { DeadlinePolicy } from "../cases/case-types.ts";
import { LiaisonError } from "../protocol/errors.ts";
import { COUNTRY, LITERAL_SUBJECT, NATS_DOMAIN, PARTY_ID } from "../protocol/identifiers.ts";

export interface Config {
  partyId: string;
  partyName: string;
  country: string;
  partyKind: string;
  inboundSubject: string;
  /** The JetStream stream that holds this party's inbound subject. */
  streamName: string;
  http: { host: string; port: number };
  natsUrl: string;
  /**
   * The JetStream domain of our country's nats-server when the country is federated (each
   * country its own server, joined by leaf nodes): published in our party document, and the
   * domain partners source our outbound streams from. Undefined: we publish directly.
   */
  natsDomain: string | undefined;
  /** postgres:// URL; when absent the embedded PGlite store lives in `dataDir/db`. */
  databaseUrl: string | undefined;
  dataDir: string;
  keysDir: string;
  apiToken: string;
  /** Operator token for POST /v1/partners; undefined switches that route off. */
  adminToken: string | undefined;
  clockSkewMs: number;
  messageTtlMs: number;
  maxMessageBytes: number;
  retry: { baseMs: number; maxMs: number; maxAttempts: number };
  /** Inbound bytes whose processing fails: redelivered after retryDelayMs, quarantined after maxDeliveries. */
  inbox: { maxDeliveries: number; retryDelayMs: number };
  /**
   * The broker: the inbound durable consumer's ack wait (a message handed out and not acked
   * within it is redelivered, e.g. one held by a replica that was killed) and its most
   * unacknowledged messages at once; how long the connection may be down before /readyz says not
   * ready.
   */
  broker: { ackWaitMs: number; maxAckPending: number; unreachableMs: number };
  /** The most inbound messages handled together, and the most outbox rows a dispatcher pass claims. */
  batchSizes: { inbox: number; dispatcher: number };
  /** How long a stop (SIGTERM, SIGINT) may take before the process gives up and exits non-zero. */
  shutdownTimeoutMs: number;
  /** How long a party has for the case steps that wait on it: defaults, and per owing partner. */
  deadlines: { defaults: DeadlinePolicy; byPartner: Record<string, DeadlinePolicy> };
  /** How often overdue case steps are looked for (and reminders sent). */
  reminderCheckMs: number;
  /** How often the alert watch looks for failed deliveries and partners reachable again. */
  alertCheckMs: number;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
}

type Env = Record<string, string | undefined>;

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/** Every setting the gateway understands; anything else under LIAISON_ is a typo and stops the start. */
export const SETTINGS = {
  LIAISON_PARTY_ID: "this gateway's party id, e.g. CN-MPS-HEKOU (required)",
  LIAISON_PARTY_NAME: "human-readable name of the office (default: the party id)",
  LIAISON_COUNTRY: "ISO 3166-1 alpha-2 country code or INT (default: the party id's prefix)",
  LIAISON_PARTY_KIND: "kind of agency (default: border-police-liaison-office)",
  LIAISON_INBOUND_SUBJECT: "NATS subject partners publish to (default: liaison.inbox.<party id>)",
  LIAISON_STREAM: "JetStream stream name for the inbound subject (default: LIAISON_<party id>)",
  LIAISON_HTTP_HOST: "HTTP listen address (default: 127.0.0.1)",
  LIAISON_HTTP_PORT: "HTTP listen port (default: 8080)",
  LIAISON_NATS_URL: "NATS server URL (default: nats://127.0.0.1:4222)",
  LIAISON_NATS_DOMAIN:
    "JetStream domain of our country's nats-server when federated (docs/operations.md, Federation; default: none, publish directly)",
  DATABASE_URL: "postgres:// URL; unset = embedded PGlite in LIAISON_DATA_DIR/db",
  LIAISON_DATA_DIR: "directory for the embedded database and keys (default: ./data)",
  LIAISON_KEYS_DIR: "directory of private key files, mode 0700 (default: LIAISON_DATA_DIR/keys)",
  LIAISON_API_TOKEN: "bearer token local users present (required, at least 24 characters)",
  LIAISON_ADMIN_TOKEN: "operator bearer token for POST /v1/partners (unset: that route is off)",
  LIAISON_CLOCK_SKEW_SECONDS: "tolerated clock difference with partners (default: 300)",
  LIAISON_MESSAGE_TTL_SECONDS: "expiresAt = sentAt + this (default: 604800, 7 days)",
  LIAISON_MAX_MESSAGE_BYTES: "largest inbound message accepted (default: 262144)",
  LIAISON_RETRY_BASE_MS: "first retry delay without a receipt (default: 5000)",
  LIAISON_RETRY_MAX_MS: "longest retry delay (default: 600000)",
  LIAISON_RETRY_MAX_ATTEMPTS: "publishes without a receipt before a delivery fails (default: 12)",
  LIAISON_INBOX_MAX_DELIVERIES:
    "deliveries of an inbound message whose processing fails before it is quarantined as processing_failed (default: 5)",
  LIAISON_INBOX_RETRY_DELAY_MS:
    "wait before an inbound message whose processing failed is delivered again (default: 2000)",
  LIAISON_NATS_ACK_WAIT_SECONDS:
    "seconds the broker waits for the ack of an inbound message before it redelivers it (default: 60)",
  LIAISON_NATS_MAX_ACK_PENDING:
    "most inbound messages handed out and not yet acked at once (default: 1000)",
  LIAISON_INBOX_BATCH_SIZE: "most inbound messages handled together (default: 100)",
  LIAISON_DISPATCHER_BATCH_SIZE:
    "most deliveries, and most receipts, the dispatcher publishes in one pass (default: 100)",
  LIAISON_BROKER_UNREACHABLE_SECONDS:
    "seconds the NATS connection may be down before /readyz answers not ready (default: 30)",
  LIAISON_SHUTDOWN_TIMEOUT_SECONDS:
    "seconds a stop on SIGTERM or SIGINT may take before the process exits non-zero (default: 30)",
  LIAISON_DEADLINE_VERIFICATION_ANSWER_HOURS:
    "hours the origin party has to answer an identity verification request (default: 168)",
  LIAISON_DEADLINE_REPATRIATION_ANSWER_HOURS:
    "hours the origin party has to answer a repatriation request (default: 336)",
  LIAISON_DEADLINE_HANDOVER_CONFIRMATION_LEAD_HOURS:
    "a handover proposal must be confirmed this many hours before the proposed time (default: 24)",
  LIAISON_DEADLINE_COUNTERSIGNATURE_HOURS:
    "hours the receiving party has to countersign a handover record (default: 24)",
  LIAISON_DEADLINES_BY_PARTNER:
    "JSON object: per owing partner id, any of verificationAnswerHours, repatriationAnswerHours, handoverConfirmationLeadHours, countersignatureHours (default: {})",
  LIAISON_REMINDER_CHECK_SECONDS: "how often overdue case steps are looked for (default: 60)",
  LIAISON_ALERT_CHECK_SECONDS:
    "how often failed deliveries are looked for, to raise and resolve alerts (default: 15)",
  LIAISON_LOG_LEVEL: `one of ${LOG_LEVELS.join(", ")} (default: info)`,
} as const;

function fail(setting: string, why: string): never {
  throw new LiaisonError("config_invalid", `${setting}: ${why}`);
}

function integer(
  env: Env,
  name: keyof typeof SETTINGS,
  fallback: number,
  min: number,
  max: number,
): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!/^\d+$/.test(raw)) fail(name, "must be a whole number");
  const value = Number(raw);
  if (value < min || value > max) fail(name, `must be between ${min} and ${max}`);
  return value;
}

const HOUR = 3_600_000;
const DEADLINE_KEYS = {
  verificationAnswerHours: "verificationAnswerMs",
  repatriationAnswerHours: "repatriationAnswerMs",
  handoverConfirmationLeadHours: "handoverConfirmationLeadMs",
  countersignatureHours: "countersignatureMs",
} as const;

function loadDeadlines(env: Env): Config["deadlines"] {
  const max = 24 * 366;
  const defaults: DeadlinePolicy = {
    verificationAnswerMs:
      integer(env, "LIAISON_DEADLINE_VERIFICATION_ANSWER_HOURS", 168, 1, max) * HOUR,
    repatriationAnswerMs:
      integer(env, "LIAISON_DEADLINE_REPATRIATION_ANSWER_HOURS", 336, 1, max) * HOUR,
    handoverConfirmationLeadMs:
      integer(env, "LIAISON_DEADLINE_HANDOVER_CONFIRMATION_LEAD_HOURS", 24, 0, max) * HOUR,
    countersignatureMs: integer(env, "LIAISON_DEADLINE_COUNTERSIGNATURE_HOURS", 24, 1, max) * HOUR,
  };
  const name = "LIAISON_DEADLINES_BY_PARTNER";
  const raw = env[name];
  if (raw === undefined || raw === "") return { defaults, byPartner: {} };
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    fail(name, "must be a JSON object");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    fail(name, "must be a JSON object keyed by partner id");
  }
  const byPartner: Record<string, DeadlinePolicy> = {};
  for (const [partner, overrides] of Object.entries(parsed)) {
    if (!PARTY_ID.test(partner)) fail(name, `${partner} is not a party id`);
    if (typeof overrides !== "object" || overrides === null || Array.isArray(overrides)) {
      fail(name, `${partner}: must be an object`);
    }
    const policy = { ...defaults };
    for (const [key, value] of Object.entries(overrides)) {
      const field = DEADLINE_KEYS[key as keyof typeof DEADLINE_KEYS];
      if (field === undefined) {
        fail(name, `${partner}.${key}: unknown; use ${Object.keys(DEADLINE_KEYS).join(", ")}`);
      }
      // As the single settings: only the confirmation lead may be 0 (confirm by the handover).
      const min = field === "handoverConfirmationLeadMs" ? 0 : 1;
      if (!Number.isInteger(value) || (value as number) < min || (value as number) > max) {
        fail(name, `${partner}.${key}: must be a whole number of hours from ${min} to ${max}`);
      }
      policy[field] = (value as number) * HOUR;
    }
    byPartner[partner] = policy;
  }
  return { defaults, byPartner };
}

export function loadConfig(env: Env = process.env, cwd: string = process.cwd()): Config {
  for (const name of Object.keys(env)) {
    if (name.startsWith("LIAISON_") && !(name in SETTINGS) && !name.startsWith("LIAISON_TEST_")) {
      fail(name, "unknown setting");
    }
  }
  const partyId = env.LIAISON_PARTY_ID ?? fail("LIAISON_PARTY_ID", "is required");
  if (!PARTY_ID.test(partyId))
    fail("LIAISON_PARTY_ID", "must look like CN-MPS-HEKOU (country-agency-office)");
  const apiToken = env.LIAISON_API_TOKEN ?? fail("LIAISON_API_TOKEN", "is required");
  if (apiToken.length < 24) fail("LIAISON_API_TOKEN", "must be at least 24 characters");
  const adminToken = env.LIAISON_ADMIN_TOKEN === "" ? undefined : env.LIAISON_ADMIN_TOKEN;
  if (adminToken !== undefined && adminToken.length < 24)
    fail("LIAISON_ADMIN_TOKEN", "must be at least 24 characters");
  if (adminToken === apiToken) fail("LIAISON_ADMIN_TOKEN", "must differ from LIAISON_API_TOKEN");
  const databaseUrl = env.DATABASE_URL === "" ? undefined : env.DATABASE_URL;
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    fail("DATABASE_URL", "must be a postgres:// or postgresql:// URL");
  }
  const natsUrl = env.LIAISON_NATS_URL ?? "nats://127.0.0.1:4222";
  if (!/^(nats|tls|wss?):\/\/[^\s]+$/.test(natsUrl))
    fail("LIAISON_NATS_URL", "must be a nats:// URL");
  const natsDomain = env.LIAISON_NATS_DOMAIN === "" ? undefined : env.LIAISON_NATS_DOMAIN;
  if (natsDomain !== undefined && !NATS_DOMAIN.test(natsDomain)) {
    fail("LIAISON_NATS_DOMAIN", "must be letters, digits, _ or -, up to 32");
  }
  const logLevel = env.LIAISON_LOG_LEVEL ?? "info";
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    fail("LIAISON_LOG_LEVEL", `must be one of ${LOG_LEVELS.join(", ")}`);
  }
  const country = env.LIAISON_COUNTRY ?? partyId.split("-")[0] ?? "";
  if (!COUNTRY.test(country) || !partyId.startsWith(`${country}-`)) {
    fail("LIAISON_COUNTRY", "must be the party id's country prefix (ISO 3166-1 alpha-2 or INT)");
  }
  const inboundSubject = env.LIAISON_INBOUND_SUBJECT ?? `liaison.inbox.${partyId}`;
  if (!LITERAL_SUBJECT.test(inboundSubject)) {
    fail("LIAISON_INBOUND_SUBJECT", "must be a literal NATS subject (no wildcards)");
  }
  const streamName = env.LIAISON_STREAM ?? `LIAISON_${partyId.replaceAll("-", "_")}`;
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(streamName))
    fail("LIAISON_STREAM", "must be 1-64 letters, digits, _ or -");
  // A federation's mirrors are named MIRROR_<stream>, and no other stream on a country's server
  // may be (docs/operations.md, the doubled Nats-Request-Info header).
  if (streamName.toUpperCase().startsWith("MIRROR_"))
    fail("LIAISON_STREAM", "must not begin with MIRROR_ (reserved for a federation's mirrors)");
  const dataDir = resolve(cwd, env.LIAISON_DATA_DIR ?? "data");
  const retryBaseMs = integer(env, "LIAISON_RETRY_BASE_MS", 5000, 10, 3_600_000);
  const maxAckPending = integer(env, "LIAISON_NATS_MAX_ACK_PENDING", 1000, 1, 100_000);
  const inboxBatchSize = integer(env, "LIAISON_INBOX_BATCH_SIZE", 100, 1, 1000);
  // A batch is made of messages handed out and not acked yet: it could never fill.
  if (inboxBatchSize > maxAckPending) {
    fail("LIAISON_INBOX_BATCH_SIZE", "must not exceed LIAISON_NATS_MAX_ACK_PENDING");
  }
  const retryMaxMs = integer(env, "LIAISON_RETRY_MAX_MS", 600_000, 10, 86_400_000);
  if (retryMaxMs < retryBaseMs)
    fail("LIAISON_RETRY_MAX_MS", "must not be below LIAISON_RETRY_BASE_MS");
  return {
    partyId,
    partyName: env.LIAISON_PARTY_NAME ?? partyId,
    country,
    partyKind: env.LIAISON_PARTY_KIND ?? "border-police-liaison-office",
    inboundSubject,
    streamName,
    http: {
      host: env.LIAISON_HTTP_HOST ?? "127.0.0.1",
      port: integer(env, "LIAISON_HTTP_PORT", 8080, 0, 65535),
    },
    natsUrl,
    natsDomain,
    databaseUrl,
    dataDir,
    keysDir: resolve(cwd, env.LIAISON_KEYS_DIR ?? resolve(dataDir, "keys")),
    apiToken,
    adminToken,
    clockSkewMs: integer(env, "LIAISON_CLOCK_SKEW_SECONDS", 300, 0, 3600) * 1000,
    messageTtlMs: integer(env, "LIAISON_MESSAGE_TTL_SECONDS", 604_800, 60, 31_536_000) * 1000,
    maxMessageBytes: integer(env, "LIAISON_MAX_MESSAGE_BYTES", 262_144, 1024, 8_388_608),
    retry: {
      baseMs: retryBaseMs,
      maxMs: retryMaxMs,
      maxAttempts: integer(env, "LIAISON_RETRY_MAX_ATTEMPTS", 12, 1, 1000),
    },
    inbox: {
      maxDeliveries: integer(env, "LIAISON_INBOX_MAX_DELIVERIES", 5, 2, 1000),
      retryDelayMs: integer(env, "LIAISON_INBOX_RETRY_DELAY_MS", 2000, 10, 600_000),
    },
    broker: {
      ackWaitMs: integer(env, "LIAISON_NATS_ACK_WAIT_SECONDS", 60, 1, 3600) * 1000,
      maxAckPending,
      unreachableMs: integer(env, "LIAISON_BROKER_UNREACHABLE_SECONDS", 30, 0, 3600) * 1000,
    },
    batchSizes: {
      inbox: inboxBatchSize,
      dispatcher: integer(env, "LIAISON_DISPATCHER_BATCH_SIZE", 100, 1, 1000),
    },
    shutdownTimeoutMs: integer(env, "LIAISON_SHUTDOWN_TIMEOUT_SECONDS", 30, 1, 3600) * 1000,
    deadlines: loadDeadlines(env),
    reminderCheckMs: integer(env, "LIAISON_REMINDER_CHECK_SECONDS", 60, 1, 86_400) * 1000,
    alertCheckMs: integer(env, "LIAISON_ALERT_CHECK_SECONDS", 15, 1, 3600) * 1000,
    logLevel: logLevel as Config["logLevel"],
  };
}

/** Just where things are stored: what the offline CLI commands (keys, partners, db) need. */
export interface StorageConfig {
  dataDir: string;
  keysDir: string;
  databaseUrl: string | undefined;
}

export function loadStorageConfig(
  env: Env = process.env,
  cwd: string = process.cwd(),
): StorageConfig {
  const databaseUrl = env.DATABASE_URL === "" ? undefined : env.DATABASE_URL;
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    fail("DATABASE_URL", "must be a postgres:// or postgresql:// URL");
  }
  const dataDir = resolve(cwd, env.LIAISON_DATA_DIR ?? "data");
  return {
    dataDir,
    keysDir: resolve(cwd, env.LIAISON_KEYS_DIR ?? resolve(dataDir, "keys")),
    databaseUrl,
  };
}

export function databaseTarget(config: StorageConfig): { url: string } | { dataDir: string } {
  return config.databaseUrl !== undefined
    ? { url: config.databaseUrl }
    : { dataDir: resolve(config.dataDir, "db") };
}
