/**
 * Failures are visible, between two real gateways: Hekou's messages to Lao Cai get no receipt
 * (Lao Cai has not registered Hekou yet, so it quarantines them as sender_unknown and answers
 * nothing) and fail once a small retry budget is spent. The alert watch raises an alert naming
 * Lao Cai and since when: in GET /v1/alerts (every answer held to the OpenAPI document), in
 * /metrics and in the log (partner, since, count; nothing of the message). Once Lao Cai has
 * registered Hekou, the next message is delivered and the alert resolves, everywhere.
 */
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parsePartyDocument } from "../../src/registry/party-document.ts";
import { call, startNode, type TestNode, uniqueTag, waitFor } from "../helpers/network.ts";
import { CASE_NOTICE_BODY } from "../helpers/protocol-fixtures.ts";

type AddFormats = typeof addFormatsModule.default;
const addFormats: AddFormats =
  (addFormatsModule as unknown as { default?: AddFormats }).default ??
  (addFormatsModule as unknown as AddFormats);

const HEKOU = "CN-MPS-HEKOU";
const LAOCAI = "VN-BGC-LAOCAI";
const MARKER = "Marker-Alert-5c1e";
const lines: string[] = [];
let hekou: TestNode | undefined;
let laocai: TestNode | undefined;

beforeAll(async () => {
  const natsUrl = inject("natsUrl");
  const tag = uniqueTag();
  hekou = await startNode(natsUrl, tag, {
    partyId: HEKOU,
    logLines: lines,
    env: {
      LIAISON_RETRY_MAX_ATTEMPTS: "2",
      LIAISON_RETRY_BASE_MS: "100",
      LIAISON_RETRY_MAX_MS: "200",
      LIAISON_ALERT_CHECK_SECONDS: "1",
    },
  });
  laocai = await startNode(natsUrl, tag, { partyId: LAOCAI });
  // Hekou knows Lao Cai; Lao Cai does not know Hekou (yet).
  await register(hekou, laocai);
});

afterAll(async () => {
  await hekou?.gateway.stop();
  await laocai?.gateway.stop();
});

/** `at` registers `party` from the party document it publishes over HTTP. */
async function register(at: TestNode, party: TestNode) {
  const doc = await (await fetch(`${party.gateway.url}/.well-known/jwks.json`)).json();
  const { party: record, keys } = await parsePartyDocument(doc);
  await at.gateway.registry.add(record, keys);
}

async function send(from: TestNode, to: string): Promise<string> {
  const res = await call(from, "/v1/messages", {
    json: {
      type: "case.notice",
      to,
      caseRef: "CN-HEKOU-2026-0042",
      body: { ...structuredClone(CASE_NOTICE_BODY), summary: `Recruited by ${MARKER}.` },
    },
  });
  expect(res.status).toBe(202);
  return res.body.id as string;
}

async function deliveryOf(node: TestNode, id: string, status: string) {
  return waitFor(`delivery of ${id} ${status}`, async () => {
    const { body } = await call(node, `/v1/messages/${id}`);
    const d = (body.deliveries as Array<Record<string, unknown>>)[0];
    return d?.status === status ? d : undefined;
  });
}

// ─── answers held to the OpenAPI document ────────────────────────────────────────────────────

const DOC_ID = "https://liaison-gateway.test/openapi.json";
let ajv: Ajv2020 | undefined;

async function documented(node: TestNode, path: string, token: string | null = node.token) {
  if (ajv === undefined) {
    ajv = new Ajv2020({ strict: true, allErrors: true, allowUnionTypes: true });
    addFormats(ajv);
    ajv.addVocabulary(["openapi", "info", "tags", "paths", "components"]);
    const doc = (await (await node.gateway.app.request("/openapi.json")).json()) as object;
    ajv.addSchema(doc, DOC_ID);
  }
  const res = await node.gateway.app.request(path, {
    headers: token === null ? {} : { authorization: `Bearer ${token}` },
  });
  const body = (await res.json()) as Record<string, unknown>;
  const type = res.headers.get("content-type")?.split(";")[0]?.trim() ?? "";
  const pointer = (s: string) => s.replaceAll("~", "~0").replaceAll("/", "~1");
  const validate = ajv.getSchema(
    `${DOC_ID}#/paths/${pointer("/v1/alerts")}/get/responses/${res.status}/content/${pointer(type)}/schema`,
  );
  expect(validate, `GET /v1/alerts ${res.status} ${type} is documented`).toBeDefined();
  expect(validate?.(body) ? [] : validate?.errors).toEqual([]);
  return { status: res.status, body };
}

type AlertItem = {
  id: number;
  kind: string;
  partner: string;
  active: boolean;
  since: string;
  lastFailureAt: string;
  count: number;
  resolvedAt: string | null;
};

async function alerts(node: TestNode, query = ""): Promise<AlertItem[]> {
  const { status, body } = await documented(node, `/v1/alerts${query}`);
  expect(status).toBe(200);
  return body.items as AlertItem[];
}

