/**
 * The alert watch's store side (src/store/alert-log.ts) with the watch's own plan, on both
 * drivers: failed deliveries raise one alert per partner, later ones extend it, a delivery that
 * closed afterwards resolves it; passes read again what they read before without counting it
 * twice; a failure committed late (dated before the last pass) is still counted; two passes at
 * once (two replicas on PostgreSQL) raise one alert.
 */
import { randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  type Alert,
  type AlertPassResult,
  type PartnerFacts,
  planAlerts,
} from "../../src/delivery/alert-watch.ts";
import { SqlAlertLog } from "../../src/store/alert-log.ts";
import { type Database, openDatabase } from "../../src/store/database.ts";
import { SqlPartyStore } from "../../src/store/party-store.ts";
import { ReadQueries } from "../../src/store/read-queries.ts";
import { createTestDatabase } from "../helpers/databases.ts";

const T0 = new Date("2026-11-24T12:00:00.000Z");
const at = (seconds: number) => new Date(T0.getTime() + seconds * 1000);

describe.each(["postgres", "pglite"] as const)("alerts on %s", (driver) => {
  let database: Database;
  let second: Database | undefined;
  let drop: () => Promise<void> = async () => {};
  let alerts: SqlAlertLog;
  let queries: ReadQueries;

  beforeAll(async () => {
    if (driver === "postgres") {
      const db = await createTestDatabase(inject("databaseUrl"));
      drop = db.drop;
      database = await openDatabase({ url: db.url });
      // A second replica: its own connection pool on the same database.
      second = await openDatabase({ url: db.url });
    } else {
      database = await openDatabase({ inMemory: true });
    }
    alerts = new SqlAlertLog(database.db);
    queries = new ReadQueries(database.db);
  });

  afterAll(async () => {
    await second?.close();
    await database?.close();
    await drop();
  });

  /** A partner of its own for each test: passes see every partner, tests look at theirs. */
  async function partner(): Promise<string> {
    const id = `TH-T${randomUUID().slice(0, 8).toUpperCase()}`;
    await new SqlPartyStore(database.db).register(
      {
        id,
        name: id,
        country: "TH",
        kind: "border-police-liaison-office",
        inboundSubject: `liaison.inbox.${id}`,
      },
      [],
    );
    return id;
  }

  /** A delivery to `to` that reached `status` at `when` (its updated_at). */
  async function delivery(to: string, status: "failed" | "delivered" | "rejected", when: Date) {
    await database.db.execute(sql`
      insert into deliveries (message_id, recipient, status, attempts, updated_at)
      values (${randomUUID()}, ${to}, ${status}, 3, ${when.toISOString()}::timestamptz)`);
  }

  const pass = (now: Date, log = alerts) => log.pass(now, planAlerts);
  const of = (to: string, result: AlertPassResult) => ({
    raised: result.raised.filter((a) => a.partner === to),
    extended: result.extended.filter((a) => a.partner === to),
    resolved: result.resolved.filter((a) => a.partner === to),
  });
  const alertsOf = async (to: string): Promise<Alert[]> => {
    const rows = await queries.listAlerts({ limit: 200 });
    return rows
      .filter((r) => r.partner === to)
      .map((r) => ({ ...r, kind: r.kind as "delivery_failed" }));
  };

  it("raises one alert per partner, extends it, resolves it once a delivery closed after the last failure", async () => {
    const p = await partner();
    expect(of(p, await pass(at(0)))).toEqual({ raised: [], extended: [], resolved: [] });

    await delivery(p, "failed", at(10));
    await delivery(p, "failed", at(12));
    let r = of(p, await pass(at(15)));
    expect(r.raised).toMatchObject([
      { kind: "delivery_failed", partner: p, since: at(10), lastFailureAt: at(12), count: 2 },
    ]);
    expect(r.raised[0]?.resolvedAt).toBeNull();

    // Read again (the window reaches back): nothing new, nothing counted twice.
    expect(of(p, await pass(at(30)))).toEqual({ raised: [], extended: [], resolved: [] });

    // A delivery delivered before the latest failure does not resolve it.
    await delivery(p, "delivered", at(11));
    await delivery(p, "failed", at(40));
    r = of(p, await pass(at(45)));
    expect(r.raised).toEqual([]);
    expect(r.extended).toMatchObject([{ since: at(10), lastFailureAt: at(40), count: 3 }]);
    expect(r.resolved).toEqual([]);
    expect(await alertsOf(p)).toHaveLength(1);

    // Active in the API's read and in the metrics snapshot, with since.
    expect(await queries.listAlerts({ active: true, limit: 200 })).toEqual(
      expect.arrayContaining([expect.objectContaining({ partner: p, count: 3, since: at(10) })]),
    );
    expect((await queries.metricsSnapshot(at(45))).alerts).toEqual(
      expect.arrayContaining([{ kind: "delivery_failed", partner: p, since: at(10) }]),
    );

    // The partner is reachable again: the first delivery closed after the last failure.
    await delivery(p, "delivered", at(50));
    await delivery(p, "delivered", at(55));
    r = of(p, await pass(at(60)));
    expect(r.resolved).toMatchObject([{ since: at(10), count: 3, resolvedAt: at(50) }]);
    expect(of(p, await pass(at(75)))).toEqual({ raised: [], extended: [], resolved: [] });
    expect(await queries.listAlerts({ active: true, limit: 200 })).not.toEqual(
      expect.arrayContaining([expect.objectContaining({ partner: p })]),
    );
    expect(await queries.listAlerts({ active: false, limit: 200 })).toEqual(
      expect.arrayContaining([expect.objectContaining({ partner: p, resolvedAt: at(50) })]),
    );
    expect((await queries.metricsSnapshot(at(75))).alerts.map((a) => a.partner)).not.toContain(p);

    // A new failure after that: a new episode, a new alert.
    await delivery(p, "failed", at(80));
    r = of(p, await pass(at(90)));
    expect(r.raised).toMatchObject([{ since: at(80), lastFailureAt: at(80), count: 1 }]);
    const rows = await alertsOf(p);
    expect(rows).toHaveLength(2);
    expect(rows.filter((a) => a.resolvedAt === null)).toHaveLength(1);
  });

  it("takes a negative receipt as the partner's return too", async () => {
    const p = await partner();
    await delivery(p, "failed", at(100));
    expect(of(p, await pass(at(105))).raised).toHaveLength(1);
    await delivery(p, "rejected", at(110));
    expect(of(p, await pass(at(120))).resolved).toMatchObject([{ resolvedAt: at(110) }]);
  });

  it("failures and the return within one pass: raised and resolved at once", async () => {
    const p = await partner();
    await delivery(p, "failed", at(130));
    await delivery(p, "delivered", at(131));
    const r = of(p, await pass(at(135)));
    expect(r.raised).toMatchObject([{ since: at(130), count: 1 }]);
    expect(r.resolved).toMatchObject([{ since: at(130), count: 1, resolvedAt: at(131) }]);
    expect(of(p, await pass(at(150)))).toEqual({ raised: [], extended: [], resolved: [] });
  });

  it("counts a failure committed after a pass had read past its time (within the overlap)", async () => {
    const p = await partner();
    await pass(at(200));
    // Dated before the last pass (a replica's transaction committed late, or its clock is behind).
    await delivery(p, "failed", at(190));
    expect(of(p, await pass(at(215))).raised).toMatchObject([{ since: at(190), count: 1 }]);
  });

  it("two passes at once (two replicas) raise one alert and count each failure once", async () => {
    const p = await partner();
    await pass(at(299)); // the watch's row exists (a first insert of it would queue them anyway)
    const n = 25;
    for (let i = 0; i < n; i++) await delivery(p, "failed", at(300 + i));
    const other = second === undefined ? alerts : new SqlAlertLog(second.db);
    // Each pass, once it has read its facts, waits for the other to have read its own too (up
    // to 3 s): without the pass's lock both would read "no alert yet" and both raise one.
    let arrived = 0;
    let meet = () => {};
    const met = new Promise<void>((resolve) => {
      meet = resolve;
    });
    const meeting = async (facts: PartnerFacts[]) => {
      arrived += 1;
      if (arrived === 2) meet();
      await Promise.race([met, new Promise((resolve) => setTimeout(resolve, 3000))]);
      return planAlerts(facts);
    };
    const results = await Promise.all([
      alerts.pass(at(330), meeting),
      other.pass(at(330), meeting),
    ]);
    // With the lock, the second pass read its facts only after the first had committed.
    expect(arrived).toBe(2);
    const raised = results.flatMap((r) => of(p, r).raised);
    const extended = results.flatMap((r) => of(p, r).extended);
    expect(raised).toHaveLength(1);
    expect(extended).toEqual([]);
    const rows = await alertsOf(p);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ count: n, since: at(300), lastFailureAt: at(300 + n - 1) });
  });

  it("holds at most one active alert per kind and partner in the database itself", async () => {
    const p = await partner();
    const insert = () =>
      database.db.execute(sql`
        insert into alerts (kind, partner, since, last_failure_at, count)
        values ('delivery_failed', ${p}, now(), now(), 1)`);
    await insert();
    await expect(insert()).rejects.toThrow();
    // Resolved: a new one may be raised.
    await database.db.execute(sql`update alerts set resolved_at = now() where partner = ${p}`);
    await insert();
  });
});
