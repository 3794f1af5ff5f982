/**
 * PostgreSQL stops answering mid-flow (every process of the server stopped with SIGSTOP, as a
 * hung server is: stuck storage, a frozen machine; its kernel still acknowledges TCP) for longer
 * than the gateways' 15 s query deadline (patches/README.md, item 6), then resumes. Both gateways'
 * queries are given up (QUERY_TIMEOUT, store unavailable), submits are answered 503 and sent again
 * by the load under their Idempotency-Key, inbound messages whose transaction was given up come
 * again; nothing is lost, nothing is logged twice, and no refused submit makes a second message
 * (the load's `extra` count): a commit that was on its way when the server stopped is carried
 * out when it resumes, and the same key sent again is answered with that message.
 */
import { pauseServer, resumeServer } from "../../src/devtools/postgres-server.ts";
import { defineFaultCase, sleep } from "./harness.ts";

const PAUSE_MS = 20_000;

defineFaultCase({
  name: "postgres-hang",
  title:
    "PostgreSQL stops answering for 20 s: the gateways give it up, carry on, each message once",
  ownDatabaseServer: true,
  async fault({ postgres }) {
    if (postgres === undefined) throw new Error("no PostgreSQL server of the case's own");
    pauseServer(postgres.dataDir);
    try {
      await sleep(PAUSE_MS);
    } finally {
      resumeServer(postgres.dataDir);
    }
    return { paused_s: (PAUSE_MS / 1000).toFixed(1) };
  },
});
