import { describe, expect, it } from "vitest";
import { backoffMs } from "../../src/delivery/backoff.ts";
import { overallStatus } from "../../src/http/app.ts";

describe("backoffMs", () => {
  it("doubles from the base, caps at the maximum, and jitters within ±25 %", () => {
    expect(backoffMs(1, 1000, 60_000, () => 0.5)).toBe(1000);
    expect(backoffMs(3, 1000, 60_000, () => 0.5)).toBe(4000);
    expect(backoffMs(20, 1000, 60_000, () => 0.5)).toBe(60_000);
    expect(backoffMs(3, 1000, 60_000, () => 0)).toBe(3000);
    expect(backoffMs(3, 1000, 60_000, () => 0.999999)).toBe(5000);
  });
});

describe("overallStatus", () => {
  it("reports the least advanced delivery of a message to several recipients", () => {
    expect(overallStatus(["delivered", "sent"])).toBe("sent");
    expect(overallStatus(["delivered", "queued", "failed"])).toBe("queued");
    expect(overallStatus(["delivered", "rejected"])).toBe("rejected");
    expect(overallStatus(["delivered", "delivered"])).toBe("delivered");
  });
});
