/**
 * The cases aggregate: the per-case lock, the case's messages read back from the message log,
 * and the summary row the fold computes (src/cases/fold-case.ts).
 */
import { and, asc, eq, inArray, isNotNull, isNull, lte, ne, or, sql } from "drizzle-orm";
import type { Awaiting, CaseView } from "../cases/case-types.ts";
import type { CaseLog, LoggedCaseMessage } from "../delivery/ports.ts";
import type { Db } from "./database.ts";
import { cases, messages } from "./schema.ts";
import { run } from "./set-sql.ts";

export class SqlCaseLog implements CaseLog {
  constructor(private readonly db: Db) {}

  async lock(caseRefs: string[]): Promise<void> {
    // Transaction-scoped advisory locks: released at commit or rollback, held by no row, so a
    // case that does not exist yet can be locked too. Sorted: no two transactions wait in a cycle.
    for (const ref of [...new Set(caseRefs)].sort()) {
      await run(this.db, sql`select pg_advisory_xact_lock(hashtextextended(${ref}, 0))`);
    }
  }

  async messages(caseRef: string, types: readonly string[]): Promise<LoggedCaseMessage[]> {
    if (types.length === 0) return [];
    const rows = await this.db
      .select({
        direction: messages.direction,
        jws: messages.jws,
        // Written out with the table's name: drizzle leaves columns unqualified here, and inside
        // a subquery an unqualified "id" or "direction" would name the subquery's own column.
        refused: sql<boolean>`("messages"."direction" = 'outbound' and exists (
            select 1 from deliveries d
            where d.message_id = "messages"."id" and d.status = 'rejected'))`,
        acceptedBy: sql<string[] | null>`(select jsonb_agg(r.from_party) from receipts r
            where "messages"."direction" = 'outbound' and r.direction = 'received'
              and r.message_id = "messages"."id" and r.status = 'accepted')`,
      })
      .from(messages)
      .where(and(eq(messages.caseRef, caseRef), inArray(messages.type, [...types])))
      .orderBy(messages.seq);
    return rows.map((r) => ({
      direction: r.direction,
      jws: r.jws,
      refused: r.refused === true,
      acceptedBy: Array.isArray(r.acceptedBy) ? r.acceptedBy : [],
    }));
  }

  async save(view: CaseView, messageCount: number): Promise<void> {
    const due = view.awaiting
      .filter((a) => a.dueAt !== undefined)
      .sort((a, b) => Date.parse(a.dueAt as string) - Date.parse(b.dueAt as string))[0];
    const row = {
      caseRef: view.caseRef,
      state: view.state,
      identifyingParty: view.identifying,
      originParty: view.origin,
      minor: view.minor,
      openedAt: new Date(view.openedAt),
      updatedAt: new Date(view.updatedAt),
      awaiting: view.awaiting,
      dueAt: due?.dueAt === undefined ? null : new Date(due.dueAt),
      owingParty: due?.party ?? view.awaiting[0]?.party ?? null,
      messageCount,
      changedAt: new Date(),
    };
    const { caseRef: _key, ...changes } = row;
    await this.db
      .insert(cases)
      .values(row)
      .onConflictDoUpdate({ target: cases.caseRef, set: changes });
  }

  async caseRefsOf(messageIds: string[], types: readonly string[]): Promise<string[]> {
    if (messageIds.length === 0 || types.length === 0) return [];
    const rows = await this.db
      .selectDistinct({ caseRef: messages.caseRef })
      .from(messages)
      .where(
        and(
          eq(messages.direction, "outbound"),
          inArray(messages.id, messageIds),
          inArray(messages.type, [...types]),
        ),
      );
    return rows.map((r) => r.caseRef);
  }

  async overdue(
    now: Date,
    limit: number,
  ): Promise<Array<{ caseRef: string; awaiting: Awaiting[] }>> {
    const rows = await this.db
      .select({ caseRef: cases.caseRef, awaiting: cases.awaiting })
      .from(cases)
      .where(
        and(
          isNotNull(cases.dueAt),
          lte(cases.dueAt, now),
          or(isNull(cases.remindedDueAt), ne(cases.remindedDueAt, cases.dueAt)),
        ),
      )
      .orderBy(asc(cases.dueAt))
      .limit(limit);
    return rows.map((r) => ({ caseRef: r.caseRef, awaiting: r.awaiting as Awaiting[] }));
  }

  async markReminded(caseRef: string, dueAt: Date): Promise<boolean> {
    const rows = await this.db
      .update(cases)
      .set({ remindedDueAt: dueAt })
      .where(
        and(
          eq(cases.caseRef, caseRef),
          or(isNull(cases.remindedDueAt), ne(cases.remindedDueAt, dueAt)),
        ),
      )
      .returning({ caseRef: cases.caseRef });
    return rows.length > 0;
  }

  async remove(caseRef: string): Promise<void> {
    await this.db.delete(cases).where(eq(cases.caseRef, caseRef));
  }
}