async function scrape(node: TestNode): Promise<string> {
  const res = await node.gateway.app.request("/metrics", {
    headers: { authorization: `Bearer ${node.token}` },
  });
  expect(res.status).toBe(200);
  return res.text();
}

function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const logged = (msg: string) =>
  lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === msg);

const RAISED = "alert raised: deliveries to this partner failed";
const RESOLVED = "alert resolved: a delivery to this partner got its receipt";
const ACTIVE = `liaison_alerts_active{partner="${LAOCAI}",kind="delivery_failed"}`;
const SINCE = `liaison_alert_since_seconds{partner="${LAOCAI}",kind="delivery_failed"}`;

describe("alerts", () => {
  it("GET /v1/alerts needs the API token and a valid filter", async () => {
    const node = hekou as TestNode;
    expect((await documented(node, "/v1/alerts", null)).status).toBe(401);
    const bad = await documented(node, "/v1/alerts?active=maybe");
    expect(bad.status).toBe(400);
    expect(bad.body.code).toBe("request_invalid");
    expect((await documented(node, "/v1/alerts?limit=0")).status).toBe(400);
    expect(await alerts(node)).toEqual([]);
  });

  it("a delivery that spends its retries raises an alert naming the partner and since when, and a delivery that gets its receipt resolves it", async () => {
    const h = hekou as TestNode;
    const l = laocai as TestNode;

    // No receipt can come: the delivery fails once its two publishes are spent.
    const first = await send(h, LAOCAI);
    const failed = await deliveryOf(h, first, "failed");
    expect(failed.lastError).toBe("no receipt within the retry budget");

    const [alert] = await waitFor("the alert", async () => {
      const found = await alerts(h, "?active=true");
      return found.length > 0 ? found : undefined;
    });
    expect(alert).toMatchObject({
      kind: "delivery_failed",
      partner: LAOCAI,
      active: true,
      since: failed.updatedAt,
      lastFailureAt: failed.updatedAt,
      count: 1,
      resolvedAt: null,
    });
    expect(await alerts(h, "?active=false")).toEqual([]);

    // In /metrics, with since in Unix time.
    const metrics = await scrape(h);
    expect(sample(metrics, ACTIVE)).toBe(1);
    expect(sample(metrics, SINCE)).toBe(Date.parse(alert?.since as string) / 1000);

    // In the log, once, at error: the partner, since and count, nothing of the message.
    const raised = await waitFor("the raise's log line", async () => {
      const found = logged(RAISED);
      return found.length > 0 ? found : undefined;
    });
    expect(raised).toHaveLength(1);
    expect(raised[0]).toMatchObject({
      level: 50,
      partner: LAOCAI,
      since: alert?.since,
      count: 1,
    });
    expect(Object.keys(raised[0] ?? {}).sort()).toEqual(
      ["alert", "code", "count", "level", "msg", "partner", "party", "since", "time"].sort(),
    );

    // A second failure extends the same alert: one active alert, counting both.
    const second = await send(h, LAOCAI);
    const failedAgain = await deliveryOf(h, second, "failed");
    await waitFor("the alert extended", async () => {
      const [a] = await alerts(h, "?active=true");
      return a?.count === 2 ? a : undefined;
    });
    const [extended, ...others] = await alerts(h);
    expect(others).toEqual([]);
    expect(extended).toMatchObject({
      id: alert?.id,
      since: alert?.since,
      lastFailureAt: failedAgain.updatedAt,
      count: 2,
    });
    expect(logged(RAISED)).toHaveLength(1);

    // Lao Cai registers Hekou: the next message gets its receipt, and the alert resolves.
    await register(l, h);
    const third = await send(h, LAOCAI);
    const delivered = await deliveryOf(h, third, "delivered");
    const [resolved] = await waitFor("the alert resolved", async () => {
      const found = await alerts(h, "?active=false");
      return found.length > 0 ? found : undefined;
    });
    expect(resolved).toMatchObject({
      id: alert?.id,
      partner: LAOCAI,
      active: false,
      since: alert?.since,
      count: 2,
      resolvedAt: delivered.updatedAt,
    });
    expect(await alerts(h, "?active=true")).toEqual([]);
    const after = await scrape(h);
    expect(sample(after, ACTIVE)).toBeUndefined();
    expect(sample(after, SINCE)).toBeUndefined();
    const resolvedLines = await waitFor("the resolve's log line", async () => {
      const found = logged(RESOLVED);
      return found.length > 0 ? found : undefined;
    });
    expect(resolvedLines).toHaveLength(1);
    expect(resolvedLines[0]).toMatchObject({
      level: 30,
      partner: LAOCAI,
      since: alert?.since,
      count: 2,
      resolvedAt: delivered.updatedAt,
    });

    // Nothing of the messages in any alert line.
    for (const line of lines.filter((l) => l.includes('"alert"'))) {
      expect(line).not.toContain(MARKER);
      for (const id of [first, second, third]) expect(line).not.toContain(id);
    }
  });
});
