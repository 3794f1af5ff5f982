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

/**
 * The hub's `authorization` block: one user per country, named by the subject of that country's
 * leaf certificate (`leafnodes { tls { verify_and_map: true } }` takes the user from the
 * certificate, and the password must be that user's too), with its permissions, and usable only
 * for a leaf connection (`allowed_connection_types`): nobody can log in on the hub's client port.
 */
export function hubAuthorization(
  countries: FederatedCountry[],
  passwords: Record<string, string>,
): string {
  const users = countries.map((c) => {
    const { publish, subscribe } = leafPermissions(c, countries);
    return `    { user: ${JSON.stringify(leafUser(c.domain))}, password: ${JSON.stringify(passwords[c.domain])}, allowed_connection_types: ["LEAFNODE"], permissions: { publish: { allow: ${JSON.stringify(publish)} }, subscribe: { allow: ${JSON.stringify(subscribe)} } } }`;
  });
  return `authorization {\n  users = [\n${users.join(",\n")}\n  ]\n}`;
}

/** The common name of a country's leaf certificate. */
function leafCertName(domain: string): string {
  return `leaf-${domain}`;
}

/** The hub's user for a country's leaf connection: its certificate's subject. */
export function leafUser(domain: string): string {
  return `CN=${leafCertName(domain)}`;
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
  /** The hub's port for leaf connections (TLS), reached directly, not through a link. */
  hubLeafPort: number;
  /** The federation's CA certificate (PEM file). */
  caFile: string;
  /** A country's leaf certificate and the hub's user and password for it. */
  leafCredentials(domain: string): CertificateFiles & { user: string; password: string };
  /** A new certificate of the federation's CA with subject `CN=<commonName>` (test equipment). */
  issueCertificate(commonName: string): CertificateFiles;
  stop(): Promise<void>;
}

/** A certificate and its key, as files. */
export interface CertificateFiles {
  cert: string;
  key: string;
}

/** A throw-away CA, made with openssl, that issues the hub's and the leaves' certificates. */
class TestCa {
  readonly caFile: string;

  constructor(private readonly dir: string) {
    this.caFile = join(dir, "ca.pem");
    this.ssl(
      "req",
      "-x509",
      ...this.newKey("ca"),
      "-out",
      this.caFile,
      "-days",
      "7",
      "-subj",
      "/CN=liaison federation test CA",
    );
  }

  /** A certificate with subject `CN=<commonName>`, for TLS client and server use on loopback. */
  issue(commonName: string): CertificateFiles {
    const dir = this.dir;
    const name = `issued-${commonName}`;
    this.ssl(
      "req",
      ...this.newKey(name),
      "-out",
      join(dir, `${name}.csr`),
      "-subj",
      `/CN=${commonName}`,
    );
    writeFileSync(
      join(dir, `${name}.ext`),
      "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    );
    this.ssl(
      "x509",
      "-req",
      "-in",
      join(dir, `${name}.csr`),
      "-CA",
      this.caFile,
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
    return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  }

  private ssl(...args: string[]): void {
    execFileSync("openssl", args, { stdio: "pipe" });
  }

  private newKey(name: string): string[] {
    return [
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      join(this.dir, `${name}.key`),
    ];
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
    const ca = new TestCa(certs);
    const hubCert = ca.issue("hub");
    const leafCerts = Object.fromEntries(
      countries.map((c) => [c.domain, ca.issue(leafCertName(c.domain))]),
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
        // verify_and_map: a leaf must present a certificate of the CA, and it logs in as the user
        // its certificate names (with that user's password), never as another.
        `leafnodes {\n  listen: "127.0.0.1:${leafPort}"\n  advertise: "127.0.0.1:${nowhere.port}"\n  tls { cert_file: "${hubCert.cert}", key_file: "${hubCert.key}", ca_file: "${ca.caFile}", verify_and_map: true, timeout: 3 }\n}`,
      ].join("\n"),
    });
    started.push(hub);
    const servers: Record<string, NatsServerHandle> = {};
    const countryOptions: Record<string, StartNatsServerOptions> = {};
    for (const c of countries) {
      const link = await startLink(leafPort);
      links[c.domain] = link;
      // A store of ours (in the certificates' directory), so that a restart keeps the streams.
      const storeDir = join(certs, `store-${c.domain}`);
      mkdirSync(storeDir);
      countryOptions[c.domain] = {
        name: `country-${c.domain}`,
        domain: c.domain,
        storeDir,
        // The user comes from the certificate: the URL carries the password only.
        config: `leafnodes {\n  reconnect: 1\n  remotes = [ { url: "nats-leaf://:${passwords[c.domain]}@127.0.0.1:${link.port}", tls: { cert_file: "${leafCerts[c.domain]?.cert}", key_file: "${leafCerts[c.domain]?.key}", ca_file: "${ca.caFile}" } } ]\n}`,
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
      hubLeafPort: leafPort,
      caFile: ca.caFile,
      leafCredentials(domain) {
        const files = leafCerts[domain];
        const password = passwords[domain];
        if (files === undefined || password === undefined) throw new Error(`no leaf for ${domain}`);
        return { ...files, user: leafUser(domain), password };
      },
      issueCertificate: (commonName) => ca.issue(commonName),
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
