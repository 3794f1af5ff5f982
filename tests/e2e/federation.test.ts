/**
 * Each country on its own nats-server, joined by NATS's own federation (leaf nodes to a hub, a
 * JetStream domain per country, mutual TLS with each leaf's certificate bound to its hub user, an
 * account per leaf connection): messages and their receipts cross through stream sourcing; with
 * the link cut, the border post keeps accepting and delivers everything, once, when the link is
 * back; a country cannot read what is not addressed to it, nor publish into another country's
 * subjects, nor have the sender's server deliver onto the sender's own subjects, nor make the
 * other country's server act in its gateways' account (forged flow control, chosen reply
 * subjects) or in any other of its accounts (a doubled Nats-Request-Info header), nor crash it,
 * nor hold its or the hub's memory for long with forged flow-control requests. Over a slow link
 * (a 0.8 s round trip) the leaves come back after a cut and what was submitted meanwhile is
 * delivered once; over a 3 s round trip nats-server 2.9.10 cannot make a leaf connection at all,
 * and what was submitted waits, and crosses once, when the link is better.
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { connect, headers, type NatsConnection, RetentionPolicy, StorageType } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  borderPrefix,
  type CertificateFiles,
  type Federation,
  federationLeaves,
  mirrorName,
  outboundMirror,
  startNatsFederation,
} from "../../src/devtools/nats-federation.ts";
import {
  deliverPrefix,
  outboundStreamName,
  outboundSubject,
} from "../../src/transport/federation.ts";
import {
  call,
  introduce,
  startNode,
  type TestNode,
  uniqueTag,
  waitFor,
} from "../helpers/network.ts";
import { CASE_NOTICE_BODY } from "../helpers/protocol-fixtures.ts";

const HEKOU = "CN-MPS-HEKOU";
const LAOCAI = "VN-BGC-LAOCAI";
const MAESAI = "TH-RTP-MAESAI";
/** A Thai party the hub has no lines for until a test adds them. */
const CHIANGSAEN = "TH-RTP-CHIANGSAEN";

let federation: Federation;
let hekou: TestNode;
let laocai: TestNode;
const clients: NatsConnection[] = [];

const COUNTRIES = [
  { domain: "CN", parties: [HEKOU] },
  { domain: "VN", parties: [LAOCAI] },
  { domain: "TH", parties: [MAESAI] },
];

beforeAll(async () => {
  federation = await startNatsFederation(COUNTRIES);
  const tag = uniqueTag();
  const servers = federation.servers as Record<"CN" | "VN" | "TH", { url: string }>;
  hekou = await startNode(servers.CN.url, tag, {
    partyId: HEKOU,
    env: { LIAISON_NATS_DOMAIN: "CN" },
  });
  laocai = await startNode(servers.VN.url, tag, {
    partyId: LAOCAI,
    env: { LIAISON_NATS_DOMAIN: "VN" },
  });
  await introduce([hekou, laocai]);
});

afterAll(async () => {
  for (const c of clients) await c.close().catch(() => {});
  await hekou?.gateway.stop();
  await laocai?.gateway.stop();
  await federation?.stop();
});

async function submit(caseRef: string): Promise<string> {
  const res = await call(hekou, "/v1/messages", {
    method: "POST",
    json: { type: "case.notice", to: LAOCAI, caseRef, body: CASE_NOTICE_BODY },
  });
  expect(res.status).toBe(202);
  return res.body.id as string;
}

async function status(id: string): Promise<string> {
  return (await call(hekou, `/v1/messages/${id}`)).body.status as string;
}

async function deliveredAll(ids: string[], timeoutMs = 30_000): Promise<void> {
  await waitFor(
    `${ids.length} deliveries`,
    async () => {
      for (const id of ids) if ((await status(id)) !== "delivered") return undefined;
      return true;
    },
    timeoutMs,
  );
}

/**
 * Hekou submits `count` case notices (case references from `firstCase` on) at a steady pace over about `overMs`, in the background:
 * `ids` grows with each one accepted (every submit must be), `done` ends with the last.
 */
function steadyFlow(
  count: number,
  overMs: number,
  firstCase: number,
): { ids: string[]; done: Promise<void> } {
  const ids: string[] = [];
  const done = (async () => {
    const start = Date.now();
    for (let i = 0; i < count; i++) {
      // A steady pace, not a burst to catch up after a stall.
      const due = start + (i * overMs) / count;
      if (due > Date.now()) await new Promise((resolve) => setTimeout(resolve, due - Date.now()));
      ids.push(await submit(`CN-HEKOU-2026-${firstCase + i}`));
    }
  })();
  return { ids, done };
}

/** How many times Lao Cai logged each message. */
async function loggedAtLaocai(ids: string[]): Promise<Map<string, number>> {
  const res = await laocai.gateway.database.db.execute(
    "select id from messages where direction = 'inbound'",
  );
  const rows = (Array.isArray(res) ? res : (res as { rows: unknown[] }).rows) as { id: string }[];
  const counts = new Map<string, number>(ids.map((id) => [id, 0]));
  for (const { id } of rows) if (counts.has(id)) counts.set(id, (counts.get(id) ?? 0) + 1);
  return counts;
}

/** Lao Cai's answers to Hekou: the batch receipts and the single receipts it issued. */
async function issuedAnswersAtLaocai(): Promise<number> {
  const res = await laocai.gateway.database.db.execute(
    `select (select count(*) from receipt_batches where direction = 'issued')
      + (select count(*) from receipts where direction = 'issued' and batch_id is null) as n`,
  );
  const rows = (Array.isArray(res) ? res : (res as { rows: unknown[] }).rows) as { n: unknown }[];
  return Number(rows[0]?.n);
}

interface CrossingCounts {
  outbound: number;
  mirror: number;
  sourcing: number;
  inbound: number;
}

/**
 * How many messages each stream on the way from Hekou to Lao Cai holds: Hekou's outbound stream
 * for Lao Cai, its mirror in China's outbound account for Vietnam, the stream sourcing that
 * mirror in Vietnam's sourcing account for China, and Lao Cai's inbound stream (which keeps what
 * it took, limits retention, and takes nothing else in these tests).
 */
async function crossingCounts(): Promise<CrossingCounts> {
  const stream = outboundStreamName(HEKOU, LAOCAI);
  const cn = await (await client("CN")).jetstreamManager();
  const cnOutbound = await (await client("CN", "VN")).jetstreamManager();
  const vnSourcing = await (await sourcingClient("VN", "CN")).jetstreamManager();
  const vn = await (await client("VN")).jetstreamManager();
  return {
    outbound: (await cn.streams.info(stream)).state.messages,
    mirror: (await cnOutbound.streams.info(mirrorName(HEKOU, LAOCAI))).state.messages,
    sourcing: (await vnSourcing.streams.info(stream)).state.messages,
    inbound: (await vn.streams.info(laocai.gateway.config.streamName)).state.messages,
  };
}

/**
 * Each of `count` messages went into Hekou's outbound stream once (a publish repeated across
 * the restart is dropped by its de-duplication id), and crossed once: not only logged once.
 */
async function crossedOnce(before: CrossingCounts, count: number): Promise<void> {
  const grown = (now: CrossingCounts) => ({
    outbound: now.outbound - before.outbound,
    mirror: now.mirror - before.mirror,
    sourcing: now.sourcing - before.sourcing,
    inbound: now.inbound - before.inbound,
  });
  // The mirror may lag its stream a moment.
  const now = await waitFor("the mirror caught up", async () => {
    const counts = await crossingCounts();
    return counts.mirror === counts.outbound ? counts : undefined;
  });
  expect(grown(now)).toEqual({ outbound: count, mirror: count, sourcing: count, inbound: count });
}

/** A stream in China's domain like Hekou's own outbound stream for `recipient` (test equipment). */
function hekouStreamFor(recipient: string) {
  return {
    name: outboundStreamName(HEKOU, recipient),
    subjects: [outboundSubject(HEKOU, recipient)],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
  };
}

type Domain = "CN" | "VN" | "TH";

/**
 * A client of a country's server: in the gateways' account (no credentials), or, with
 * `outboundTo`, in the outbound account that holds the mirrors that partner country sources (as
 * its operator).
 */
async function client(domain: Domain, outboundTo?: Domain): Promise<NatsConnection> {
  const operator =
    outboundTo === undefined ? undefined : federation.outboundOperator(domain, outboundTo);
  const nc = await connect({
    servers: federation.servers[domain]?.url,
    ...(operator === undefined ? {} : { user: operator.user, pass: operator.password }),
  });
  clients.push(nc);
  return nc;
}

