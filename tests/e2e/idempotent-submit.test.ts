/**
 * Submits with an `Idempotency-Key` (POST /v1/messages) between two real gateways on the real
 * nats-server: Hekou (CN-MPS-HEKOU) on PostgreSQL, Lao Cai (VN-BGC-LAOCAI) on PGlite. A request
 * sent again with the same key and the same bytes makes nothing and is answered as the first
 * (same id, `Idempotency-Replayed: true`); the partner logs the message once; other bytes under
 * the key are refused (409 idempotency_key_reused); concurrent submits with one key make one
 * message; a case step sent again advances the case once; a malformed key is 400. (The reason for
 * it all, a submit whose COMMIT reached a database server that then stopped answering, is in
 * tests/integration/idempotency-hang.test.ts.)
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { withClient } from "../../src/devtools/postgres-server.ts";
import { requestFingerprint, sha256Hex } from "../../src/protocol/digest.ts";
import { MESSAGE_TYP } from "../../src/protocol/jws-profile.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/databases.ts";
import {
  Api,
  exampleStep,
  Journey,
  type TimelineItem,
  timelineOf,
  uniqueCaseRef,
} from "../helpers/journey.ts";
import { call, type Pair, startPair, waitFor } from "../helpers/network.ts";
import { CASE_NOTICE_BODY } from "../helpers/protocol-fixtures.ts";

let pair: Pair;
let hekouDb: TestDatabase;

beforeAll(async () => {
  hekouDb = await createTestDatabase(inject("databaseUrl"));
  pair = await startPair(inject("natsUrl"), { hekou: { databaseUrl: hekouDb.url } });
}, 60_000);

afterAll(async () => {
  await pair?.stop();
  await hekouDb?.drop();
});

function notice(caseRef: string, reference = "first"): Record<string, unknown> {
  return {
    type: "case.notice",
    to: "VN-BGC-LAOCAI",
    caseRef,
    body: { ...CASE_NOTICE_BODY, summary: `Idempotency test notice, ${reference}.` },
  };
}

/** POST /v1/messages at Hekou with the exact bytes given, and the key if any. */
function submitBytes(bytes: string, key?: string) {
  return call(pair.hekou, "/v1/messages", {
    method: "POST",
    body: bytes,
    headers: key === undefined ? {} : { "idempotency-key": key },
  });
}

/** Hekou's outbound log: the rows of a case, and their deliveries. */
async function hekouRows(caseRef: string) {
  return withClient(hekouDb.url, async (sql) => {
    const messages = await sql<{ id: string; idempotency_key: string | null }[]>`
      SELECT id, idempotency_key FROM messages
      WHERE direction = 'outbound' AND case_ref = ${caseRef} ORDER BY seq`;
    const deliveries = await sql<{ message_id: string; status: string }[]>`
      SELECT d.message_id, d.status FROM deliveries d JOIN messages m ON m.id = d.message_id
      WHERE m.direction = 'outbound' AND m.case_ref = ${caseRef}`;
    return { messages, deliveries };
  });
}

/** The messages from Hekou that Lao Cai logged in this case (its inbound log, over its API). */
async function laocaiInbound(caseRef: string): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  do {
    const page: { status: number; body: Record<string, unknown> } = await call(
      pair.laocai,
      `/v1/messages?direction=inbound&limit=200${cursor === null ? "" : `&cursor=${cursor}`}`,
    );
    expect(page.status).toBe(200);
    for (const item of page.body.items as Array<{ id: string; caseRef: string }>) {
      if (item.caseRef === caseRef) ids.push(item.id);
    }
    cursor = page.body.nextCursor as string | null;
  } while (cursor !== null);
  return ids;
}

/** Waits until the message is delivered at Hekou (Lao Cai's receipt came back). */
function delivered(id: string): Promise<true> {
  return waitFor(
    `${id} delivered`,
    async () => {
      const { body } = await call(pair.hekou, `/v1/messages/${id}`);
      return body.status === "delivered" ? true : undefined;
    },
    30_000,
  );
}

