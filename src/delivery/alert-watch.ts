/**
 * Failures are visible: when deliveries to a partner fail (no receipt within the retry budget, or
 * the message expired), an alert names the partner and since when, until a later delivery to it
 * closes with the partner's receipt (it is reachable again). The watch runs apart from the
 * dispatcher, on an interval: each pass reads the deliveries that became `failed` since the
 * last one and the partners' returns, and raises, extends or resolves one alert per partner.
 *
 * The pass runs in one store transaction that replicas take in turn (`AlertLog.pass`), so two
 * replicas never raise two alerts for one partner, and a restart loses nothing: how far the
 * deliveries were read is kept in the store. What an episode is, is decided here (`planAlerts`,
 * pure); the store gathers the facts and writes the outcome.
 */

import { errorSummary } from "./error-summary.ts";
import type { Clock, Log } from "./ports.ts";

export type AlertKind = "delivery_failed";

export interface Alert {
  id: number;
  kind: AlertKind;
  partner: string;
  /** The first failure of the episode. */
  since: Date;
  lastFailureAt: Date;
  /** Failed deliveries in the episode. */
  count: number;
  /** When a later delivery to the partner closed with its receipt; null while active. */
  resolvedAt: Date | null;
}

/** What one pass found for one partner, read under the pass's lock. */
export interface PartnerFacts {
  partner: string;
  /** Its active alert, if any. */
  active: Alert | undefined;
  /**
   * Deliveries to it that failed since the last pass and after its latest alert (after the
   * active one's last failure, or after the resolved one's resolution): not counted yet.
   */
  failed: { count: number; first: Date; last: Date } | undefined;
  /**
   * The first time a delivery to it closed with a receipt (delivered or rejected: either way the
   * partner got our message and answered) after its latest failure, if one did.
   */
  reachableAt: Date | undefined;
}

export type AlertChange =
  | { action: "raise"; partner: string; since: Date; lastFailureAt: Date; count: number }
  | { action: "extend"; partner: string; lastFailureAt: Date; count: number }
  | { action: "resolve"; partner: string; at: Date };

/**
 * An episode per partner: new failures open an alert, or extend the active one; a receipt after
 * the latest failure resolves it. Failures and a return that fall within one pass are one
 * episode, resolved at once (raised and resolved in the same pass).
 */
export function planAlerts(facts: PartnerFacts[]): AlertChange[] {
  const changes: AlertChange[] = [];
  for (const f of facts) {
    let open = f.active !== undefined;
    if (f.failed !== undefined) {
      if (open) {
        changes.push({
          action: "extend",
          partner: f.partner,
          lastFailureAt: f.failed.last,
          count: f.failed.count,
        });
      } else {
        changes.push({
          action: "raise",
          partner: f.partner,
          since: f.failed.first,
          lastFailureAt: f.failed.last,
          count: f.failed.count,
        });
        open = true;
      }
    }
    if (open && f.reachableAt !== undefined) {
      changes.push({ action: "resolve", partner: f.partner, at: f.reachableAt });
    }
  }
  return changes;
}

/** What a pass did: the alerts raised, and those resolved (as they stand afterwards). */
export interface AlertPassResult {
  raised: Alert[];
  extended: Alert[];
  resolved: Alert[];
}

/** The store side of the watch (src/store/alert-log.ts). */
export interface AlertLog {
  /**
   * One pass in one transaction, taken by one replica at a time: gathers the facts of every
   * partner with new failures or an active alert, applies `plan`'s changes, and moves the
   * watermark to `now`.
   */
  pass(
    now: Date,
    plan: (facts: PartnerFacts[]) => AlertChange[] | Promise<AlertChange[]>,
  ): Promise<AlertPassResult>;
}

export interface AlertWatchDeps {
  alerts: AlertLog;
  clock: Clock;
  log: Log;
  /** How often a pass runs. */
  intervalMs: number;
}

export class AlertWatch {
  private timer: ReturnType<typeof setInterval> | undefined;
  private running: Promise<AlertPassResult> | null = null;

  constructor(private readonly deps: AlertWatchDeps) {}

  /** One pass (joining the one under way, if any). */
  check(): Promise<AlertPassResult> {
    this.running ??= this.pass().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => {
      this.check().catch((err: unknown) =>
        this.deps.log.error({ err: errorSummary(err) }, "alert check failed"),
      );
    }, this.deps.intervalMs);
    this.timer.unref?.();
  }

  /** Stops the interval and waits for the pass under way, if any. */
  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  private async pass(): Promise<AlertPassResult> {
    const { deps } = this;
    const result = await deps.alerts.pass(deps.clock(), planAlerts);
    // Partner ids, times and counts only: no message, no content.
    for (const a of result.raised) {
      deps.log.error(
        {
          alert: a.kind,
          code: a.kind,
          partner: a.partner,
          since: a.since.toISOString(),
          count: a.count,
        },
        "alert raised: deliveries to this partner failed",
      );
    }
    for (const a of result.resolved) {
      deps.log.info(
        {
          alert: a.kind,
          partner: a.partner,
          since: a.since.toISOString(),
          count: a.count,
          resolvedAt: a.resolvedAt?.toISOString(),
        },
        "alert resolved: a delivery to this partner got its receipt",
      );
    }
    return result;
  }
}
