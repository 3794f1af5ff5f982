/**
 * Two processes of the sending party on one database and one durable consumer (its receipts),
 * the load spread over both; one is killed (kill -9, not restarted) while it has work open: its
 * submits committed and not yet published or published and not yet answered by a receipt
 * (deliveries `queued` or `sent`, leased to it by the prompt path), and submits it had not
 * answered. The survivor carries on alone: the load's submits to the dead one are refused and
 * sent again to the survivor (the same Idempotency-Key: one the dead one had committed is
 * answered with the message it made), the dead one's leased deliveries are published by the survivor when their lease ends
 * (or closed by their receipt), the receipts it held come to the survivor after the ack wait,
 * and everything is logged once at the receiver and delivered.
 */
import type { GatewayProcess, Network } from "./harness.ts";
import { consumerInfo, defineFaultCase, sleep, waitUntil } from "./harness.ts";

/**
 * The sender's consumer ack wait (LIAISON_NATS_ACK_WAIT_SECONDS): receipts the dead replica held
 * come to the survivor after it; the default 60 s would make most of the case's run time.
 */
const ACK_WAIT_SECONDS = 10;
/**
 * Looks (the victim paused each time) for a moment it has deliveries committed and not yet
 * published (`queued`, leased to it); after this many, one with any open delivery will do.
 */
const ATTEMPTS_FOR_QUEUED = 30;
const ATTEMPTS = 60;

interface AtKill {
  /** Ids of the victim's open deliveries, by status. */
  queued: string[];
  sent: string[];
  inFlight: number;
  survivorAccepted: number;
}
let atKill: AtKill = { queued: [], sent: [], inFlight: 0, survivorAccepted: 0 };

function replicas(list: GatewayProcess[]): [GatewayProcess, GatewayProcess] {
  const [a, b] = list;
  if (a === undefined || b === undefined) throw new Error("two replicas expected");
  return [a, b];
}

/** Keys sent to `a` and never to `b`. */
function onlyTo(keys: Map<string, Set<string>>, a: string, b: string): string[] {
  const other = keys.get(b) ?? new Set<string>();
  return [...(keys.get(a) ?? [])].filter((k) => !other.has(k));
}

/** The open deliveries (queued, sent) of the messages made under these Idempotency-Keys. */
async function openDeliveries(
  net: Network,
  keys: string[],
): Promise<{ queued: string[]; sent: string[] }> {
  const rows = await net.sender.sql<Array<{ id: string; status: string }>>`
    SELECT m.id::text AS id, d.status FROM messages m
    JOIN deliveries d ON d.message_id = m.id
    WHERE m.direction = 'outbound' AND m.idempotency_key = ANY(${keys}::text[])
      AND d.status IN ('queued', 'sent')`;
  return {
    queued: rows.filter((r) => r.status === "queued").map((r) => r.id),
    sent: rows.filter((r) => r.status === "sent").map((r) => r.id),
  };
}

defineFaultCase({
  name: "sender-replica-killed",
  title:
    "one sender replica of two killed with work open: the other carries on, each message logged once, all delivered",
  sender: { replicas: 2, env: { LIAISON_NATS_ACK_WAIT_SECONDS: String(ACK_WAIT_SECONDS) } },
  async fault({ net, nats, load }) {
    const [victim, survivor] = replicas(net.sender.replicas);
    const v = victim.spec.name;
    const s = survivor.spec.name;
    await waitUntil(
      "both sender replicas to answer submits 202",
      () => (load.acceptedBy.get(v) ?? 0) > 0 && (load.acceptedBy.get(s) ?? 0) > 0,
      30_000,
    );
    // Frozen for a look at what it has open; killed at the first look that finds some.
    let attempts = 0;
    let open = { queued: [] as string[], sent: [] as string[] };
    let receiptsHeld = 0;
    for (;;) {
      attempts++;
      await victim.pause();
      open = await openDeliveries(net, onlyTo(load.keysSentTo, v, s));
      if (open.queued.length > 0 || attempts >= ATTEMPTS) break;
      if (attempts > ATTEMPTS_FOR_QUEUED && open.sent.length > 0) break;
      await victim.resume();
      await sleep(50 + Math.floor(Math.random() * 200));
    }
    receiptsHeld = (await consumerInfo(nats.url, victim)).ackPending;
    const inFlight = load.inFlightTo.get(v) ?? 0;
    await victim.kill9();
    atKill = {
      ...open,
      inFlight,
      survivorAccepted: load.acceptedBy.get(s) ?? 0,
    };
    return {
      attempts,
      victim_accepted: load.acceptedBy.get(v) ?? 0,
      queued_at_kill: open.queued.length,
      sent_at_kill: open.sent.length,
      in_flight_at_kill: inFlight,
      receipts_ack_pending_at_kill: receiptsHeld,
    };
  },
  async check({ net, load }) {
    const [victim, survivor] = replicas(net.sender.replicas);
    const v = victim.spec.name;
    const s = survivor.spec.name;
    const open = new Set([...atKill.queued, ...atKill.sent]);
    // The dead one's open deliveries the survivor published (a lease that ended unpublished, or
    // a retry without a receipt); the others were closed by the receipt of the dead one's publish.
    const republished = new Set(
      survivor
        .logRecords((msg) => msg === "message published")
        .map((r) => String(r.messageId))
        .filter((id) => open.has(id)),
    ).size;
    const victimKeys = load.keysSentTo.get(v) ?? new Set<string>();
    const resent = [...(load.keysSentTo.get(s) ?? [])].filter((k) => victimKeys.has(k)).length;
    const survivorAfter = (load.acceptedBy.get(s) ?? 0) - atKill.survivorAccepted;
    const problems: string[] = [];
    if (open.size === 0)
      problems.push("the victim was killed with no delivery open: the fault did not hit its work");
    if (survivorAfter <= 0) problems.push("the survivor answered no submit after the kill");
    return {
      fields: {
        republished_by_survivor: republished,
        resent_to_survivor: resent,
        survivor_accepted_after: survivorAfter,
      },
      problems,
    };
  },
});
