/**
 * A federation of throw-away nats-servers for the demo and the tests, built the way
 * docs/operations.md tells operators to build theirs: a hub without JetStream, and one server per
 * country with its own JetStream domain, the gateways' account, and two accounts per partner
 * country: an outbound account (holding mirrors of the gateways' outbound streams for that
 * country's parties, which that country sources) and a sourcing account (whose streams source
 * that country's mirrors for this country's parties; the gateways' inbound streams source those
 * locally). Each of those accounts joins the hub by a leaf connection of its own over mutual TLS,
 * bound on the hub to an account of its own that sees only what federation needs
 * (`hubAccounts`). The gateways' account has no leaf connection.
 *
 * Each country reaches the hub through a TCP relay of this module (all its leaf connections),
 * so that a test can cut one country's link and restore it while both servers keep running, as
 * a cut cable would. The relay is test equipment only; in production the leaves connect to the
 * hub directly.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type JetStreamManager, nanos, RetentionPolicy, StorageType } from "nats";
import { deliverPrefix, outboundStreamName } from "../transport/federation.ts";
import { freePort } from "./free-port.ts";
import {
  type NatsServerHandle,
  type StartNatsServerOptions,
  startNatsServer,
} from "./nats-server.ts";
import { PortInUseError } from "./process-guard.ts";

export interface FederatedCountry {
  /** The country's JetStream domain (conventionally its ISO code, e.g. "VN"). */
  domain: string;
  /** The parties whose gateways use this country's server. */
  parties: string[];
}

/**
 * One of a country's leaf connections to the hub (docs/operations.md, Federation), two per
 * partner country (`partner`, its domain), each bound to one account of that country's server:
 * - its sourcing leaf for the partner (`role: "sourcing"`), bound to an account of its own
 *   (`SOURCING_<partner>`) whose streams source the partner's mirrors for this country's parties.
 *   What the partner delivers lands there, and what it can make those streams publish there (a
 *   source answers a flow-control message on its delivery subject by publishing an empty message
 *   to a subject the message names) stays in that account, which holds only that partner's flow
 *   to this country. The gateways' inbound streams source that account's streams, on this server.
 * - its outbound leaf for the partner (`role: "outbound"`), bound to an account of its own
 *   (`OUTBOUND_<partner>`) that holds only mirrors of the gateways' outbound streams for that
 *   country's parties: that country sources those. It creates its consumers there and may choose
 *   their delivery subjects, but whatever it chooses, the deliveries stay in that account, where
 *   no stream takes anything from a subject and no gateway listens.
 */
export interface Leaf {
  domain: string;
  partner: string;
  role: LeafRole;
}
export type LeafRole = "sourcing" | "outbound";

/** The gateways' account on a country's server (clients without credentials land there). */
export const GATEWAY_ACCOUNT = "LIAISON";
/** The account on a country's server that holds the mirrors one partner country sources. */
export function outboundAccount(to: string): string {
  return `OUTBOUND_${to}`;
}
/** The account on a country's server whose streams source one partner country's mirrors. */
export function sourcingAccount(from: string): string {
  return `SOURCING_${from}`;
}
/** The API prefix under which an outbound account reaches the gateways' account's consumers. */
const GATEWAY_API = `$JS.${GATEWAY_ACCOUNT}.API`;
/** Where the gateways' account delivers to the mirrors in the outbound account for `to`. */
function mirrorDeliver(to: string): string {
  return `liaison.mirror.${to}`;
}

/**
 * The prefix of the subjects a partner's mirrors are delivered on across the hub, from
 * `fromDomain`'s outbound account for `toDomain` to `toDomain`'s sourcing account for
 * `fromDomain`. Not the gateways' `deliverPrefix` (which stays on the receiving server, from the
 * sourcing account to the gateways' account): nothing the partner publishes reaches the gateways'
 * account.
 */
export function borderPrefix(toDomain: string, fromDomain: string): string {
  return `liaison.border.${toDomain}.${fromDomain}`;
}

/** Every leaf connection: for each country, its sourcing and outbound leaf for each other. */
export function federationLeaves(countries: FederatedCountry[]): Leaf[] {
  return countries.flatMap((c) =>
    countries
      .filter((o) => o.domain !== c.domain)
      .flatMap((o) => [
        { domain: c.domain, partner: o.domain, role: "sourcing" as const },
        { domain: c.domain, partner: o.domain, role: "outbound" as const },
      ]),
  );
}

