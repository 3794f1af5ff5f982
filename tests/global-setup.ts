/**
 * Vitest globalSetup for the `integration` project: provides `natsUrl` and `databaseUrl`.
 *
 * - NATS: LIAISON_TEST_NATS_URL when set and reachable, else a throw-away nats-server (JetStream).
 * - Postgres: LIAISON_TEST_DATABASE_URL when set and reachable, else a throw-away cluster.
 *   `databaseUrl` points at a server where the user may CREATE DATABASE: test files call
 *   `createTestDatabase(inject("databaseUrl"))` to get a database of their own.
 *
 * The returned teardown stops only what this setup started.
 */
import { connect } from "nats";
import postgres from "postgres";
import type { TestProject } from "vitest/node";
import { startNatsServer } from "../src/devtools/nats-server.ts";
import { startPostgresServer } from "../src/devtools/postgres-server.ts";

declare module "vitest" {
  export interface ProvidedContext {
    natsUrl: string;
    databaseUrl: string;
  }
}

interface Service {
  url: string;
  stop?: () => Promise<void>;
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const [nats, database] = await Promise.allSettled([natsService(), databaseService()]);
  const started = [nats, database].flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  const teardown = async (): Promise<void> => {
    await Promise.allSettled(started.map((s) => s.stop?.()));
  };
  if (nats.status === "rejected" || database.status === "rejected") {
    await teardown();
    const reasons = [nats, database].flatMap((r) => (r.status === "rejected" ? [r.reason] : []));
    throw reasons.length === 1 ? reasons[0] : new AggregateError(reasons, "global setup failed");
  }
  project.provide("natsUrl", nats.value.url);
  project.provide("databaseUrl", database.value.url);
  return teardown;
}

async function natsService(): Promise<Service> {
  const external = process.env.LIAISON_TEST_NATS_URL;
  if (external) {
    const problem = await natsProblem(external);
    if (problem === undefined) return { url: external };
    console.warn(
      `LIAISON_TEST_NATS_URL=${external} is not reachable (${problem}); starting nats-server`,
    );
  }
  const server = await startNatsServer();
  return { url: server.url, stop: server.stop };
}

async function databaseService(): Promise<Service> {
  const external = process.env.LIAISON_TEST_DATABASE_URL;
  if (external) {
    const problem = await postgresProblem(external);
    if (problem === undefined) return { url: external };
    console.warn(
      `LIAISON_TEST_DATABASE_URL=${redact(external)} is not reachable (${problem}); starting postgres`,
    );
  }
  const server = await startPostgresServer();
  return { url: server.url, stop: server.stop };
}

async function natsProblem(url: string): Promise<string | undefined> {
  try {
    const nc = await connect({ servers: url, timeout: 3000, reconnect: false });
    await nc.close();
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

async function postgresProblem(url: string): Promise<string | undefined> {
  const sql = postgres(url, { max: 1, connect_timeout: 3, onnotice: () => {} });
  try {
    await sql`SELECT 1`;
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  } finally {
    await sql.end({ timeout: 0 }).catch(() => {});
  }
}

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "<unparsable URL>";
  }
}
