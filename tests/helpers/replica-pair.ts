/**
 * What the PostgreSQL fault tests (database-hang, postgres-driver) share: a replica pair of the
 * file's own, the process fault recorder around it, and how a promise settles within a bound.
 */
import { afterAll, beforeAll, expect } from "vitest";
import {
  type PostgresReplicaPair,
  startPostgresReplicaPair,
} from "../../src/devtools/postgres-server.ts";
import { describeError, processFaults } from "./process-faults.ts";

/** ReadyForQuery ('Z', length 5), with any transaction status. */
export const READY_FOR_QUERY = Buffer.from([0x5a, 0, 0, 0, 5]);

/**
 * Registers the file's beforeAll and afterAll: the process fault recorder started, a replica
 * pair (startPostgresReplicaPair) started, then `started(pair)`; at the end `stopping()`, the
 * pair stopped, and the recorder stopped whatever failed before. Anything thrown where no caller
 * can catch it (a driver's timer callback) is recorded meanwhile.
 */
export function fileReplicaPair(
  hooks: {
    started?: (pair: PostgresReplicaPair) => Promise<unknown> | undefined;
    stopping?: () => Promise<unknown> | undefined;
  } = {},
) {
  let pair: PostgresReplicaPair | undefined;
  const { uncaught, unhandled, ...faults } = processFaults();

  beforeAll(async () => {
    faults.start();
    pair = await startPostgresReplicaPair();
    await hooks.started?.(pair);
  });

  afterAll(async () => {
    try {
      await hooks.stopping?.();
      await pair?.stop();
    } finally {
      faults.stop();
    }
  });

  return {
    /** The started pair (throws before beforeAll). */
    thePair(): PostgresReplicaPair {
      if (pair === undefined) throw new Error("no replica pair");
      return pair;
    },
    uncaught,
    unhandled,
    /** Nothing recorded: no uncaught exception, no unhandled rejection. */
    expectNoProcessFaults(): void {
      expect(uncaught.map(describeError)).toEqual([]);
      expect(unhandled.map(describeError)).toEqual([]);
    },
  };
}

/** How a promise settled, or "pending". */
export type Settled = { resolved: unknown } | { rejected: unknown } | "pending";

/** How `promise` settles within `ms`, or "pending". */
export function settleWithin(promise: Promise<unknown>, ms: number): Promise<Settled> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.then(
      (resolved): Settled => ({ resolved }),
      (rejected: unknown): Settled => ({ rejected }),
    ),
    new Promise<Settled>((resolve) => {
      timer = setTimeout(() => resolve("pending"), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** The error of a rejected outcome (the test fails on any other outcome). */
export function rejectionOf(result: Settled): unknown {
  if (result === "pending" || !("rejected" in result)) {
    throw new Error(`expected a rejection, got ${JSON.stringify(result)}`);
  }
  return result.rejected;
}