/**
 * How long a server keeps the response mapping of a request with a reply subject on a `$JS.FC`
 * service export (the hub's, and the gateways' account's to the outbound accounts) before it
 * forgets it (nats-server's `response_threshold`; 2 minutes by default). A flow-control answer
 * carries no reply subject and needs no mapping: only forged requests have one, and a partner
 * sending them in bulk held a mapping and a subscription per request, on the hub and on the
 * sender's server, for minutes.
 */
export const FC_RESPONSE_THRESHOLD = "1s";

/**
 * The same for the consumer create and delete requests the hub carries (`$JS.<domain>.API.…`):
 * these are answered, but a forged request whose doubled `Nats-Request-Info` header names an
 * account the far server does not have is not (JetStream only logs it), and held its mapping
 * for 2 minutes. Long enough for a legitimate answer to cross a slow link: a source itself waits
 * only 5 s for the answer to its consumer create before it asks again (nats-server 2.9.10,
 * `setSourceConsumer`, stream.go 2646; read in the source), so this threshold never drops an
 * answer a source still waits for.
 */
export const API_RESPONSE_THRESHOLD = "10s";

/** The hub's account for one of a country's leaf connections. */
export function hubAccount(domain: string, role: LeafRole, partner: string): string {
  return `${domain}_${role.toUpperCase()}_${partner}`;
}

/**
 * What crosses the hub between `to`'s sourcing account for `from` (whose streams source) and
 * `from`'s outbound account for `to` (which holds the mirrors they source):
 * - `services`: exported by the outbound account to the sourcing account as **services**, one
 *   set per pair of parties: the requests to create (or delete) the consumer on the mirror of
 *   each outbound stream of `from`'s parties for `to`'s parties (named by `mirrorName`, which no
 *   other account of `from`'s server uses), and the flow-control answers for those consumers. A service import gives a request a reply subject of the hub's (`_R_.…`) and
 *   carries the answer back to the requester's own reply subject: the requester cannot choose
 *   where the sender's server publishes its answer (with a stream export it could, and an answer
 *   published onto the outbound account's import of the gateways' consumer API crashed
 *   nats-server 2.9.10). A flow-control answer has no reply subject, so it costs the hub no
 *   response mapping. Service imports also reach the leaf connections already up when the hub
 *   reloads its configuration, which stream imports do not: a pair of parties added is a reload.
 * - `toSourcing`: stream exports of the outbound account to the sourcing account, one per pair
 *   of countries: the deliveries, on `to`'s border prefix for `from`.
 */
export function crossings(
  from: FederatedCountry,
  to: FederatedCountry,
): { services: string[]; toSourcing: string[] } {
  const services: string[] = [];
  for (const sender of from.parties) {
    for (const recipient of to.parties) {
      const stream = mirrorName(sender, recipient);
      services.push(
        `$JS.${from.domain}.API.CONSUMER.CREATE.${stream}`,
        `$JS.${from.domain}.API.CONSUMER.DELETE.${stream}.*`,
        `$JS.FC.${stream}.>`,
      );
    }
  }
  return { services, toSourcing: [`${borderPrefix(to.domain, from.domain)}.>`] };
}

/**
 * The hub's `accounts` block: one account per leaf connection (`federationLeaves`: a sourcing
 * and an outbound account per ordered pair of countries), each with one user named by the
 * subject of that connection's certificate (`leafnodes { tls { verify_and_map: true } }` takes
 * the user from the certificate, and the password must be that user's too), usable only for a
 * leaf connection (`allowed_connection_types`): nobody can log in on the hub's client port.
 * Accounts see nothing of each other but what `crossings` exports. `passwords` by hub account.
 */