/**
 * A client, as its operator, of a country's sourcing account for the partner country `from`:
 * the account whose leaf connection takes that country's deliveries and sends the requests of
 * its sources.
 */
async function sourcingClient(domain: Domain, from: Domain): Promise<NatsConnection> {
  const { user, password } = federation.sourcingOperator(domain, from);
  const nc = await connect({ servers: federation.servers[domain]?.url, user, pass: password });
  clients.push(nc);
  return nc;
}

/** A client of each of a country's accounts: the gateways', and each partner's two. */
async function everyAccount(domain: Domain): Promise<NatsConnection[]> {
  const partners = COUNTRIES.map((c) => c.domain as Domain).filter((d) => d !== domain);
  return [
    await client(domain),
    ...(await Promise.all(partners.map((p) => client(domain, p)))),
    ...(await Promise.all(partners.map((p) => sourcingClient(domain, p)))),
  ];
}

/**
 * Logs in on the hub's leaf port as a leaf node would (INFO, TLS with `certificate`, CONNECT with
 * `user` and `password`, PING) and returns what the hub answered: its INFO and PONG once it took
 * the connection, `-ERR 'Authorization Violation'`, or the TLS error.
 */
async function leafLogin(
  certificate: CertificateFiles | undefined,
  user: string,
  password: string,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const raw = tcpConnect(federation.hubLeafPort, "127.0.0.1");
    raw.once("error", reject);
    raw.once("data", () => {
      const tls = tlsConnect({
        socket: raw,
        ca: readFileSync(federation.caFile),
        servername: "localhost",
        ...(certificate === undefined
          ? {}
          : { cert: readFileSync(certificate.cert), key: readFileSync(certificate.key) }),
      });
      let answer = "";
      const done = (text: string) => {
        tls.destroy();
        resolve(text);
      };
      tls.on("error", (err) => done(`TLS error: ${err.message}`));
      tls.on("close", () => done(`closed: ${answer}`));
      tls.on("data", (data) => {
        answer += data.toString();
        if (/\r\nPONG\r\n|^-ERR|\r\n-ERR/.test(answer)) done(answer);
      });
      tls.once("secureConnect", () => {
        const connect = { user, pass: password, tls_required: true, name: "probe", headers: true };
        tls.write(`CONNECT ${JSON.stringify(connect)}\r\nPING\r\n`);
      });
    });
  });
}

/** The hub's account the leaf connection it took was bound to, from its INFO. */
function hubAccountOf(answer: string): string | undefined {
  const info = answer.split("\r\n").find((line) => line.startsWith("INFO "));
  if (info === undefined) return undefined;
  return (JSON.parse(info.slice(5)) as { remote_account?: string }).remote_account;
}

describe("federation: the hub takes each country's leaf only with that country's certificate", {
  timeout: 60_000,
}, () => {
  it("takes a country's leaf with its own certificate and password (the control)", async () => {
    const cn = federation.leafCredentials("CN", "sourcing", "VN");
    const answer = await leafLogin(cn, "", cn.password);
    expect(answer).toContain("PONG");
    // Taken as China's sourcing leaf for Vietnam.
    expect(hubAccountOf(answer)).toBe("CN_SOURCING_VN");
    // And China's outbound leaf for Vietnam, with its own certificate, into its own account.
    const cnForVietnam = federation.leafCredentials("CN", "outbound", "VN");
    const outbound = await leafLogin(cnForVietnam, "", cnForVietnam.password);
    expect(outbound).toContain("PONG");
    expect(hubAccountOf(outbound)).toBe("CN_OUTBOUND_VN");
  });

  it("refuses a leaf without a client certificate", async () => {
    const vn = federation.leafCredentials("VN", "sourcing", "CN");
    expect(await leafLogin(undefined, vn.user, vn.password)).toMatch(/^TLS error/);
  });

  it("refuses a leaf presenting one country's certificate with another's credentials", async () => {
    const cn = federation.leafCredentials("CN", "sourcing", "VN");
    const vn = federation.leafCredentials("VN", "sourcing", "CN");
    expect(await leafLogin(cn, vn.user, vn.password)).toContain("Authorization Violation");
    expect(await leafLogin(cn, "", vn.password)).toContain("Authorization Violation");
    // Nor one of a country's leaves with the credentials of another of its leaves: each leaf has
    // a certificate of its own.
    const cnForVietnam = federation.leafCredentials("CN", "outbound", "VN");
    const cnForThailand = federation.leafCredentials("CN", "outbound", "TH");
    expect(await leafLogin(cnForVietnam, cnForThailand.user, cnForThailand.password)).toContain(
      "Authorization Violation",
    );
    expect(await leafLogin(cnForVietnam, "", cnForThailand.password)).toContain(
      "Authorization Violation",
    );
    // Nor China's outbound leaf for Vietnam with the credentials of its sourcing leaf for Vietnam.
    expect(await leafLogin(cnForVietnam, cn.user, cn.password)).toContain(
      "Authorization Violation",
    );
    expect(await leafLogin(cnForVietnam, "", cn.password)).toContain("Authorization Violation");
  });

  it("refuses a certificate of the federation's CA that names no country", async () => {
    const vn = federation.leafCredentials("VN", "sourcing", "CN");
    const stranger = federation.issueCertificate("stranger");
    expect(await leafLogin(stranger, vn.user, vn.password)).toContain("Authorization Violation");
  });

  it("lets no one log in on the hub's client port, not even with a country's leaf credentials", async () => {
    for (const { domain, role, partner } of federationLeaves(COUNTRIES)) {
      const { user, password } = federation.leafCredentials(domain, role, partner);
      await expect(connect({ servers: federation.hub.url, user, pass: password })).rejects.toThrow(
        /Authorization Violation/i,
      );
    }
  });
});

