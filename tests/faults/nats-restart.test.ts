/**
 * The nats-server stopped mid-batch and started again on the same port and store directory:
 * both gateways reconnect, publishes refused meanwhile are retried, the streams and the durable
 * consumers are found again, and nothing is lost or doubled.
 */
import { defineFaultCase } from "./harness.ts";

defineFaultCase({
  name: "nats-restart",
  title: "nats-server restarted mid-batch: each message logged once, all delivered",
  async fault({ nats }) {
    const started = Date.now();
    await nats.restart(2000);
    return { down_s: ((Date.now() - started) / 1000).toFixed(1) };
  },
});