export function hubAccounts(
  countries: FederatedCountry[],
  passwords: Record<string, string>,
): string {
  const exports = new Map<string, string[]>();
  const imports = new Map<string, string[]>();
  const add = (map: Map<string, string[]>, account: string, line: string) =>
    map.set(account, [...(map.get(account) ?? []), line]);
  const cross = (kind: "service" | "stream", subject: string, from: string, to: string) => {
    const threshold = subject.startsWith("$JS.FC.")
      ? `, response_threshold: "${FC_RESPONSE_THRESHOLD}"`
      : /^\$JS\.[^.]+\.API\.CONSUMER\.(CREATE|DELETE)\./.test(subject)
        ? `, response_threshold: "${API_RESPONSE_THRESHOLD}"`
        : "";
    add(exports, from, `{ ${kind}: ${JSON.stringify(subject)}, accounts: [${to}]${threshold} }`);
    add(imports, to, `{ ${kind}: { account: ${from}, subject: ${JSON.stringify(subject)} } }`);
  };
  for (const from of countries) {
    for (const to of countries) {
      if (from === to) continue;
      const sourcing = hubAccount(to.domain, "sourcing", from.domain);
      const outbound = hubAccount(from.domain, "outbound", to.domain);
      const { services, toSourcing } = crossings(from, to);
      for (const subject of services) cross("service", subject, outbound, sourcing);
      for (const subject of toSourcing) cross("stream", subject, outbound, sourcing);
    }
  }
  const accounts = federationLeaves(countries).map(({ domain, role, partner }) => {
    const name = hubAccount(domain, role, partner);
    const user = `{ user: ${JSON.stringify(leafUser(domain, role, partner))}, password: ${JSON.stringify(passwords[name])}, allowed_connection_types: ["LEAFNODE"] }`;
    return [
      `  ${name}: {`,
      `    users: [ ${user} ]`,
      `    exports: [\n      ${(exports.get(name) ?? []).join(",\n      ")}\n    ]`,
      `    imports: [\n      ${(imports.get(name) ?? []).join(",\n      ")}\n    ]`,
      "  }",
    ].join("\n");
  });
  return `accounts {\n${accounts.join("\n")}\n}`;
}

/** The common name of the certificate of one of a country's leaf connections. */
function leafCertName(domain: string, role: LeafRole, partner: string): string {
  return `leaf-${domain}-${role}-${partner}`;
}

/** The hub's user for one of a country's leaf connections: its certificate's subject. */
export function leafUser(domain: string, role: LeafRole, partner: string): string {
  return `CN=${leafCertName(domain, role, partner)}`;
}

/** A partner country's accounts on a country's server, with their users (its operators). */
export interface PartnerAccounts {
  /** The partner's domain. */
  domain: string;
  /** The outbound account's users. */
  outbound: { user: string; password: string }[];
  /** The sourcing account's users. */
  sourcing: { user: string; password: string }[];
  /**
   * The streams of the sourcing account (named as the partner's outbound streams for this
   * country's parties), whose flow control the gateways' account answers.
   */
  streams: string[];
}

/**
 * A country's server's accounts: the gateways' (`LIAISON`, where a client without credentials
 * lands), and for each partner country an outbound account, which may create consumers on the
 * gateways' outbound streams (to mirror them), take what those consumers deliver for its mirrors,
 * and answer their flow control, and nothing else of the gateways' account; and a sourcing
 * account, whose consumer API the gateways' account reaches under the partner's domain API
 * (`$JS.<partner>.API`), so that the gateways' inbound streams source its streams as they
 * would the partner's, taking their deliveries on the gateways' `deliverPrefix` and answering
 * their flow control. The sourcing account imports nothing.
 */
