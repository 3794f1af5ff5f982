/**
 * The NATS JetStream adapter. Outbound: `publish` to a partner's inbound subject with the
 * SHA-256 of the exact bytes as `Nats-Msg-Id`, so the broker de-duplicates retries (which are
 * byte-identical) inside its duplicate window, and nobody without those bytes can occupy the id
 * to have them dropped; the receiver de-duplicates for good. Inbound: this party's stream and a durable pull
 * consumer with explicit acks; a message is acked only after the handler (which commits to the
 * database) returned, and nak'ed with a delay when it threw, so nothing is lost.
 */
import {
  AckPolicy,
  type ConsumerInfo,
  type ConsumerMessages,
  connect,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type NatsConnection,
  RetentionPolicy,
  StorageType,
} from "nats";
import type { InboundItem, PublishResult, Transport } from "../delivery/ports.ts";
import type { DomainSource, OutboundStreamConfig } from "./federation.ts";

/** Takes a batch of inbound bytes and has committed every outcome when it returns (the inbox). */
export interface InboundHandler {
  handleBatch(batch: InboundItem[]): Promise<unknown>;
  /**
   * Keeps bytes whose processing failed on every one of `deliveries` deliveries (a poison
   * message), so that the broker can drop them; throws when it cannot (the database is down).
   */
  quarantineUnprocessable(item: InboundItem, deliveries: number): Promise<void>;
}

export interface InboxOptions {
  stream: string;
  subject: string;
  durable: string;
  /** How many unacknowledged messages the consumer hands out at once. */
  maxAckPending: number;
  /**
   * How long the broker waits for a handed-out message's ack before it hands it out again (to
   * this replica or another): what a replica that was killed held comes back after this.
   */
  ackWaitMs: number;
  /** The most messages handed to the handler at once. */
  batchSize: number;
  /**
   * A message whose processing failed on this many deliveries is handed to
   * `quarantineUnprocessable` instead of being redelivered again (a poison message).
   */
  maxDeliveries: number;
  /** How long the broker waits before it redelivers a message whose processing failed. */
  retryDelayMs: number;
  onError: (err: unknown) => void;
  /**
   * Failures that say nothing about the message (the database is unreachable): such a message is
   * always redelivered, never quarantined as unprocessable, however often it came back.
   */
  transient?: (err: unknown) => boolean;
  /**
   * Federation: the partners' outbound streams our inbound stream sources (read each time the
   * stream is ensured, so a partner registered since is included).
   */
  sources?: () => DomainSource[];
  /**
   * Federation: keep acknowledged messages (limits retention, for the stream's maximum age)
   * instead of a work queue. nats-server 2.9 finds where each source stopped from the headers of
   * the messages the stream still holds; a work-queue stream emptied by our acks would, after a
   * restart of its server, resume its sources by time and skip what the partners stored during a
   * cut. Applies when the stream is created; NATS cannot change a stream's retention in place.
   */
  keepAcknowledged?: boolean;
}

const MS_NS = 1_000_000;
const SECOND_NS = 1000 * MS_NS;
/** Consumer statuses that mean our inbox is gone on a broker we are still connected to. */
const MISSING = new Set<string>([
  "consumer_not_found",
  "consumer_deleted",
  "stream_not_found",
  "no_responders",
]);
const DAY_NS = 24 * 60 * 60 * SECOND_NS;

export class NatsTransport implements Transport {
  /** One per inbox being consumed: stops reading, then lets the queued messages finish. */
  private stops: Array<() => Promise<void>> = [];
  private watchers: Promise<void>[] = [];
  /** The connection's status iterators (a QueuedIterator: `stop()` ends it). */
  private statusFeeds: Array<{ stop(): void }> = [];

  /** Since when the connection has been down (disconnected, reconnecting, or closed). */
  private downSince: Date | undefined;

  private constructor(
    readonly connection: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
  ) {
    // Broker reachability from the connection's own events: down from the first "disconnect"
    // until a "reconnect"; closed for good once the connection is closed.
    const statuses = connection.status();
    this.statusFeeds.push(statuses as unknown as { stop(): void });
    this.watchers.push(
      (async () => {
        for await (const status of statuses) {
          if (status.type === "disconnect") this.downSince ??= new Date();
          else if (status.type === "reconnect") this.downSince = undefined;
        }
      })(),
    );
    void connection.closed().then(() => {
      this.downSince ??= new Date();
    });
  }

