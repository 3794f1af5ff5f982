/**
 * Rotating and revoking our own key on a running gateway: the CLI's file changes are picked up,
 * published in the JWKS, and the next message is signed with the new key and delivered.
 */
import { connect } from "nats";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { generateKeyFile, revokeKeyFile } from "../../src/registry/key-files.ts";
import { parsePartyDocument } from "../../src/registry/party-document.ts";
import { call, type Pair, startPair, type TestNode, waitFor } from "../helpers/network.ts";
import { CASE_NOTICE_BODY } from "../helpers/protocol-fixtures.ts";

let hekou: TestNode;
let laocai: TestNode;
let pair: Pair | undefined;

beforeAll(async () => {
  pair = await startPair(inject("natsUrl"));
  ({ hekou, laocai } = pair);
});

afterAll(async () => {
  await pair?.stop();
});

describe("own key rotation on a running gateway", () => {
  it("publishes a new key and a revocation, signs with the new key, and stays deliverable", async () => {
    const oldKid = hekou.signingKey.kid;
    const next = await generateKeyFile(hekou.gateway.config.keysDir, {
      validFrom: new Date(Date.now() - 1000),
    });
    expect(revokeKeyFile(hekou.gateway.config.keysDir, oldKid, new Date())).toBe(true);

    const doc = await waitFor("JWKS with the new key and the revocation", async () => {
      const jwks = (await (await fetch(`${hekou.gateway.url}/.well-known/jwks.json`)).json()) as {
        keys: Array<{ kid: string; revokedAt?: string }>;
      };
      const revoked = jwks.keys.find((k) => k.kid === oldKid)?.revokedAt !== undefined;
      return revoked && jwks.keys.some((k) => k.kid === next.kid) ? jwks : undefined;
    });
    // Lao Cai registers the new document, as a partner would after a rotation.
    const { party, keys } = await parsePartyDocument(doc);
    await laocai.gateway.registry.add(party, keys);

    const res = await call(hekou, "/v1/messages", {
      method: "POST",
      json: {
        type: "case.notice",
        to: "VN-BGC-LAOCAI",
        caseRef: "CN-HEKOU-2026-0200",
        body: CASE_NOTICE_BODY,
      },
    });
    expect(res.status).toBe(202);
    const done = await waitFor("delivered", async () => {
      const { body } = await call(hekou, `/v1/messages/${res.body.id}`);
      return body.status === "delivered" ? body : undefined;
    });
    const header = JSON.parse(
      Buffer.from(String(done.jws).split(".")[0] ?? "", "base64url").toString(),
    );
    expect(header.kid).toBe(next.kid);
  });
});

describe("a receipt sent again after the key that signed it was revoked", () => {
  it("is signed again with the key valid now, and the partner accepts it", async () => {
    const send = await call(hekou, "/v1/messages", {
      method: "POST",
      json: {
        type: "case.notice",
        to: "VN-BGC-LAOCAI",
        caseRef: "CN-HEKOU-2026-0201",
        body: CASE_NOTICE_BODY,
      },
    });
    expect(send.status).toBe(202);
    const id = send.body.id as string;
    const first = await waitFor("delivered", async () => {
      const { body } = await call(hekou, `/v1/messages/${id}`);
      return body.status === "delivered" ? body : undefined;
    });
    const kidOf = (jws: unknown) =>
      JSON.parse(Buffer.from(String(jws).split(".")[0] ?? "", "base64url").toString()).kid;
    const firstReceipts = first.receipts as Array<{ id: string; jws: string }>;
    expect(firstReceipts).toHaveLength(1);
    const oldKid = laocai.signingKey.kid;
    expect(kidOf(firstReceipts[0]?.jws)).toBe(oldKid);

    // Lao Cai's key is replaced and revoked; Hekou registers the revocation.
    const next = await generateKeyFile(laocai.gateway.config.keysDir, {
      validFrom: new Date(Date.now() - 1000),
    });
    expect(revokeKeyFile(laocai.gateway.config.keysDir, oldKid, new Date())).toBe(true);
    const doc = await waitFor("Lao Cai's JWKS with the revocation", async () => {
      const jwks = (await (await fetch(`${laocai.gateway.url}/.well-known/jwks.json`)).json()) as {
        keys: Array<{ kid: string; revokedAt?: string }>;
      };
      const revoked = jwks.keys.find((k) => k.kid === oldKid)?.revokedAt !== undefined;
      return revoked && jwks.keys.some((k) => k.kid === next.kid) ? jwks : undefined;
    });
    const { party, keys } = await parsePartyDocument(doc);
    await hekou.gateway.registry.add(party, keys);

    // The same message bytes reach Lao Cai again (a late retry), past the broker's duplicate
    // window: Lao Cai answers with its receipt again.
    const nc = await connect({ servers: inject("natsUrl") });
    try {
      await nc
        .jetstream()
        .publish(
          laocai.gateway.config.inboundSubject,
          new TextEncoder().encode(String(first.jws)),
          {
            msgID: `late-retry-${id}`,
          },
        );
    } finally {
      await nc.drain();
    }

    // The receipt goes out signed with the new key, with a new id, and Hekou logs it.
    const again = await waitFor("a second receipt at Hekou", async () => {
      const { body } = await call(hekou, `/v1/messages/${id}`);
      const receipts = body.receipts as Array<{ id: string; jws: string; status: string }>;
      return receipts.length === 2 ? receipts : undefined;
    });
    const renewed = again.find((r) => r.id !== firstReceipts[0]?.id);
    expect(renewed?.status).toBe("accepted");
    expect(kidOf(renewed?.jws)).toBe(next.kid);
    // Hekou accepts batch receipts: what was signed again is the batch that answered the message.
    const typOf = (jws: unknown) =>
      JSON.parse(Buffer.from(String(jws).split(".")[0] ?? "", "base64url").toString()).typ;
    expect(again.map((r) => typOf(r.jws))).toEqual([
      "liaison-receipt-batch+jws",
      "liaison-receipt-batch+jws",
    ]);
    // Nothing of it was refused at Hekou (a key_revoked receipt would be quarantined).
    const quarantine = await call(hekou, "/v1/quarantine");
    expect(JSON.stringify(quarantine.body)).not.toContain("key_revoked");
    // At Lao Cai the old receipt is kept, marked as replaced by the new one.
    const { body } = await call(laocai, `/v1/messages/${id}`);
    expect((body.receipts as Array<{ id: string }>).map((r) => r.id).sort()).toEqual(
      again.map((r) => r.id).sort(),
    );
  });
});