export function countryAccounts(
  domain: string,
  gatewayPassword: string,
  partners: PartnerAccounts[],
): string {
  const all = partners.map((p) => outboundAccount(p.domain)).join(", ");
  return [
    "accounts {",
    `  ${GATEWAY_ACCOUNT}: {`,
    "    jetstream: enabled",
    `    users: [ { user: "gateway", password: ${JSON.stringify(gatewayPassword)} } ]`,
    "    exports: [",
    [
      `      { service: "$JS.API.CONSUMER.CREATE.*", accounts: [${all}] }`,
      `      { service: "$JS.FC.>", accounts: [${all}], response_threshold: "${FC_RESPONSE_THRESHOLD}" }`,
      ...partners.map(
        (p) =>
          `      { stream: "${mirrorDeliver(p.domain)}.>", accounts: [${outboundAccount(p.domain)}] }`,
      ),
    ].join(",\n"),
    "    ]",
    "    imports: [",
    partners
      .flatMap((p) => [
        `      { service: { account: ${sourcingAccount(p.domain)}, subject: "$JS.API.CONSUMER.CREATE.*" }, to: "$JS.${p.domain}.API.CONSUMER.CREATE.*" }`,
        ...p.streams.map(
          (stream) =>
            `      { service: { account: ${sourcingAccount(p.domain)}, subject: "$JS.FC.${stream}.>" } }`,
        ),
        `      { stream: { account: ${sourcingAccount(p.domain)}, subject: "${deliverPrefix(domain, p.domain)}.>" } }`,
      ])
      .join(",\n"),
    "    ]",
    "  }",
    ...partners.flatMap((p) => [
      `  ${outboundAccount(p.domain)}: {`,
      "    jetstream: enabled",
      `    users: ${JSON.stringify(p.outbound)}`,
      "    imports: [",
      `      { service: { account: ${GATEWAY_ACCOUNT}, subject: "$JS.API.CONSUMER.CREATE.*" }, to: "${GATEWAY_API}.CONSUMER.CREATE.*" },`,
      `      { service: { account: ${GATEWAY_ACCOUNT}, subject: "$JS.FC.>" } },`,
      `      { stream: { account: ${GATEWAY_ACCOUNT}, subject: "${mirrorDeliver(p.domain)}.>" } }`,
      "    ]",
      "  }",
      `  ${sourcingAccount(p.domain)}: {`,
      "    jetstream: enabled",
      `    users: ${JSON.stringify(p.sourcing)}`,
      "    exports: [",
      `      { service: "$JS.API.CONSUMER.CREATE.*", accounts: [${GATEWAY_ACCOUNT}] },`,
      `      { service: "$JS.FC.>", accounts: [${GATEWAY_ACCOUNT}] },`,
      `      { stream: "${deliverPrefix(domain, p.domain)}.>", accounts: [${GATEWAY_ACCOUNT}] }`,
      "    ]",
      "  }",
    ]),
    "}",
    'no_auth_user: "gateway"',
  ].join("\n");
}

/**
 * The name of the mirror, in an outbound account, of one of the gateways' outbound streams: a
 * name no other account of the server uses (`MIRROR_` is no prefix of the gateways' streams'
 * names, nor of the sourcing accounts' streams', which are named as the partner's outbound
 * streams). The hub carries the partner's consumer requests on this name only
 * (`$JS.<domain>.API.CONSUMER.CREATE.<mirror>`), and nats-server 2.9.10 can be made to serve such
 * a request in another account of the server than the mirror's: a request with two
 * `Nats-Request-Info` headers keeps the second, which names the account JetStream acts in (the
 * server replaces only the first). Were the mirror named as the gateways' stream, that account
 * could be the gateways' own, with its stream of that name; under this name no account but the
 * mirror's has a stream to act on (JetStream answers 10059, stream not found).
 */
export function mirrorName(sender: string, recipient: string): string {
  return `MIRROR_${outboundStreamName(sender, recipient)}`;
}

/**
 * The mirror, in the outbound account for the recipient's country (`toDomain`), of one of the
 * gateways' outbound streams (`mirrorName`).
 *
 * No `max_consumers`, although the partner creates consumers on it and nothing else bounds how
 * many: nats-server does not count direct consumers (a source's, or any the partner asks for
 * with `"direct": true`) against it, yet once the others reach it, it refuses every create,
 * direct ones included (2.9.10, `addConsumerWithAssignment`, consumer.go 634-640). Tried with
 * 1: five direct creates were taken; one lingering plain consumer of the partner's, and its
 * source could not make its consumer again after a 5 s cut (nothing crossed in 40 s, 10026
 * every 2 s).
 */
export function outboundMirror(
  sender: string,
  recipient: string,
  toDomain: string,
  maxAgeMs: number,
) {
  return {
    name: mirrorName(sender, recipient),
    mirror: {
      name: outboundStreamName(sender, recipient),
      external: { api: GATEWAY_API, deliver: mirrorDeliver(toDomain) },
    },
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: nanos(maxAgeMs),
  };
}

