/**
 * The composition root: the only module that knows which adapters the core runs on. It opens the
 * store, loads the partner registry and our keys, connects NATS, and wires the moving parts —
 * the submitter, the inbox, the dispatcher and the wake signal between them — then serves HTTP.
 * `stop()` undoes all of it in reverse order.
 */
import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import { type ServerType, serve } from "@hono/node-server";
import type { Hono } from "hono";
import { CaseBook } from "./cases/case-book.ts";
import { ReminderSweep } from "./cases/reminder-sweep.ts";
import { type Config, databaseTarget } from "./config/config.ts";
import { loadSchemaRegistry } from "./config/schema-files.ts";
import { AlertWatch } from "./delivery/alert-watch.ts";
import { Dispatcher } from "./delivery/dispatcher.ts";
import { errorSummary } from "./delivery/error-summary.ts";
import { Inbox } from "./delivery/inbox.ts";
import type { Clock, IdSource, Store } from "./delivery/ports.ts";
import { ReceiptIssuer } from "./delivery/receipt-issuer.ts";
import { Submitter } from "./delivery/submitter.ts";
import { WakeSignal } from "./delivery/wake-signal.ts";
import { createApp } from "./http/app.ts";
import { createLogger, type Logger } from "./observability/logger.ts";
import { PromMetrics } from "./observability/metrics.ts";
import { Readiness } from "./observability/readiness.ts";
import { LiaisonError } from "./protocol/errors.ts";
import { acceptsBatchReceipts, type PartyRecord } from "./protocol/types.ts";
import { OwnKeyring } from "./registry/own-keyring.ts";
import { PartnerRegistry } from "./registry/partner-registry.ts";
import type { SchemaRegistry } from "./schemas/schema-registry.ts";
import { SqlAlertLog } from "./store/alert-log.ts";
import { type Database, isStoreUnavailable, openDatabase } from "./store/database.ts";
import { SqlPartyStore } from "./store/party-store.ts";
import { ReadQueries } from "./store/read-queries.ts";
import { createStore } from "./store/store.ts";
import { FederatedTransport, type FederationView, inboundSources } from "./transport/federation.ts";
import { NatsTransport } from "./transport/nats-transport.ts";

const RELOAD_MS = 30_000;
const DAY_MS = 86_400_000;

export interface GatewayOptions {
  clock?: Clock;
  ids?: IdSource;
  logger?: Logger;
  /** Dispatcher poll interval when idle; the wake signal brings it sooner. */
  pollMs?: number;
  /** How often own key files and the partner registry are re-read (default 30 s). */
  reloadMs?: number;
}

export interface Gateway {
  config: Config;
  url: string;
  app: Hono;
  self: PartyRecord;
  database: Database;
  store: Store;
  queries: ReadQueries;
  parties: SqlPartyStore;
  registry: PartnerRegistry;
  keyring: OwnKeyring;
  schemas: SchemaRegistry;
  submitter: Submitter;
  inbox: Inbox;
  cases: CaseBook;
  reminders: ReminderSweep;
  dispatcher: Dispatcher;
  transport: NatsTransport;
  log: Logger;
  /**
   * Stops in order: intake closed (submits answer 503 shutting_down, /readyz not ready) and the
   * HTTP server closed once the requests in flight finished; the timers; inbound consumption
   * (the batch in hand finished and acked); the dispatcher's current pass; the NATS connection
   * drained; the database closed.
   */
  stop(): Promise<void>;
  /** While stop() runs: the steps not finished yet, the one running first. */
  unfinishedStopSteps(): string[];
}

