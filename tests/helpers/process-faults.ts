/**
 * What is thrown where no caller can catch it (a driver's timer callback, a promise nobody
 * awaits): every uncaught exception and unhandled rejection of the test process between
 * `start()` and `stop()`. A gateway process would die of the first kind; the tests assert there
 * was none of either.
 */
export function processFaults() {
  const uncaught: unknown[] = [];
  const unhandled: unknown[] = [];
  const onUncaught = (err: unknown): void => {
    uncaught.push(err);
  };
  const onUnhandled = (reason: unknown): void => {
    unhandled.push(reason);
  };
  return {
    uncaught,
    unhandled,
    start(): void {
      process.on("uncaughtException", onUncaught);
      process.on("unhandledRejection", onUnhandled);
    },
    stop(): void {
      process.off("uncaughtException", onUncaught);
      process.off("unhandledRejection", onUnhandled);
    },
  };
}

/** An error as a line for an assertion's diff: name, message and stack. */
export function describeError(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}\n${err.stack ?? ""}` : String(err);
}
