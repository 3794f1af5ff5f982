/**
 * The sending gateway's wall clock 5 minutes ahead, then 5 minutes behind (libfaketime in its
 * process; the monotonic clock is left alone), with the default tolerance
 * (LIAISON_CLOCK_SKEW_SECONDS=300): messages arrive with a sentAt up to 5 minutes in the
 * receiver's future or past, receipts the other way round; all are accepted. There is no other
 * fault: the skew is the fault, present from the start.
 */
import type { CaseCheck, CaseContext } from "./harness.ts";
import { defineFaultCase } from "./harness.ts";

/**
 * The sender's clock as its messages show it: sentAt (its clock) against logged_at (the
 * database's clock, the real one) of its outbound messages, in seconds.
 */
async function observedOffset({ net }: CaseContext): Promise<number> {
  const [row] = await net.sender.sql<Array<{ offset: number }>>`
    SELECT avg(extract(epoch FROM sent_at - logged_at))::float8 AS offset
    FROM messages WHERE direction = 'outbound'`;
  return row?.offset ?? Number.NaN;
}

function clockCheck(expectedSeconds: number) {
  return async (ctx: CaseContext): Promise<CaseCheck> => {
    const offset = await observedOffset(ctx);
    const problems =
      Math.abs(offset - expectedSeconds) <= 10
        ? []
        : [`the sender's clock was ${offset.toFixed(1)} s off, not ${expectedSeconds} s`];
    return { fields: { clock_offset_s: offset.toFixed(1) }, problems };
  };
}

defineFaultCase({
  name: "clock-ahead",
  title: "the sender's clock 5 minutes ahead: each message logged once, all delivered",
  sender: { clockOffset: "+5m" },
  fault: async () => undefined,
  check: clockCheck(300),
});

defineFaultCase({
  name: "clock-behind",
  title: "the sender's clock 5 minutes behind: each message logged once, all delivered",
  sender: { clockOffset: "-5m" },
  fault: async () => undefined,
  check: clockCheck(-300),
});