describe("POST /v1/messages with an Idempotency-Key", () => {
  it("the same key and bytes twice: one message, one delivery, logged once by the partner; the second answer is the first's, marked replayed", async () => {
    const caseRef = uniqueCaseRef();
    const key = randomUUID();
    const bytes = JSON.stringify(notice(caseRef));
    const first = await submitBytes(bytes, key);
    expect(first.status, JSON.stringify(first.body)).toBe(202);
    expect(first.headers.get("idempotency-replayed")).toBeNull();
    await delivered(first.body.id as string);

    // Hekou's messages signed from here on (its keyring is the submitter's signer).
    const { keyring } = pair.hekou.gateway;
    const signed: string[] = [];
    const sign = keyring.sign.bind(keyring);
    keyring.sign = (payload, typ) => {
      if (typ === MESSAGE_TYP) signed.push((payload as { caseRef: string }).caseRef);
      return sign(payload, typ);
    };
    let again: Awaited<ReturnType<typeof submitBytes>>;
    let control: Awaited<ReturnType<typeof submitBytes>>;
    try {
      again = await submitBytes(bytes, key);
      // Looked up before anything is signed: nothing signed for the replay.
      expect(signed).toEqual([]);
      // Give a second message every chance to be made and to cross before counting.
      control = await submitBytes(JSON.stringify(notice(caseRef, "control")));
      expect(signed).toEqual([caseRef]);
    } finally {
      keyring.sign = sign;
    }
    expect(again.status, JSON.stringify(again.body)).toBe(202);
    expect(again.body).toEqual(first.body);
    expect(again.headers.get("location")).toBe(first.headers.get("location"));
    expect(again.headers.get("idempotency-replayed")).toBe("true");
    expect(control.status).toBe(202);
    await delivered(control.body.id as string);
    const rows = await hekouRows(caseRef);
    expect(rows.messages).toEqual([
      { id: first.body.id, idempotency_key: key },
      { id: control.body.id, idempotency_key: null },
    ]);
    expect(rows.deliveries).toHaveLength(2);
    expect((await laocaiInbound(caseRef)).sort()).toEqual(
      [first.body.id as string, control.body.id as string].sort(),
    );
    // The request's fingerprint is an HMAC under the API token, which is not in the database:
    // a plain SHA-256 of bytes that may hold personal data in clear could be tested against
    // guesses by anyone who reads the database.
    const [kept] = await withClient(
      hekouDb.url,
      (sql) =>
        sql<{ request_digest: string }[]>`
        SELECT request_digest FROM messages WHERE id = ${first.body.id as string}`,
    );
    const raw = new TextEncoder().encode(bytes);
    expect(kept?.request_digest).toBe(requestFingerprint(pair.hekou.token, raw));
    expect(kept?.request_digest).not.toBe(sha256Hex(raw));
  }, 60_000);

  it("the same key with another body: 409 idempotency_key_reused, nothing made, the key not echoed", async () => {
    const caseRef = uniqueCaseRef();
    const key = `reuse-${randomUUID()}`;
    const first = await submitBytes(JSON.stringify(notice(caseRef)), key);
    expect(first.status).toBe(202);
    // The same JSON value with other spacing is other bytes: another request too.
    for (const other of [
      JSON.stringify(notice(caseRef, "second")),
      JSON.stringify(notice(caseRef), null, 1),
    ]) {
      const answer = await submitBytes(other, key);
      expect(answer.status, JSON.stringify(answer.body)).toBe(409);
      expect(answer.headers.get("content-type")).toBe("application/problem+json");
      expect(answer.body).toMatchObject({
        code: "idempotency_key_reused",
        issues: [{ path: "Idempotency-Key", message: "taken by another request" }],
      });
      expect(JSON.stringify(answer.body)).not.toContain(key);
    }
    // Another key is free.
    expect((await submitBytes(JSON.stringify(notice(caseRef, "third")), randomUUID())).status).toBe(
      202,
    );
    const rows = await hekouRows(caseRef);
    expect(rows.messages.map((m) => m.idempotency_key)).toEqual([key, expect.any(String)]);
    expect(rows.messages[0]?.id).toBe(first.body.id);
  }, 30_000);

  it("20 concurrent submits with one key and one body: all 202 with one id, one made and 19 replayed, one message", async () => {
    const caseRef = uniqueCaseRef();
    const key = randomUUID();
    const bytes = JSON.stringify(notice(caseRef));
    const answers = await Promise.all(Array.from({ length: 20 }, () => submitBytes(bytes, key)));
    for (const a of answers) expect(a.status, JSON.stringify(a.body)).toBe(202);
    const ids = new Set(answers.map((a) => a.body.id));
    expect(ids.size).toBe(1);
    expect(answers.filter((a) => a.headers.get("idempotency-replayed") === null)).toHaveLength(1);
    const [id] = ids as Set<string>;
    await delivered(id as string);
    const rows = await hekouRows(caseRef);
    expect(rows.messages).toEqual([{ id, idempotency_key: key }]);
    expect(rows.deliveries).toEqual([{ message_id: id, status: "delivered" }]);
    expect(await laocaiInbound(caseRef)).toEqual([id]);
  }, 60_000);

  it("a case step sent again, and sent 5 times at once, with its key: the case advanced once", async () => {
    const api = new Api();
    const journey = new Journey(pair, api, uniqueCaseRef());
    const step = exampleStep("01");
    const bytes = JSON.stringify(journey.request(step));
    const key = randomUUID();
    const first = await submitBytes(bytes, key);
    expect(first.status, JSON.stringify(first.body)).toBe(202);
    const again = await submitBytes(bytes, key);
    expect(again.status, JSON.stringify(again.body)).toBe(202);
    expect(again.body.id).toBe(first.body.id);
    expect(again.headers.get("idempotency-replayed")).toBe("true");
    await delivered(first.body.id as string);

    // The next step, five times at once under one key: the case's lock orders them, and each
    // after the first finds its step applied (or the key taken) and answers with the first.
    journey.ids.set(step.name, first.body.id as string);
    const next = exampleStep("02");
    const nextBytes = JSON.stringify(journey.request(next));
    const nextKey = randomUUID();
    const answers = await Promise.all(
      Array.from({ length: 5 }, () => submitBytes(nextBytes, nextKey)),
    );
    for (const a of answers) expect(a.status, JSON.stringify(a.body)).toBe(202);
    expect(new Set(answers.map((a) => a.body.id)).size).toBe(1);
    await delivered(answers[0]?.body.id as string);

    const rows = await hekouRows(journey.caseRef);
    expect(rows.messages.map((m) => m.id)).toEqual([first.body.id, answers[0]?.body.id]);
    for (const node of [pair.hekou, pair.laocai]) {
      const timeline = await waitFor("both steps in the case", async () => {
        const items = timelineOf(await api.caseAt(node, journey.caseRef));
        return items.length >= 2 ? items : undefined;
      });
      expect(timeline.map((t: TimelineItem) => [t.type, t.outcome])).toEqual([
        ["victim.identified", "applied"],
        ["identity.verification.request", "applied"],
      ]);
    }
  }, 90_000);

  it("a key that is too long, empty, has a space or a non-ASCII character: 400 request_invalid naming the header, nothing made; 128 visible characters are a key", async () => {
    const caseRef = uniqueCaseRef();
    const bytes = JSON.stringify(notice(caseRef));
    const visible = Array.from({ length: 94 }, (_, i) => String.fromCharCode(0x21 + i)).join("");
    for (const bad of ["k".repeat(129), "", "two words", "caf\u00e9", "tab\there"]) {
      const answer = await submitBytes(bytes, bad);
      expect(answer.status, JSON.stringify(answer.body)).toBe(400);
      expect(answer.body).toMatchObject({
        code: "request_invalid",
        issues: [{ path: "Idempotency-Key" }],
      });
      if (bad.length > 3) expect(JSON.stringify(answer.body)).not.toContain(bad);
    }
    expect((await hekouRows(caseRef)).messages).toEqual([]);
    const longest = (visible + visible).slice(0, 128);
    const ok = await submitBytes(bytes, longest);
    expect(ok.status, JSON.stringify(ok.body)).toBe(202);
    expect((await submitBytes(bytes, longest)).body.id).toBe(ok.body.id);
    expect((await hekouRows(caseRef)).messages).toEqual([
      { id: ok.body.id, idempotency_key: longest },
    ]);
  }, 30_000);
});
