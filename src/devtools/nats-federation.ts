/**
 * A federation of throw-away nats-servers for the demo and the tests, built the way
 * docs/operations.md tells operators to build theirs: a hub without JetStream, and one server per
 * country with its own JetStream domain, joined to the hub as a leaf node over mutual TLS, each
 * country's leaf user allowed only what federation needs (`hubAuthorization`).
 *
 * Each leaf reaches the hub through a TCP relay of this module, so that a test can cut one
 * country's link and restore it while both servers keep running, as a cut cable would. The relay
 * is test equipment only; in production the leaf connects to the hub directly.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deliverPrefix, outboundStreamName } from "../transport/federation.ts";
import { freePort } from "./free-port.ts";
import {
  type NatsServerHandle,
  type StartNatsServerOptions,
  startNatsServer,
} from "./nats-server.ts";

export interface FederatedCountry {
  /** The country's JetStream domain (conventionally its ISO code, e.g. "VN"). */
  domain: string;
  /** The parties whose gateways use this country's server. */
  parties: string[];
}

/**
 * The hub's permissions for one country's leaf connection. For a leaf connection, what the
 * user may publish is what the leaf may send into the hub, and what it may subscribe to is what
 * the hub forwards to it. A country may:
 * - ask another domain only to create (or delete) the consumer that sources the outbound stream
 *   of one of that domain's parties for one of its own parties;
 * - receive API requests for its own domain (the other countries' permissions decide which reach
 *   it), and deliveries only on its own prefix;
 * - exchange the replies and flow control that stream sourcing uses.
 * Nothing else crosses: no core publish to another country's subjects, no other domain's API.
 */
export function leafPermissions(
  country: FederatedCountry,
  all: FederatedCountry[],
): { publish: string[]; subscribe: string[] } {
  const publish = ["$JS.FC.>", "$JSC.R.>"];
  for (const other of all) {
    if (other.domain === country.domain) continue;
    publish.push(`${deliverPrefix(other.domain, country.domain)}.>`);
    for (const sender of other.parties) {
      for (const recipient of country.parties) {
        const stream = outboundStreamName(sender, recipient);
        publish.push(
          `$JS.${other.domain}.API.CONSUMER.CREATE.${stream}`,
          `$JS.${other.domain}.API.CONSUMER.DELETE.${stream}.>`,
        );
      }
    }
  }
  return {
    publish,
    subscribe: [
      `$JS.${country.domain}.API.>`,
      "$JS.FC.>",
      "$JSC.R.>",
      `liaison.deliver.${country.domain}.>`,
    ],
  };
}

/** The hub's `authorization` block: one leaf user per country, with its permissions. */
export function hubAuthorization(
  countries: FederatedCountry[],
  passwords: Record<string, string>,
): string {
  const users = countries.map((c) => {
    const { publish, subscribe } = leafPermissions(c, countries);
    return `    { user: ${JSON.stringify(leafUser(c.domain))}, password: ${JSON.stringify(passwords[c.domain])}, permissions: { publish: { allow: ${JSON.stringify(publish)} }, subscribe: { allow: ${JSON.stringify(subscribe)} } } }`;
  });
  return `authorization {\n  users = [\n${users.join(",\n")}\n  ]\n}`;
}

function leafUser(domain: string): string {
  return `leaf-${domain.toLowerCase()}`;
}

/** A cuttable TCP link: forwards a local port to a target until cut. */
export interface Link {
  port: number;
  /** Drops every connection through the link and refuses new ones. */
  cut(): void;
  restore(): void;
  readonly isCut: boolean;
  close(): Promise<void>;
}

