/**
 * The transport's inbox loop on a real nats-server, with a handler that fails on purpose for some
 * bytes: a poison message is handed over for quarantine after the configured number of
 * deliveries and terminated, the others are handled meanwhile, and the loop keeps pulling.
 */
import { randomBytes } from "node:crypto";
import { connect } from "nats";
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
  /** While set, "outage" messages fail as they would with the database down. */
  storeDown = false;
  private flakyFailed = new Set<string>();

  async handleBatch(batch: InboundItem[]): Promise<void> {
    for (const item of batch) {
      const text = dec.decode(item.data);
      if (text.startsWith("poison")) throw new Error("cannot process this on purpose");
      if (text.startsWith("outage") && this.storeDown) throw new StoreDown();
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

class StoreDown extends Error {
  constructor() {
    super("the database is unreachable, on purpose");
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
      ackWaitMs: 60_000,
      batchSize: 10,
      maxDeliveries: 3,
      retryDelayMs: 100,
      onError: () => {},
      transient: (err) => err instanceof StoreDown,
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

describe("a failure that says nothing about the message", () => {
  it("redelivers it however often it failed, and never quarantines it as unprocessable", async () => {
    recorder.storeDown = true;
    await publish("outage-1");
    // Time for far more deliveries than maxDeliveries (3), 100 ms apart.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    expect(recorder.handled).not.toContain("outage-1");
    recorder.storeDown = false;
    await waitFor("outage-1 handled once the store is back", async () =>
      recorder.handled.includes("outage-1") ? true : undefined,
    );
    expect(recorder.quarantined.map((q) => q.text)).not.toContain("outage-1");
  });
});

describe("the inbound consumer's settings", () => {
  const stream = `T_${tag}_SETTINGS`;
  const subject = `test.${tag}.inbox.settings`;
  const options = (ackWaitMs: number, maxAckPending: number) => ({
    stream,
    subject,
    durable: "gateway",
    maxAckPending,
    ackWaitMs,
    batchSize: 10,
    maxDeliveries: 3,
    retryDelayMs: 100,
    onError: () => {},
  });

  it("applies a changed ack wait and max ack pending to the existing durable consumer on the next start", async () => {
    const nc = await connect({ servers: inject("natsUrl") });
    const jsm = await nc.jetstreamManager();
    const first = await NatsTransport.connect(inject("natsUrl"), "settings-first");
    const second = await NatsTransport.connect(inject("natsUrl"), "settings-second");
    try {
      // A first start with the defaults creates the consumer with them.
      expect(await first.ensureInbox(options(60_000, 1000))).toBe(true);
      const before = await jsm.consumers.info(stream, "gateway");
      expect(before.config.ack_wait).toBe(60 * 1e9);
      expect(before.config.max_ack_pending).toBe(1000);
      // A replica is killed with a message in hand: nobody acks it.
      await first.publish(subject, enc.encode("held"), `${tag}-held`);
      const held = await (await nc.jetstream().consumers.get(stream, "gateway")).next({
        expires: 5000,
      });
      expect(held === null ? undefined : dec.decode(held.data)).toBe("held");

      // Restarted with new settings: the consumer that exists is updated, not left as it was.
      const recorder = new Recorder();
      const startedAt = Date.now();
      await second.consumeInbox(options(2000, 50), recorder);
      const after = await jsm.consumers.info(stream, "gateway");
      expect(after.config.ack_wait).toBe(2 * 1e9);
      expect(after.config.max_ack_pending).toBe(50);
      expect(after.config.durable_name).toBe("gateway");
      // What the killed replica held comes back after the new ack wait, not after 60 s.
      await waitFor(
        "the held message redelivered",
        async () => (recorder.handled.includes("held") ? true : undefined),
        20_000,
      );
      expect(Date.now() - startedAt).toBeLessThan(20_000);
    } finally {
      await first.close();
      await second.close();
      await nc.drain();
    }
  }, 40_000);
});
