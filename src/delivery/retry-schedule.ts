/**
 * The retry schedule of outbound deliveries, pure: a delivery is published again until the
 * partner's signed receipt arrives, with exponential backoff and jitter, and fails when the
 * budget of publishes the broker accepted is spent or the message expired.
 */
import type { DeliveryCandidate, DeliveryPlan } from "./ports.ts";

export interface RetryPolicy {
  /** Delay after the first attempt; doubles with every attempt. */
  baseMs: number;
  /** The longest delay. */
  maxMs: number;
  /** Publishes the broker accepted without a receipt before the delivery fails. */
  maxAttempts: number;
}

/** Delay before the attempt after `attempts` earlier ones: base·2^attempts, capped, ±25 %. */
export function retryDelayMs(
  attempts: number,
  policy: Pick<RetryPolicy, "baseMs" | "maxMs">,
  random: () => number = Math.random,
): number {
  // The exponent is capped so the product stays finite whatever the attempt count.
  const delay = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(attempts, 30));
  return delay * (0.75 + random() * 0.5);
}

/**
 * What to do with a delivery that is due: publish it (leased until the next attempt) or fail it.
 * The budget counts publishes the broker accepted: a delivery the broker never took (link down,
 * the partner's inbox missing) stays queued and keeps trying until the message expires.
 */
export function planDelivery(
  candidate: DeliveryCandidate,
  now: Date,
  policy: RetryPolicy,
  random: () => number = Math.random,
): DeliveryPlan {
  if (candidate.status === "sent" && candidate.attempts >= policy.maxAttempts) {
    return { action: "fail", reason: "no receipt within the retry budget" };
  }
  if (candidate.expiresAt.getTime() <= now.getTime()) {
    return { action: "fail", reason: "expired before it was delivered" };
  }
  return {
    action: "publish",
    attempts: candidate.attempts + 1,
    nextAttemptAt: new Date(now.getTime() + retryDelayMs(candidate.attempts, policy, random)),
  };
}
