/**
 * kill -9 of the receiving gateway mid-batch (while it holds messages the broker handed it and it
 * has not acknowledged), then a restart: what it had logged but not acked
 * comes again after the consumer's ack wait and is answered again, what it had not logged is
 * logged once, and every receipt reaches the sender.
 */
import { defineFaultCase, killWhileHolding } from "./harness.ts";

defineFaultCase({
  name: "kill-receiver",
  title: "kill -9 of the receiver mid-batch, restarted: each message logged once, all delivered",
  async fault({ net, nats }) {
    const [receiver] = net.receiver.replicas;
    if (receiver === undefined) throw new Error("no receiver");
    const held = await killWhileHolding(receiver, nats.url, 1);
    await receiver.start();
    return { held };
  },
});
