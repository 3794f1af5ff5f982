/**
 * Helpers shared by the throwaway servers of tests and the demo (nats-server, PostgreSQL): no
 * child outlives this Node process, whether it exits or receives SIGINT/SIGTERM/SIGHUP.
 */
import type { ChildProcess } from "node:child_process";
import { accessSync, constants } from "node:fs";

const cleanups = new Set<() => void>();
const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

function runAll(): void {
  for (const cleanup of cleanups) {
    try {
      cleanup();
    } catch (err) {
      process.stderr.write(`liaison devtools: cleanup at exit failed: ${String(err)}\n`);
    }
  }
  cleanups.clear();
  uninstall();
}

function onSignal(signal: NodeJS.Signals): void {
  runAll();
  // We replaced the default action; if nobody else handles the signal, re-raise it.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function uninstall(): void {
  process.off("exit", runAll);
  for (const sig of SIGNALS) process.off(sig, onSignal);
}

/**
 * Tracks the things of type T (a child process and its directory) with a synchronous cleanup
 * run at exit or on a signal; `untrack` once the thing was stopped the normal way.
 */
export function exitGuard<T>(cleanupSync: (t: T) => void): {
  track(t: T): void;
  untrack(t: T): void;
} {
  const fns = new Map<T, () => void>();
  return {
    track(t) {
      if (cleanups.size === 0) {
        process.on("exit", runAll);
        for (const sig of SIGNALS) process.on(sig, onSignal);
      }
      const fn = () => cleanupSync(t);
      fns.set(t, fn);
      cleanups.add(fn);
    },
    untrack(t) {
      const fn = fns.get(t);
      if (fn === undefined) return;
      fns.delete(t);
      cleanups.delete(fn);
      if (cleanups.size === 0) uninstall();
    },
  };
}

/** Keeps the last lines a child printed, for error messages. */
export function captureOutput(child: ChildProcess, maxLines = 40): { tail(): string } {
  const lines: string[] = [];
  const onData = (chunk: Buffer): void => {
    for (const line of chunk.toString("utf8").split("\n")) {
      if (line.trim() === "") continue;
      lines.push(line);
      if (lines.length > maxLines) lines.shift();
    }
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);
  return { tail: () => lines.join("\n") };
}

export function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: Error;
}

/** A server that exits during startup: the port was taken (retry elsewhere) or it failed. */
export class PortInUseError extends Error {}

export function startupFailure(
  exit: ExitInfo,
  describe: (why: string) => string,
  output: string,
): Error {
  const why = exit.error
    ? `failed to start: ${exit.error.message}`
    : `exited during startup (code ${exit.code}, signal ${exit.signal})`;
  const message = describe(why);
  return /address already in use/i.test(output) ? new PortInUseError(message) : new Error(message);
}