  static async connect(url: string, name: string): Promise<NatsTransport> {
    const nc = await connect({
      servers: url,
      name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      // Two Error objects (a stack trace each) per publish and per request, made in case it
      // times out: 3 % of the gateway's CPU in the bench's profile. Our logs name the
      // operation that failed; the trace of where nats.js was called adds nothing to them.
      noAsyncTraces: true,
    });
    try {
      const jsm = await askAgain("JetStream account info", () => nc.jetstreamManager());
      return new NatsTransport(nc, nc.jetstream(), jsm);
    } catch (err) {
      await nc.close();
      throw err;
    }
  }

  isClosed(): boolean {
    return this.connection.isClosed();
  }

  /**
   * When the broker became unreachable: the connection's first disconnect not followed by a
   * reconnect, or its close; undefined while it is connected.
   */
  unreachableSince(): Date | undefined {
    return this.downSince;
  }

  /** A JetStream management request: see askAgain. */
  private manage<T>(what: string, request: (jsm: JetStreamManager) => Promise<T>): Promise<T> {
    return askAgain(what, () => request(this.jsm));
  }

  async publish(subject: string, data: Uint8Array, msgId: string): Promise<PublishResult> {
    const ack = await this.js.publish(subject, data, { msgID: msgId, timeout: 5000 });
    return { seq: ack.seq, duplicate: ack.duplicate };
  }

  /** The durable consumer's backlog: messages not yet delivered, and delivered but not acked. */
  async consumerPending(
    stream: string,
    durable: string,
  ): Promise<{ pending: number; ackPending: number }> {
    // Asked once: a metrics scrape (the one caller) leaves the gauge out when the broker does not
    // answer, and must not wait three timeouts for it.
    const info = await askAgain(
      `consumer info ${stream}/${durable}`,
      () => this.jsm.consumers.info(stream, durable),
      1,
    );
    return { pending: info.num_pending, ackPending: info.num_ack_pending };
  }

  /**
   * Federation: one of our outbound streams, in our own domain, which a partner's inbound stream
   * sources. Limits retention: sourcing does not acknowledge, so a message stays for `maxAgeMs`;
   * a partner whose link is down takes it when the link is back, resuming after the last message
   * its source took. An existing stream is left as it is (docs/operations.md, Federation).
   */
  async ensureStream(config: OutboundStreamConfig): Promise<void> {
    try {
      await this.manage(`stream info ${config.name}`, (jsm) => jsm.streams.info(config.name));
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await this.manage(`stream add ${config.name}`, (jsm) =>
        jsm.streams.add({
          name: config.name,
          subjects: [config.subject],
          retention: RetentionPolicy.Limits,
          storage: StorageType.File,
          max_age: config.maxAgeMs * 1_000_000,
          duplicate_window: 10 * 60 * SECOND_NS,
        }),
      );
    }
  }

