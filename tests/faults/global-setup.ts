/**
 * Vitest globalSetup of the fault suite: one throw-away PostgreSQL server for the whole suite
 * (each gateway gets a database of its own on it), or LIAISON_TEST_DATABASE_URL when set. The
 * nats-servers are per case: a case may restart its own.
 */
import postgres from "postgres";
import type { TestProject } from "vitest/node";
import { startPostgresServer } from "../../src/devtools/postgres-server.ts";

declare module "vitest" {
  export interface ProvidedContext {
    faultsDatabaseUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env.LIAISON_TEST_DATABASE_URL;
  if (external) {
    const sql = postgres(external, { max: 1, connect_timeout: 3, onnotice: () => {} });
    try {
      await sql`SELECT 1`;
      project.provide("faultsDatabaseUrl", external);
      return async () => {};
    } catch (err) {
      console.warn(
        `LIAISON_TEST_DATABASE_URL is not reachable (${(err as Error).message}); starting postgres`,
      );
    } finally {
      await sql.end({ timeout: 0 }).catch(() => {});
    }
  }
  const server = await startPostgresServer();
  project.provide("faultsDatabaseUrl", server.url);
  return () => server.stop();
}
