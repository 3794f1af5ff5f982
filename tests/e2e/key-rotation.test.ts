/**
 * Rotating and revoking our own key on a running gateway: the CLI's file changes are picked up,
 * published in the JWKS, and the next message is signed with the new key and delivered.
 */
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
