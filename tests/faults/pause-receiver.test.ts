/**
 * The receiving gateway paused (SIGSTOP) longer than its consumer's ack wait, then resumed
 * (SIGCONT): the broker hands what the paused process held out again, the sender retries
 * meanwhile, and the resumed process finishes what it was doing; nothing is logged twice.
 */
import { defineFaultCase, sleep } from "./harness.ts";

/** A short ack wait (LIAISON_NATS_ACK_WAIT_SECONDS), so that the pause can outlast it quickly. */
const ACK_WAIT_SECONDS = 5;
const PAUSE_MS = 8_000;

defineFaultCase({
  name: "pause-receiver",
  title:
    "the receiver paused beyond the ack wait, resumed: each message logged once, all delivered",
  receiver: { env: { LIAISON_NATS_ACK_WAIT_SECONDS: String(ACK_WAIT_SECONDS) } },
  async fault({ net }) {
    const [receiver] = net.receiver.replicas;
    if (receiver === undefined) throw new Error("no receiver");
    await receiver.pause();
    await sleep(PAUSE_MS);
    await receiver.resume();
    return { ack_wait_s: ACK_WAIT_SECONDS, paused_s: PAUSE_MS / 1000 };
  },
});
