/**
 * Federation by NATS's own means: each country runs its own nats-server with its own JetStream
 * domain, joined to the others as a leaf node of a hub (docs/operations.md, Federation).
 *
 * Store-and-forward is JetStream's: a message for a partner in another domain is published to
 * our outbound stream for that partner, in our own domain, which accepts it while the link
 * across the border is down; the partner's inbound stream *sources* that stream through our
 * domain's API (`$JS.<our domain>.API`) and so takes every message once the link is back. No
 * relay of ours sits in between. One stream per (sender, recipient) pair, so that the hub's
 * permissions can let a country read exactly the streams addressed to its parties.
 *
 * The names below are the protocol between federated gateways (docs/protocol.md, Federation): a
 * partner's gateway in any language must use the same ones.
 */
import type { PublishResult, Transport } from "../delivery/ports.ts";
import type { PartyRecord } from "../protocol/types.ts";

/** `CN-MPS-HEKOU` → `CN_MPS_HEKOU`: party ids as stream-name tokens. */
function token(partyId: string): string {
  return partyId.replaceAll("-", "_");
}

/** The stream, in the sender's domain, that holds the sender's messages for one recipient. */
export function outboundStreamName(sender: string, recipient: string): string {
  return `LIAISON_OUT_${token(sender)}_TO_${token(recipient)}`;
}

/** The subject the sender publishes its messages for one recipient to (its outbound stream's). */
export function outboundSubject(sender: string, recipient: string): string {
  return `liaison.outbox.${sender}.${recipient}`;
}

/**
 * The prefix of the subjects `toDomain`'s inbound streams take what they source from
 * `fromDomain` on. They stay on `toDomain`'s server: `$JS.<fromDomain>.API` is there the API of
 * an account that sources `fromDomain`'s mirrors across the hub and delivers to the gateways'
 * account on this prefix (docs/operations.md, Federation), so nothing a partner or a third
 * country publishes reaches these subjects.
 */
export function deliverPrefix(toDomain: string, fromDomain: string): string {
  return `liaison.deliver.${toDomain}.${fromDomain}`;
}

/** A JetStream stream source across domains, as the stream configuration takes it. */
export interface DomainSource {
  name: string;
  external: { api: string; deliver: string };
}

export interface FederationView {
  /** Our party id. */
  self: string;
  /** Our JetStream domain; undefined: we are not federated, and publish directly. */
  domain: string | undefined;
}

/**
 * Partners we exchange with through their own domain: we are federated, and so are they, in
 * another domain. A partner in our own domain, or one without a domain, is published to directly.
 */
export function federatedPartners(view: FederationView, parties: PartyRecord[]): PartyRecord[] {
  if (view.domain === undefined) return [];
  return parties.filter(
    (p) => p.id !== view.self && p.natsDomain !== undefined && p.natsDomain !== view.domain,
  );
}

/** What our inbound stream sources: each federated partner's outbound stream for us. */
export function inboundSources(view: FederationView, parties: PartyRecord[]): DomainSource[] {
  const domain = view.domain;
  if (domain === undefined) return [];
  return federatedPartners(view, parties)
    .map((p) => ({
      name: outboundStreamName(p.id, view.self),
      external: {
        api: `$JS.${p.natsDomain}.API`,
        deliver: deliverPrefix(domain, p.natsDomain as string),
      },
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** Where a message for a partner goes: its inbound subject, or our outbound stream for it. */
export interface OutboundRoute {
  subject: string;
  /** Set when the subject is that of one of our outbound streams, which may need creating. */
  stream?: string;
}

/**
 * Publish routes keyed by a partner's inbound subject (what the outbox knows a delivery by):
 * federated partners are reached through our outbound stream for them.
 */
export function outboundRoutes(
  view: FederationView,
  parties: PartyRecord[],
): Map<string, OutboundRoute> {
  const routes = new Map<string, OutboundRoute>();
  for (const p of federatedPartners(view, parties)) {
    routes.set(p.inboundSubject, {
      subject: outboundSubject(view.self, p.id),
      stream: outboundStreamName(view.self, p.id),
    });
  }
  return routes;
}

// ─── the transport side ─────────────────────────────────────────────────────────────────────

/** What the federation needs of the NATS adapter: publishing, and managing streams. */
export interface StreamBroker {
  publish(subject: string, data: Uint8Array, msgId: string): Promise<PublishResult>;
  /** Creates the stream when it does not exist; leaves an existing one as it is. */
  ensureStream(config: OutboundStreamConfig): Promise<void>;
}

export interface OutboundStreamConfig {
  name: string;
  subject: string;
  /** How long a message is kept for a partner that has not taken it (its link down). */
  maxAgeMs: number;
}

/**
 * The Transport the dispatcher publishes through: a message for a federated partner goes to our
 * outbound stream for it (created on first use, and again should the broker have lost it), any
 * other directly to the partner's inbound subject.
 */
export class FederatedTransport implements Transport {
  private routes = new Map<string, OutboundRoute>();
  private readonly ensured = new Set<string>();

  constructor(
    private readonly broker: StreamBroker,
    private readonly view: FederationView,
    /** How long our outbound streams keep a message: its time to live, and a day's margin. */
    private readonly retentionMs: number,
  ) {}

  /** Takes the current partners: the publish routes and the outbound streams they need. */
  async sync(parties: PartyRecord[]): Promise<void> {
    this.routes = outboundRoutes(this.view, parties);
    for (const route of this.routes.values()) await this.ensure(route);
  }

  async publish(subject: string, data: Uint8Array, msgId: string): Promise<PublishResult> {
    const route = this.routes.get(subject);
    if (route === undefined) return this.broker.publish(subject, data, msgId);
    try {
      return await this.broker.publish(route.subject, data, msgId);
    } catch (err) {
      // Our own stream is missing (a broker that lost its state): make it again, publish again.
      if (!isNoResponders(err)) throw err;
      this.ensured.delete(route.subject);
      await this.ensure(route);
      return this.broker.publish(route.subject, data, msgId);
    }
  }

  private async ensure(route: OutboundRoute): Promise<void> {
    if (route.stream === undefined || this.ensured.has(route.subject)) return;
    await this.broker.ensureStream({
      name: route.stream,
      subject: route.subject,
      maxAgeMs: this.retentionMs,
    });
    this.ensured.add(route.subject);
  }
}

function isNoResponders(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return e.code === "503" || /no responders/i.test(e.message ?? "");
}
