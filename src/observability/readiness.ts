/**
 * `/readyz`: the gateway can do its work — the database answers, the broker connection is not
 * closed (one that is reconnecting counts as ready), and one of our signing keys is valid now.
 */
export interface ReadinessChecks {
  database: { ping(): Promise<void> };
  broker: { isClosed(): boolean };
  keys: { hasValidKey(): boolean };
}

export class Readiness {
  constructor(private readonly checks: ReadinessChecks) {}

  async isReady(): Promise<boolean> {
    const { database, broker, keys } = this.checks;
    if (broker.isClosed() || !keys.hasValidKey()) return false;
    try {
      await database.ping();
      return true;
    } catch {
      return false;
    }
  }
}
