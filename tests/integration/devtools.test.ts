import { randomBytes } from "node:crypto";
import { connect, type NatsConnection } from "nats";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createTestDatabase } from "../helpers/databases.ts";

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
