/**
 * Serving a gateway: `npm start` runs this file, `liaison serve` calls `serveFromEnvironment`.
 * The configuration is read once, the gateway started, and stopped on SIGINT or SIGTERM within
 * LIAISON_SHUTDOWN_TIMEOUT_SECONDS: exit status 0 once everything stopped in order, 1 when the
 * time ran out (what was still running is logged). Nothing is lost either way: the broker hands
 * out again what was not acked, and the outbox sends again what has no receipt.
 */
import { reportFailure } from "./cli/report-failure.ts";
import { loadConfig } from "./config/config.ts";
import { type Gateway, startGateway } from "./gateway.ts";

/** Stops the gateway within `timeoutMs`; the exit status to end with (0 stopped, 1 timed out). */
export async function stopWithin(
  gateway: Pick<Gateway, "stop" | "unfinishedStopSteps" | "log">,
  timeoutMs: number,
): Promise<0 | 1> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeoutMs);
  });
  const started = Date.now();
  const outcome = await Promise.race([gateway.stop().then(() => "stopped" as const), timedOut]);
  clearTimeout(timer);
  if (outcome === "stopped") {
    gateway.log.info({ ms: Date.now() - started }, "stopped in order");
    return 0;
  }
  gateway.log.error(
    { timeoutMs, unfinished: gateway.unfinishedStopSteps() },
    "shutdown time limit passed; exiting with what was still running (the broker redelivers what was not acked, the outbox resends what has no receipt)",
  );
  return 1;
}

export async function serveFromEnvironment(): Promise<void> {
  const config = loadConfig();
  const gateway = await startGateway(config);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    gateway.log.info({ signal, timeoutMs: config.shutdownTimeoutMs }, "stopping");
    const status = await stopWithin(gateway, config.shutdownTimeoutMs);
    // The log is written asynchronously: its last lines out before the process ends.
    await new Promise<void>((resolve) => gateway.log.flush(() => resolve()));
    process.exit(status);
  };
  // A second signal while stopping changes nothing: the time limit decides.
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await serveFromEnvironment().catch(reportFailure);
}
