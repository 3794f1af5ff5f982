/**
 * Deadlines that passed: for every case whose earliest awaited step is overdue, a signed
 * `case.reminder` goes to the party that owes it — once per deadline (a new request makes a new
 * deadline, and a new reminder when that one passes too). Our own overdue steps are not
 * reminded to ourselves: the API lists them (GET /v1/cases?overdue=true). The reminder's own
 * commit records that it was sent (Submitter), so a crash never loses or repeats one.
 */
import type { CaseLog, Clock, Log } from "../delivery/ports.ts";
import type { SubmitRequest } from "../delivery/submitter.ts";
import type { Envelope, PartyId } from "../protocol/types.ts";
import { REMINDER_TYPE } from "./case-types.ts";

export interface ReminderSweepDeps {
  self: PartyId;
  cases: Pick<CaseLog, "overdue" | "markReminded">;
  submitter: { submit(request: SubmitRequest): Promise<Envelope> };
  clock: Clock;
  log: Log;
}

export class ReminderSweep {
  private running: Promise<Array<{ caseRef: string; to: PartyId; messageId: string }>> | null =
    null;

  constructor(private readonly deps: ReminderSweepDeps) {}

  /** One pass (joining the one under way, if any); returns the reminders sent. */
  sweep(limit = 100): Promise<Array<{ caseRef: string; to: PartyId; messageId: string }>> {
    this.running ??= this.pass(limit).finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async pass(
    limit: number,
  ): Promise<Array<{ caseRef: string; to: PartyId; messageId: string }>> {
    const { deps } = this;
    const now = deps.clock();
    const sent: Array<{ caseRef: string; to: PartyId; messageId: string }> = [];
    for (const { caseRef, awaiting } of await deps.cases.overdue(now, limit)) {
      const due = awaiting
        .filter((a) => a.dueAt !== undefined && Date.parse(a.dueAt) <= now.getTime())
        .sort((a, b) => Date.parse(a.dueAt as string) - Date.parse(b.dueAt as string))[0];
      if (due?.dueAt === undefined) continue;
      if (due.party === deps.self) {
        // Ours to do: listed by the API, never reminded to ourselves.
        await deps.cases.markReminded(caseRef, new Date(due.dueAt));
        continue;
      }
      try {
        const envelope = await deps.submitter.submit({
          type: REMINDER_TYPE,
          to: due.party,
          caseRef,
          body: {
            awaitedType: due.types[0],
            ...(due.requestId === undefined ? {} : { awaitedMessageId: due.requestId }),
            dueAt: due.dueAt,
            overdueSince: due.dueAt,
          },
        });
        sent.push({ caseRef, to: due.party, messageId: envelope.id });
        deps.log.info(
          { caseRef, to: due.party, messageId: envelope.id, awaitedType: due.types[0] },
          "overdue step: reminder sent",
        );
      } catch (err) {
        deps.log.warn(
          { caseRef, to: due.party, code: (err as { code?: string }).code ?? "internal" },
          "overdue step: reminder not sent",
        );
      }
    }
    return sent;
  }
}
