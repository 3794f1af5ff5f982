/**
 * Serving a gateway: `npm start` runs this file, `liaison serve` calls `serveFromEnvironment`.
 * The configuration is read once, the gateway started, and stopped on SIGINT or SIGTERM.
 */
import { reportFailure } from "./cli/report-failure.ts";
import { loadConfig } from "./config/config.ts";
import { startGateway } from "./gateway.ts";

export async function serveFromEnvironment(): Promise<void> {
  const config = loadConfig();
  const gateway = await startGateway(config);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    gateway.log.info({ signal }, "stopping");
    await gateway.stop();
    process.exit(0);
  };
  process.once("SIGINT", () => void stop("SIGINT"));
  process.once("SIGTERM", () => void stop("SIGTERM"));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await serveFromEnvironment().catch(reportFailure);
}
