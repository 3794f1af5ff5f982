/**
 * The alerts (src/delivery/alert-watch.ts): one row per episode of failed deliveries to a
 * partner, at most one active per kind and partner (`alerts_active_uq`), and the watch's
 * watermark (`alert_watch`).
 *
 * A pass is one transaction. It first locks its kind's `alert_watch` row, so replicas sharing the
 * database take turns and each pass sees what the one before it wrote. It reads the deliveries
 * that became `failed` after the watermark less `OVERLAP_MS` (through the partial index
 * `deliveries_failed_idx`): `updated_at` is written from the clock of the replica that failed
 * the delivery, and its transaction may commit after a pass has already read past that time, so
 * the window reaches back. Reading a failure twice counts it once: per partner, only failures
 * after its latest alert (after the active alert's last failure, or the resolved one's
 * resolution) are new. Raising and extending is one upsert on the partial unique index.
 *
 * Whether a partner is reachable again is read only for partners with an active alert or new
 * failures: the first delivery to it that closed (delivered or rejected) after its latest
 * failure. That reads the deliveries of those partners without an index (as the delivery
 * counts of GET /metrics do at every scrape), and only while such partners exist.
 */
import { sql } from "drizzle-orm";
import type {
  Alert,
  AlertChange,
  AlertKind,
  AlertLog,
  AlertPassResult,
  PartnerFacts,
} from "../delivery/alert-watch.ts";
import type { Db } from "./database.ts";

/** How far back each pass reads again, beyond the previous pass's watermark. */
export const OVERLAP_MS = 10 * 60_000;

const KIND: AlertKind = "delivery_failed";

interface AlertRowText {
  id: number | string;
  kind: AlertKind;
  partner: string;
  since: string | Date;
  last_failure_at: string | Date;
  count: number | string;
  resolved_at: string | Date | null;
}

export function alertFromRow(row: AlertRowText): Alert {
  return {
    id: Number(row.id),
    kind: row.kind,
    partner: row.partner,
    since: new Date(row.since),
    lastFailureAt: new Date(row.last_failure_at),
    count: Number(row.count),
    resolvedAt: row.resolved_at === null ? null : new Date(row.resolved_at),
  };
}

const ALERT_COLUMNS = sql.raw("id, kind, partner, since, last_failure_at, count, resolved_at");

export class SqlAlertLog implements AlertLog {
  constructor(private readonly db: Db) {}

  pass(
    now: Date,
    plan: (facts: PartnerFacts[]) => AlertChange[] | Promise<AlertChange[]>,
  ): Promise<AlertPassResult> {
    const at = now.toISOString();
    return this.db.transaction(async (tx) => {
      const db = tx as unknown as Db;
      // Replicas take turns here: the second waits for the first's commit, then reads after it.
      await db.execute(
        sql`insert into alert_watch (kind) values (${KIND}) on conflict (kind) do nothing`,
      );
      const [cursor] = await rowsOf<{ watermark: string | Date | null }>(
        db,
        sql`select watermark from alert_watch where kind = ${KIND} for update`,
      );
      const watermark = cursor?.watermark == null ? null : new Date(cursor.watermark);
      const from =
        watermark === null ? null : new Date(watermark.getTime() - OVERLAP_MS).toISOString();

      const failed = await rowsOf<{
        partner: string;
        n: number | string;
        first: string | Date;
        last: string | Date;
      }>(
        db,
        sql`select d.recipient as partner, count(*)::int as n,
              min(d.updated_at) as first, max(d.updated_at) as last
            from deliveries d
            left join lateral (
              select coalesce(a.resolved_at, a.last_failure_at) as counted_until
              from alerts a where a.kind = ${KIND} and a.partner = d.recipient
              order by a.id desc limit 1
            ) latest on true
            where d.status = 'failed'
              ${from === null ? sql`` : sql`and d.updated_at > ${from}::timestamptz`}
              and (latest.counted_until is null or d.updated_at > latest.counted_until)
            group by d.recipient`,
      );
      const active = (
        await rowsOf<AlertRowText>(
          db,
          sql`select ${ALERT_COLUMNS} from alerts where kind = ${KIND} and resolved_at is null`,
        )
      ).map(alertFromRow);

      const facts = new Map<string, PartnerFacts>();
      const factsOf = (partner: string) => {
        let f = facts.get(partner);
        if (f === undefined) {
          f = { partner, active: undefined, failed: undefined, reachableAt: undefined };
          facts.set(partner, f);
        }
        return f;
      };
      for (const a of active) factsOf(a.partner).active = a;
      for (const r of failed) {
        factsOf(r.partner).failed = {
          count: Number(r.n),
          first: new Date(r.first),
          last: new Date(r.last),
        };
      }

      if (facts.size > 0) {
        // The partner's return counts only after its latest failure, old or new.
        const after = [...facts.values()].map((f) => ({
          partner: f.partner,
          after: new Date(
            Math.max(f.active?.lastFailureAt.getTime() ?? 0, f.failed?.last.getTime() ?? 0),
          ).toISOString(),
        }));
        const reachable = await rowsOf<{ partner: string; at: string | Date }>(
          db,
          sql`select v.partner, min(d.updated_at) as at
              from jsonb_to_recordset(${JSON.stringify(after)}::jsonb)
                as v(partner text, after timestamptz)
              join deliveries d on d.recipient = v.partner
                and d.status in ('delivered', 'rejected') and d.updated_at > v.after
              group by v.partner`,
        );
        for (const r of reachable) factsOf(r.partner).reachableAt = new Date(r.at);
      }

      const result: AlertPassResult = { raised: [], extended: [], resolved: [] };
      for (const change of await plan([...facts.values()])) {
        if (change.action === "resolve") {
          const rows = await rowsOf<AlertRowText>(
            db,
            sql`update alerts set resolved_at = ${change.at.toISOString()}::timestamptz
                where kind = ${KIND} and partner = ${change.partner} and resolved_at is null
                returning ${ALERT_COLUMNS}`,
          );
          result.resolved.push(...rows.map(alertFromRow));
          continue;
        }
        const since = change.action === "raise" ? change.since : change.lastFailureAt;
        const rows = await rowsOf<AlertRowText & { inserted: boolean }>(
          db,
          sql`insert into alerts (kind, partner, since, last_failure_at, count)
              values (${KIND}, ${change.partner}, ${since.toISOString()}::timestamptz,
                ${change.lastFailureAt.toISOString()}::timestamptz, ${change.count}::int)
              on conflict (kind, partner) where resolved_at is null do update set
                last_failure_at = greatest(alerts.last_failure_at, excluded.last_failure_at),
                count = alerts.count + excluded.count
              returning ${ALERT_COLUMNS}, (xmax = 0) as inserted`,
        );
        for (const row of rows) {
          (row.inserted ? result.raised : result.extended).push(alertFromRow(row));
        }
      }

      await db.execute(
        sql`update alert_watch set watermark = greatest(watermark, ${at}::timestamptz)
            where kind = ${KIND}`,
      );
      return result;
    });
  }
}

/** Raw rows, whichever driver is underneath (postgres.js returns the rows, PGlite `{ rows }`). */
async function rowsOf<T>(db: Db, query: ReturnType<typeof sql>): Promise<T[]> {
  const result = (await db.execute(query)) as unknown;
  return (Array.isArray(result) ? result : (result as { rows: T[] }).rows) as T[];
}