export async function startGateway(config: Config, opts: GatewayOptions = {}): Promise<Gateway> {
  const clock = opts.clock ?? (() => new Date());
  const ids = opts.ids ?? randomUUID;
  const log = opts.logger ?? createLogger(config.logLevel, { party: config.partyId });
  const schemas = loadSchemaRegistry();
  const self: PartyRecord = {
    id: config.partyId,
    name: config.partyName,
    country: config.country,
    kind: config.partyKind,
    inboundSubject: config.inboundSubject,
    ...(config.natsDomain === undefined ? {} : { natsDomain: config.natsDomain }),
    // We accept batch receipts from every partner (docs/protocol.md, Batch receipts) when our
    // size limit lets the largest one in.
    ...(acceptsBatchReceipts(config.maxMessageBytes) ? { receiptBatches: true } : {}),
  };

  const keyring = await OwnKeyring.read({ dir: config.keysDir, self, clock });
  const database = await openDatabase(databaseTarget(config));
  let stopping = false;
  // Undone in reverse order; each step named, so that a stop that takes too long can say where.
  const cleanups: Array<[string, () => Promise<void>]> = [["database", () => database.close()]];
  const unfinished = new Set<string>();
  const cleanup = async () => {
    const steps = cleanups.splice(0).reverse();
    for (const [name] of steps) unfinished.add(name);
    for (const [name, fn] of steps) {
      await fn().catch((err: unknown) =>
        log.error({ err: errorSummary(err), step: name }, "stop step failed"),
      );
      unfinished.delete(name);
    }
  };
  try {
    const store = createStore(database.db);
    const queries = new ReadQueries(database.db);
    const parties = new SqlPartyStore(database.db);
    const registry = await PartnerRegistry.load(parties);
    await keyring.register(registry);

    const transport = await NatsTransport.connect(
      config.natsUrl,
      `liaison-gateway ${config.partyId}`,
    );
    cleanups.push(["nats connection (drain)", () => transport.close()]);

    const deadlines = config.deadlines;
    const cases = new CaseBook({
      keys: registry,
      policy: (owing) => deadlines.byPartner[owing] ?? deadlines.defaults,
    });
    const metrics = new PromMetrics({
      queries,
      keys: parties,
      consumer: () => transport.consumerPending(config.streamName, "gateway"),
      clock,
    });
    // Federation: messages for partners in another country's domain go through our outbound
    // stream for each; our inbound stream sources theirs for us (src/transport/federation.ts).
    const federation: FederationView = { self: config.partyId, domain: config.natsDomain };
    const outbound = new FederatedTransport(transport, federation, config.messageTtlMs + DAY_MS);
    await outbound.sync(registry.listParties());
    const wake = new WakeSignal();
    const receiptIssuer = new ReceiptIssuer(config.partyId, keyring, clock, ids);
    const dispatcher = new Dispatcher({
      store,
      transport: outbound,
      clock,
      wake,
      log,
      batchSize: config.batchSizes.dispatcher,
      pollMs: opts.pollMs ?? 500,
      retry: config.retry,
      metrics,
      renewReceipt: (jws) => receiptIssuer.renew(jws),
      subjectOf: (party) => registry.party(party)?.inboundSubject,
    });
    const inbox = new Inbox({
      self: config.partyId,
      store,
      keys: registry,
      schemas,
      receipts: receiptIssuer,
      batchesTo: (party) => registry.party(party)?.receiptBatches === true,
      clock,
      clockSkewMs: config.clockSkewMs,
      maxMessageBytes: config.maxMessageBytes,
      log,
      wake,
      prompt: dispatcher,
      cases,
      caseKeys: keyring,
      metrics,
    });
    const submitter = new Submitter({
      self: config.partyId,
      store,
      recipients: registry,
      schemas,
      signer: keyring,
      clock,
      ids,
      ttlMs: config.messageTtlMs,
      maxMessageBytes: config.maxMessageBytes,
      wake,
      prompt: dispatcher,
      cases,
      caseKeys: keyring,
      encryption: registry,
      storeUnavailable: isStoreUnavailable,
      metrics,
    });
    const inboxOptions = {
      stream: config.streamName,
      subject: config.inboundSubject,
      durable: "gateway",
      maxAckPending: config.broker.maxAckPending,
      ackWaitMs: config.broker.ackWaitMs,
      sources: () => inboundSources(federation, registry.listParties()),
      keepAcknowledged: federation.domain !== undefined,
    };
    await transport.consumeInbox(
      {
        ...inboxOptions,
        batchSize: config.batchSizes.inbox,
        maxDeliveries: config.inbox.maxDeliveries,
        retryDelayMs: config.inbox.retryDelayMs,
        onError: (err) =>
          log.error({ err: errorSummary(err) }, "inbound processing failed; redelivery scheduled"),
        // A message that failed only because the database was down is not a poison message.
        transient: isStoreUnavailable,
      },
      inbox,
    );
    dispatcher.start();
    cleanups.push(["dispatcher (current pass)", () => dispatcher.stop()]);
    cleanups.push(["inbound consumer (batch in hand)", () => transport.stopConsuming()]);

    // Overdue case steps: a signed reminder to the party that owes each, once per deadline.
    const reminders = new ReminderSweep({
      self: config.partyId,
      cases: store.cases,
      submitter,
      clock,
      log,
    });
    const sweep = setInterval(() => {
      reminders
        .sweep()
        .catch((err: unknown) => log.error({ err: errorSummary(err) }, "reminder sweep failed"));
    }, config.reminderCheckMs);
    sweep.unref();
    cleanups.push(["reminder sweep", async () => clearInterval(sweep)]);

    // Failures are visible: deliveries that failed raise an alert naming the partner
    // (GET /v1/alerts, /metrics, the log) until a delivery to it gets its receipt again.
    const alertWatch = new AlertWatch({
      alerts: new SqlAlertLog(database.db),
      clock,
      log,
      intervalMs: config.alertCheckMs,
    });
    alertWatch.start();
    cleanups.push(["alert watch (pass under way)", () => alertWatch.stop()]);

    // Replicas sharing one PostgreSQL database see partners registered through another replica;
    // a key generated or revoked with the CLI is picked up (and published) without a restart.
    // Independent: a bad key file must not stop partners' changes from arriving, nor the reverse.
    // A partner registered (or moved to another domain) since: our outbound stream for it, and
    // our inbound stream's sources. The stream is updated only when its sources change.
    let sourced = JSON.stringify(inboxOptions.sources());
    const syncFederation = async () => {
      if (federation.domain === undefined) return;
      await outbound.sync(registry.listParties());
      const now = JSON.stringify(inboxOptions.sources());
      if (now === sourced) return;
      await transport.ensureInbox(inboxOptions);
      sourced = now;
      log.info(
        { sources: inboxOptions.sources().map((s) => s.name) },
        "federation sources updated",
      );
    };
    registry.onAdded(() =>
      syncFederation().catch((err: unknown) =>
        log.error({ err: errorSummary(err) }, "federation sync after a registration failed"),
      ),
    );
    const reload = setInterval(() => {
      keyring
        .reload()
        .then((kids) => kids && log.info({ kids }, "own keys reloaded"))
        .catch((err: unknown) => log.error({ err: errorSummary(err) }, "own key reload failed"));
      registry
        .reload()
        .then(() => syncFederation())
        .catch((err: unknown) => log.error({ err: errorSummary(err) }, "registry reload failed"));
    }, opts.reloadMs ?? RELOAD_MS);
    reload.unref();
    cleanups.push(["reload timer", async () => clearInterval(reload)]);

    const refuseWhenStopping = (): void => {
      if (stopping) {
        throw new LiaisonError(
          "shutting_down",
          "the gateway is shutting down; submit again to another replica, or once it is back",
        );
      }
    };
    const app = createApp({
      apiToken: config.apiToken,
      adminToken: config.adminToken,
      self,
      keyring,
      queries,
      registry,
      // Intake closes first when stopping; submits already past this check finish.
      submitter: {
        submit: (request) => {
          refuseWhenStopping();
          return submitter.submit(request);
        },
        submitWithKey: (request, idempotency) => {
          refuseWhenStopping();
          return submitter.submitWithKey(request, idempotency);
        },
      },
      readiness: new Readiness({
        stopping: () => stopping,
        database: queries,
        broker: transport,
        keys: keyring,
        brokerUnreachableMs: config.broker.unreachableMs,
      }),
      schemas,
      maxRequestBytes: config.maxMessageBytes,
      log,
      caseFiles: { read: (caseRef) => cases.read(store.cases, caseRef) },
      caseKeys: keyring,
      clock,
      metrics,
    });
    const server = await listen(app, config.http.host, config.http.port);
    cleanups.push([
      "http server (requests in flight)",
      () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          // Keep-alive connections with no request in flight would hold the close open.
          if ("closeIdleConnections" in server) server.closeIdleConnections();
        }),
    ]);
    // Once stopping, every answer ends its connection: a client that keeps its connection alive
    // and keeps sending (503 shutting_down) must not hold the server's close open.
    server.on("request", (_req, res) => {
      if (stopping && !res.headersSent) res.setHeader("connection", "close");
    });
    const port = (server.address() as AddressInfo).port;
    const url = `http://${config.http.host}:${port}`;
    log.info(
      { url, nats: config.natsUrl, store: database.driver, subject: config.inboundSubject },
      "gateway started",
    );

    return {
      config,
      url,
      app,
      self,
      database,
      store,
      queries,
      parties,
      registry,
      keyring,
      schemas,
      submitter,
      inbox,
      cases,
      reminders,
      dispatcher,
      transport,
      log,
      unfinishedStopSteps: () => [...unfinished],
      stop: async () => {
        stopping = true;
        await cleanup();
        log.info("gateway stopped");
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

function listen(app: Hono, hostname: string, port: number): Promise<ServerType> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, hostname, port }, () => resolve(server));
    server.once("error", reject);
  });
}
