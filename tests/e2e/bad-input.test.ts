/**
 * Bad input never stops a gateway: JSON nested thousands deep, in the protected header (no key
 * needed to send it) or in a payload signed with a registered key, is quarantined as malformed
 * within seconds, and a valid message sent right after is delivered.
 */
import { CompactSign } from "jose";
import { connect, type JetStreamClient, type NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { sha256Hex } from "../../src/protocol/digest.ts";
import { MESSAGE_TYP } from "../../src/protocol/jws-profile.ts";
import { call, type Pair, startPair, type TestNode, waitFor } from "../helpers/network.ts";
import { CASE_NOTICE_BODY } from "../helpers/protocol-fixtures.ts";

let hekou: TestNode;
let laocai: TestNode;
let pair: Pair | undefined;
let nc: NatsConnection;
let js: JetStreamClient;

beforeAll(async () => {
  pair = await startPair(inject("natsUrl"));
  ({ hekou, laocai } = pair);
  nc = await connect({ servers: inject("natsUrl") });
  js = nc.jetstream();
});

afterAll(async () => {
  await nc?.drain();
  await pair?.stop();
});

const enc = new TextEncoder();
const b64u = (text: string) => Buffer.from(text).toString("base64url");
const nested = (depth: number) => `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;

async function quarantinedAs(node: TestNode, digest: string): Promise<string> {
  return waitFor(
    `quarantine of ${digest.slice(0, 12)}`,
    async () => {
      const page = await call(node, "/v1/quarantine?limit=200");
      const items = page.body.items as Array<{ digest: string; code: string }>;
      return items.find((q) => q.digest === digest)?.code;
    },
    10_000,
  );
}

describe("deeply nested input", () => {
  it("is quarantined within seconds, and a valid message sent right after is delivered", async () => {
    const subject = laocai.gateway.config.inboundSubject;
    // No key needed: a protected header nested 4,000 deep.
    const header = enc.encode(`${b64u(nested(4000))}.${b64u("{}")}.AAAA`);
    // A registered partner's key: a signed payload nested 10,000 deep.
    const payload = enc.encode(
      await new CompactSign(enc.encode(nested(10_000)))
        .setProtectedHeader({ alg: "EdDSA", kid: hekou.signingKey.kid, typ: MESSAGE_TYP })
        .sign(hekou.signingKey.key),
    );
    const started = Date.now();
    await js.publish(subject, header);
    await js.publish(subject, payload);
    const res = await call(hekou, "/v1/messages", {
      json: {
        type: "case.notice",
        to: laocai.gateway.self.id,
        caseRef: "CN-HEKOU-2026-0500",
        body: CASE_NOTICE_BODY,
      },
    });
    expect(res.status).toBe(202);

    expect(await quarantinedAs(laocai, sha256Hex(header))).toBe("malformed");
    expect(await quarantinedAs(laocai, sha256Hex(payload))).toBe("malformed");
    await waitFor(
      "the valid message delivered",
      async () =>
        (await call(hekou, `/v1/messages/${res.body.id}`)).body.status === "delivered"
          ? true
          : undefined,
      10_000,
    );
    expect(Date.now() - started).toBeLessThan(20_000);
  }, 40_000);
});
