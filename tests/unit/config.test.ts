import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/config.ts";
import { LiaisonError } from "../../src/protocol/errors.ts";

const BASE = { LIAISON_PARTY_ID: "CN-MPS-HEKOU", LIAISON_API_TOKEN: "x".repeat(32) };

function configError(env: Record<string, string>): LiaisonError {
  try {
    loadConfig(env, "/srv");
  } catch (err) {
    if (err instanceof LiaisonError) return err;
    throw err;
  }
  throw new Error("loadConfig accepted the environment");
}

describe("loadConfig", () => {
  it("fills defaults from the party id and resolves paths against the working directory", () => {
    const c = loadConfig(BASE, "/srv");
    expect(c).toMatchObject({
      partyId: "CN-MPS-HEKOU",
      country: "CN",
      inboundSubject: "liaison.inbox.CN-MPS-HEKOU",
      streamName: "LIAISON_CN_MPS_HEKOU",
      http: { host: "127.0.0.1", port: 8080 },
      databaseUrl: undefined,
      dataDir: "/srv/data",
      keysDir: "/srv/data/keys",
      clockSkewMs: 300_000,
    });
  });

  it("reads every setting it documents", () => {
    const c = loadConfig(
      {
        ...BASE,
        LIAISON_HTTP_PORT: "9000",
        DATABASE_URL: "postgres://u@h/db",
        LIAISON_CLOCK_SKEW_SECONDS: "60",
        LIAISON_RETRY_MAX_ATTEMPTS: "3",
        LIAISON_INBOX_MAX_DELIVERIES: "7",
        LIAISON_INBOX_RETRY_DELAY_MS: "500",
      },
      "/srv",
    );
    expect(c.inbox).toEqual({ maxDeliveries: 7, retryDelayMs: 500 });
    expect(loadConfig(BASE, "/srv").inbox).toEqual({ maxDeliveries: 5, retryDelayMs: 2000 });
    expect(c.http.port).toBe(9000);
    expect(c.databaseUrl).toBe("postgres://u@h/db");
    expect(c.clockSkewMs).toBe(60_000);
    expect(c.retry.maxAttempts).toBe(3);
  });

  it.each([
    [{ LIAISON_API_TOKEN: "x".repeat(32) }, "LIAISON_PARTY_ID"],
    [{ ...BASE, LIAISON_PARTY_ID: "hekou" }, "LIAISON_PARTY_ID"],
    [{ LIAISON_PARTY_ID: "CN-MPS-HEKOU" }, "LIAISON_API_TOKEN"],
    [{ ...BASE, LIAISON_API_TOKEN: "short" }, "LIAISON_API_TOKEN"],
    [{ ...BASE, LIAISON_HTTP_PORT: "eighty" }, "LIAISON_HTTP_PORT"],
    [{ ...BASE, LIAISON_HTTP_PORT: "70000" }, "LIAISON_HTTP_PORT"],
    [{ ...BASE, DATABASE_URL: "mysql://x" }, "DATABASE_URL"],
    [{ ...BASE, LIAISON_NATS_URL: "http://x" }, "LIAISON_NATS_URL"],
    [{ ...BASE, LIAISON_LOG_LEVEL: "loud" }, "LIAISON_LOG_LEVEL"],
    [{ ...BASE, LIAISON_INBOUND_SUBJECT: "liaison.>" }, "LIAISON_INBOUND_SUBJECT"],
    // The federation's mirrors alone may be named so (a forged request account finds no other).
    [{ ...BASE, LIAISON_STREAM: "MIRROR_LIAISON_CN_MPS_HEKOU" }, "LIAISON_STREAM"],
    [
      { ...BASE, LIAISON_RETRY_BASE_MS: "5000", LIAISON_RETRY_MAX_MS: "100" },
      "LIAISON_RETRY_MAX_MS",
    ],
    [{ ...BASE, LIAISON_HTTP_PROT: "8080" }, "LIAISON_HTTP_PROT"],
    // One delivery would quarantine every message that meets a passing database error.
    [{ ...BASE, LIAISON_INBOX_MAX_DELIVERIES: "1" }, "LIAISON_INBOX_MAX_DELIVERIES"],
    [{ ...BASE, LIAISON_COUNTRY: "VN" }, "LIAISON_COUNTRY"],
    [{ ...BASE, LIAISON_ADMIN_TOKEN: "short" }, "LIAISON_ADMIN_TOKEN"],
    [{ ...BASE, LIAISON_ADMIN_TOKEN: "x".repeat(32) }, "LIAISON_ADMIN_TOKEN"],
    [{ ...BASE, LIAISON_NATS_ACK_WAIT_SECONDS: "0" }, "LIAISON_NATS_ACK_WAIT_SECONDS"],
    [{ ...BASE, LIAISON_NATS_ACK_WAIT_SECONDS: "1.5" }, "LIAISON_NATS_ACK_WAIT_SECONDS"],
    [{ ...BASE, LIAISON_NATS_MAX_ACK_PENDING: "0" }, "LIAISON_NATS_MAX_ACK_PENDING"],
    [{ ...BASE, LIAISON_INBOX_BATCH_SIZE: "0" }, "LIAISON_INBOX_BATCH_SIZE"],
    [{ ...BASE, LIAISON_INBOX_BATCH_SIZE: "5000" }, "LIAISON_INBOX_BATCH_SIZE"],
    // A batch is made of unacked messages: more than the broker hands out could never fill.
    [
      { ...BASE, LIAISON_NATS_MAX_ACK_PENDING: "50", LIAISON_INBOX_BATCH_SIZE: "100" },
      "LIAISON_INBOX_BATCH_SIZE",
    ],
    [{ ...BASE, LIAISON_DISPATCHER_BATCH_SIZE: "0" }, "LIAISON_DISPATCHER_BATCH_SIZE"],
    [{ ...BASE, LIAISON_BROKER_UNREACHABLE_SECONDS: "-1" }, "LIAISON_BROKER_UNREACHABLE_SECONDS"],
    [{ ...BASE, LIAISON_SHUTDOWN_TIMEOUT_SECONDS: "0" }, "LIAISON_SHUTDOWN_TIMEOUT_SECONDS"],
    [{ ...BASE, LIAISON_SHUTDOWN_TIMEOUT_SECONDS: "soon" }, "LIAISON_SHUTDOWN_TIMEOUT_SECONDS"],
    [{ ...BASE, LIAISON_ALERT_CHECK_SECONDS: "0" }, "LIAISON_ALERT_CHECK_SECONDS"],
    [{ ...BASE, LIAISON_ALERT_CHECK_SECONDS: "3601" }, "LIAISON_ALERT_CHECK_SECONDS"],
    [{ ...BASE, LIAISON_ALERT_CHECK_SECONDS: "0.5" }, "LIAISON_ALERT_CHECK_SECONDS"],
  ])("stops with config_invalid naming the setting (%#)", (env, setting) => {
    const err = configError(env as Record<string, string>);
    expect(err.code).toBe("config_invalid");
    expect(err.message.startsWith(`${setting}:`)).toBe(true);
  });

  it("reads the broker, batch and shutdown settings, with their defaults", () => {
    const defaults = loadConfig(BASE, "/srv");
    expect(defaults.broker).toEqual({
      ackWaitMs: 60_000,
      maxAckPending: 1000,
      unreachableMs: 30_000,
    });
    expect(defaults.batchSizes).toEqual({ inbox: 100, dispatcher: 100 });
    expect(defaults.shutdownTimeoutMs).toBe(30_000);
    const c = loadConfig(
      {
        ...BASE,
        LIAISON_NATS_ACK_WAIT_SECONDS: "15",
        LIAISON_NATS_MAX_ACK_PENDING: "200",
        LIAISON_INBOX_BATCH_SIZE: "200",
        LIAISON_DISPATCHER_BATCH_SIZE: "25",
        LIAISON_BROKER_UNREACHABLE_SECONDS: "0",
        LIAISON_SHUTDOWN_TIMEOUT_SECONDS: "10",
      },
      "/srv",
    );
    expect(c.broker).toEqual({ ackWaitMs: 15_000, maxAckPending: 200, unreachableMs: 0 });
    expect(c.batchSizes).toEqual({ inbox: 200, dispatcher: 25 });
    expect(c.shutdownTimeoutMs).toBe(10_000);
  });

  it("reads how often the alert watch runs: 15 s by default", () => {
    expect(loadConfig(BASE, "/srv").alertCheckMs).toBe(15_000);
    expect(loadConfig({ ...BASE, LIAISON_ALERT_CHECK_SECONDS: "2" }, "/srv").alertCheckMs).toBe(
      2000,
    );
  });

  it("never echoes the token in its error", () => {
    const err = configError({ ...BASE, LIAISON_API_TOKEN: "secret-but-short" });
    expect(err.message).not.toContain("secret-but-short");
  });

  it("reads the case deadlines: defaults, settings in hours, and overrides per owing partner", () => {
    const H = 3_600_000;
    expect(loadConfig(BASE, "/srv").deadlines).toEqual({
      defaults: {
        verificationAnswerMs: 168 * H,
        repatriationAnswerMs: 336 * H,
        handoverConfirmationLeadMs: 24 * H,
        countersignatureMs: 24 * H,
      },
      byPartner: {},
    });
    const c = loadConfig(
      {
        ...BASE,
        LIAISON_DEADLINE_VERIFICATION_ANSWER_HOURS: "72",
        LIAISON_DEADLINES_BY_PARTNER: JSON.stringify({
          "VN-BGC-LAOCAI": { repatriationAnswerHours: 48, handoverConfirmationLeadHours: 0 },
        }),
        LIAISON_REMINDER_CHECK_SECONDS: "5",
      },
      "/srv",
    );
    expect(c.deadlines.defaults.verificationAnswerMs).toBe(72 * H);
    // An override replaces only what it names; the rest comes from the defaults as set.
    expect(c.deadlines.byPartner["VN-BGC-LAOCAI"]).toEqual({
      verificationAnswerMs: 72 * H,
      repatriationAnswerMs: 48 * H,
      handoverConfirmationLeadMs: 0,
      countersignatureMs: 24 * H,
    });
    expect(c.reminderCheckMs).toBe(5000);
  });

  it("refuses a deadline override that is not JSON, names no party, or has an unknown key or value", () => {
    for (const [value, words] of [
      ["{", "JSON object"],
      ["[]", "keyed by partner id"],
      [JSON.stringify({ nobody: {} }), "not a party id"],
      [JSON.stringify({ "VN-BGC-LAOCAI": { verificationAnswerDays: 3 } }), "unknown"],
      [JSON.stringify({ "VN-BGC-LAOCAI": { verificationAnswerHours: -1 } }), "whole number"],
      [JSON.stringify({ "VN-BGC-LAOCAI": { verificationAnswerHours: 1.5 } }), "whole number"],
      [JSON.stringify({ "VN-BGC-LAOCAI": { countersignatureHours: 0 } }), "from 1 to"],
    ] as const) {
      const err = configError({ ...BASE, LIAISON_DEADLINES_BY_PARTNER: value });
      expect(err.code).toBe("config_invalid");
      expect(err.message).toContain("LIAISON_DEADLINES_BY_PARTNER");
      expect(err.message).toContain(words);
    }
    expect(
      configError({ ...BASE, LIAISON_DEADLINE_COUNTERSIGNATURE_HOURS: "0" }).message,
    ).toContain("LIAISON_DEADLINE_COUNTERSIGNATURE_HOURS");
  });
});
