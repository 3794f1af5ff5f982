import { describe, expect, it } from "vitest";
import { WakeSignal } from "../../src/delivery/wake-signal.ts";

describe("WakeSignal", () => {
  it("ends a wait as soon as it is raised", async () => {
    const wake = new WakeSignal();
    const started = Date.now();
    const waiting = wake.wait(10_000);
    setTimeout(() => wake.raise(), 5);
    await waiting;
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("does not wait at all when it was raised since the last take", async () => {
    const wake = new WakeSignal();
    wake.raise();
    const started = Date.now();
    await wake.wait(10_000);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(wake.take()).toBe(true);
    expect(wake.take()).toBe(false);
  });

  it("waits out the poll interval when nobody raises it", async () => {
    const wake = new WakeSignal();
    const started = Date.now();
    await wake.wait(30);
    expect(Date.now() - started).toBeGreaterThanOrEqual(25);
  });
});
