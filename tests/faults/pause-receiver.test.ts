/**
 * The receiving gateway paused (SIGSTOP) longer than its consumer's ack wait, then resumed
 * (SIGCONT): the broker hands what the paused process held out again, the sender retries
 * meanwhile, and the resumed process finishes what it was doing; nothing is logged twice.
 *
 * The fault must hit: the process is paused while it holds messages delivered and not
 * acknowledged (`held`, the broker's count once it is frozen), and the broker must have handed
 * messages out again (`redelivered`, from the consumer's sequences) — the case fails otherwise.
 */
import { consumerInfo, defineFaultCase, pauseWhileHolding, sleep } from "./harness.ts";

/** A short ack wait (LIAISON_NATS_ACK_WAIT_SECONDS), so that the pause can outlast it quickly. */
const ACK_WAIT_SECONDS = 5;
/** From the moment the frozen process is seen holding messages: they were all delivered before. */
const PAUSE_MS = 8_000;
const MIN_HELD = 1;

let held = 0;
let redeliveredBefore = 0;

defineFaultCase({
  name: "pause-receiver",
  title:
    "the receiver paused beyond the ack wait, resumed: each message logged once, all delivered",
  receiver: { env: { LIAISON_NATS_ACK_WAIT_SECONDS: String(ACK_WAIT_SECONDS) } },
  async fault({ net, nats }) {
    const [receiver] = net.receiver.replicas;
    if (receiver === undefined) throw new Error("no receiver");
    redeliveredBefore = (await consumerInfo(nats.url, receiver)).redelivered;
    held = await pauseWhileHolding(receiver, nats.url, MIN_HELD);
    await sleep(PAUSE_MS);
    await receiver.resume();
    return {
      held,
      ack_wait_s: ACK_WAIT_SECONDS,
      paused_s: PAUSE_MS / 1000,
      redelivered_before: redeliveredBefore,
    };
  },
  async check({ net, nats }) {
    const [receiver] = net.receiver.replicas;
    if (receiver === undefined) throw new Error("no receiver");
    const redelivered = (await consumerInfo(nats.url, receiver)).redelivered - redeliveredBefore;
    const problems: string[] = [];
    if (held < MIN_HELD)
      problems.push(`the pause caught the receiver holding ${held} messages (< ${MIN_HELD})`);
    if (redelivered <= 0)
      problems.push("the broker handed nothing out again: the pause did not outlast the ack wait");
    return { fields: { redelivered }, problems };
  },
});
