/**
 * Victims' personal data never reaches a log line: the gateways log the whole life of messages
 * (accepted, rejected, quarantined) at info level while the bodies carry a distinctive marker.
 */
import { randomUUID } from "node:crypto";
import { connect } from "nats";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { MESSAGE_TYP } from "../../src/protocol/jws-profile.ts";
import { signCompact } from "../../src/protocol/sign.ts";
import { call, type Pair, startPair, type TestNode, waitFor } from "../helpers/network.ts";
import { CASE_NOTICE_BODY, envelopeAt } from "../helpers/protocol-fixtures.ts";

const MARKER = "Nguyen Thi Marker-7f3a";
const lines: string[] = [];
let hekou: TestNode;
let laocai: TestNode;
let pair: Pair | undefined;

beforeAll(async () => {
  pair = await startPair(inject("natsUrl"), {
    hekou: { logLines: lines },
    laocai: { logLines: lines },
  });
  ({ hekou, laocai } = pair);
});

afterAll(async () => {
  await pair?.stop();
});

describe("logs", () => {
  it("carry ids, parties and codes, never body content, across delivery, rejection and quarantine", async () => {
    const body = {
      ...structuredClone(CASE_NOTICE_BODY),
      summary: `A woman named ${MARKER} was recruited.`,
    };
    const ok = await call(hekou, "/v1/messages", {
      method: "POST",
      json: { type: "case.notice", to: "VN-BGC-LAOCAI", caseRef: "CN-HEKOU-2026-0042", body },
    });
    expect(ok.status).toBe(202);
    const bad = await call(hekou, "/v1/messages", {
      method: "POST",
      json: {
        type: "case.notice",
        to: "VN-BGC-LAOCAI",
        caseRef: "CN-HEKOU-2026-0042",
        body: { ...body, victimName: MARKER },
      },
    });
    expect(bad.status).toBe(422);

    // A schema-invalid message signed by Hekou's key, straight onto Lao Cai's subject.
    const envelope = envelopeAt("CN-MPS-HEKOU", ["VN-BGC-LAOCAI"], new Date(), {
      body: { ...body, victimName: MARKER },
    });
    const nc = await connect({ servers: inject("natsUrl") });
    await nc
      .jetstream()
      .publish(
        laocai.gateway.config.inboundSubject,
        new TextEncoder().encode(await signCompact(envelope, hekou.signingKey, MESSAGE_TYP)),
        { msgID: randomUUID() },
      );
    await nc.drain();

    await waitFor("delivered", async () =>
      (await call(hekou, `/v1/messages/${ok.body.id}`)).body.status === "delivered"
        ? true
        : undefined,
    );
    await waitFor("quarantined", async () =>
      lines.some((l) => l.includes('"inbound quarantined"') && l.includes("schema_invalid"))
        ? true
        : undefined,
    );

    expect(lines.some((l) => l.includes('"message accepted"'))).toBe(true);
    const leaks = lines.filter(
      (l) =>
        l.includes("Marker-7f3a") ||
        l.includes(Buffer.from(MARKER).toString("base64url").slice(0, 12)),
    );
    expect(leaks).toEqual([]);
  });
});