/**
 * The stream, in the recipient's country's sourcing account for the sender's country
 * (`fromDomain`), that sources the sender's mirror of its outbound stream for the recipient
 * across the hub (`mirrorName`); it is named as the sender's outbound stream, which the
 * recipient's gateway's inbound stream sources, locally.
 */
export function sourcingStream(
  sender: string,
  recipient: string,
  fromDomain: string,
  toDomain: string,
  maxAgeMs: number,
) {
  return {
    name: outboundStreamName(sender, recipient),
    sources: [
      {
        name: mirrorName(sender, recipient),
        external: { api: `$JS.${fromDomain}.API`, deliver: borderPrefix(toDomain, fromDomain) },
      },
    ],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: nanos(maxAgeMs),
  };
}

/** A cuttable TCP link: forwards a local port to a target until cut. */
export interface Link {
  port: number;
  /** Drops every connection through the link and refuses new ones. */
  cut(): void;
  restore(): void;
  readonly isCut: boolean;
  /**
   * Delays what crosses the link (test equipment for a slow link): each chunk read from the
   * country's side (`upMs`, towards the hub) or from the hub's side (`downMs`) is written on
   * after that many milliseconds, in the order it was read (a chunk never overtakes an earlier
   * one of the same direction, even when the delay is lowered meanwhile). A connection's end
   * follows its last bytes with the same delay; a cut still drops everything at once, bytes in
   * flight included. Applies to the connections already open too; 0 and 0 (the default) is no
   * delay.
   */
  setDelay(delay: { upMs: number; downMs: number }): void;
  readonly delay: { upMs: number; downMs: number };
  close(): Promise<void>;
}

/**
 * Forwards what `from` reads to `to`, each chunk `delayMs()` after it was read, in order: one
 * queue per direction, and a chunk waits for the one before it. The end of `from`'s stream
 * follows its last chunk the same way, and so does an abrupt close (a reset), which then
 * destroys `to`. Pauses `from` while `to` cannot take more (back-pressure, as `pipe`). `open` is
 * called before the first write to `to` (a connection opened late, as across a slow link).
 */
function relay(from: Socket, to: Socket, delayMs: () => number, open: () => void = () => {}): void {
  type Item = Buffer | "end" | "reset";
  const queue: { due: number; item: Item }[] = [];
  let timer: NodeJS.Timeout | undefined;
  let ended = false;
  const forward = (item: Item) => {
    if (to.destroyed) return;
    open();
    if (item === "reset") {
      to.destroy();
    } else if (item === "end") {
      to.end();
    } else if (!to.write(item) && !from.isPaused()) {
      from.pause();
      to.once("drain", () => from.resume());
    }
  };
  const pump = () => {
    timer = undefined;
    for (let head = queue[0]; head !== undefined && head.due <= Date.now(); head = queue[0]) {
      queue.shift();
      forward(head.item);
    }
    const next = queue[0];
    if (next !== undefined && !to.destroyed) timer = setTimeout(pump, next.due - Date.now());
  };
  const push = (item: Item) => {
    const ms = delayMs();
    if (ms <= 0 && queue.length === 0) {
      forward(item);
      return;
    }
    queue.push({ due: Date.now() + ms, item });
    timer ??= setTimeout(pump, Math.max(0, (queue[0]?.due ?? 0) - Date.now()));
  };
  from.on("data", (chunk: Buffer) => push(chunk));
  from.on("end", () => {
    ended = true;
    push("end");
  });
  from.on("close", () => {
    if (!ended) push("reset");
  });
  to.on("close", () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    queue.length = 0;
  });
}