async function startLink(targetPort: number): Promise<Link> {
  const sockets = new Set<Socket>();
  let cut = false;
  const server: Server = createServer((inbound) => {
    if (cut) {
      inbound.destroy();
      return;
    }
    const outbound = tcpConnect(targetPort, "127.0.0.1");
    sockets.add(inbound).add(outbound);
    const drop = () => {
      inbound.destroy();
      outbound.destroy();
      sockets.delete(inbound);
      sockets.delete(outbound);
    };
    inbound.on("error", drop).on("close", drop);
    outbound.on("error", drop).on("close", drop);
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  });
  const port = await freePort();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  return {
    port,
    cut() {
      cut = true;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    restore() {
      cut = false;
    },
    get isCut() {
      return cut;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface Federation {
  hub: NatsServerHandle;
  /** Each country's server, by domain; its gateways connect to `url`. */
  servers: Record<string, NatsServerHandle>;
  /** Each country's link to the hub, by domain. */
  links: Record<string, Link>;
  /** How many nats-servers run (the hub included). */
  serverCount: number;
  /** Waits until every country's leaf connection is up (after a start or a restored link). */
  connected(timeoutMs?: number): Promise<void>;
  /** Stops a country's server and starts it again on the same port and store. */
  restartCountry(domain: string): Promise<void>;
  stop(): Promise<void>;
}

/** Makes a CA, a hub certificate and one client certificate per country, with openssl. */
function makeCertificates(dir: string, domains: string[]): void {
  const ssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  const key = (name: string) => [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    join(dir, `${name}.key`),
  ];
  ssl(
    "req",
    "-x509",
    ...key("ca"),
    "-out",
    join(dir, "ca.pem"),
    "-days",
    "7",
    "-subj",
    "/CN=liaison federation test CA",
  );
  for (const name of ["hub", ...domains.map((d) => `leaf-${d}`)]) {
    ssl("req", ...key(name), "-out", join(dir, `${name}.csr`), "-subj", `/CN=${name}`);
    writeFileSync(
      join(dir, `${name}.ext`),
      "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    );
    ssl(
      "x509",
      "-req",
      "-in",
      join(dir, `${name}.csr`),
      "-CA",
      join(dir, "ca.pem"),
      "-CAkey",
      join(dir, "ca.key"),
      "-CAcreateserial",
      "-out",
      join(dir, `${name}.pem`),
      "-days",
      "7",
      "-extfile",
      join(dir, `${name}.ext`),
    );
  }
}

/**
 * Starts the hub and one server per country, joined over TLS through cuttable links, and waits
 * until every leaf connection is up.
 */
export async function startNatsFederation(countries: FederatedCountry[]): Promise<Federation> {
  const certs = mkdtempSync(join(tmpdir(), "liaison-federation-tls-"));
  const started: NatsServerHandle[] = [];
  const links: Record<string, Link> = {};
  const extra: Link[] = [];
  const stop = async () => {
    for (const link of [...Object.values(links), ...extra]) await link.close();
    await Promise.allSettled(started.map((s) => s.stop()));
    rmSync(certs, { recursive: true, force: true });
  };
  try {
    makeCertificates(
      certs,
      countries.map((c) => c.domain),
    );
    const passwords = Object.fromEntries(
      countries.map((c) => [c.domain, randomBytes(18).toString("base64url")]),
    );
    const leafPort = await freePort();
    // The hub tells its leaves where it listens, and a leaf would then reconnect there directly,
    // around its link (no_advertise does not stop that for leaf connections): the hub advertises
    // a port of ours that refuses every connection, so a leaf comes back only through its link.
    const nowhere = await startLink(leafPort);
    nowhere.cut();
    extra.push(nowhere);
    const hub = await startNatsServer({
      name: "hub",
      jetStream: false,
      config: [
        hubAuthorization(countries, passwords),
        `leafnodes {\n  listen: "127.0.0.1:${leafPort}"\n  advertise: "127.0.0.1:${nowhere.port}"\n  tls { cert_file: "${join(certs, "hub.pem")}", key_file: "${join(certs, "hub.key")}", ca_file: "${join(certs, "ca.pem")}", verify: true, timeout: 3 }\n}`,
      ].join("\n"),
    });
    started.push(hub);
    const servers: Record<string, NatsServerHandle> = {};
    const countryOptions: Record<string, StartNatsServerOptions> = {};
    for (const c of countries) {
      const link = await startLink(leafPort);
      links[c.domain] = link;
      const name = `leaf-${c.domain}`;
      // A store of ours (in the certificates' directory), so that a restart keeps the streams.
      const storeDir = join(certs, `store-${c.domain}`);
      mkdirSync(storeDir);
      countryOptions[c.domain] = {
        name: `country-${c.domain}`,
        domain: c.domain,
        storeDir,
        config: `leafnodes {\n  reconnect: 1\n  remotes = [ { url: "nats-leaf://${leafUser(c.domain)}:${passwords[c.domain]}@127.0.0.1:${link.port}", tls: { cert_file: "${join(certs, `${name}.pem`)}", key_file: "${join(certs, `${name}.key`)}", ca_file: "${join(certs, "ca.pem")}" } } ]\n}`,
      };
      const server = await startNatsServer(countryOptions[c.domain]);
      started.push(server);
      servers[c.domain] = server;
    }
    const federation: Federation = {
      hub,
      servers,
      links,
      serverCount: started.length,
      connected: (timeoutMs = 15_000) => leafsConnected(hub, countries.length, timeoutMs),
      async restartCountry(domain) {
        const old = servers[domain];
        const options = countryOptions[domain];
        if (old === undefined || options === undefined) throw new Error(`no server for ${domain}`);
        await old.stop();
        const server = await startNatsServer({ ...options, port: old.port });
        started[started.indexOf(old)] = server;
        servers[domain] = server;
      },
      stop,
    };
    await federation.connected();
    return federation;
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Polls the hub's monitoring endpoint until `count` leaf connections are up. */
async function leafsConnected(
  hub: NatsServerHandle,
  count: number,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const leafs = await fetch(`${hub.monitorUrl}/leafz`)
      .then((r) => r.json() as Promise<{ leafnodes?: number }>)
      .then((j) => j.leafnodes ?? 0)
      .catch(() => 0);
    if (leafs >= count) return;
    if (Date.now() > deadline) {
      throw new Error(
        `nats federation: ${leafs} of ${count} leaf connections up after ${timeoutMs} ms`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
