/**
 * The transport's inbox loop on a real nats-server, with a handler that fails on purpose for some
 * bytes: a poison message is handed over for quarantine after the configured number of
 * deliveries and terminated, the others are handled meanwhile, and the loop keeps pulling.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { InboundItem } from "../../src/delivery/ports.ts";
import { type InboundHandler, NatsTransport } from "../../src/transport/nats-transport.ts";
import { waitFor } from "../helpers/network.ts";

const tag = randomBytes(4).toString("hex");
const STREAM = `T_${tag}_TRANSPORT`;
const SUBJECT = `test.${tag}.inbox.transport`;
const dec = new TextDecoder();
const enc = new TextEncoder();

/** Handles every message but those starting with "poison" (always) or "flaky" (the first time). */
class Recorder implements InboundHandler {
  handled: string[] = [];
  quarantined: Array<{ text: string; deliveries: number }> = [];
  failQuarantine = false;
  private flakyFailed = new Set<string>();

  async handleBatch(batch: InboundItem[]): Promise<void> {
    for (const item of batch) {
      const text = dec.decode(item.data);
      if (text.startsWith("poison")) throw new Error("cannot process this on purpose");
      if (text.startsWith("flaky") && !this.flakyFailed.has(text)) {
        this.flakyFailed.add(text);
        throw new Error("fails once on purpose");
      }
    }
    this.handled.push(...batch.map((i) => dec.decode(i.data)));
  }

  async quarantineUnprocessable(item: InboundItem, deliveries: number): Promise<void> {
    if (this.failQuarantine) throw new Error("database down, on purpose");
    this.quarantined.push({ text: dec.decode(item.data), deliveries });
  }
}

let transport: NatsTransport;
const recorder = new Recorder();

beforeAll(async () => {
  transport = await NatsTransport.connect(inject("natsUrl"), "transport-test");
  await transport.consumeInbox(
    {
      stream: STREAM,
      subject: SUBJECT,
      durable: "gateway",
      maxAckPending: 100,
      batchSize: 10,
      maxDeliveries: 3,
      retryDelayMs: 100,
      onError: () => {},
    },
    recorder,
  );
});

afterAll(async () => {
  await transport?.close();
});

const publish = (text: string) => transport.publish(SUBJECT, enc.encode(text), `${tag}-${text}`);

describe("the inbox loop", () => {
  it("quarantines a poison message after the configured deliveries, and handles the rest meanwhile", async () => {
    await publish("first");
    await publish("poison-1");
    await publish("flaky-1");
    await publish("second");
    await waitFor("poison quarantined", async () =>
      recorder.quarantined.length > 0 ? true : undefined,
    );
    expect(recorder.quarantined).toEqual([{ text: "poison-1", deliveries: 3 }]);
    expect(recorder.handled).toEqual(expect.arrayContaining(["first", "flaky-1", "second"]));
    expect(recorder.handled).not.toContain("poison-1");
    // Terminated: the broker holds nothing more for the consumer, and never redelivers it.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(recorder.quarantined).toHaveLength(1);
    // And the loop still pulls.
    await publish("after");
    await waitFor("handled after", async () =>
      recorder.handled.includes("after") ? true : undefined,
    );
  });

  it("redelivers a poison message it cannot quarantine, instead of dropping it", async () => {
    recorder.failQuarantine = true;
    await publish("poison-2");
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(recorder.quarantined.map((q) => q.text)).not.toContain("poison-2");
    recorder.failQuarantine = false;
    await waitFor("poison-2 quarantined once the store is back", async () =>
      recorder.quarantined.some((q) => q.text === "poison-2") ? true : undefined,
    );
    const entry = recorder.quarantined.find((q) => q.text === "poison-2");
    expect(entry?.deliveries).toBeGreaterThan(3);
  });
});
