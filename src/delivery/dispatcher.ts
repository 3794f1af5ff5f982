/**
 * The dispatcher drains both outboxes: due deliveries of our messages and our unpublished
 * receipts, a batch at a time, with the publishes of a batch in flight together. A delivery stays
 * due (leased by the retry schedule) until the partner's signed receipt arrives or the budget is
 * spent; a receipt is done once the broker acknowledged it (a sender's retry brings a re-send if
 * it was lost after that). Between passes it waits on the wake signal, or polls.
 *
 * What the submitter and the inbox have just committed does not wait for a pass: their commit
 * leases the rows to this process and hands them over (PromptPublisher), and they are published
 * at once from memory. A pass only finds rows whose lease ended unpublished.
 */

import type { PartyId } from "../protocol/types.ts";
import { errorSummary } from "./error-summary.ts";
import {
  type Clock,
  type DeliveryRef,
  type DueDelivery,
  type DueReceipt,
  type IssuedBatch,
  type IssuedReceipt,
  type Lease,
  type Log,
  type Metrics,
  NO_METRICS,
  type PromptPublisher,
  type Store,
  type Transport,
} from "./ports.ts";
import { planDelivery, type RetryPolicy, retryDelayMs } from "./retry-schedule.ts";
import type { WakeSignal } from "./wake-signal.ts";

export interface DispatcherDeps {
  store: Store;
  transport: Transport;
  clock: Clock;
  wake: WakeSignal;
  log: Log;
  batchSize: number;
  /** How long to wait for the wake signal before looking again anyway. */
  pollMs: number;
  retry: RetryPolicy;
  /** Observations for GET /metrics (none when absent). */
  metrics?: Metrics;
  /**
   * A receipt (or batch receipt) whose signing key is no longer valid, signed again (the same
   * answer, a new id); undefined when the stored bytes are still good to send.
   */
  renewReceipt?: (jws: string) => Promise<IssuedReceipt | IssuedBatch | undefined>;
  /** A party's inbound subject (the registry's), for the prompt path. */
  subjectOf: (party: PartyId) => string | undefined;
}

const encoder = new TextEncoder();

/** The most rows the prompt path has in flight at once; beyond, rows wait for their lease. */
export const MAX_PROMPT_ROWS = 2_000;

export class Dispatcher implements PromptPublisher {
  private running = false;
  private stopped = false;
  private loop: Promise<void> | undefined;
  /** Prompt publishes under way. */
  private readonly prompt = new Set<Promise<void>>();
  /** Rows those publishes hold. */
  private promptRows = 0;

  constructor(private readonly deps: DispatcherDeps) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Ends the passes, then waits for the pass and the prompt publishes under way. */
  async stop(): Promise<void> {
    this.running = false;
    this.stopped = true;
    this.deps.wake.raise();
    await this.loop;
    await this.settled();
  }

  deliveryLease(): Lease {
    const { clock, retry } = this.deps;
    return { until: new Date(clock().getTime() + retryDelayMs(0, retry)) };
  }

  receiptLease(): Lease {
    return { until: new Date(this.deps.clock().getTime() + this.deps.retry.baseMs) };
  }

  sendDeliveries(due: Array<Omit<DueDelivery, "subject">>): void {
    this.promptly(() => {
      const routed = this.route(due, (d) => d.recipient);
      if (routed.length > 0) this.track(routed.length, this.publishDeliveries(routed, "prompt"));
    });
  }

  sendReceipts(due: Array<Omit<DueReceipt, "subject">>): void {
    this.promptly(() => {
      const routed = this.route(due, (r) => r.toParty);
      if (routed.length > 0) this.track(routed.length, this.publishReceipts(routed, "prompt"));
    });
  }

  /**
   * Never throws to the caller: it has committed already, and must not take a failure here for
   * its commit's (the submitter's group commit would then commit the group again, one by one).
   */
  private promptly(start: () => void): void {
    try {
      start();
    } catch (err) {
      this.deps.log.error(
        { err: errorSummary(err) },
        "prompt publish failed; the rows are retried when their lease ends",
      );
    }
  }

  /** Resolves when the prompt publishes under way now have ended. */
  async settled(): Promise<void> {
    await Promise.all(this.prompt);
  }

  /**
   * With their subjects, as many as may be in flight. The others stay leased, and a pass (of
   * this process or a replica) publishes them when the lease ends: all of them after stop
   * (shutdown), a row whose party has no subject, and rows beyond MAX_PROMPT_ROWS in flight (a
   * broker slow to answer: what waits on it stays bounded, in memory and in requests).
   */
  private route<T>(due: T[], party: (row: T) => PartyId): Array<T & { subject: string }> {
    if (this.stopped) return [];
    return due
      .flatMap((row) => {
        const subject = this.deps.subjectOf(party(row));
        return subject === undefined ? [] : [{ ...row, subject }];
      })
      .slice(0, Math.max(0, MAX_PROMPT_ROWS - this.promptRows));
  }