  /**
   * Creates or updates this party's inbound stream and its durable consumer; an existing
   * consumer whose ack wait or most pending acks differ from `opts` is updated to them. Returns
   * true when the consumer had to be created (first start, or a broker that lost its state).
   */
  async ensureInbox(
    opts: Pick<
      InboxOptions,
      | "stream"
      | "subject"
      | "durable"
      | "ackWaitMs"
      | "maxAckPending"
      | "sources"
      | "keepAcknowledged"
    >,
  ): Promise<boolean> {
    const config = {
      name: opts.stream,
      subjects: [opts.subject],
      // Work-queue: a message leaves the stream once acked (after our database commit), so the
      // broker does not keep a second copy of message bodies; federated, acked messages are kept
      // (see keepAcknowledged). Unconsumed ones age out after 30 days.
      retention:
        opts.keepAcknowledged === true ? RetentionPolicy.Limits : RetentionPolicy.Workqueue,
      storage: StorageType.File,
      max_age: 30 * DAY_NS,
      duplicate_window: 10 * 60 * SECOND_NS,
      sources: opts.sources?.() ?? [],
    };
    try {
      await this.manage(`stream info ${opts.stream}`, (jsm) => jsm.streams.info(opts.stream));
      // NATS cannot change a stream's retention in place (a stream made by an earlier version
      // with limits retention): the update leaves it as it is rather than refuse to start;
      // docs/operations.md says how to move such a stream to work-queue retention.
      const { retention: _retention, ...updatable } = config;
      await this.manage(`stream update ${opts.stream}`, (jsm) =>
        jsm.streams.update(opts.stream, updatable),
      );
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await this.manage(`stream add ${opts.stream}`, (jsm) => jsm.streams.add(config));
    }
    const settings = {
      ack_wait: opts.ackWaitMs * MS_NS,
      max_ack_pending: opts.maxAckPending,
    };
    let existing: ConsumerInfo | undefined;
    try {
      existing = await this.manage(`consumer info ${opts.stream}/${opts.durable}`, (jsm) =>
        jsm.consumers.info(opts.stream, opts.durable),
      );
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    // A consumer made before federation filters on our inbound subject and would never see what
    // the stream sources (it keeps the partners' subjects): it is made again without the filter.
    // Nothing is lost: unacknowledged messages stay in the work-queue stream, and the new
    // consumer starts from its first message.
    if (
      existing !== undefined &&
      config.sources.length > 0 &&
      (existing.config.filter_subject ?? "") !== ""
    ) {
      await this.manage(`consumer delete ${opts.stream}/${opts.durable}`, (jsm) =>
        jsm.consumers.delete(opts.stream, opts.durable),
      ).catch((err: unknown) => {
        // Gone already (a repeated delete whose first attempt was carried out): done.
        if (!isNotFound(err)) throw err;
      });
      existing = undefined;
    }
    if (existing === undefined) {
      // No filter: the stream holds only what is ours, on our inbound subject or sourced.
      await this.manage(`consumer add ${opts.stream}/${opts.durable}`, (jsm) =>
        jsm.consumers.add(opts.stream, {
          durable_name: opts.durable,
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.All,
          ...settings,
        }),
      );
      return true;
    }
    // Settings changed since the consumer was made (by an earlier start, or another replica).
    if (
      existing.config.ack_wait !== settings.ack_wait ||
      existing.config.max_ack_pending !== settings.max_ack_pending
    ) {
      await this.manage(`consumer update ${opts.stream}/${opts.durable}`, (jsm) =>
        jsm.consumers.update(opts.stream, opts.durable, settings),
      );
    }
    return false;
  }

  /**
   * Consumes the inbox in micro-batches: a reader takes messages from the consumer's iterator
   * into a queue; a worker hands whatever is queued (up to `batchSize`) to the handler, then acks
   * each message only after the handler returned (it has committed them to the database). When
   * a batch throws, each message is retried alone so one bad message cannot hold the others
   * back; one that still throws is nak'ed with a delay and comes back. Back-pressure: the
   * consumer hands out at most `maxAckPending` unacknowledged messages.
   *
   * After every reconnect the stream and the durable consumer are ensured again: a broker that
   * came back without its state (a new server, a lost disk) gets them back, and reading starts
   * over on the new consumer. Messages published while the inbox did not exist were refused to
   * their senders ("no responders"), who retry.
   */
  async consumeInbox(opts: InboxOptions, handler: InboundHandler): Promise<void> {
    await this.ensureInbox(opts);
    const queue: JsMsg[] = [];
    let wake: (() => void) | undefined;
    let stopped = false;
    let current: ConsumerMessages | undefined;

    // Brings the inbox back when it went missing: ensures stream and consumer, and when the
    // consumer had to be created, starts reading from it. One recovery at a time.
    let recovering = false;
    const recover = async (): Promise<void> => {
      if (recovering || stopped) return;
      recovering = true;
      try {
        if (await this.ensureInbox(opts)) {
          current?.stop();
          readers.push(read());
        }
      } catch (err) {
        opts.onError(err);
      } finally {
        recovering = false;
      }
    };
    const read = async (): Promise<void> => {
      try {
        const consumer = await this.js.consumers.get(opts.stream, opts.durable);
        const messages = await consumer.consume({
          max_messages: Math.min(opts.maxAckPending, 512),
        });
        current = messages;
        // The consumer deleted (or its stream gone) while we stay connected: nats.js would
        // keep asking for it forever; recreate it instead.
        void (async () => {
          for await (const status of await messages.status()) {
            if (MISSING.has(status.type)) await recover();
          }
        })().catch(opts.onError);
        for await (const msg of messages) {
          queue.push(msg);
          wake?.();
        }
      } catch (err) {
        // Could not start (or keep) reading: try again shortly, recreating what is missing.
        opts.onError(err);
        if (stopped) return;
        await new Promise((resolve) => setTimeout(resolve, 2000));
        if (stopped) return;
        await this.ensureInbox(opts).catch(opts.onError);
        readers.push(read());
      }
    };
    const readers: Promise<void>[] = [read()];

    const process = async (batch: JsMsg[]): Promise<void> => {
      try {
        await handler.handleBatch(batch.map(itemOf));
        // A plain ack, no confirmation round trip per message (profiled: a request and two Error
        // objects each): should one be lost, the broker redelivers after the ack wait and the
        // inbox, which de-duplicates for good, answers the copy as a duplicate.
        for (const m of batch) m.ack();
      } catch (err) {
        if (batch.length > 1) {
          // One bad message must not hold back the others: each is tried alone.
          for (const m of batch) await process([m]);
          return;
        }
        opts.onError(err);
        const [msg] = batch as [JsMsg];
        if (opts.transient?.(err) === true) msg.nak(opts.retryDelayMs);
        else await this.giveUpOrRetry(msg, handler, opts);
      }
    };
    const worker = (async () => {
      // On stop, the batch in hand is finished (and acked); what waits behind it is handed back.
      while (!stopped) {
        if (queue.length === 0) {
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = undefined;
          continue;
        }
        // Whatever goes wrong with one batch (even an ack on a dropped connection), the worker
        // goes on: the broker redelivers what was not acked.
        await process(queue.splice(0, opts.batchSize)).catch(opts.onError);
      }
    })();

    const statuses = this.connection.status();
    this.statusFeeds.push(statuses as unknown as { stop(): void });
    this.watchers.push(
      (async () => {
        for await (const status of statuses) {
          if (status.type === "reconnect") await recover();
        }
      })(),
    );

    this.stops.push(async () => {
      stopped = true;
      current?.stop();
      wake?.();
      await worker;
      await Promise.allSettled(readers);
      // Pulled but not handed to the handler: back to the broker at once, for another replica
      // (or this one, restarted), instead of waiting out the ack wait.
      for (const msg of queue.splice(0)) msg.nak();
    });
  }

  /**
   * A message that failed again: redelivered after a delay, until it has failed on
   * `maxDeliveries` deliveries; then it is quarantined and terminated, so the broker never hands
   * it out again. Should the quarantine fail too (the database is down, which is also why a
   * valid message fails), it is redelivered as before: nothing is dropped that is not kept.
   */
  private async giveUpOrRetry(
    msg: JsMsg,
    handler: InboundHandler,
    opts: Pick<InboxOptions, "maxDeliveries" | "retryDelayMs" | "onError">,
  ): Promise<void> {
    const deliveries = msg.info.redeliveryCount;
    if (deliveries < opts.maxDeliveries) {
      msg.nak(opts.retryDelayMs);
      return;
    }
    try {
      await handler.quarantineUnprocessable(itemOf(msg), deliveries);
    } catch (err) {
      opts.onError(err);
      msg.nak(opts.retryDelayMs);
      return;
    }
    msg.term(`processing failed on ${deliveries} deliveries; quarantined`);
  }

  /**
   * Stops pulling inbound messages: the batch the handler holds is finished and acked, messages
   * pulled behind it are nak'ed so the broker hands them out again at once. Idempotent.
   */
  async stopConsuming(): Promise<void> {
    const stops = this.stops.splice(0);
    for (const stop of stops) await stop();
  }

  /** Stops consuming (stopConsuming), then drains the connection. */
  async close(): Promise<void> {
    await this.stopConsuming();
    if (!this.connection.isClosed()) await this.connection.drain();
    for (const feed of this.statusFeeds) feed.stop();
    await Promise.allSettled(this.watchers);
  }
}

function itemOf(msg: JsMsg): InboundItem {
  return { data: msg.data, subject: msg.subject };
}

/**
 * A JetStream management request the server did not answer in time is asked again, up to
 * MANAGE_ATTEMPTS times in all: a busy server (one recovering its streams after a restart, or a
 * loaded disk) can take longer than the client's 5 s. Only requests that may be repeated come
 * here: info, add with the same configuration (the server answers with what exists), update with
 * the same settings, and delete (asked again after an unanswered delete that was carried out,
 * it answers "not found", which the caller takes as done). Any other error, or the last timeout,
 * is thrown as a ManagementError naming the request, since nats.js's own errors (made without
 * their stack, see noAsyncTraces) say only "TIMEOUT".
 */
async function askAgain<T>(
  what: string,
  request: () => Promise<T>,
  attempts = MANAGE_ATTEMPTS,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await request();
    } catch (err) {
      if (isTimeout(err) && attempt < attempts) continue;
      if (isNotFound(err)) throw err;
      throw new ManagementError(what, attempt, err);
    }
  }
}

const MANAGE_ATTEMPTS = 3;

/** A JetStream management request that failed, named; `code` is nats.js's (e.g. TIMEOUT). */
export class ManagementError extends Error {
  readonly code: string | undefined;
  constructor(
    readonly request: string,
    readonly attempts: number,
    cause: unknown,
  ) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(`NATS JetStream ${request} failed after ${attempts} attempt(s): ${reason}`, { cause });
    this.name = "ManagementError";
    this.code = (cause as { code?: unknown }).code?.toString();
  }
}

function isTimeout(err: unknown): boolean {
  return (err as { code?: unknown }).code === "TIMEOUT";
}

function isNotFound(err: unknown): boolean {
  const e = err as { api_error?: { err_code?: number }; code?: string; message?: string };
  return (
    e.api_error?.err_code === 10059 ||
    e.api_error?.err_code === 10014 ||
    /not found/i.test(e.message ?? "")
  );
}
