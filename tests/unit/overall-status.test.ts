import { describe, expect, it } from "vitest";
import { overallStatus } from "../../src/http/message-view.ts";

describe("overallStatus", () => {
  it("reports the least advanced delivery of a message to several recipients", () => {
    expect(overallStatus(["delivered", "sent"])).toBe("sent");
    expect(overallStatus(["delivered", "queued", "failed"])).toBe("queued");
    expect(overallStatus(["delivered", "rejected"])).toBe("rejected");
    expect(overallStatus(["delivered", "delivered"])).toBe("delivered");
  });
});
