/**
 * `/readyz`: the gateway can do its work — the database answers and takes writes, the broker connection is not
 * closed and has not been down (disconnected, reconnecting) for longer than `brokerUnreachableMs`
 * (a short interruption does not take a replica out of a load balancer; a longer one does, and it
 * comes back once the connection is back), one of our signing keys is valid now, and the gateway
 * is not stopping.
 */
export interface ReadinessChecks {
  database: { ping(): Promise<void> };
  broker: { isClosed(): boolean; unreachableSince(): Date | undefined };
  keys: { hasValidKey(): boolean };
  /** How long the broker may be unreachable before the gateway is not ready. */
  brokerUnreachableMs: number;
  /** True from the moment the gateway begins to stop. */
  stopping?: () => boolean;
  /** The time now (the real clock: the broker's events are timed with it). */
  now?: () => number;
}

export class Readiness {
  constructor(private readonly checks: ReadinessChecks) {}

  /** Whether the broker has been unreachable for longer than allowed (or is closed for good). */
  brokerDown(): boolean {
    const { broker, brokerUnreachableMs } = this.checks;
    if (broker.isClosed()) return true;
    const since = broker.unreachableSince();
    const now = this.checks.now?.() ?? Date.now();
    return since !== undefined && now - since.getTime() >= brokerUnreachableMs;
  }

  async isReady(): Promise<boolean> {
    const { database, keys } = this.checks;
    if (this.checks.stopping?.() === true) return false;
    if (this.brokerDown() || !keys.hasValidKey()) return false;
    try {
      await database.ping();
      return true;
    } catch {
      return false;
    }
  }
}