describe("federation: a nats-server per country, joined by leaf nodes", {
  timeout: 120_000,
}, () => {
  it("carries messages one way and signed receipts back, through each country's own domain", async () => {
    // The registries reload every 200 ms in tests: each inbound stream then sources the other's
    // outbound stream for it.
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push(await submit(`CN-HEKOU-2026-${1000 + i}`));
    await deliveredAll(ids);
    expect([...(await loggedAtLaocai(ids)).values()]).toEqual(ids.map(() => 1));

    // It went through Hekou's outbound stream for Lao Cai, in China's domain, and Lao Cai's
    // inbound stream sources it through China's API; the receipts the other way.
    const cn = await (await client("CN")).jetstreamManager();
    const out = await cn.streams.info(outboundStreamName(HEKOU, LAOCAI));
    expect(out.state.messages).toBeGreaterThanOrEqual(20);
    const vn = await (await client("VN")).jetstreamManager();
    const inbound = await vn.streams.info(laocai.gateway.config.streamName);
    expect(inbound.config.sources?.map((s) => [s.name, s.external?.api])).toEqual([
      [outboundStreamName(HEKOU, LAOCAI), "$JS.CN.API"],
    ]);
    // Lao Cai answered with what it published to Hekou: both gateways declare receiptBatches,
    // so its answers are batch receipts (one per inbound batch), each in that stream.
    const back = await vn.streams.info(outboundStreamName(LAOCAI, HEKOU));
    const answers = await issuedAnswersAtLaocai();
    expect(answers).toBeGreaterThanOrEqual(1);
    expect(back.state.messages).toBeGreaterThanOrEqual(answers);
    // That source is served on Vietnam's own server, by its sourcing account for China, whose
    // stream of the same name sources China's mirror across the hub (named as no stream of
    // China's gateways' account).
    const vnSourcing = await (await sourcingClient("VN", "CN")).jetstreamManager();
    const sourced = await vnSourcing.streams.info(outboundStreamName(HEKOU, LAOCAI));
    expect(sourced.state.messages).toBeGreaterThanOrEqual(20);
    expect(
      sourced.config.sources?.map((s) => [s.name, s.external?.api, s.external?.deliver]),
    ).toEqual([[mirrorName(HEKOU, LAOCAI), "$JS.CN.API", borderPrefix("VN", "CN")]]);
  });

  it("keeps accepting with the link cut, and delivers everything exactly once when it is back", async () => {
    federation.links.VN?.cut();
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) ids.push(await submit(`CN-HEKOU-2026-${2000 + i}`));
    // Accepted by China's own server (our outbound stream), but nothing crosses the cut link.
    await waitFor("all sent to the outbound stream", async () => {
      for (const id of ids) if ((await status(id)) !== "sent") return undefined;
      return true;
    });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    for (const id of ids) expect(await status(id)).toBe("sent");
    expect([...(await loggedAtLaocai(ids)).values()].every((n) => n === 0)).toBe(true);

    federation.links.VN?.restore();
    await federation.connected();
    await deliveredAll(ids, 60_000);
    expect([...(await loggedAtLaocai(ids)).values()]).toEqual(ids.map(() => 1));
  });

  it("loses nothing when the receiving country's server restarts while the link is cut", async () => {
    // Something Lao Cai already logged, to send it again later on its own server.
    const earlier = await submit("CN-HEKOU-2026-3000");
    await deliveredAll([earlier]);
    const earlierJws = String((await call(hekou, `/v1/messages/${earlier}`)).body.jws);

    federation.links.CN?.cut();
    const ids: string[] = [];
    for (let i = 1; i <= 10; i++) ids.push(await submit(`CN-HEKOU-2026-${3000 + i}`));
    await waitFor("all sent to the outbound stream", async () => {
      for (const id of ids) if ((await status(id)) !== "sent") return undefined;
      return true;
    });
    // Later than those, something else reaches Lao Cai's stream (here a late copy of an earlier
    // message, on Vietnam's own server), and Lao Cai handles it.
    const vn = await client("VN");
    await vn
      .jetstream()
      .publish(laocai.gateway.config.inboundSubject, new TextEncoder().encode(earlierJws), {
        msgID: `late-copy-${earlier}`,
      });
    const vnm = await vn.jetstreamManager();
    await waitFor("the copy handled", async () => {
      const info = await vnm.consumers.info(laocai.gateway.config.streamName, "gateway");
      return info.num_pending === 0 && info.num_ack_pending === 0 ? true : undefined;
    });

    // Vietnam's server restarts during the cut; then the link comes back.
    await federation.restartCountry("VN");
    federation.links.CN?.restore();
    await federation.connected();
    await deliveredAll(ids, 60_000);
    expect([...(await loggedAtLaocai(ids)).values()]).toEqual(ids.map(() => 1));
  });

  it("loses and duplicates nothing when the sending country's server restarts mid-flow", async () => {
    // China's server holds Hekou's outbound stream for Lao Cai and, in its outbound account for
    // Vietnam, the mirror Vietnam sources; it is stopped and started again (same store, same port)
    // while Hekou submits a steady flow.
    const before = await crossingCounts();
    const flow = steadyFlow(60, 5000, 5000);
    await waitFor("a third of the flow accepted", async () =>
      flow.ids.length >= 20 ? true : undefined,
    );
    const atStop = flow.ids.length;
    await federation.restartCountry("CN");
    const duringRestart = flow.ids.length - atStop;
    await flow.done;
    await federation.connected();
    // The flow went on while China's server was down (the gateway keeps what it accepts).
    expect(duringRestart).toBeGreaterThan(0);
    await deliveredAll(flow.ids, 90_000);
    expect([...(await loggedAtLaocai(flow.ids)).values()]).toEqual(flow.ids.map(() => 1));
    await crossedOnce(before, flow.ids.length);
  });

  it("loses and duplicates nothing when the sending country's server restarts with its link cut", async () => {
    const before = await crossingCounts();
    const flow = steadyFlow(40, 5000, 6000);
    await waitFor("a quarter of the flow accepted", async () =>
      flow.ids.length >= 10 ? true : undefined,
    );
    federation.links.CN?.cut();
    await federation.restartCountry("CN");
    await flow.done;
    // Everything accepted reaches China's restarted server, and nothing crosses the cut link.
    await waitFor("nothing left queued", async () => {
      for (const id of flow.ids) if ((await status(id)) === "queued") return undefined;
      return true;
    });
    federation.links.CN?.restore();
    await federation.connected();
    await deliveredAll(flow.ids, 90_000);
    expect([...(await loggedAtLaocai(flow.ids)).values()]).toEqual(flow.ids.map(() => 1));
    await crossedOnce(before, flow.ids.length);
  });

  it("lets a country source only the streams addressed to its own parties", async () => {
    // A stream in China's domain for a Thai party, with a message in it.
    const cnConnection = await client("CN");
    const cn = await cnConnection.jetstreamManager();
    const forThailand = mirrorName(HEKOU, MAESAI);
    await cn.streams.add(hekouStreamFor(MAESAI));
    await cnConnection.jetstream().publish(outboundSubject(HEKOU, MAESAI), new Uint8Array([1]));
    const sourcing = (domain: string) => ({
      name: forThailand,
      external: { api: "$JS.CN.API", deliver: borderPrefix(domain, "CN") },
    });

    // Thailand's server sources it, in its sourcing account for China, as the stream a Thai
    // gateway's inbound stream sources does (the positive control), and Vietnam's server tries
    // the same in its own at the same time.
    const th = await (await sourcingClient("TH", "CN")).jetstreamManager();
    await th.streams.add({ name: "TH_PROBE", subjects: ["probe.th"], sources: [sourcing("TH")] });
    const vn = await (await sourcingClient("VN", "CN")).jetstreamManager();
    await vn.streams.add({ name: "VN_PROBE", subjects: ["probe.vn"], sources: [sourcing("VN")] });
    await waitFor("Thailand sourced its message", async () =>
      (await th.streams.info("TH_PROBE")).state.messages === 1 ? true : undefined,
    );
    // Vietnam had as long, and three seconds more, and got nothing.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    expect((await vn.streams.info("VN_PROBE")).state.messages).toBe(0);

    // Asked directly, from either of Vietnam's accounts with a leaf connection, China's domain
    // does not answer Vietnam: not the consumer API, not the stream API. (Vietnam's gateways'
    // account has no leaf connection: there, $JS.CN.API is its sourcing account's.)
    for (const vnConnection of [await sourcingClient("VN", "CN"), await client("VN", "CN")]) {
      const ask = (subject: string, body: unknown) =>
        vnConnection.request(subject, new TextEncoder().encode(JSON.stringify(body)), {
          timeout: 2000,
        });
      await expect(
        ask(`$JS.CN.API.CONSUMER.CREATE.${forThailand}`, {
          stream_name: forThailand,
          config: { ack_policy: "none", deliver_subject: `${borderPrefix("VN", "CN")}.snoop` },
        }),
      ).rejects.toThrow();
      await expect(ask(`$JS.CN.API.STREAM.INFO.${forThailand}`, {})).rejects.toThrow();
    }
  });

  it("keeps the replies to one country's sources away from a third country", async () => {
    // Something in Hekou's stream for Lao Cai, which Vietnam sources from China's domain.
    await deliveredAll([await submit("CN-HEKOU-2026-7000")]);
    const forVietnam = mirrorName(HEKOU, LAOCAI);
    const forThailand = mirrorName(HEKOU, MAESAI);
    // Thailand listens, in every account of its server, on every reply subject of JetStream's
    // sources and of service imports, and every delivery subject (what a Thai server's clients
    // can ask its leaves for).
    const replies: string[] = [];
    const deliveries: string[] = [];
    for (const th of await everyAccount("TH")) {
      for (const subject of ["$JSC.R.>", "_R_.>"]) {
        th.subscribe(subject, {
          callback: (_err, msg) =>
            replies.push(`${msg.subject} ${new TextDecoder().decode(msg.data)}`),
        });
      }
      for (const subject of ["liaison.deliver.>", "liaison.border.>"]) {
        th.subscribe(subject, { callback: (_err, msg) => deliveries.push(msg.subject) });
      }
      await th.flush();
    }
    // The positive control: Thailand takes there the answer China's domain gives a source of
    // Thailand's own (of Hekou's stream for Mae Sai, in its sourcing account for China).
    const tag = uniqueTag();
    const thSourcing = await (await sourcingClient("TH", "CN")).jetstreamManager();
    const answersForThailand = () =>
      replies.filter((r) => r.includes(`"stream_name":"${forThailand}"`)).length;
    const control = async (name: string) => {
      const before = answersForThailand();
      await thSourcing.streams.add({
        name: `TH_REPLY_CONTROL_${name}_${tag}`,
        subjects: [`reply.control.${name}.${tag}`],
        sources: [
          { name: forThailand, external: { api: "$JS.CN.API", deliver: borderPrefix("TH", "CN") } },
        ],
      });
      await waitFor(`the answer to Thailand's own source (${name})`, async () =>
        answersForThailand() > before ? true : undefined,
      );
      await thSourcing.streams.delete(`TH_REPLY_CONTROL_${name}_${tag}`);
    };
    await control("before");

    // Vietnam's server makes a new source of Hekou's stream for Lao Cai in its sourcing account
    // for China, as it does when it starts or its source is made again: the request crosses the
    // hub to China's server, whose answer (the consumer's name and delivery subject) comes back
    // to it.
    const vn = await (await sourcingClient("VN", "CN")).jetstreamManager();
    const probe = `VN_REPLY_PROBE_${tag}`;
    await vn.streams.add({
      name: probe,
      subjects: [`reply.probe.${tag}`],
      sources: [
        { name: forVietnam, external: { api: "$JS.CN.API", deliver: borderPrefix("VN", "CN") } },
      ],
    });
    await waitFor("Vietnam's new source took Hekou's stream", async () =>
      (await vn.streams.info(probe)).state.messages > 0 ? true : undefined,
    );
    // Thailand's listening still took its own answers afterwards, and a second more for anything
    // in flight.
    await control("after");
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await vn.streams.delete(probe);

    // Thailand saw no answer about a stream between two other countries, nor a delivery subject
    // of two other countries (its outbound accounts see its own deliveries to them).
    const otherPairs =
      /LIAISON_OUT_(?!TH_)\w+?_TO_(?!TH_)[A-Z]{2}_|liaison\.(deliver|border)\.(?!TH\.)[A-Z]{2}\.(?!TH(\.|$))/;
    expect(replies.filter((r) => otherPairs.test(r))).toEqual([]);
    expect(deliveries.filter((s) => otherPairs.test(s))).toEqual([]);
  });

  it("keeps the deliveries of a consumer a partner creates away from the sender's own subjects", async () => {
    // Something in Hekou's outbound stream for Lao Cai, and an outbound stream of Hekou's for
    // Mae Sai, which Thailand would source.
    await deliveredAll([await submit("CN-HEKOU-2026-4000")]);
    const cnGateways = await client("CN");
    const cn = await cnGateways.jetstreamManager();
    const forThailand = outboundStreamName(HEKOU, MAESAI);
    const mirror = mirrorName(HEKOU, LAOCAI);
    await cn.streams.add(hekouStreamFor(MAESAI));
    const cnOutbound = await (await client("CN", "VN")).jetstreamManager();
    const cnForThailand = await (await client("CN", "TH")).jetstreamManager();
    // The mirror has what the gateway's stream has (it delivered through the mirror).
    const inOutbound = (await cnOutbound.streams.info(mirror)).state.messages;
    expect(inOutbound).toBeGreaterThan(0);
    const count = async (jsm: typeof cn, stream: string) =>
      (await jsm.streams.info(stream)).state.messages;
    const before = {
      inbound: await count(cn, hekou.gateway.config.streamName),
      forThailand: await count(cn, forThailand),
      forThailandMirror: await count(cnForThailand, mirrorName(HEKOU, MAESAI)),
    };

    // Vietnam's server asks China's domain, as its sources do (from its sourcing account for
    // China), for consumers on the stream addressed to Lao Cai: two delivering onto China's own
    // subjects, one onto Vietnam's border prefix (the control). The answers come back as the
    // sources' do, on $JSC.R.
    const vn = await sourcingClient("VN", "CN");
    const control = `${borderPrefix("VN", "CN")}.probe-${uniqueTag()}`;
    const copies: string[] = [];
    vn.subscribe(control, { callback: () => copies.push("copy") });
    // Consumer name by delivery subject, from the answers.
    const created = new Map<string, string>();
    const replies = `$JSC.R.probe-${uniqueTag()}`;
    vn.subscribe(replies, {
      callback: (_err, msg) => {
        const answer = JSON.parse(new TextDecoder().decode(msg.data)) as {
          name?: string;
          config?: { deliver_subject?: string };
        };
        if (answer.name !== undefined && answer.config?.deliver_subject !== undefined) {
          created.set(answer.config.deliver_subject, answer.name);
        }
      },
    });
    await vn.flush();
    const targets = [hekou.gateway.config.inboundSubject, outboundSubject(HEKOU, MAESAI), control];
    for (const deliver_subject of targets) {
      vn.publish(
        `$JS.CN.API.CONSUMER.CREATE.${mirror}`,
        new TextEncoder().encode(
          JSON.stringify({
            stream_name: mirror,
            config: { deliver_subject, ack_policy: "none", deliver_policy: "all" },
          }),
        ),
        { reply: replies },
      );
    }
    await vn.flush();
    await waitFor("the three consumers created", async () =>
      created.size === 3 ? true : undefined,
    );
    // The control's copies reach Vietnam: its consumer delivers the whole stream.
    await waitFor("the control's copies", async () =>
      copies.length >= inOutbound ? true : undefined,
    );
    // None of the copies onto China's own subjects landed anywhere (a second more for them).
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect({
      inbound: await count(cn, hekou.gateway.config.streamName),
      forThailand: await count(cn, forThailand),
      forThailandMirror: await count(cnForThailand, mirrorName(HEKOU, MAESAI)),
    }).toEqual(before);
    // The consumers are on the mirror in China's outbound account for Vietnam, where nothing
    // listens on the other two subjects, and the gateways' account is out of reach.
    for (const name of created.values()) {
      expect((await cnOutbound.consumers.info(mirror, name)).stream_name).toBe(mirror);
    }
    for (const name of created.values()) await cnOutbound.consumers.delete(mirror, name);
  });

  it("does not carry a plain publish into another country's subjects", async () => {
    const enc = (text: string) => new TextEncoder().encode(text);
    const dec = new TextDecoder();
    const targets = [hekou.gateway.config.inboundSubject, outboundSubject(HEKOU, LAOCAI)];
    // The streams that take those subjects: Hekou's inbound stream (limits retention, federated:
    // it keeps what its gateway took) and each stream on the way from Hekou's outbound stream for
    // Lao Cai to Lao Cai's inbound stream. Each is read by its sequence, so that other traffic
    // (an earlier test's retry or receipt) cannot be mistaken for what this test publishes.
    const outbound = outboundStreamName(HEKOU, LAOCAI);
    const streams = [
      {
        name: "hekouInbound",
        jsm: await (await client("CN")).jetstreamManager(),
        stream: hekou.gateway.config.streamName,
      },
      { name: "outbound", jsm: await (await client("CN")).jetstreamManager(), stream: outbound },
      {
        name: "mirror",
        jsm: await (await client("CN", "VN")).jetstreamManager(),
        stream: mirrorName(HEKOU, LAOCAI),
      },
      {
        name: "sourcing",
        jsm: await (await sourcingClient("VN", "CN")).jetstreamManager(),
        stream: outbound,
      },
      {
        name: "inbound",
        jsm: await (await client("VN")).jetstreamManager(),
        stream: laocai.gateway.config.streamName,
      },
    ];
    const lastSeqs = async () =>
      Promise.all(streams.map(async (s) => (await s.jsm.streams.info(s.stream)).state.last_seq));
    /** The payloads each stream took after `from` (its last sequence then). */
    const takenSince = async (from: number[]) =>
      Promise.all(
        streams.map(async (s, i) => {
          const last = (await s.jsm.streams.info(s.stream)).state.last_seq;
          const texts: string[] = [];
          for (let seq = (from[i] as number) + 1; seq <= last; seq++) {
            const stored = await s.jsm.streams.getMessage(s.stream, { seq }).catch(() => undefined);
            if (stored !== undefined) texts.push(dec.decode(stored.data));
          }
          return texts;
        }),
      );
    const before = await lastSeqs();
    const mark = randomUUID();

    // From each of Vietnam's accounts: a JetStream publish is refused (no answer comes back)...
    const vnAccounts = await everyAccount("VN");
    for (const vn of vnAccounts) {
      for (const subject of targets) {
        await expect(
          vn
            .jetstream()
            .publish(subject, enc(`forged by VN, JetStream ${mark}`), { timeout: 2000 }),
        ).rejects.toThrow();
      }
    }
    // ...and a plain publish, which no answer would tell apart, goes nowhere.
    for (const vn of vnAccounts) {
      for (const subject of targets) vn.publish(subject, enc(`forged by VN ${mark}`));
      await vn.flush();
    }
    // The positive control, after Vietnam's: the same plain publishes from China's gateways'
    // account, which may publish there, arrive in every stream (the outbound one crosses to Lao
    // Cai's inbound stream, as Hekou's messages do).
    const control = `control from CN ${mark}`;
    const cnGateways = await client("CN");
    for (const subject of targets) cnGateways.publish(subject, enc(control));
    await cnGateways.flush();
    await waitFor("China's control publishes, in every stream", async () =>
      (await takenSince(before)).every((texts) => texts.includes(control)) ? true : undefined,
    );
    // Vietnam's went out before the control's and had as long, and two seconds more: nothing of
    // theirs is in any of the streams.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const taken = await takenSince(before);
    const forged = Object.fromEntries(
      streams.map((s, i) => [
        s.name,
        (taken[i] as string[]).filter((t) => t.includes("forged by VN") && t.includes(mark)).length,
      ]),
    );
    expect(forged).toEqual({ hekouInbound: 0, outbound: 0, mirror: 0, sourcing: 0, inbound: 0 });
  });

  it("carries deliveries from one country to another only from that country, and never into the gateways' account", async () => {
    // Vietnam's sourcing account for China takes China's deliveries, on Vietnam's border prefix
    // for China; its gateways' account takes its sources' deliveries from there, on the gateways'
    // prefix, which does not cross the hub.
    const vn = await sourcingClient("VN", "CN");
    const seen: string[] = [];
    const sub = vn.subscribe(`${borderPrefix("VN", "CN")}.probe`, {
      callback: (_err, msg) => seen.push(new TextDecoder().decode(msg.data)),
    });
    await vn.flush();
    const vnGateways = await client("VN");
    const seenByGateways: string[] = [];
    const gatewaysSub = vnGateways.subscribe(`${deliverPrefix("VN", "CN")}.probe`, {
      callback: (_err, msg) => seenByGateways.push(new TextDecoder().decode(msg.data)),
    });
    await vnGateways.flush();
    // Thailand tries from all its accounts; China's deliveries come from its outbound account for
    // Vietnam, and China tries the gateways' prefix from all of its own.
    const th = await everyAccount("TH");
    const cnAccounts = await everyAccount("CN");
    const cn = await client("CN", "VN");
    // The interest takes a moment to reach the hub and the other leaves: China's publish, which
    // is allowed, is repeated until it arrives (the positive control).
    await waitFor("China's delivery", async () => {
      for (const t of th) {
        t.publish(`${borderPrefix("VN", "CN")}.probe`, new TextEncoder().encode("forged by TH"));
        t.publish(`${deliverPrefix("VN", "CN")}.probe`, new TextEncoder().encode("forged by TH"));
        await t.flush();
      }
      for (const c of cnAccounts) {
        c.publish(`${deliverPrefix("VN", "CN")}.probe`, new TextEncoder().encode("from CN"));
        await c.flush();
      }
      cn.publish(`${borderPrefix("VN", "CN")}.probe`, new TextEncoder().encode("from CN"));
      await cn.flush();
      await new Promise((resolve) => setTimeout(resolve, 100));
      return seen.includes("from CN") ? true : undefined;
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    sub.unsubscribe();
    gatewaysSub.unsubscribe();
    expect(seen).not.toContain("forged by TH");
    expect(seenByGateways).toEqual([]);
  });

  it("applies a partner pair added on the hub at a reload (SIGHUP), and one removed (reload or restart) only to consumers created afterwards", async () => {
    // A new Thai party, Chiang Saen, for which the hub has no lines yet: Hekou's stream for it and
    // that stream's mirror in China's outbound account for Thailand, with a message in it.
    const countries = [
      { domain: "CN", parties: [HEKOU] },
      { domain: "VN", parties: [LAOCAI] },
      { domain: "TH", parties: [MAESAI] },
    ];
    const cnConnection = await client("CN");
    const cn = await cnConnection.jetstreamManager();
    const forNew = mirrorName(HEKOU, CHIANGSAEN);
    await cn.streams.add(hekouStreamFor(CHIANGSAEN));
    const cnOutbound = await (await client("CN", "TH")).jetstreamManager();
    await cnOutbound.streams.add(outboundMirror(HEKOU, CHIANGSAEN, "TH", 24 * 3600 * 1000));
    await cnConnection.jetstream().publish(outboundSubject(HEKOU, CHIANGSAEN), new Uint8Array([1]));
    // The control: Hekou's stream for Mae Sai, whose lines the hub has had from the start.
    const forMaeSai = mirrorName(HEKOU, MAESAI);
    await cn.streams.add(hekouStreamFor(MAESAI));
    await cnConnection.jetstream().publish(outboundSubject(HEKOU, MAESAI), new Uint8Array([1]));

    // Thailand's server sources the new pair's stream, and the control's, in its sourcing account
    // for China: the control takes its message, the new pair nothing (three seconds more).
    const th = await (await sourcingClient("TH", "CN")).jetstreamManager();
    const sourcing = (name: string) => ({
      name,
      external: { api: "$JS.CN.API", deliver: borderPrefix("TH", "CN") },
    });
    await th.streams.add({
      name: "TH_RELOAD_NEW",
      subjects: ["reload.new"],
      sources: [sourcing(forNew)],
    });
    await th.streams.add({
      name: "TH_RELOAD_CONTROL",
      subjects: ["reload.control"],
      sources: [sourcing(forMaeSai)],
    });
    const held = async (name: string) => (await th.streams.info(name)).state.messages;
    await waitFor("the control sourced", async () =>
      (await held("TH_RELOAD_CONTROL")) >= 1 ? true : undefined,
    );
    await new Promise((resolve) => setTimeout(resolve, 3000));
    expect(await held("TH_RELOAD_NEW")).toBe(0);

    // The hub's operator adds Chiang Saen's lines and reloads the hub's configuration.
    await federation.reloadHub([
      ...countries.slice(0, 2),
      { domain: "TH", parties: [MAESAI, CHIANGSAEN] },
    ]);
    // The hub took them: Thailand's sourcing account for China now imports the consumer-create
    // request on Hekou's stream for Chiang Saen (a service).
    const imported = await fetch(`${federation.hub.monitorUrl}/accountz?acc=TH_SOURCING_CN`)
      .then((r) => r.text())
      .then((text) => text.includes(`$JS.CN.API.CONSUMER.CREATE.${forNew}`));
    expect(imported).toBe(true);
    // Over the leaf connections that were up before the reload, the source made before it (which
    // retries) and one made after it take the new pair's message, and then more than a
    // flow-control window (64 messages of 64 kB, which needs the flow-control answers to cross):
    // the service imports the reload adds to Thailand's sourcing account reach its leaf
    // connection at once.
    await th.streams.add({
      name: "TH_RELOAD_NEW_AFTER",
      subjects: ["reload.new.after"],
      sources: [sourcing(forNew)],
    });
    await waitFor("the new pair sourced after the reload", async () =>
      (await held("TH_RELOAD_NEW")) === 1 && (await held("TH_RELOAD_NEW_AFTER")) === 1
        ? true
        : undefined,
    );
    const payload = new Uint8Array(64 * 1024).fill(42);
    for (let i = 0; i < 64; i++) {
      await cnConnection.jetstream().publish(outboundSubject(HEKOU, CHIANGSAEN), payload);
    }
    await waitFor("a flow-control window and more, after the reload", async () =>
      (await held("TH_RELOAD_NEW")) === 65 && (await held("TH_RELOAD_NEW_AFTER")) === 65
        ? true
        : undefined,
    );

    // The operator removes Chiang Saen's lines again and reloads. The established flow goes on,
    // over the same leaf connections, and over new ones after a restart of the hub: the source's
    // consumer on China's mirror lives on (the source makes it again only after 10 s with
    // nothing from it), and its deliveries cross on what the hub keeps for China and Thailand's
    // other pairs (their border prefix). Only a new consumer on that stream is refused, after
    // the reload and after the restart.
    await federation.reloadHub(countries);
    const publishForNew = () =>
      cnConnection.jetstream().publish(outboundSubject(HEKOU, CHIANGSAEN), new Uint8Array([2]));
    await publishForNew();
    await waitFor("the removed pair's flow, at once after the reload", async () =>
      (await held("TH_RELOAD_NEW")) === 66 ? true : undefined,
    );
    const refusedNow = async (name: string, control: number) => {
      await cnConnection.jetstream().publish(outboundSubject(HEKOU, MAESAI), new Uint8Array([2]));
      await th.streams.add({
        name,
        subjects: [`reload.${name}`],
        sources: [sourcing(forNew)],
      });
      await waitFor(`the control sourced again (${name})`, async () =>
        (await held("TH_RELOAD_CONTROL")) >= control ? true : undefined,
      );
      await new Promise((resolve) => setTimeout(resolve, 3000));
      expect(await held(name)).toBe(0);
    };
    await refusedNow("TH_RELOAD_NEW_AGAIN", 2);
    await federation.restartHub();
    await federation.connected();
    await publishForNew();
    await waitFor(
      "the removed pair's flow, after the hub restarted",
      async () => ((await held("TH_RELOAD_NEW")) === 67 ? true : undefined),
      60_000,
    );
    await refusedNow("TH_RELOAD_NEW_RESTARTED", 3);

    // What stops the flow at once is China's operator deleting the mirror Thailand sources.
    await cnOutbound.streams.delete(forNew);
    await publishForNew();
    await new Promise((resolve) => setTimeout(resolve, 3000));
    expect(await held("TH_RELOAD_NEW")).toBe(67);
  });

  it("carries more than a flow-control window from the sender's stream into the recipient's gateways' account", async () => {
    // Hekou's stream for Mae Sai, and in Thailand's gateways' account a stand-in for Mae Sai's
    // inbound stream, which sources it as a Thai gateway's does: from Thailand's sourcing account
    // for China, whose stream sources China's mirror across the hub.
    const tag = uniqueTag();
    const forThailand = outboundStreamName(HEKOU, MAESAI);
    const cnConnection = await client("CN");
    const cn = await cnConnection.jetstreamManager();
    await cn.streams.add(hekouStreamFor(MAESAI));
    const th = await (await client("TH")).jetstreamManager();
    const standIn = `TH_FLOW_CONTROL_${tag}`;
    await th.streams.add({
      name: standIn,
      subjects: [`flow.control.${tag}`],
      sources: [
        {
          name: forThailand,
          external: { api: "$JS.CN.API", deliver: deliverPrefix("TH", "CN") },
        },
      ],
    });
    // 64 messages of 64 kB, 4 MB: a nats-server 2.9 push consumer (a mirror's, a source's) asks
    // for flow control after 1 MB and stops after 2 MB until it is answered, so every hop's
    // answers must reach it: the mirror's in China, the source's across the hub, and the
    // gateways' account's to Thailand's sourcing account.
    const payload = new Uint8Array(64 * 1024).fill(42);
    for (let i = 0; i < 64; i++) {
      await cnConnection.jetstream().publish(outboundSubject(HEKOU, MAESAI), payload);
    }
    const total = (await cn.streams.info(forThailand)).state.messages;
    await waitFor(
      "the whole stream in the stand-in",
      async () => ((await th.streams.info(standIn)).state.messages === total ? true : undefined),
      60_000,
    );
    await th.streams.delete(standIn);
  });

  it("joins the servers over TLS only", async () => {
    const info = await new Promise<string>((resolve, reject) => {
      const socket = tcpConnect(federation.links.CN?.port ?? 0, "127.0.0.1");
      socket.once("data", (data) => {
        resolve(data.toString());
        socket.destroy();
      });
      socket.once("error", reject);
    });
    expect(info.startsWith("INFO ")).toBe(true);
    expect(JSON.parse(info.slice(5).trim())).toMatchObject({ tls_required: true });
  });
});

describe("federation: what a partner controls cannot act in the other country's gateways' account", {
  timeout: 120_000,
}, () => {
  it("keeps a partner's forged flow-control and heartbeat messages from acting in the receiving country's gateways' account", async () => {
    // Vietnam's gateway sources Hekou's stream for Lao Cai: something crossed.
    await deliveredAll([await submit("CN-HEKOU-2026-8000")]);
    const enc = (text: string) => new TextEncoder().encode(text);
    const tag = uniqueTag();
    // In Vietnam's gateways' account: Lao Cai's inbound stream, a stream to delete, and Lao Cai's
    // outbound stream for Mae Sai (another pair's flow), each with what it holds now.
    const vnConnection = await client("VN");
    const vn = await vnConnection.jetstreamManager();
    const inbound = laocai.gateway.config.streamName;
    const victim = `VN_VICTIM_${tag}`;
    await vn.streams.add({ name: victim, subjects: [`victim.${tag}`] });
    await vnConnection.jetstream().publish(`victim.${tag}`, enc("kept"));
    const forMaeSai = outboundStreamName(LAOCAI, MAESAI);
    await vn.streams.add({
      name: forMaeSai,
      subjects: [outboundSubject(LAOCAI, MAESAI)],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
    });
    await vnConnection.jetstream().publish(outboundSubject(LAOCAI, MAESAI), enc("for Mae Sai"));
    const held = async () => ({
      inbound: (await vn.streams.info(inbound)).state.messages,
      victim: await vn.streams.info(victim).then(
        (info) => info.state.messages,
        () => "deleted",
      ),
      forMaeSai: (await vn.streams.info(forMaeSai)).state.messages,
    });
    const before = await held();

    // China, in its own account for Vietnam (it controls its server), sees the heartbeats of
    // Vietnam's sources' consumers there, and so their delivery subjects (the mirror's own,
    // delivered from China's gateways' account, aside).
    // Heartbeats by delivery subject.
    const beats = (counts: Map<string, number>, subject: string) =>
      counts.set(subject, (counts.get(subject) ?? 0) + 1);
    const cn = await client("CN", "VN");
    const deliveries = new Map<string, number>();
    const seen: string[] = [];
    cn.subscribe(">", {
      callback: (_err, msg) => {
        seen.push(`${msg.subject} ${msg.data.length}`);
        if (msg.headers?.code === 100 && !msg.subject.startsWith("liaison.mirror.")) {
          beats(deliveries, msg.subject);
        }
      },
    });
    await cn.flush();
    // And, as if it knew them, the delivery subjects of Lao Cai's inbound stream's source in
    // Vietnam's gateways' account (seen there by its heartbeats).
    const local = new Map<string, number>();
    vnConnection.subscribe(`${deliverPrefix("VN", "CN")}.>`, {
      callback: (_err, msg) => {
        if (msg.headers?.code === 100) beats(local, msg.subject);
      },
    });
    await vnConnection.flush();
    // Vietnam's operator watches everything in its sourcing account for China (its interest
    // reaches the hub: China's messages on any subject the hub carries to it now cross).
    const vnSourcing = await sourcingClient("VN", "CN");
    vnSourcing.subscribe(">", { callback: () => {} });
    await vnSourcing.flush();
    // An idle source's consumer beats every second: once a subject has beaten twice, every
    // source has beaten.
    const twice = (counts: Map<string, number>) => [...counts.values()].some((n) => n >= 2);
    await waitFor("the heartbeats of Vietnam's sources", async () =>
      twice(deliveries) && twice(local) ? true : undefined,
    );

    // China forges, on each delivery subject, flow-control requests whose reply is Vietnam's
    // stream API (purge Lao Cai's inbound stream, delete the other) or the gateways' delivery
    // subject, and idle heartbeats "stalled" on Lao Cai's outbound subject for Mae Sai or on the
    // gateways' delivery subject: a source answers these by publishing an empty message to that
    // subject. The same straight onto the gateways' delivery subjects. Last, one whose answer
    // comes back to China (a consumer-create request on the stream Vietnam sources): once China
    // sees it, the source has handled the others.
    const mirror = mirrorName(HEKOU, LAOCAI);
    const empty = new Uint8Array();
    const forge = (subject: string, reply: string | undefined, stalled?: string) => {
      const h = headers(100, reply === undefined ? "Idle Heartbeat" : "FlowControl Request");
      if (stalled !== undefined) h.set("Nats-Consumer-Stalled", stalled);
      cn.publish(subject, empty, { headers: h, ...(reply === undefined ? {} : { reply }) });
    };
    for (const subject of [...deliveries.keys(), ...local.keys()]) {
      forge(subject, `$JS.API.STREAM.PURGE.${inbound}`);
      forge(subject, `$JS.API.STREAM.DELETE.${victim}`);
      forge(subject, undefined, outboundSubject(LAOCAI, MAESAI));
      for (const gateways of local.keys()) {
        forge(subject, gateways);
        forge(subject, undefined, gateways);
      }
    }
    for (const subject of deliveries.keys()) {
      forge(subject, `$JS.CN.API.CONSUMER.CREATE.${mirror}`);
    }
    await cn.flush();
    await waitFor("the source's answer to the last forged request", async () =>
      seen.some((s) => s.endsWith(`CONSUMER.CREATE.${mirror} 0`)) ? true : undefined,
    );
    // A second more for the stream API to act on what reached it.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(await held()).toEqual(before);
    // The flow goes on, and Lao Cai's inbound stream took that message and nothing else (no
    // empty message).
    await deliveredAll([await submit("CN-HEKOU-2026-8001")]);
    expect(await held()).toEqual({ ...before, inbound: before.inbound + 1 });
    await vn.streams.delete(victim);
    await vn.streams.delete(forMaeSai);
  });

  it("keeps the answers to a partner's requests in the partner's own reply space: the sender's server does not crash, nothing is created in its gateways' account", async () => {
    const enc = (text: string) => new TextEncoder().encode(text);
    const forVietnam = outboundStreamName(HEKOU, LAOCAI);
    const mirror = mirrorName(HEKOU, LAOCAI);
    const cnConnection = await client("CN");
    const cn = await cnConnection.jetstreamManager();
    const hekouHeld = async () =>
      (await cn.streams.info(hekou.gateway.config.streamName)).state.messages;
    const before = await hekouHeld();
    // Vietnam asks China's domain, from each account of its server, for a consumer on the
    // stream addressed to Lao Cai, as its sources do, delivering onto Hekou's inbound subject,
    // with the reply subject under which China's outbound account reaches the consumer API of
    // China's gateways' account; and to delete a consumer there, with the same reply subject.
    const reply = `$JS.LIAISON.API.CONSUMER.CREATE.${forVietnam}`;
    const request = {
      stream_name: mirror,
      config: {
        deliver_subject: hekou.gateway.config.inboundSubject,
        ack_policy: "none",
        deliver_policy: "all",
      },
    };
    // Vietnam listens on that reply subject in its sourcing account for China, the one whose
    // requests cross to China's domain. (In its gateways' account, $JS.CN.API is that sourcing
    // account's own API, which answers there.)
    const answers: string[] = [];
    const vnSourcing = await sourcingClient("VN", "CN");
    vnSourcing.subscribe(reply, {
      callback: (_err, msg) => answers.push(new TextDecoder().decode(msg.data)),
    });
    await vnSourcing.flush();
    for (const vn of await everyAccount("VN")) {
      vn.publish(`$JS.CN.API.CONSUMER.CREATE.${mirror}`, enc(JSON.stringify(request)), {
        reply,
      });
      vn.publish(`$JS.CN.API.CONSUMER.DELETE.${mirror}.probe`, new Uint8Array(), { reply });
      await vn.flush();
    }
    // The answers of China's domain come back to Vietnam, under the reply subject it chose, in
    // its own account.
    await waitFor("China's answers, back in Vietnam", async () =>
      answers.some((a) => a.includes("consumer_delete_response")) &&
      answers.some((a) => a.includes("consumer_create_response"))
        ? true
        : undefined,
    );
    // China's server still answers, its gateways' stream for Lao Cai has no consumer of
    // Vietnam's, and Hekou's inbound stream took nothing.
    const varz = await fetch(`${federation.servers.CN?.monitorUrl}/varz`);
    expect(varz.ok).toBe(true);
    const consumers: string[] = [];
    for await (const c of await cn.consumers.list(forVietnam)) consumers.push(c.name);
    expect(consumers).toEqual([]);
    expect(await hekouHeld()).toBe(before);
    // And the flow goes on.
    await deliveredAll([await submit("CN-HEKOU-2026-8100")]);
  });

  it("keeps a partner's request with a doubled Nats-Request-Info header from acting in any other account of the sender's server", async () => {
    // Something in Hekou's stream for Lao Cai, which Vietnam sources through China's mirror, and
    // Hekou's stream for Mae Sai (another pair's flow), each with what it holds now.
    await deliveredAll([await submit("CN-HEKOU-2026-8200")]);
    const enc = (text: string) => new TextEncoder().encode(text);
    const tag = uniqueTag();
    const forVietnam = outboundStreamName(HEKOU, LAOCAI);
    const mirror = mirrorName(HEKOU, LAOCAI);
    const cnConnection = await client("CN");
    const cn = await cnConnection.jetstreamManager();
    await cn.streams.add(hekouStreamFor(MAESAI));
    await cnConnection.jetstream().publish(outboundSubject(HEKOU, MAESAI), enc("for Mae Sai"));
    const cnOutbound = await (await client("CN", "VN")).jetstreamManager();
    const count = async (stream: string) => (await cn.streams.info(stream)).state.messages;
    const held = async () => ({
      inbound: await count(hekou.gateway.config.streamName),
      forMaeSai: await count(outboundStreamName(HEKOU, MAESAI)),
    });
    const before = await held();
    const targets = [hekou.gateway.config.inboundSubject, outboundSubject(HEKOU, MAESAI)];
    // The consumers delivering onto those subjects, on Hekou's streams in China's gateways'
    // account (the mirror's own consumer delivers on its mirror subject).
    const onTargets = async () => {
      const found: string[] = [];
      for (const stream of [forVietnam, outboundStreamName(HEKOU, MAESAI)]) {
        for await (const c of await cn.consumers.list(stream)) {
          if (targets.includes(c.config.deliver_subject ?? "")) found.push(`${stream} ${c.name}`);
        }
      }
      return found;
    };

    // Vietnam, from its sourcing account for China (whose leaf sends its sources' requests to
    // China's domain), asks for consumers on the mirror it sources, delivering onto Hekou's
    // inbound subject and Hekou's outbound subject for Mae Sai, with two Nats-Request-Info
    // headers: its own hub account's, then one naming another account of China's server. China's
    // server replaces only the first; nats-server 2.9.10 then reads the second, the forged one,
    // and acts in the account it names. Each account of China's server but the mirror's is named
    // once; the answers come back on $JSC.R, as the sources' do.
    const vn = await sourcingClient("VN", "CN");
    const answers = new Map<string, string>();
    const replies = `$JSC.R.doubled-${tag}`;
    vn.subscribe(`${replies}.>`, {
      callback: (_err, msg) =>
        answers.set(msg.subject.slice(replies.length + 1), new TextDecoder().decode(msg.data)),
    });
    await vn.flush();
    const create = (reply: string, deliver_subject: string, forged?: string) => {
      const h = headers();
      h.append("Nats-Request-Info", JSON.stringify({ acc: "VN_SOURCING_CN" }));
      if (forged !== undefined) h.append("Nats-Request-Info", JSON.stringify({ acc: forged }));
      vn.publish(
        `$JS.CN.API.CONSUMER.CREATE.${mirror}`,
        enc(
          JSON.stringify({
            stream_name: mirror,
            config: { deliver_subject, ack_policy: "none", deliver_policy: "all" },
          }),
        ),
        { reply: `${replies}.${reply}`, headers: h },
      );
    };
    const forged = ["LIAISON", "OUTBOUND_TH", "SOURCING_VN", "SOURCING_TH", "$G", "$SYS"];
    for (const [i, acc] of forged.entries()) {
      for (const [j, target] of targets.entries()) create(`forged-${i}-${j}`, target, acc);
    }
    // The control: the same request with one header, which China's server replaces: a consumer
    // on the mirror, in China's outbound account for Vietnam, as Vietnam's sources make.
    const control = `${borderPrefix("VN", "CN")}.doubled-${tag}`;
    create("control", control);
    await vn.flush();
    await waitFor("every answer", async () =>
      answers.size === forged.length * targets.length + 1 ? true : undefined,
    );
    const controlAnswer = JSON.parse(answers.get("control") ?? "{}") as {
      name?: string;
      stream_name?: string;
    };
    expect(controlAnswer.stream_name).toBe(mirror);
    expect(
      (await cnOutbound.consumers.info(mirror, controlAnswer.name ?? "")).config,
    ).toMatchObject({ deliver_subject: control });
    // Every forged request reached JetStream, which answered with an error: no stream of that name
    // in the account it read (10059), or, in $G and $SYS, no JetStream (10039). Nothing was
    // created in China's gateways' account, nor copied into Hekou's streams (a second more for
    // copies to land).
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const codes = [...answers]
      .filter(([reply]) => reply !== "control")
      .map(([reply, answer]) => [reply, JSON.parse(answer).error?.err_code]);
    expect({ codes, consumers: await onTargets(), held: await held() }).toEqual({
      codes: codes.map(([reply]) => [reply, /^forged-[45]-/.test(String(reply)) ? 10039 : 10059]),
      consumers: [],
      held: before,
    });
    await cnOutbound.consumers.delete(mirror, controlAnswer.name ?? "");
    // And the flow goes on.
    await deliveredAll([await submit("CN-HEKOU-2026-8201")]);
  });

  /**
   * Vietnam, from its sourcing account for China, sends `count` requests through the hub
   * (`send`), none of which is ever answered: each held a response mapping (and a subscription)
   * on the hub and on China's server, by default for 2 minutes. The control: both servers'
   * subscriptions grow by at least half of them; then both forget them within `forgetMs`, and
   * the flow goes on.
   */
  async function expectMappingsForgotten(
    send: (vn: NatsConnection, i: number) => void,
    forgetMs: number,
    caseRef: string,
  ): Promise<void> {
    const subscriptions = async (monitorUrl: string | undefined) =>
      ((await (await fetch(`${monitorUrl}/varz`)).json()) as { subscriptions: number })
        .subscriptions;
    const hubUrl = federation.hub.monitorUrl;
    const cnUrl = federation.servers.CN?.monitorUrl;
    const before = { hub: await subscriptions(hubUrl), cn: await subscriptions(cnUrl) };
    const vn = await sourcingClient("VN", "CN");
    const count = 2000;
    for (let i = 0; i < count; i++) send(vn, i);
    await vn.flush();
    let peak = { hub: 0, cn: 0 };
    await waitFor("the mappings on both servers", async () => {
      peak = {
        hub: Math.max(peak.hub, (await subscriptions(hubUrl)) - before.hub),
        cn: Math.max(peak.cn, (await subscriptions(cnUrl)) - before.cn),
      };
      return peak.hub >= count / 2 && peak.cn >= count / 2 ? true : undefined;
    });
    await waitFor(
      "the mappings forgotten",
      async () =>
        (await subscriptions(hubUrl)) - before.hub < 50 &&
        (await subscriptions(cnUrl)) - before.cn < 50
          ? true
          : undefined,
      forgetMs,
    );
    await deliveredAll([await submit(caseRef)]);
  }

  it("forgets the response mappings of a partner's consumer requests that name an account the sender's server does not have", async () => {
    // Such a request (its doubled Nats-Request-Info header naming no account of China's server)
    // is never answered: JetStream only logs it. With the threshold of the hub's consumer create
    // and delete exports, its mapping is forgotten within seconds (2 minutes without it).
    const mirror = mirrorName(HEKOU, LAOCAI);
    await expectMappingsForgotten(
      (vn, i) => {
        const h = headers();
        h.append("Nats-Request-Info", JSON.stringify({ acc: "VN_SOURCING_CN" }));
        h.append("Nats-Request-Info", JSON.stringify({ acc: "NO_SUCH_ACCOUNT" }));
        vn.publish(`$JS.CN.API.CONSUMER.CREATE.${mirror}`, new TextEncoder().encode("{}"), {
          reply: `unanswered.${i}`,
          headers: h,
        });
      },
      60_000,
      "CN-HEKOU-2026-8310",
    );
  });

  it("forgets within seconds the response mappings of a partner's forged flow-control requests with reply subjects, on the hub and on the sender's server", async () => {
    // Flow-control "requests" for the mirror Vietnam sources, each with a reply subject. A
    // flow-control answer has no reply subject, so the flow needs none of their mappings (the
    // response threshold of the $JS.FC exports).
    const mirror = mirrorName(HEKOU, LAOCAI);
    await expectMappingsForgotten(
      (vn, i) =>
        vn.publish(`$JS.FC.${mirror}.flood.${i}`, new Uint8Array(), { reply: `flood.${i}` }),
      20_000,
      "CN-HEKOU-2026-8300",
    );
  });
});

/** The hub's accounts of the leaf connections it has up (its monitoring endpoint, `/leafz`). */
async function leavesUp(): Promise<string[]> {
  const leafz = (await (await fetch(`${federation.hub.monitorUrl}/leafz`)).json()) as {
    leafs?: { account: string }[];
  };
  return (leafz.leafs ?? []).map((leaf) => leaf.account);
}

/**
 * Cuts Vietnam's link (whatever its delay), has Hekou submit `count` case notices (case
 * references from `firstCase` on) while it is cut, all accepted and `sent`, and restores the
 * link once it has been cut for `cutMs`: the deliveries' ids.
 */
async function submitDuringCut(count: number, firstCase: number, cutMs: number): Promise<string[]> {
  const link = federation.links.VN as NonNullable<typeof federation.links.VN>;
  link.cut();
  const cutAt = Date.now();
  const ids: string[] = [];
  for (let i = 0; i < count; i++) ids.push(await submit(`CN-HEKOU-2026-${firstCase + i}`));
  await waitFor("all sent to the outbound stream", async () => {
    for (const id of ids) if ((await status(id)) !== "sent") return undefined;
    return true;
  });
  // The cut lasts `cutMs` (the scenario's length, not a wait for something to happen).
  const left = cutAt + cutMs - Date.now();
  if (left > 0) await new Promise((resolve) => setTimeout(resolve, left));
  link.restore();
  return ids;
}

describe("federation: over a slow link", { timeout: 180_000 }, () => {
  // Vietnam's link to the hub (its four leaf connections) delays each direction; every test
  // leaves it as it found it.
  const link = () => federation.links.VN as NonNullable<typeof federation.links.VN>;
  afterAll(() => {
    link().setDelay({ upMs: 0, downMs: 0 });
    link().restore();
  });

  it("brings every leaf back after a 5 s cut over a link with a 0.8 s round trip, and delivers what was submitted during the cut exactly once", async () => {
    // 400 ms each way: a round trip worse than a geostationary satellite's (about 600 ms), and
    // below the 1 s nats-server 2.9.10 waits for the hub's first INFO on a new leaf connection
    // (see the next test).
    await deliveredAll([await submit("CN-HEKOU-2026-9000")]);
    const before = await crossingCounts();
    link().setDelay({ upMs: 400, downMs: 400 });
    try {
      const ids = await submitDuringCut(10, 9001, 5000);
      const restoredAt = Date.now();
      await federation.connected(30_000);
      console.info(
        `slow link (0.8 s round trip): every leaf back ${Date.now() - restoredAt} ms after the cut`,
      );
      await deliveredAll(ids, 90_000);
      expect([...(await loggedAtLaocai(ids)).values()]).toEqual(ids.map(() => 1));
      await crossedOnce(before, ids.length);
    } finally {
      link().setDelay({ upMs: 0, downMs: 0 });
    }
  });

  it("carries messages over leaf connections that are up when the link's round trip is 3 s; after a cut, keeps what was submitted, as that link is too slow for a leaf connection to be made, and delivers it exactly once when the link is better", async () => {
    // nats-server 2.9.10 gives a new leaf connection 1 s for the hub's first INFO
    // (DEFAULT_LEAFNODE_INFO_WAIT, not configurable; `first_info_timeout` came in 2.11), which a
    // link with a round trip of 1 s or more cannot bring: Vietnam's leaves stay away, whatever
    // the TLS and authorization timeouts (docs/operations.md, Federation).
    link().setDelay({ upMs: 1500, downMs: 1500 });
    let ids: string[];
    let before: CrossingCounts;
    try {
      // Leaf connections already up keep working over it: a notice crosses, its receipt comes
      // back, and every leaf is still up.
      await deliveredAll([await submit("CN-HEKOU-2026-9100")]);
      expect((await leavesUp()).length).toBe(federationLeaves(COUNTRIES).length);
      before = await crossingCounts();
      ids = await submitDuringCut(10, 9101, 5000);
      // Each leaf tries again every second or two: watch ten seconds of attempts.
      const watchUntil = Date.now() + 10_000;
      while (Date.now() < watchUntil) {
        expect((await leavesUp()).filter((account) => account.startsWith("VN_"))).toEqual([]);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      for (const id of ids) expect(await status(id)).toBe("sent");
    } finally {
      link().setDelay({ upMs: 0, downMs: 0 });
    }
    // The link gets better: the leaves come back, and what waited crosses once.
    await federation.connected(30_000);
    await deliveredAll(ids, 90_000);
    expect([...(await loggedAtLaocai(ids)).values()]).toEqual(ids.map(() => 1));
    await crossedOnce(before, ids.length);
  });
});
