/**
 * GET /metrics between two real gateways: every family is served in the Prometheus text format,
 * the figures follow what happened (a delivered message, its receipts, a quarantined forgery, a
 * victim's case with personal data), and no label or value carries content.
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { calculateJwkThumbprint, exportJWK, generateKeyPair } from "jose";
import { connect } from "nats";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { call, type Pair, startPair, type TestNode, waitFor } from "../helpers/network.ts";
import { CASE_NOTICE_BODY } from "../helpers/protocol-fixtures.ts";

const LAOCAI = "VN-BGC-LAOCAI";
const CANARY = `CANARY-${randomUUID()}`;

let pair: Pair | undefined;
let hekou: TestNode;
let laocai: TestNode;

beforeAll(async () => {
  pair = await startPair(inject("natsUrl"));
  ({ hekou, laocai } = pair);
});

afterAll(async () => {
  await pair?.stop();
});

async function scrape(node: TestNode, token: string | null = node.token): Promise<Response> {
  return node.gateway.app.request("/metrics", {
    headers: token === null ? {} : { authorization: `Bearer ${token}` },
  });
}

/** The value of one sample, e.g. sample(text, 'liaison_deliveries{status="delivered",partner="…"}'). */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function delivered(node: TestNode, id: string) {
  return waitFor(`delivery of ${id}`, async () => {
    const { body } = await call(node, `/v1/messages/${id}`);
    return body.status === "delivered" ? body : undefined;
  });
}

describe("GET /metrics", () => {
  it("needs the API token", async () => {
    expect((await scrape(hekou, null)).status).toBe(401);
    expect((await scrape(hekou, "x".repeat(32))).status).toBe(401);
  });

  it("serves every family, and the figures follow the traffic; no content in any label", async () => {
    // A case notice, delivered with its receipt.
    const notice = await call(hekou, "/v1/messages", {
      json: {
        type: "case.notice",
        to: LAOCAI,
        caseRef: "CN-HEKOU-2026-0042",
        body: CASE_NOTICE_BODY,
      },
    });
    expect(notice.status).toBe(202);
    await delivered(hekou, notice.body.id as string);

    // A victim's case with personal data carrying the canary, delivered too.
    const example = JSON.parse(
      readFileSync(
        new URL("../../docs/examples/messages/01-victim.identified.json", import.meta.url),
        "utf8",
      ),
    ) as { body: Record<string, unknown>; personalData: Record<string, unknown> };
    const victim = await call(hekou, "/v1/messages", {
      json: {
        type: "victim.identified",
        to: LAOCAI,
        caseRef: "CN-HEKOU-2026-5501",
        body: example.body,
        personalData: { ...example.personalData, names: { given: CANARY, family: "Test" } },
      },
    });
    expect(victim.status).toBe(202);
    await delivered(hekou, victim.body.id as string);

    // A forgery straight onto Lao Cai's subject: quarantined as malformed.
    const nc = await connect({ servers: inject("natsUrl") });
    await nc
      .jetstream()
      .publish(laocai.gateway.config.inboundSubject, new TextEncoder().encode("not a jws"));
    await nc.drain();
    await waitFor("the quarantine", async () =>
      (await laocai.gateway.queries.quarantineCount()) > 0 ? true : undefined,
    );

    const res = await scrape(hekou);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/plain");
    const atHekou = await res.text();
    for (const family of [
      "liaison_deliveries",
      "liaison_outbox_depth",
      "liaison_outbox_oldest_age_seconds",
      "liaison_quarantine",
      "liaison_receipts",
      "liaison_cases",
      "liaison_cases_overdue",
      "liaison_consumer_pending",
      "liaison_key_expiry_seconds",
      "liaison_delivery_latency_seconds",
      "liaison_inbound_batch_seconds",
      "liaison_inbound_messages_total",
      "liaison_publish_seconds",
      "liaison_submit_seconds",
    ]) {
      expect(atHekou, family).toContain(`# TYPE ${family} `);
    }
    expect(sample(atHekou, `liaison_deliveries{status="delivered",partner="${LAOCAI}"}`)).toBe(2);
    expect(sample(atHekou, `liaison_receipts{direction="received",status="accepted"}`)).toBe(2);
    expect(sample(atHekou, 'liaison_cases{state="identified"}')).toBe(1);
    expect(sample(atHekou, 'liaison_outbox_depth{outbox="deliveries"}')).toBe(0);
    expect(
      sample(
        atHekou,
        `liaison_delivery_latency_seconds_count{partner="${LAOCAI}",status="delivered"}`,
      ),
    ).toBe(2);
    // Published as soon as committed (the prompt path), not left for a pass of the dispatcher.
    expect(
      sample(
        atHekou,
        'liaison_publish_seconds_count{kind="message",outcome="acked",path="prompt"}',
      ),
    ).toBeGreaterThanOrEqual(2);
    expect(sample(atHekou, 'liaison_consumer_pending{kind="pending"}')).toBeGreaterThanOrEqual(0);
    // The submit stage: the notice and the case step, each made, signed and committed.
    expect(sample(atHekou, "liaison_submit_seconds_count")).toBe(2);

    const atLaocai = await (await scrape(laocai)).text();
    expect(sample(atLaocai, 'liaison_quarantine{code="malformed"}')).toBe(1);
    expect(sample(atLaocai, `liaison_receipts{direction="issued",status="accepted"}`)).toBe(2);
    expect(
      sample(
        atLaocai,
        'liaison_publish_seconds_count{kind="receipt",outcome="acked",path="prompt"}',
      ),
    ).toBeGreaterThanOrEqual(2);
    expect(sample(atLaocai, "liaison_inbound_messages_total")).toBeGreaterThanOrEqual(3);
    expect(sample(atLaocai, "liaison_submit_seconds_count")).toBe(0); // it submitted nothing
    expect(sample(atLaocai, 'liaison_cases{state="identified"}')).toBe(1);

    // Labels name parties, kids, statuses, kinds and codes only.
    for (const text of [atHekou, atLaocai]) {
      expect(text).not.toContain(CANARY);
      const labelValues = [...text.matchAll(/="([^"]*)"/g)].map((m) => m[1] as string);
      for (const value of labelValues) {
        expect(value, value).toMatch(/^[A-Za-z0-9_.+:-]*$/);
      }
    }
    // A partner key that ends in an hour: its remaining validity, in seconds.
    const { publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    const publicJwk = await exportJWK(publicKey);
    const kid = await calculateJwkThumbprint(publicJwk, "sha256");
    await hekou.gateway.registry.add(
      {
        id: "TH-RTP-ATPD",
        name: "Anti-Trafficking in Persons Division",
        country: "TH",
        kind: "anti-trafficking-police",
        inboundSubject: "liaison.inbox.TH-RTP-ATPD",
      },
      [
        {
          kid,
          partyId: "TH-RTP-ATPD",
          alg: "EdDSA",
          publicJwk: publicJwk as Record<string, unknown>,
          validFrom: new Date(Date.now() - 60_000),
          validUntil: new Date(Date.now() + 3_600_000),
          revokedAt: null,
        },
      ],
    );
    const expiry = sample(
      await (await scrape(hekou)).text(),
      `liaison_key_expiry_seconds{party="TH-RTP-ATPD",kid="${kid}",use="sig"}`,
    );
    expect(expiry).toBeGreaterThan(3_500);
    expect(expiry).toBeLessThanOrEqual(3_600);
  }, 60_000);
});