  private track(rows: number, work: Promise<void>): void {
    this.promptRows += rows;
    const tracked: Promise<void> = work
      .catch((err) => {
        // The rows stay leased and are due again when the lease ends.
        this.deps.log.error(
          { err: errorSummary(err) },
          "prompt publish failed; the rows are retried when their lease ends",
        );
      })
      .finally(() => {
        this.promptRows -= rows;
        this.prompt.delete(tracked);
      });
    this.prompt.add(tracked);
  }

  /** One pass over both outboxes; returns how many rows it handled. */
  async tick(): Promise<number> {
    const [messages, receipts] = await Promise.all([
      this.dispatchMessages(),
      this.dispatchReceipts(),
    ]);
    return messages + receipts;
  }

  private async run(): Promise<void> {
    const { wake, log, pollMs } = this.deps;
    while (this.running) {
      wake.take();
      let handled = 0;
      try {
        handled = await this.tick();
      } catch (err) {
        log.error({ err: errorSummary(err) }, "dispatcher pass failed");
      }
      if (!this.running) break;
      if (handled === 0) await wake.wait(pollMs);
    }
  }

  private async dispatchMessages(): Promise<number> {
    const { store, clock, log, retry } = this.deps;
    const now = clock();
    const { due, failed } = await store.outbox.claimDue({
      now,
      limit: this.deps.batchSize,
      plan: (candidate) => planDelivery(candidate, now, retry),
    });
    for (const f of failed) {
      log.warn({ messageId: f.messageId, to: f.recipient, code: "delivery_failed" }, f.reason);
    }
    await this.publishDeliveries(due, "pass");
    return due.length + failed.length;
  }

  /** Publishes claimed deliveries, all in flight together, then marks those the broker took. */
  private async publishDeliveries(due: DueDelivery[], path: "prompt" | "pass"): Promise<void> {
    const { store, transport, clock, log } = this.deps;
    const published: DeliveryRef[] = [];
    const outcomes = await Promise.allSettled(
      due.map(async (d) => {
        const delivery = { messageId: d.messageId, to: d.recipient, attempt: d.attempts };
        const started = performance.now();
        const timed = (ok: boolean) =>
          (this.deps.metrics ?? NO_METRICS).published(
            "message",
            ok,
            (performance.now() - started) / 1000,
            path,
          );
        try {
          const ack = await transport.publish(d.subject, encoder.encode(d.jws), d.digest);
          timed(true);
          published.push(d);
          log.info({ ...delivery, duplicate: ack.duplicate }, "message published");
        } catch (err) {
          timed(false);
          await store.outbox.markError(d, errorSummary(err), clock());
          log.warn({ ...delivery, err: errorSummary(err) }, "publish failed; will retry");
        }
      }),
    );
    await store.outbox.markSent(published, clock());
    rethrowFirst(outcomes);
  }

  private async dispatchReceipts(): Promise<number> {
    const { store, clock } = this.deps;
    const due = await store.receipts.claimUnpublished({
      now: clock(),
      limit: this.deps.batchSize,
      leaseMs: this.deps.retry.baseMs,
    });
    await this.publishReceipts(due, "pass");
    return due.length;
  }

  /** Publishes claimed receipts, all in flight together, then marks those the broker took. */
  private async publishReceipts(due: DueReceipt[], path: "prompt" | "pass"): Promise<void> {
    const { store, transport, clock, log } = this.deps;
    const published: string[] = [];
    const outcomes = await Promise.allSettled(
      due.map(async (claimed) => {
        const started = performance.now();
        const timed = (ok: boolean) =>
          (this.deps.metrics ?? NO_METRICS).published(
            "receipt",
            ok,
            (performance.now() - started) / 1000,
            path,
          );
        try {
          let r = claimed;
          // Signed with a key revoked (or expired) since: the partner would refuse these bytes
          // (key_revoked), so the same answer goes out signed with the key valid now.
          const fresh = await this.deps.renewReceipt?.(r.jws);
          if (fresh !== undefined) {
            await store.receipts.supersede(r.id, fresh);
            const id = "batch" in fresh ? fresh.batch.id : fresh.receipt.id;
            log.info(
              { receiptId: r.id, replacedBy: id, to: r.toParty, batch: r.batch === true },
              "receipt signed again: its key is no longer valid",
            );
            r = { ...r, id, jws: fresh.jws, digest: fresh.digest };
          }
          await transport.publish(r.subject, encoder.encode(r.jws), r.digest);
          timed(true);
          published.push(r.id);
          log.info(
            { receiptId: r.id, to: r.toParty, batch: r.batch === true },
            "receipt published",
          );
        } catch (err) {
          timed(false);
          log.warn(
            { receiptId: claimed.id, to: claimed.toParty, err: errorSummary(err) },
            "receipt publish failed; will retry",
          );
        }
      }),
    );
    await store.receipts.markPublished(published, clock());
    rethrowFirst(outcomes);
  }
}

/**
 * Every publish of a batch has ended (and what the broker took is marked) before the first
 * failure to record a failed one (markError, the database down) is thrown.
 */
function rethrowFirst(outcomes: PromiseSettledResult<unknown>[]): void {
  for (const o of outcomes) if (o.status === "rejected") throw o.reason;
}
