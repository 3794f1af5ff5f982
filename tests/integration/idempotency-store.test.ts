/**
 * The outbound log's Idempotency-Key (POST /v1/messages), on both drivers: a real PostgreSQL
 * server and embedded PGlite. One message per key: an insert whose key is taken writes nothing and
 * throws IdempotencyKeyTaken (never the driver's unique violation), alone, in a group, or in the
 * caller's transaction (which it rolls back whole); keys compare exactly; rows without a key are
 * untouched by the index.
 */
import { randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  type Idempotency,
  IdempotencyKeyTaken,
  type SignedMessage,
  type Store,
} from "../../src/delivery/ports.ts";
import type { Envelope } from "../../src/protocol/types.ts";
import type { Database } from "../../src/store/database.ts";
import { rows } from "../../src/store/set-sql.ts";
import { createStore } from "../../src/store/store.ts";
import { openDriverDatabase, registerParties } from "../helpers/databases.ts";

const SELF = "CN-MPS-HEKOU";
const PARTNER = "VN-BGC-LAOCAI";
const T0 = new Date("2026-11-24T12:00:00.000Z");

function message(idempotency?: Idempotency): SignedMessage {
  const envelope: Envelope = {
    id: randomUUID(),
    type: "case.notice",
    schemaVersion: 1,
    from: SELF,
    to: [PARTNER],
    caseRef: "CN-HEKOU-2026-0042",
    sentAt: T0.toISOString(),
    expiresAt: new Date(T0.getTime() + 86_400_000).toISOString(),
    handling: { classification: "restricted", onwardDissemination: "forbidden" },
    body: {},
  };
  const payload = Buffer.from(JSON.stringify(envelope)).toString("base64url");
  return {
    envelope,
    jws: `eyJhbGciOiJFZERTQSJ9.${payload}.c2ln`,
    digest: randomUUID().replaceAll("-", "").padEnd(64, "0"),
    kid: "kid-1",
    idempotency,
  };
}

const key = (k: string, requestDigest = "a".repeat(64)): Idempotency => ({ key: k, requestDigest });

describe.each(["postgres", "pglite"] as const)(
  "Idempotency-Key in the outbound log on %s",
  (driver) => {
    let database: Database;
    let store: Store;
    let drop: () => Promise<void> = async () => {};

    beforeAll(async () => {
      ({ database, drop } = await openDriverDatabase(driver, inject("databaseUrl")));
      expect(database.driver).toBe(driver);
      store = createStore(database.db);
      await registerParties(database.db, [SELF, PARTNER]);
    });

    afterAll(async () => {
      await database?.close();
      await drop();
    });

    /** Rows of messages and deliveries of these message ids. */
    async function counts(ids: string[]): Promise<{ messages: number; deliveries: number }> {
      const list = `{${ids.join(",")}}`;
      const [m] = await rows<{ n: number }>(
        database.db,
        sql`select count(*)::int as n from messages where id = any(${list}::uuid[])`,
      );
      const [d] = await rows<{ n: number }>(
        database.db,
        sql`select count(*)::int as n from deliveries where message_id = any(${list}::uuid[])`,
      );
      return { messages: m?.n ?? -1, deliveries: d?.n ?? -1 };
    }

    it("stores the key and the request digest with the message, and finds the message by its key", async () => {
      const k = `store-${randomUUID()}`;
      const first = message(key(k, "b".repeat(64)));
      await store.outbound.insert([first]);
      expect(await store.outbound.findByIdempotencyKey(k)).toEqual({
        jws: first.jws,
        requestDigest: "b".repeat(64),
      });
      expect(await store.outbound.findByIdempotencyKey(`${k}-other`)).toBeUndefined();
    });

    it("an insert whose key is taken throws IdempotencyKeyTaken and writes nothing, also for the other messages of its group", async () => {
      const k = `taken-${randomUUID()}`;
      const first = message(key(k));
      await store.outbound.insert([first]);
      const again = message(key(k));
      const bystander = message();
      const error = await store.outbound.insert([bystander, again]).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(IdempotencyKeyTaken);
      expect(await counts([first.envelope.id])).toEqual({ messages: 1, deliveries: 1 });
      expect(await counts([again.envelope.id, bystander.envelope.id])).toEqual({
        messages: 0,
        deliveries: 0,
      });
      // Alone, the bystander goes in.
      await store.outbound.insert([bystander]);
      expect(await counts([bystander.envelope.id])).toEqual({ messages: 1, deliveries: 1 });
    });

    it("two messages of one group with one key: IdempotencyKeyTaken, nothing written", async () => {
      const k = `group-${randomUUID()}`;
      const a = message(key(k));
      const b = message(key(k));
      await expect(store.outbound.insert([a, b])).rejects.toBeInstanceOf(IdempotencyKeyTaken);
      expect(await counts([a.envelope.id, b.envelope.id])).toEqual({ messages: 0, deliveries: 0 });
      expect(await store.outbound.findByIdempotencyKey(k)).toBeUndefined();
    });

    it("in the caller's transaction, a taken key rolls back everything the transaction wrote", async () => {
      const k = `tx-${randomUUID()}`;
      await store.outbound.insert([message(key(k))]);
      const before = message();
      const again = message(key(k));
      const error = await store
        .transaction(async (tx) => {
          await tx.outbound.insert([before]);
          await tx.outbound.insert([again]);
        })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(IdempotencyKeyTaken);
      expect(await counts([before.envelope.id, again.envelope.id])).toEqual({
        messages: 0,
        deliveries: 0,
      });
    });

    it("keys compare exactly: another case or a trailing character is another key", async () => {
      const k = `Exact-${randomUUID()}`;
      const variants = [k, k.toLowerCase(), k.toUpperCase(), `${k}.`];
      const made = variants.map((v) => message(key(v)));
      await store.outbound.insert(made);
      for (const [i, v] of variants.entries()) {
        expect((await store.outbound.findByIdempotencyKey(v))?.jws).toBe(made[i]?.jws);
      }
    });

    it("messages without a key are not held to the index, and never found by a key", async () => {
      const unkeyed = [message(), message(), message()];
      await store.outbound.insert(unkeyed);
      expect(await counts(unkeyed.map((m) => m.envelope.id))).toEqual({
        messages: 3,
        deliveries: 3,
      });
      const [nulls] = await rows<{ n: number }>(
        database.db,
        sql`select count(*)::int as n from messages
        where id = any(${`{${unkeyed.map((m) => m.envelope.id).join(",")}}`}::uuid[])
          and idempotency_key is null and request_digest is null`,
      );
      expect(nulls?.n).toBe(3);
    });

    it("concurrent inserts with one key: one message, every other insert IdempotencyKeyTaken", async () => {
      const k = `race-${randomUUID()}`;
      const tries = Array.from({ length: 10 }, () => message(key(k)));
      const results = await Promise.allSettled(tries.map((m) => store.outbound.insert([m])));
      expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      for (const r of results) {
        if (r.status === "rejected") expect(r.reason).toBeInstanceOf(IdempotencyKeyTaken);
      }
      expect(await counts(tries.map((m) => m.envelope.id))).toEqual({
        messages: 1,
        deliveries: 1,
      });
    });
  },
);
