/**
 * PostgreSQL restarted mid-batch (a fast shutdown: every session ends with 57P01, then the
 * server starts again on the same port and data directory), under both gateways at once: the
 * processes stay up (postgres.js as patched in patches/), submits are refused while the
 * database is down, inbound messages whose transaction failed come again, and nothing is lost
 * or doubled.
 */
import { defineFaultCase } from "./harness.ts";

defineFaultCase({
  name: "postgres-restart",
  title: "PostgreSQL restarted mid-batch: the gateways carry on, each message logged once",
  ownDatabaseServer: true,
  async fault({ postgres }) {
    if (postgres === undefined) throw new Error("no PostgreSQL server of the case's own");
    const started = Date.now();
    await postgres.restart();
    return { down_s: ((Date.now() - started) / 1000).toFixed(1) };
  },
});
