/**
 * The composition root: the only module that knows which adapters the core runs on. It opens the
 * store, loads our keys and the partner registry, connects NATS, starts the inbox consumer and
 * the dispatcher, and serves HTTP. `stop()` undoes all of it in reverse order.
 */
import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import { type ServerType, serve } from "@hono/node-server";
import type { Hono } from "hono";
import { type Config, databaseTarget } from "./config/config.ts";
import { loadSchemaRegistry } from "./config/schema-files.ts";
import { Dispatcher, errorSummary } from "./delivery/dispatcher.ts";
import { InboxProcessor } from "./delivery/inbox-processor.ts";
import { submitMessage } from "./delivery/submit-message.ts";
import { createApp } from "./http/app.ts";
import { createLogger, type Logger } from "./observability/logger.ts";
import { LiaisonError } from "./protocol/errors.ts";
import type { Clock, IdSource, SigningKey } from "./protocol/types.ts";
import { currentSigningKey, loadKeyFiles, type OwnKey } from "./registry/key-files.ts";
import { PartnerRegistry } from "./registry/partner-registry.ts";
import type { SchemaRegistry } from "./schemas/schema-registry.ts";
import { type Database, openDatabase } from "./store/database.ts";
import { type KeyRecord, MessageStore, type PartyRecord } from "./store/message-store.ts";
import { NatsTransport } from "./transport/nats-transport.ts";

const REGISTRY_RELOAD_MS = 30_000;

export interface GatewayOptions {
  clock?: Clock;
  ids?: IdSource;
  logger?: Logger;
  /** Dispatcher poll interval when idle; the dispatcher is also woken on every new row. */
  pollMs?: number;
  /** How often own key files and the partner registry are re-read (default 30 s). */
  reloadMs?: number;
}

export interface Gateway {
  config: Config;
  url: string;
  app: Hono;
  self: PartyRecord;
  store: MessageStore;
  registry: PartnerRegistry;
  schemas: SchemaRegistry;
  database: Database;
  dispatcher: Dispatcher;
  inbox: InboxProcessor;
  transport: NatsTransport;
  log: Logger;
  stop(): Promise<void>;
}

export async function startGateway(config: Config, opts: GatewayOptions = {}): Promise<Gateway> {
  const clock = opts.clock ?? (() => new Date());
  const ids = opts.ids ?? randomUUID;
  const log = opts.logger ?? createLogger(config.logLevel, { party: config.partyId });
  const schemas = loadSchemaRegistry();

  let ownKeys = await loadKeyFiles(config.keysDir);
  if (currentSigningKey(ownKeys, clock()) === undefined) {
    throw new LiaisonError(
      "key_store_invalid",
      `no signing key valid now in ${config.keysDir}; run: liaison keys generate`,
    );
  }
  const signingKey = (): SigningKey => {
    const key = currentSigningKey(ownKeys, clock());
    if (key === undefined)
      throw new LiaisonError("key_store_invalid", "no signing key is valid now");
    return key.signing;
  };

  const database = await openDatabase(databaseTarget(config));
  const cleanups: Array<() => Promise<void>> = [() => database.close()];
  const cleanup = async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => {});
  };
  try {
    const store = new MessageStore(database.db);
    const self: PartyRecord = {
      id: config.partyId,
      name: config.partyName,
      country: config.country,
      kind: config.partyKind,
      inboundSubject: config.inboundSubject,
    };
    const registry = await PartnerRegistry.load(store);
    await registry.add(
      self,
      ownKeys.map((k) => ownKeyRecord(config.partyId, k)),
    );

    const transport = await NatsTransport.connect(
      config.natsUrl,
      `liaison-gateway ${config.partyId}`,
    );
    cleanups.push(() => transport.close());

    const dispatcher = new Dispatcher(store, transport, clock, log, {
      batchSize: 100,
      pollMs: opts.pollMs ?? 500,
      retry: config.retry,
    });
    const inbox = new InboxProcessor({
      self: config.partyId,
      store,
      keys: registry,
      schemas,
      signingKey,
      clock,
      ids,
      clockSkewMs: config.clockSkewMs,
      maxMessageBytes: config.maxMessageBytes,
      log,
      onReceiptQueued: () => dispatcher.wake(),
    });
    await transport.consumeInbox(
      {
        stream: config.streamName,
        subject: config.inboundSubject,
        durable: "gateway",
        maxAckPending: 1000,
        batchSize: 100,
        onError: (err) =>
          log.error({ err: errorSummary(err) }, "inbound processing failed; redelivery scheduled"),
      },
      async (batch) => {
        await inbox.handleBatch(batch);
      },
    );
    dispatcher.start();
    cleanups.push(() => dispatcher.stop());

    // Replicas sharing one PostgreSQL database see partners registered through another replica;
    // a key generated or revoked with the CLI is picked up (and published) without a restart.
    const reloadOwnKeys = async () => {
      const fresh = await loadKeyFiles(config.keysDir);
      const fingerprint = (keys: OwnKey[]) =>
        keys.map((k) => `${k.kid}:${k.validUntil?.getTime()}:${k.revokedAt?.getTime()}`).join();
      if (fingerprint(fresh) === fingerprint(ownKeys)) return;
      // Registered first: should that fail, the next round tries again with the same change.
      await registry.add(
        self,
        fresh.map((k) => ownKeyRecord(config.partyId, k)),
      );
      ownKeys = fresh;
      log.info({ kids: ownKeys.map((k) => k.kid) }, "own keys reloaded");
    };
    const reload = setInterval(() => {
      // Independent: a bad key file must not stop partners' changes from arriving, nor the reverse.
      reloadOwnKeys().catch((err: unknown) =>
        log.error({ err: errorSummary(err) }, "own key reload failed"),
      );
      registry
        .reload()
        .catch((err: unknown) => log.error({ err: errorSummary(err) }, "registry reload failed"));
    }, opts.reloadMs ?? REGISTRY_RELOAD_MS);
    reload.unref();
    cleanups.push(async () => clearInterval(reload));

    const app = createApp({
      apiToken: config.apiToken,
      adminToken: config.adminToken,
      self,
      ownKeys: () => ownKeys.map((k) => ownKeyRecord(config.partyId, k)),
      store,
      registry,
      submit: (request) =>
        submitMessage(request, {
          self: config.partyId,
          store,
          registry,
          schemas,
          signingKey,
          clock,
          ids,
          ttlMs: config.messageTtlMs,
          maxMessageBytes: config.maxMessageBytes,
          onQueued: () => dispatcher.wake(),
        }),
      ready: async () => {
        if (transport.connection.isClosed()) return false;
        if (currentSigningKey(ownKeys, clock()) === undefined) return false;
        try {
          await store.ping();
          return true;
        } catch {
          return false;
        }
      },
      maxRequestBytes: config.maxMessageBytes,
      log,
    });
    const server = await listen(app, config.http.host, config.http.port);
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
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
      store,
      registry,
      schemas,
      database,
      dispatcher,
      inbox,
      transport,
      log,
      stop: async () => {
        await cleanup();
        log.info("gateway stopped");
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

function ownKeyRecord(partyId: string, key: OwnKey): KeyRecord {
  const { kid: _kid, alg: _alg, use: _use, ...publicJwk } = key.publicJwk;
  return {
    kid: key.kid,
    partyId,
    alg: key.alg,
    publicJwk,
    validFrom: key.validFrom,
    validUntil: key.validUntil,
    revokedAt: key.revokedAt,
  };
}

function listen(app: Hono, hostname: string, port: number): Promise<ServerType> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, hostname, port }, () => resolve(server));
    server.once("error", reject);
  });
}
