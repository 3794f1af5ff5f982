/**
 * The outbox dispatcher: publishes due deliveries and unpublished receipts, in batches, with the
 * publishes of a batch in flight together. A delivery stays due (leased, with backoff) until the
 * partner's signed receipt arrives or the retry budget is spent; a receipt is done once the
 * broker acknowledged it (the sender's retry brings a re-send if it was lost after that).
 */
import type { Logger } from "../observability/logger.ts";
import type { Clock } from "../protocol/types.ts";
import type { MessageStore } from "../store/message-store.ts";
import type { Transport } from "../transport/nats-transport.ts";

export interface DispatcherOptions {
  batchSize: number;
  pollMs: number;
  retry: { baseMs: number; maxMs: number; maxAttempts: number };
}

const encoder = new TextEncoder();

export class Dispatcher {
  private running = false;
  private loop: Promise<void> | undefined;
  private wakeUp: (() => void) | undefined;
  private pending = false;

  constructor(
    private readonly store: MessageStore,
    private readonly transport: Transport,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly opts: DispatcherOptions,
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Work is waiting (a submit, an inbound message that needs a receipt): don't wait for the poll. */
  wake(): void {
    this.pending = true;
    this.wakeUp?.();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wakeUp?.();
    await this.loop;
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
    while (this.running) {
      this.pending = false;
      let handled = 0;
      try {
        handled = await this.tick();
      } catch (err) {
        this.log.error({ err: errorSummary(err) }, "dispatcher pass failed");
      }
      if (!this.running) break;
      if (handled > 0 || this.pending) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.opts.pollMs);
        this.wakeUp = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeUp = undefined;
    }
  }

  private async dispatchMessages(): Promise<number> {
    const { retry } = this.opts;
    const { due, failed } = await this.store.claimDueDeliveries({
      now: this.clock(),
      limit: this.opts.batchSize,
      maxAttempts: retry.maxAttempts,
      retryBaseMs: retry.baseMs,
      retryMaxMs: retry.maxMs,
    });
    for (const f of failed) {
      this.log.warn(
        { messageId: f.messageId, to: f.recipient, code: "delivery_failed" },
        "no receipt within the retry budget",
      );
    }
    const published: Array<{ messageId: string; recipient: string }> = [];
    await Promise.all(
      due.map(async (d) => {
        try {
          const ack = await this.transport.publish(d.subject, encoder.encode(d.jws), d.digest);
          published.push(d);
          this.log.info(
            {
              messageId: d.messageId,
              to: d.recipient,
              attempt: d.attempts,
              duplicate: ack.duplicate,
            },
            "message published",
          );
        } catch (err) {
          await this.store.markDeliveryError(
            d.messageId,
            d.recipient,
            errorSummary(err),
            this.clock(),
          );
          this.log.warn(
            {
              messageId: d.messageId,
              to: d.recipient,
              attempt: d.attempts,
              err: errorSummary(err),
            },
            "publish failed; will retry",
          );
        }
      }),
    );
    await this.store.markDeliveriesSent(published, this.clock());
    return due.length + failed.length;
  }

  private async dispatchReceipts(): Promise<number> {
    const due = await this.store.claimUnpublishedReceipts({
      now: this.clock(),
      limit: this.opts.batchSize,
      leaseMs: this.opts.retry.baseMs,
    });
    const published: string[] = [];
    await Promise.all(
      due.map(async (r) => {
        try {
          await this.transport.publish(r.subject, encoder.encode(r.jws), r.digest);
          published.push(r.id);
          this.log.info({ receiptId: r.id, to: r.toParty }, "receipt published");
        } catch (err) {
          this.log.warn(
            { receiptId: r.id, to: r.toParty, err: errorSummary(err) },
            "receipt publish failed; will retry",
          );
        }
      }),
    );
    await this.store.markReceiptsPublished(published, this.clock());
    return due.length;
  }
}

/** Error text for logs and last_error: the error's class and message, which never carry bodies. */
export function errorSummary(err: unknown): string {
  // A failed query's own message quotes its SQL and parameters (signed messages, raw bytes):
  // only the innermost cause, the driver's error, is summarised.
  let inner = err;
  while (inner instanceof Error && inner.cause instanceof Error) inner = inner.cause;
  if (inner instanceof Error) {
    const code = (inner as { code?: unknown }).code;
    return `${inner.name}${typeof code === "string" ? ` ${code}` : ""}: ${inner.message}`.slice(
      0,
      300,
    );
  }
  return String(inner).slice(0, 300);
}
