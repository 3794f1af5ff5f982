/**
 * Two processes of the receiving party on one database and one durable consumer (`gateway`):
 * both take messages from the consumer, no message is accepted by both, and when one is
 * killed (kill -9, not restarted) the other carries on alone: what the dead one held comes to
 * the survivor after the ack wait, and everything is logged once and delivered.
 */
import type { GatewayProcess } from "./harness.ts";
import { defineFaultCase, killWhileHolding, waitUntil } from "./harness.ts";

let acceptedBySurvivorAtKill = 0;

function replicas(list: GatewayProcess[]): [GatewayProcess, GatewayProcess] {
  const [a, b] = list;
  if (a === undefined || b === undefined) throw new Error("two replicas expected");
  return [a, b];
}

defineFaultCase({
  name: "replica-killed",
  title: "one receiver replica of two killed: the other carries on, each message logged once",
  receiver: { replicas: 2 },
  async fault({ net, nats }) {
    const [victim, survivor] = replicas(net.receiver.replicas);
    // Both share the work before one dies.
    await waitUntil(
      "both replicas to accept messages",
      () => victim.acceptedIds().length > 0 && survivor.acceptedIds().length > 0,
      30_000,
    );
    // Killed while it holds messages (the survivor acks its own within milliseconds).
    const held = await killWhileHolding(victim, nats.url, 10);
    acceptedBySurvivorAtKill = survivor.acceptedIds().length;
    return {
      held,
      victim_accepted: victim.acceptedIds().length,
      survivor_accepted_before: acceptedBySurvivorAtKill,
    };
  },
  async check({ net }) {
    const [victim, survivor] = replicas(net.receiver.replicas);
    const byVictim = new Set(victim.acceptedIds());
    const bySurvivor = survivor.acceptedIds();
    const both = bySurvivor.filter((id) => byVictim.has(id)).length;
    const problems: string[] = [];
    if (both > 0) problems.push(`${both} messages accepted by both replicas`);
    if (bySurvivor.length <= acceptedBySurvivorAtKill)
      problems.push("the survivor accepted nothing after the kill");
    return {
      fields: { survivor_accepted: bySurvivor.length, accepted_by_both: both },
      problems,
    };
  },
});
