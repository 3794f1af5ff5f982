/**
 * Each country on its own nats-server, joined by NATS's own federation (leaf nodes to a hub, a
 * JetStream domain per country, mutual TLS with each leaf's certificate bound to its hub user, an
 * account per leaf connection): messages and their receipts cross through stream sourcing; with
 * the link cut, the border post keeps accepting and delivers everything, once, when the link is
 * back; a country cannot read what is not addressed to it, nor publish into another country's
 * subjects, nor have the sender's server deliver onto the sender's own subjects.
 */
import { readFileSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { connect, type NatsConnection, RetentionPolicy, StorageType } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type CertificateFiles,
  type Federation,
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

beforeAll(async () => {
  federation = await startNatsFederation([
    { domain: "CN", parties: [HEKOU] },
    { domain: "VN", parties: [LAOCAI] },
    { domain: "TH", parties: [MAESAI] },
  ]);
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

/**
 * How many messages each stream on the way from Hekou to Lao Cai holds: Hekou's outbound stream
 * for Lao Cai, its mirror in China's outbound account for Vietnam, and Lao Cai's inbound stream
 * (which keeps what it took, limits retention, and takes nothing else in these tests).
 */
async function crossingCounts(): Promise<{ outbound: number; mirror: number; inbound: number }> {
  const stream = outboundStreamName(HEKOU, LAOCAI);
  const cn = await (await client("CN")).jetstreamManager();
  const cnOutbound = await (await client("CN", "VN")).jetstreamManager();
  const vn = await (await client("VN")).jetstreamManager();
  return {
    outbound: (await cn.streams.info(stream)).state.messages,
    mirror: (await cnOutbound.streams.info(stream)).state.messages,
    inbound: (await vn.streams.info(laocai.gateway.config.streamName)).state.messages,
  };
}

/**
 * Each of `count` messages went into Hekou's outbound stream once (a publish repeated across
 * the restart is dropped by its de-duplication id), and crossed once: not only logged once.
 */
async function crossedOnce(
  before: { outbound: number; mirror: number; inbound: number },
  count: number,
): Promise<void> {
  const grown = (now: { outbound: number; mirror: number; inbound: number }) => ({
    outbound: now.outbound - before.outbound,
    mirror: now.mirror - before.mirror,
    inbound: now.inbound - before.inbound,
  });
  // The mirror may lag its stream a moment.
  const now = await waitFor("the mirror caught up", async () => {
    const counts = await crossingCounts();
    return counts.mirror === counts.outbound ? counts : undefined;
  });
  expect(grown(now)).toEqual({ outbound: count, mirror: count, inbound: count });
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
    const cn = federation.leafCredentials("CN");
    const answer = await leafLogin(cn, "", cn.password);
    expect(answer).toContain("PONG");
    // Taken as China's sourcing leaf.
    expect(hubAccountOf(answer)).toBe("CN_SOURCING");
    // And China's outbound leaf for Vietnam, with its own certificate, into its own account.
    const cnForVietnam = federation.leafCredentials("CN", "VN");
    const outbound = await leafLogin(cnForVietnam, "", cnForVietnam.password);
    expect(outbound).toContain("PONG");
    expect(hubAccountOf(outbound)).toBe("CN_OUTBOUND_VN");
  });

  it("refuses a leaf without a client certificate", async () => {
    const vn = federation.leafCredentials("VN");
    expect(await leafLogin(undefined, vn.user, vn.password)).toMatch(/^TLS error/);
  });

  it("refuses a leaf presenting one country's certificate with another's credentials", async () => {
    const cn = federation.leafCredentials("CN");
    const vn = federation.leafCredentials("VN");
    expect(await leafLogin(cn, vn.user, vn.password)).toContain("Authorization Violation");
    expect(await leafLogin(cn, "", vn.password)).toContain("Authorization Violation");
    // Nor one of a country's leaves with the credentials of another of its leaves: each pair's
    // leaf has a certificate of its own.
    const cnForVietnam = federation.leafCredentials("CN", "VN");
    const cnForThailand = federation.leafCredentials("CN", "TH");
    expect(await leafLogin(cnForVietnam, cnForThailand.user, cnForThailand.password)).toContain(
      "Authorization Violation",
    );
    expect(await leafLogin(cnForVietnam, "", cnForThailand.password)).toContain(
      "Authorization Violation",
    );
  });

  it("refuses a certificate of the federation's CA that names no country", async () => {
    const vn = federation.leafCredentials("VN");
    const stranger = federation.issueCertificate("stranger");
    expect(await leafLogin(stranger, vn.user, vn.password)).toContain("Authorization Violation");
  });

  it("lets no one log in on the hub's client port, not even with a country's leaf credentials", async () => {
    for (const domain of ["CN", "VN", "TH"]) {
      const { user, password } = federation.leafCredentials(domain);
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
    const back = await vn.streams.info(outboundStreamName(LAOCAI, HEKOU));
    expect(back.state.messages).toBeGreaterThanOrEqual(20);
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
    const forThailand = outboundStreamName(HEKOU, MAESAI);
    await cn.streams.add(hekouStreamFor(MAESAI));
    await cnConnection.jetstream().publish(outboundSubject(HEKOU, MAESAI), new Uint8Array([1]));
    const sourcing = (domain: string) => ({
      name: forThailand,
      external: { api: "$JS.CN.API", deliver: deliverPrefix(domain, "CN") },
    });

    // Thailand's server sources it, as a Thai gateway's inbound stream would (the positive
    // control), and Vietnam's server tries the same at the same time.
    const th = await (await client("TH")).jetstreamManager();
    await th.streams.add({ name: "TH_PROBE", subjects: ["probe.th"], sources: [sourcing("TH")] });
    const vn = await (await client("VN")).jetstreamManager();
    await vn.streams.add({ name: "VN_PROBE", subjects: ["probe.vn"], sources: [sourcing("VN")] });
    await waitFor("Thailand sourced its message", async () =>
      (await th.streams.info("TH_PROBE")).state.messages === 1 ? true : undefined,
    );
    // Vietnam had as long, and three seconds more, and got nothing.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    expect((await vn.streams.info("VN_PROBE")).state.messages).toBe(0);

    // Asked directly, China's domain does not answer Vietnam: not the consumer API, not the
    // stream API.
    const vnConnection = await client("VN");
    const ask = (subject: string, body: unknown) =>
      vnConnection.request(subject, new TextEncoder().encode(JSON.stringify(body)), {
        timeout: 2000,
      });
    await expect(
      ask(`$JS.CN.API.CONSUMER.CREATE.${outboundStreamName(HEKOU, MAESAI)}`, {
        stream_name: forThailand,
        config: { ack_policy: "none", deliver_subject: "liaison.deliver.VN.snoop" },
      }),
    ).rejects.toThrow();
    await expect(ask(`$JS.CN.API.STREAM.INFO.${forThailand}`, {})).rejects.toThrow();
  });

  it("keeps the replies to one country's sources away from a third country", async () => {
    // Something in Hekou's stream for Lao Cai, which Vietnam sources from China's domain.
    await deliveredAll([await submit("CN-HEKOU-2026-7000")]);
    const forVietnam = outboundStreamName(HEKOU, LAOCAI);
    // Thailand listens, in its gateways' account, on every reply subject of JetStream's sources
    // and every delivery subject (what a Thai server's clients can ask its leaves for).
    const th = await client("TH");
    const replies: string[] = [];
    const deliveries: string[] = [];
    th.subscribe("$JSC.R.>", {
      callback: (_err, msg) => replies.push(`${msg.subject} ${new TextDecoder().decode(msg.data)}`),
    });
    th.subscribe("liaison.deliver.>", { callback: (_err, msg) => deliveries.push(msg.subject) });
    await th.flush();
    // Thailand's interest has reached China's server once a reply subject published where China
    // answers Thailand's own sources arrives (the positive control); it is repeated until then.
    const tag = uniqueTag();
    const cnForThailand = await client("CN", "TH");
    const control = async (name: string) =>
      waitFor(`Thailand's control reply ${name}`, async () => {
        cnForThailand.publish(`$JSC.R.${name}-${tag}`, new TextEncoder().encode(name));
        await cnForThailand.flush();
        await new Promise((resolve) => setTimeout(resolve, 100));
        return replies.some((r) => r.startsWith(`$JSC.R.${name}-${tag} `)) ? true : undefined;
      });
    await control("before");

    // Vietnam's server makes a new source of Hekou's stream for Lao Cai, as its gateway's inbound
    // stream does when it starts or its source is made again: the request crosses the hub to
    // China's server, whose answer (the consumer's name and delivery subject) comes back to it.
    const vn = await (await client("VN")).jetstreamManager();
    const probe = `VN_REPLY_PROBE_${tag}`;
    await vn.streams.add({
      name: probe,
      subjects: [`reply.probe.${tag}`],
      sources: [
        { name: forVietnam, external: { api: "$JS.CN.API", deliver: deliverPrefix("VN", "CN") } },
      ],
    });
    await waitFor("Vietnam's new source took Hekou's stream", async () =>
      (await vn.streams.info(probe)).state.messages > 0 ? true : undefined,
    );
    // Thailand's interest was still there afterwards, and a second more for anything in flight.
    await control("after");
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await vn.streams.delete(probe);

    // Thailand saw no answer about a stream addressed to another country, nor a delivery subject
    // of another country.
    const otherPairs = /_TO_(?!TH_)[A-Z]{2}_|liaison\.deliver\.(?!TH\.)/;
    expect(replies.filter((r) => otherPairs.test(r))).toEqual([]);
    expect(deliveries.filter((s) => otherPairs.test(s))).toEqual([]);
  });

  it("keeps the deliveries of a consumer a partner creates away from the sender's own subjects", async () => {
    // Something in Hekou's outbound stream for Lao Cai, and an outbound stream of Hekou's for
    // Mae Sai, which Thailand would source.
    await deliveredAll([await submit("CN-HEKOU-2026-4000")]);
    const cnGateways = await client("CN");
    const cn = await cnGateways.jetstreamManager();
    const forVietnam = outboundStreamName(HEKOU, LAOCAI);
    const forThailand = outboundStreamName(HEKOU, MAESAI);
    await cn.streams.add(hekouStreamFor(MAESAI));
    const cnOutbound = await (await client("CN", "VN")).jetstreamManager();
    const cnForThailand = await (await client("CN", "TH")).jetstreamManager();
    // The mirror has what the gateway's stream has (it delivered through the mirror).
    const inOutbound = (await cnOutbound.streams.info(forVietnam)).state.messages;
    expect(inOutbound).toBeGreaterThan(0);
    const count = async (jsm: typeof cn, stream: string) =>
      (await jsm.streams.info(stream)).state.messages;
    const before = {
      inbound: await count(cn, hekou.gateway.config.streamName),
      forThailand: await count(cn, forThailand),
      forThailandMirror: await count(cnForThailand, forThailand),
    };

    // Vietnam's server asks China's domain, as its sources do, for consumers on the stream
    // addressed to Lao Cai: two delivering onto China's own subjects, one onto Vietnam's prefix
    // (the control). The answers come back as the sources' do, on $JSC.R.
    const vn = await client("VN");
    const control = `${deliverPrefix("VN", "CN")}.probe-${uniqueTag()}`;
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
        `$JS.CN.API.CONSUMER.CREATE.${forVietnam}`,
        new TextEncoder().encode(
          JSON.stringify({
            stream_name: forVietnam,
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
      forThailandMirror: await count(cnForThailand, forThailand),
    }).toEqual(before);
    // The consumers are on the mirror in China's outbound account for Vietnam, where nothing
    // listens on the other two subjects, and the gateways' account is out of reach.
    for (const name of created.values()) {
      expect((await cnOutbound.consumers.info(forVietnam, name)).stream_name).toBe(forVietnam);
    }
    for (const name of created.values()) await cnOutbound.consumers.delete(forVietnam, name);
  });

  it("does not carry a plain publish into another country's subjects", async () => {
    const vnJs = (await client("VN")).jetstream();
    await expect(
      vnJs.publish(hekou.gateway.config.inboundSubject, new TextEncoder().encode("{}"), {
        timeout: 2000,
      }),
    ).rejects.toThrow();
    await expect(
      vnJs.publish(outboundSubject(HEKOU, LAOCAI), new TextEncoder().encode("{}"), {
        timeout: 2000,
      }),
    ).rejects.toThrow();
  });

  it("carries deliveries from one country to another only from that country", async () => {
    const vn = await client("VN");
    const seen: string[] = [];
    const sub = vn.subscribe(`${deliverPrefix("VN", "CN")}.probe`, {
      callback: (_err, msg) => seen.push(new TextDecoder().decode(msg.data)),
    });
    await vn.flush();
    // Thailand tries from all its accounts; China's deliveries come from its outbound account for
    // Vietnam.
    const th = [await client("TH"), await client("TH", "CN"), await client("TH", "VN")];
    const cn = await client("CN", "VN");
    // The interest takes a moment to reach the hub and the other leaves: China's publish, which
    // is allowed, is repeated until it arrives (the positive control).
    await waitFor("China's delivery", async () => {
      for (const t of th) {
        t.publish(`${deliverPrefix("VN", "CN")}.probe`, new TextEncoder().encode("forged by TH"));
        await t.flush();
      }
      cn.publish(`${deliverPrefix("VN", "CN")}.probe`, new TextEncoder().encode("from CN"));
      await cn.flush();
      await new Promise((resolve) => setTimeout(resolve, 100));
      return seen.includes("from CN") ? true : undefined;
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    sub.unsubscribe();
    expect(seen).not.toContain("forged by TH");
  });

  it("applies a partner pair added or removed on the hub (SIGHUP, or a restart) only to consumers created after the leaves reconnect", async () => {
    // A new Thai party, Chiang Saen, for which the hub has no lines yet: Hekou's stream for it and
    // that stream's mirror in China's outbound account for Thailand, with a message in it.
    const countries = [
      { domain: "CN", parties: [HEKOU] },
      { domain: "VN", parties: [LAOCAI] },
      { domain: "TH", parties: [MAESAI] },
    ];
    const cnConnection = await client("CN");
    const cn = await cnConnection.jetstreamManager();
    const forNew = outboundStreamName(HEKOU, CHIANGSAEN);
    await cn.streams.add(hekouStreamFor(CHIANGSAEN));
    const cnOutbound = await (await client("CN", "TH")).jetstreamManager();
    await cnOutbound.streams.add(outboundMirror(HEKOU, CHIANGSAEN, "TH", 24 * 3600 * 1000));
    await cnConnection.jetstream().publish(outboundSubject(HEKOU, CHIANGSAEN), new Uint8Array([1]));
    // The control: Hekou's stream for Mae Sai, whose lines the hub has had from the start.
    const forMaeSai = outboundStreamName(HEKOU, MAESAI);
    await cn.streams.add(hekouStreamFor(MAESAI));
    await cnConnection.jetstream().publish(outboundSubject(HEKOU, MAESAI), new Uint8Array([1]));

    // The hub's operator adds Chiang Saen's lines and reloads the hub's configuration.
    await federation.reloadHub([
      ...countries.slice(0, 2),
      { domain: "TH", parties: [MAESAI, CHIANGSAEN] },
    ]);
    // The hub took them: Thailand's sourcing account now exports the consumer-create request on
    // Hekou's stream for Chiang Saen.
    const exported = await fetch(`${federation.hub.monitorUrl}/accountz?acc=TH_SOURCING`)
      .then((r) => r.text())
      .then((text) => text.includes(`$JS.CN.API.CONSUMER.CREATE.${forNew}`));
    expect(exported).toBe(true);

    // Thailand's server then sources the new pair's stream, and the control's, over the leaf
    // connections that were up before the reload.
    const th = await (await client("TH")).jetstreamManager();
    const sourcing = (name: string) => ({
      name,
      external: { api: "$JS.CN.API", deliver: deliverPrefix("TH", "CN") },
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
    // The new pair had as long, and three seconds more, and got nothing: the leaf connections
    // keep what the hub's accounts were when they connected.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    expect(await held("TH_RELOAD_NEW")).toBe(0);

    // The operator's procedure: restart the hub. Every leaf connection is made again, and the
    // new pair's flow works.
    await federation.restartHub();
    await federation.connected();
    await waitFor(
      "the new pair sourced after the hub restarted",
      async () => ((await held("TH_RELOAD_NEW")) === 1 ? true : undefined),
      60_000,
    );

    // The operator removes Chiang Saen's lines again and reloads. The established flow goes on,
    // over the same leaf connections, and over new ones after a restart of the hub: the source's
    // consumer on China's mirror lives on (the source makes it again only after 10 s with
    // nothing from it), and its deliveries cross on what the hub keeps for China and Thailand's
    // other pairs (their delivery prefix). Only a new consumer on that stream is refused.
    await federation.reloadHub(countries);
    const publishForNew = () =>
      cnConnection.jetstream().publish(outboundSubject(HEKOU, CHIANGSAEN), new Uint8Array([2]));
    await publishForNew();
    await waitFor("the removed pair's flow, at once after the reload", async () =>
      (await held("TH_RELOAD_NEW")) === 2 ? true : undefined,
    );
    await federation.restartHub();
    await federation.connected();
    await publishForNew();
    await waitFor(
      "the removed pair's flow, after the hub restarted",
      async () => ((await held("TH_RELOAD_NEW")) === 3 ? true : undefined),
      60_000,
    );
    await cnConnection.jetstream().publish(outboundSubject(HEKOU, MAESAI), new Uint8Array([2]));
    await th.streams.add({
      name: "TH_RELOAD_NEW_AGAIN",
      subjects: ["reload.new.again"],
      sources: [sourcing(forNew)],
    });
    await waitFor("the control sourced again", async () =>
      (await held("TH_RELOAD_CONTROL")) >= 2 ? true : undefined,
    );
    await new Promise((resolve) => setTimeout(resolve, 3000));
    expect(await held("TH_RELOAD_NEW_AGAIN")).toBe(0);

    // What stops the flow at once is China's operator deleting the mirror Thailand sources.
    await cnOutbound.streams.delete(forNew);
    await publishForNew();
    await new Promise((resolve) => setTimeout(resolve, 3000));
    expect(await held("TH_RELOAD_NEW")).toBe(3);
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