async function startLink(targetPort: number): Promise<Link> {
  const sockets = new Set<Socket>();
  let cut = false;
  let delay = { upMs: 0, downMs: 0 };
  const server: Server = createServer({ allowHalfOpen: true }, (inbound) => {
    if (cut) {
      inbound.destroy();
      return;
    }
    // The connection reaches the target one way's delay after it was opened here, as a
    // connection request crosses a slow link: the target's first words (nats-server's INFO)
    // then come back a round trip after the connection was opened, as they would.
    const outbound = new Socket({ allowHalfOpen: true });
    let opened = false;
    const open = () => {
      if (opened || outbound.destroyed) return;
      opened = true;
      outbound.connect(targetPort, "127.0.0.1");
    };
    if (delay.upMs > 0) setTimeout(open, delay.upMs);
    else open();
    for (const socket of [inbound, outbound]) {
      sockets.add(socket);
      // A closed socket's reset or end crosses to the other side in `relay`.
      socket.on("error", () => {}).on("close", () => sockets.delete(socket));
    }
    relay(inbound, outbound, () => delay.upMs, open);
    relay(outbound, inbound, () => delay.downMs);
  });
  // Port 0: the system picks a free port at bind time (no window for another process to take
  // it first), and the link keeps listening, cut or not, for its whole life.
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as { port: number };
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
    setDelay({ upMs, downMs }) {
      delay = { upMs, downMs };
    },
    get delay() {
      return { ...delay };
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface Federation {
  /** The hub (another handle after `restartHub`). */
  readonly hub: NatsServerHandle;
  /** Each country's server, by domain; its gateways connect to `url`. */
  servers: Record<string, NatsServerHandle>;
  /** Each country's link to the hub, by domain. */
  links: Record<string, Link>;
  /** How many nats-servers run (the hub included). */
  serverCount: number;
  /**
   * Waits until every leaf connection is up (after a start or a restored link): each country's
   * sourcing leaf and outbound leaf for each other country, 2N(N − 1) for N countries.
   */
  connected(timeoutMs?: number): Promise<void>;
  /** Stops a country's server and starts it again on the same port and store. */
  restartCountry(domain: string): Promise<void>;
  /**
   * Rewrites the hub's accounts for `countries` (the same countries' users and passwords: a
   * party added or removed changes the pairs' lines, `hubAccounts`) and has the running hub
   * reload its configuration (SIGHUP), as an operator would; resolves once the hub has loaded it.
   */
  reloadHub(countries: FederatedCountry[]): Promise<void>;
  /**
   * Stops the hub and starts it again with its configuration as it stands (the accounts last
   * written by `reloadHub`), on the same ports: every leaf connection is made again.
   */
  restartHub(): Promise<void>;
  /** The hub's port for leaf connections (TLS), reached directly, not through a link. */
  hubLeafPort: number;
  /** The federation's CA certificate (PEM file). */
  caFile: string;
  /**
   * The certificate of one of a country's leaf connections (its sourcing or outbound leaf for the
   * partner country `partner`) and the hub's user and password for it.
   */
  leafCredentials(
    domain: string,
    role: LeafRole,
    partner: string,
  ): CertificateFiles & { user: string; password: string };
  /**
   * An operator's user in a country's outbound account for the partner country `to` (on
   * `servers[domain].url`).
   */
  outboundOperator(domain: string, to: string): { user: string; password: string };
  /**
   * An operator's user in a country's sourcing account for the partner country `from` (on
   * `servers[domain].url`).
   */
  sourcingOperator(domain: string, from: string): { user: string; password: string };
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
    const secret = () => randomBytes(18).toString("base64url");
    const leaves = federationLeaves(countries);
    // By hub account: each leaf connection's certificate and password.
    const leafCerts: Record<string, CertificateFiles> = {};
    const passwords: Record<string, string> = {};
    // By hub account: the operator of the account its leaf is bound to on the country's server.
    const operators: Record<string, { user: string; password: string }> = {};
    for (const { domain, role, partner } of leaves) {
      const name = hubAccount(domain, role, partner);
      leafCerts[name] = ca.issue(leafCertName(domain, role, partner));
      passwords[name] = secret();
      operators[name] = {
        user: `operator-${role === "sourcing" ? "from-" : ""}${partner.toLowerCase()}`,
        password: secret(),
      };
    }
    const operatorOf = (domain: string, role: LeafRole, partner: string) => {
      const operator = operators[hubAccount(domain, role, partner)];
      if (operator === undefined) throw new Error(`no ${role} account for ${partner} on ${domain}`);
      return operator;
    };
    // The hub tells its leaves where it listens, and a leaf would then reconnect there directly,
    // around its link (no_advertise does not stop that for leaf connections): the hub advertises
    // a port of ours that refuses every connection, so a leaf comes back only through its link.
    const nowhere = await startLink(0);
    nowhere.cut();
    extra.push(nowhere);
    let leafPort = 0;
    let hub: NatsServerHandle | undefined;
    let hubOptions: StartNatsServerOptions | undefined;
    // The hub's configuration file is written in its directory, and includes its accounts from
    // a file of their own there, which reloadHub rewrites.
    const hubDir = join(certs, "hub");
    mkdirSync(hubDir);
    const hubAccountsFile = join(hubDir, "accounts.conf");
    const hubPidFile = join(hubDir, "nats-server.pid");
    writeFileSync(hubAccountsFile, `${hubAccounts(countries, passwords)}\n`, { mode: 0o600 });
    for (let attempt = 1; hub === undefined; attempt++) {
      leafPort = await freePort();
      try {
        hubOptions = {
          name: "hub",
          jetStream: false,
          storeDir: hubDir,
          config: [
            'include "accounts.conf"',
            `pid_file: ${JSON.stringify(hubPidFile)}`,
            // verify_and_map: a leaf must present a certificate of the CA, and it logs in as the
            // user its certificate names (with that user's password), never as another. The TLS
            // timeout (2 s by default) covers, on the hub, two round trips of the link (its INFO
            // out and the leaf's ClientHello back, its handshake out and the leaf's certificate
            // and Finished back) and both sides' work: 3 s holds up to the 1 s round trip over
            // which nats-server 2.9.10 can make a leaf connection at all (the leaf gives the hub
            // 1 s for its first INFO, DEFAULT_LEAFNODE_INFO_WAIT, not configurable before 2.11).
            `leafnodes {\n  listen: "127.0.0.1:${leafPort}"\n  advertise: "127.0.0.1:${nowhere.port}"\n  tls { cert_file: "${hubCert.cert}", key_file: "${hubCert.key}", ca_file: "${ca.caFile}", verify_and_map: true, timeout: 3 }\n}`,
          ].join("\n"),
        };
        hub = await startNatsServer(hubOptions);
      } catch (err) {
        // freePort() is racy (another process's connection may take the port before the hub
        // binds it); startNatsServer retries its own ports, this one is ours to pick again.
        if (!(err instanceof PortInUseError) || attempt >= 5) throw err;
      }
    }
    started.push(hub);
    const servers: Record<string, NatsServerHandle> = {};
    const countryOptions: Record<string, StartNatsServerOptions> = {};
    for (const c of countries) {
      const link = await startLink(leafPort);
      links[c.domain] = link;
      const partners = countries.filter((o) => o.domain !== c.domain);
      // A store of ours (in the certificates' directory), so that a restart keeps the streams.
      const storeDir = join(certs, `store-${c.domain}`);
      mkdirSync(storeDir);
      countryOptions[c.domain] = {
        name: `country-${c.domain}`,
        domain: c.domain,
        storeDir,
        // One leaf connection per account but the gateways'; the user comes from the
        // certificate: the URL carries the password only.
        config: [
          countryAccounts(
            c.domain,
            secret(),
            partners.map((p) => ({
              domain: p.domain,
              outbound: [operatorOf(c.domain, "outbound", p.domain)],
              sourcing: [operatorOf(c.domain, "sourcing", p.domain)],
              streams: p.parties.flatMap((sender) =>
                c.parties.map((recipient) => outboundStreamName(sender, recipient)),
              ),
            })),
          ),
          "leafnodes {",
          "  reconnect: 1",
          "  remotes = [",
          ...partners.flatMap((p) =>
            (["sourcing", "outbound"] as const).map((role) => {
              const account =
                role === "sourcing" ? sourcingAccount(p.domain) : outboundAccount(p.domain);
              const name = hubAccount(c.domain, role, p.domain);
              const files = leafCerts[name];
              return `    { url: "nats-leaf://:${passwords[name]}@127.0.0.1:${link.port}", account: ${account}, tls: { cert_file: "${files?.cert}", key_file: "${files?.key}", ca_file: "${ca.caFile}" } }`;
            }),
          ),
          "  ]",
          "}",
        ].join("\n"),
      };
      const server = await startNatsServer(countryOptions[c.domain]);
      started.push(server);
      servers[c.domain] = server;
    }
    const startedHub = hub;
    const federation: Federation = {
      get hub() {
        return hub ?? startedHub;
      },
      servers,
      links,
      serverCount: started.length,
      connected: (timeoutMs = 15_000) => leafsConnected(federation.hub, leaves.length, timeoutMs),
      async restartCountry(domain) {
        const old = servers[domain];
        const options = countryOptions[domain];
        if (old === undefined || options === undefined) throw new Error(`no server for ${domain}`);
        await old.stop();
        const server = await startNatsServer({ ...options, port: old.port });
        started[started.indexOf(old)] = server;
        servers[domain] = server;
      },
      async restartHub() {
        const old = federation.hub;
        if (hubOptions === undefined) throw new Error("nats federation: no hub");
        await old.stop();
        // The same client port and leaf port (the links lead there), and the same files.
        const restarted = await startNatsServer({ ...hubOptions, port: old.port });
        started[started.indexOf(old)] = restarted;
        hub = restarted;
      },
      async reloadHub(reloaded) {
        const loadedAt = async () =>
          (
            (await (await fetch(`${federation.hub.monitorUrl}/varz`)).json()) as {
              config_load_time: string;
            }
          ).config_load_time;
        const before = await loadedAt();
        writeFileSync(hubAccountsFile, `${hubAccounts(reloaded, passwords)}\n`, { mode: 0o600 });
        process.kill(Number(readFileSync(hubPidFile, "utf8").trim()), "SIGHUP");
        // The hub logs a configuration it cannot load and keeps the old one: wait for the new.
        const deadline = Date.now() + 10_000;
        while ((await loadedAt()) === before) {
          if (Date.now() > deadline) throw new Error("nats federation: the hub did not reload");
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      },
      hubLeafPort: leafPort,
      caFile: ca.caFile,
      leafCredentials(domain, role, partner) {
        const files = leafCerts[hubAccount(domain, role, partner)];
        const password = passwords[hubAccount(domain, role, partner)];
        if (files === undefined || password === undefined) throw new Error(`no leaf for ${domain}`);
        return { ...files, user: leafUser(domain, role, partner), password };
      },
      outboundOperator: (domain, to) => operatorOf(domain, "outbound", to),
      sourcingOperator: (domain, from) => operatorOf(domain, "sourcing", from),
      issueCertificate: (commonName) => ca.issue(commonName),
      stop,
    };
    await federation.connected();
    for (const c of countries) {
      for (const other of countries) {
        if (other.domain === c.domain) continue;
        await createPartnerStreams(servers[c.domain] as NatsServerHandle, c, other, operatorOf);
      }
    }
    return federation;
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Creates, in a country's outbound account for another country, the mirror of each outbound
 * stream its parties may have for a party of that country (the stream itself is the gateway's,
 * made on first use; its mirror follows it once it exists), and in its sourcing account for that
 * country the stream that sources each mirror that country has for this country's parties. What
 * a country's operator does once per pair of parties.
 */
async function createPartnerStreams(
  server: NatsServerHandle,
  country: FederatedCountry,
  other: FederatedCountry,
  operatorOf: (
    domain: string,
    role: LeafRole,
    partner: string,
  ) => { user: string; password: string },
): Promise<void> {
  const as = async (role: LeafRole, make: (jsm: JetStreamManager) => Promise<void>) => {
    const { user, password } = operatorOf(country.domain, role, other.domain);
    const nc = await connect({ servers: server.url, user, pass: password });
    try {
      await make(await nc.jetstreamManager());
    } finally {
      await nc.close();
    }
  };
  await as("outbound", async (jsm) => {
    for (const sender of country.parties) {
      for (const recipient of other.parties) {
        await jsm.streams.add(outboundMirror(sender, recipient, other.domain, MIRROR_MAX_AGE_MS));
      }
    }
  });
  await as("sourcing", async (jsm) => {
    for (const sender of other.parties) {
      for (const recipient of country.parties) {
        await jsm.streams.add(
          sourcingStream(sender, recipient, other.domain, country.domain, MIRROR_MAX_AGE_MS),
        );
      }
    }
  });
}

/**
 * How long the test federation's mirrors and sourcing streams keep a message (as the gateways'
 * streams at most).
 */
const MIRROR_MAX_AGE_MS = 30 * 24 * 3600 * 1000;

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
