import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { connect, type NatsConnection } from "nats";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startPostgresReplicaPair } from "../../src/devtools/postgres-server.ts";
import { createTestDatabase } from "../helpers/databases.ts";
import { waitFor } from "../helpers/network.ts";

describe("NATS JetStream from global setup", () => {
  let nc: NatsConnection;
  const stream = `DEVTOOLS_${randomBytes(6).toString("hex").toUpperCase()}`;
  const subject = `devtools.${stream.toLowerCase()}`;

  beforeAll(async () => {
    nc = await connect({ servers: inject("natsUrl") });
  });

  afterAll(async () => {
    const jsm = await nc.jetstreamManager();
    await jsm.streams.delete(stream).catch(() => {});
    await nc.close();
  });

  it("de-duplicates a publish with the same msgID", async () => {
    const jsm = await nc.jetstreamManager();
    await jsm.streams.add({ name: stream, subjects: [subject] });
    const js = nc.jetstream();

    const first = await js.publish(subject, "hello", { msgID: "msg-1" });
    const second = await js.publish(subject, "hello", { msgID: "msg-1" });

    expect(first.duplicate).toBe(false);
    expect(second.duplicate).toBe(true);
    expect(second.seq).toBe(first.seq);
    const info = await jsm.streams.info(stream);
    expect(info.state.messages).toBe(1);
  });
});

describe("createTestDatabase", () => {
  it("creates a database of its own and drops it", async () => {
    const serverUrl = inject("databaseUrl");
    const db = await createTestDatabase(serverUrl);
    const name = new URL(db.url).pathname.slice(1);
    expect(name).toMatch(/^t_[0-9a-f]+$/);

    const sql = postgres(db.url, { max: 2 });
    try {
      const [row] = await sql<{ current_database: string }[]>`SELECT current_database()`;
      expect(row?.current_database).toBe(name);
    } finally {
      // drop() must work even with connections still open.
      await db.drop();
      await sql.end({ timeout: 1 }).catch(() => {});
    }

    const admin = postgres(serverUrl, { max: 1 });
    try {
      const rows = await admin`SELECT 1 FROM pg_database WHERE datname = ${name}`;
      expect(rows).toHaveLength(0);
    } finally {
      await admin.end();
    }
  });
});

describe("freePort", () => {
  it("picks ports below the kernel's ephemeral range, which outgoing connections never take, and that can be bound", async () => {
    const { readFileSync } = await import("node:fs");
    const { createServer } = await import("node:net");
    const { freePort } = await import("../../src/devtools/free-port.ts");
    const floor = Number(
      readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0],
    );
    for (let i = 0; i < 20; i++) {
      const port = await freePort();
      expect(port).toBeGreaterThanOrEqual(10_000);
      expect(port).toBeLessThan(floor);
      const server = createServer();
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, "127.0.0.1", () => resolve());
      });
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe("startPostgresReplicaPair", () => {
  it("a synchronous standby: streams, refuses writes, holds the primary's commits while down, and is promoted", async () => {
    const pair = await startPostgresReplicaPair({ synchronousCommit: "on" });
    const clients: postgres.Sql[] = [];
    const client = (url: string): postgres.Sql => {
      const sql = postgres(url, { max: 1, onnotice: () => {} });
      clients.push(sql);
      return sql;
    };
    /** The wait event of the session running `INSERT INTO t` on the server at `url`. */
    const insertWaitsOn = async (url: string): Promise<string | undefined> => {
      const rows = await client(url)<{ wait_event: string | null }[]>`
        SELECT wait_event FROM pg_stat_activity
        WHERE query LIKE 'INSERT INTO t%' AND state = 'active' AND pid <> pg_backend_pid()`;
      return rows[0]?.wait_event ?? undefined;
    };
    try {
      const primary = client(pair.primary.url);
      const standby = client(pair.standby.url);
      expect(await primary`SELECT state, sync_state FROM pg_stat_replication`).toEqual([
        { state: "streaming", sync_state: "sync" },
      ]);
      await primary`CREATE TABLE t (n int)`;
      await primary`INSERT INTO t VALUES (1)`;
      await waitFor("the row on the standby", async () => {
        const [row] = await standby<{ n: number }[]>`SELECT count(*)::int AS n FROM t`;
        return row?.n === 1 ? true : undefined;
      });
      expect(await standby`SELECT pg_is_in_recovery() AS recovery`).toEqual([{ recovery: true }]);
      await expect(standby`INSERT INTO t VALUES (2)`).rejects.toMatchObject({ code: "25006" });

      // The standby down: the primary's commit waits for it, and ends once it is back.
      await pair.standby.crash();
      const held = client(pair.primary.url)`INSERT INTO t VALUES (3)`.then(() => "committed");
      await waitFor("the commit to wait for the standby", async () =>
        (await insertWaitsOn(pair.primary.url)) === "SyncRep" ? true : undefined,
      );
      await pair.standby.start();
      expect(await held).toBe("committed");
      await pair.waitForStandby();

      // A failover: the primary crashes, the standby is promoted and takes writes; the
      // multi-host URL (target_session_attrs=primary) finds it.
      await pair.primary.crash();
      expect(await standby`SHOW synchronous_standby_names`).toEqual([
        { synchronous_standby_names: "*" },
      ]);
      await pair.standby.promote();
      expect(await standby`SELECT pg_is_in_recovery() AS recovery`).toEqual([{ recovery: false }]);
      await standby`INSERT INTO t VALUES (4)`;
      const viaBoth = client(pair.url);
      expect(await viaBoth`SELECT inet_server_port() AS port, count(*)::int AS n FROM t`).toEqual([
        { port: pair.standby.port, n: 3 },
      ]);
      // promote() reset synchronous_standby_names: with it, as the primary has it, each commit
      // of the promoted server, which has no standby, would wait for ever.
      expect(await client(pair.standby.url)`SHOW synchronous_standby_names`).toEqual([
        { synchronous_standby_names: "" },
      ]);
      await standby`ALTER SYSTEM SET synchronous_standby_names = '*'`;
      await standby`SELECT pg_reload_conf()`;
      const stuck = client(pair.standby.url)`INSERT INTO t VALUES (5)`.then(() => "committed");
      await waitFor("the promoted server's commit to wait for a standby", async () =>
        (await insertWaitsOn(pair.standby.url)) === "SyncRep" ? true : undefined,
      );
      await standby`ALTER SYSTEM RESET synchronous_standby_names`;
      await standby`SELECT pg_reload_conf()`;
      expect(await stuck).toBe("committed");
    } finally {
      await Promise.all(clients.map((sql) => sql.end({ timeout: 1 }).catch(() => {})));
      await pair.stop();
    }
    expect(existsSync(pair.primary.dataDir)).toBe(false);
    expect(existsSync(pair.standby.dataDir)).toBe(false);
  }, 60_000);
});
