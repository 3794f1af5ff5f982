/**
 * GET /metrics, in the Prometheus text format (prom-client): what the core observes as it works
 * (latencies, publishes: the `Metrics` port) and, at each scrape, what the store and the broker
 * hold (deliveries by status and partner, the two outboxes' depth and oldest age, quarantine by
 * code, receipts, cases by state, active alerts, the consumer's backlog, keys' remaining
 * validity).
 *
 * Labels are party ids, kids, statuses, kinds and error codes, never content: no label value
 * comes from a message body, and nothing here reads one.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Metrics } from "../delivery/ports.ts";
import type { Clock, KeyRecord } from "../protocol/types.ts";
import type { ReadQueries } from "../store/read-queries.ts";

export interface MetricsSources {
  queries: Pick<ReadQueries, "metricsSnapshot">;
  /** Every registered key, ours included. */
  keys: { listKeys(): Promise<KeyRecord[]> };
  /** The inbound consumer's backlog; undefined when there is no broker to ask. */
  consumer?: () => Promise<{ pending: number; ackPending: number }>;
  clock: Clock;
}

/** Seconds: from a few ms (a batch on one machine) to a day (a partner offline). */
const LATENCY_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86_400,
];

export class PromMetrics implements Metrics {
  readonly registry = new Registry();
  private readonly deliveryLatency: Histogram<"partner" | "status">;
  private readonly inboundSeconds: Histogram<string>;
  private readonly inboundMessages: Counter<string>;
  private readonly publishSeconds: Histogram<"kind" | "outcome" | "path">;
  private readonly submitSeconds: Histogram<string>;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    this.deliveryLatency = new Histogram({
      name: "liaison_delivery_latency_seconds",
      help: "From a message's sentAt to the partner's receipt closing its delivery (end to end)",
      labelNames: ["partner", "status"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.inboundSeconds = new Histogram({
      name: "liaison_inbound_batch_seconds",
      help: "Time to verify, log and answer one batch of inbound messages (stage)",
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.inboundMessages = new Counter({
      name: "liaison_inbound_messages_total",
      help: "Inbound NATS messages handled (messages and receipts, accepted or not)",
      registers,
    });
    this.submitSeconds = new Histogram({
      name: "liaison_submit_seconds",
      help: "Time to make, sign and commit one submitted message with its deliveries (stage)",
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.publishSeconds = new Histogram({
      name: "liaison_publish_seconds",
      help: "One publish to the broker, until its ack (stage); path: prompt (just committed) or pass (due again)",
      labelNames: ["kind", "outcome", "path"],
      buckets: LATENCY_BUCKETS,
      registers,
    });

    // Read at each scrape. One snapshot serves the gauges of one scrape.
    let snapshot: ReturnType<ReadQueries["metricsSnapshot"]> | undefined;
    const read = () => {
      snapshot ??= sources.queries.metricsSnapshot(sources.clock()).finally(() => {
        setImmediate(() => {
          snapshot = undefined;
        });
      });
      return snapshot;
    };
    new Gauge({
      name: "liaison_deliveries",
      help: "Deliveries of our messages, by status and partner",
      labelNames: ["status", "partner"],
      registers,
      async collect() {
        this.reset();
        for (const d of (await read()).deliveries) {
          this.set({ status: d.status, partner: d.partner }, d.n);
        }
      },
    });
    new Gauge({
      name: "liaison_outbox_depth",
      help: "What waits to be published: deliveries queued or sent without a receipt, our unpublished receipts",
      labelNames: ["outbox"],
      registers,
      async collect() {
        const { outbox } = await read();
        this.set({ outbox: "deliveries" }, outbox.deliveries.depth);
        this.set({ outbox: "receipts" }, outbox.receipts.depth);
      },
    });
    new Gauge({
      name: "liaison_outbox_oldest_age_seconds",
      help: "Age of the oldest entry of each outbox (0 when empty)",
      labelNames: ["outbox"],
      registers,
      async collect() {
        const { outbox } = await read();
        this.set({ outbox: "deliveries" }, outbox.deliveries.oldestAgeSeconds);
        this.set({ outbox: "receipts" }, outbox.receipts.oldestAgeSeconds);
      },
    });
    new Gauge({
      name: "liaison_quarantine",
      help: "Inbound byte strings kept in quarantine, by error code",
      labelNames: ["code"],
      registers,
      async collect() {
        this.reset();
        for (const q of (await read()).quarantine) this.set({ code: q.code }, q.n);
      },
    });
    new Gauge({
      name: "liaison_receipts",
      help: "Receipts logged: issued by us or received from partners, by status",
      labelNames: ["direction", "status"],
      registers,
      async collect() {
        this.reset();
        for (const r of (await read()).receipts) {
          this.set({ direction: r.direction, status: r.status }, r.n);
        }
      },
    });
    new Gauge({
      name: "liaison_cases",
      help: "Victims' cases by state",
      labelNames: ["state"],
      registers,
      async collect() {
        this.reset();
        for (const c of (await read()).cases) this.set({ state: c.state }, c.n);
      },
    });
    new Gauge({
      name: "liaison_cases_overdue",
      help: "Victims' cases with an awaited step past its deadline, by state",
      labelNames: ["state"],
      registers,
      async collect() {
        this.reset();
        for (const c of (await read()).cases) this.set({ state: c.state }, c.overdue);
      },
    });
    new Gauge({
      name: "liaison_alerts_active",
      help: "Active alerts (1 each), by partner and kind: deliveries to the partner failed and none got a receipt since",
      labelNames: ["partner", "kind"],
      registers,
      async collect() {
        this.reset();
        for (const a of (await read()).alerts) this.set({ partner: a.partner, kind: a.kind }, 1);
      },
    });
    new Gauge({
      name: "liaison_alert_since_seconds",
      help: "When each active alert began (its first failure), in Unix time",
      labelNames: ["partner", "kind"],
      registers,
      async collect() {
        this.reset();
        for (const a of (await read()).alerts) {
          this.set({ partner: a.partner, kind: a.kind }, a.since.getTime() / 1000);
        }
      },
    });
    const consumer = sources.consumer;
    if (consumer !== undefined) {
      new Gauge({
        name: "liaison_consumer_pending",
        help: "The inbound consumer's backlog: not yet delivered (pending), delivered but not acked (ack_pending)",
        labelNames: ["kind"],
        registers,
        async collect() {
          // The broker unreachable: the gauge is left out of this scrape rather than made up.
          this.reset();
          const backlog = await consumer().catch(() => undefined);
          if (backlog === undefined) return;
          this.set({ kind: "pending" }, backlog.pending);
          this.set({ kind: "ack_pending" }, backlog.ackPending);
        },
      });
    }
    new Gauge({
      name: "liaison_key_expiry_seconds",
      help: "Seconds until a registered key's validUntil (negative once passed), for keys with an end and not revoked",
      labelNames: ["party", "kid", "use"],
      registers,
      async collect() {
        this.reset();
        const now = sources.clock().getTime();
        for (const key of await sources.keys.listKeys()) {
          if (key.validUntil === null || key.revokedAt !== null) continue;
          this.set(
            { party: key.partyId, kid: key.kid, use: key.use ?? "sig" },
            (key.validUntil.getTime() - now) / 1000,
          );
        }
      },
    });
  }

  deliveryClosed(recipient: string, status: "delivered" | "rejected", seconds: number): void {
    this.deliveryLatency.observe({ partner: recipient, status }, seconds);
  }

  inboundBatch(size: number, seconds: number): void {
    this.inboundSeconds.observe(seconds);
    this.inboundMessages.inc(size);
  }

  submitted(seconds: number): void {
    this.submitSeconds.observe(seconds);
  }

  published(
    kind: "message" | "receipt",
    ok: boolean,
    seconds: number,
    path: "prompt" | "pass",
  ): void {
    this.publishSeconds.observe({ kind, outcome: ok ? "acked" : "failed", path }, seconds);
  }

  /** The Prometheus text exposition. */
  async render(): Promise<{ contentType: string; text: string }> {
    return { contentType: this.registry.contentType, text: await this.registry.metrics() };
  }
}
