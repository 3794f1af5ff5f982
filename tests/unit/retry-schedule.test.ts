import { describe, expect, it } from "vitest";
import { planDelivery, retryDelayMs } from "../../src/delivery/retry-schedule.ts";

const policy = { baseMs: 1000, maxMs: 60_000, maxAttempts: 3 };
const now = new Date("2026-11-24T12:00:00.000Z");
const later = new Date(now.getTime() + 86_400_000);
const mid = () => 0.5;

describe("retry schedule", () => {
  it("doubles the delay with every attempt, from the base, up to the cap", () => {
    expect([0, 1, 2, 3, 6, 7].map((n) => retryDelayMs(n, policy, mid))).toEqual([
      1000, 2000, 4000, 8000, 60_000, 60_000,
    ]);
  });

  it("jitters each delay by at most a quarter either way", () => {
    expect(retryDelayMs(2, policy, () => 0)).toBe(3000);
    expect(retryDelayMs(2, policy, () => 1)).toBe(5000);
  });

  it("stays finite however many attempts were made", () => {
    const delay = retryDelayMs(10_000, { baseMs: 3_600_000, maxMs: 86_400_000 }, mid);
    expect(delay).toBe(86_400_000);
  });

  it("publishes a queued delivery again and again while its message lives, however many tries", () => {
    const plan = planDelivery(
      { messageId: "m", recipient: "r", status: "queued", attempts: 50, expiresAt: later },
      now,
      policy,
      mid,
    );
    expect(plan).toEqual({
      action: "publish",
      attempts: 51,
      nextAttemptAt: new Date(now.getTime() + 60_000),
    });
  });

  it("leases a sent delivery until its next attempt, counting the attempt", () => {
    const plan = planDelivery(
      { messageId: "m", recipient: "r", status: "sent", attempts: 1, expiresAt: later },
      now,
      policy,
      mid,
    );
    expect(plan).toEqual({
      action: "publish",
      attempts: 2,
      nextAttemptAt: new Date(now.getTime() + 2000),
    });
  });

  it("fails a sent delivery once the budget of accepted publishes is spent", () => {
    expect(
      planDelivery(
        { messageId: "m", recipient: "r", status: "sent", attempts: 3, expiresAt: later },
        now,
        policy,
      ),
    ).toEqual({ action: "fail", reason: "no receipt within the retry budget" });
  });

  it("fails any delivery whose message has expired", () => {
    for (const status of ["queued", "sent"] as const) {
      expect(
        planDelivery(
          { messageId: "m", recipient: "r", status, attempts: 0, expiresAt: now },
          now,
          policy,
        ),
      ).toEqual({ action: "fail", reason: "expired before it was delivered" });
    }
  });
});
