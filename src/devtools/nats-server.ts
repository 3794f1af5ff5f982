/**
 * Starts a throw-away `nats-server` with JetStream for tests and local development.
 *
 * The server listens on 127.0.0.1 only, stores JetStream data in a fresh temporary directory
 * (unless one is given) and is stopped with `handle.stop()`. Servers still running when the
 * Node process exits (or receives SIGINT/SIGTERM/SIGHUP) are killed so they never outlive it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { get as httpGet } from "node:http";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { freePort } from "./free-port.ts";
import {
  captureOutput,
  type ExitInfo,
  exitGuard,
  isExecutable,
  PortInUseError,
  sleep,
  startupFailure,
} from "./process-guard.ts";

export interface NatsServerHandle {
  /** Client URL, e.g. `nats://127.0.0.1:4222`. */
  url: string;
  port: number;
  /** The server's process id (fault tests pause it with SIGSTOP). */
  pid: number;
  /** JetStream store directory (`-sd`). */
  storeDir: string;
  /** The monitoring endpoint, e.g. `http://127.0.0.1:8222`. */
  monitorUrl: string;
  /** Stops the server (SIGTERM, SIGKILL after 5 s) and removes the store dir if it was created here. */
  stop(): Promise<void>;
}

export interface StartNatsServerOptions {
  /** JetStream store directory; kept on stop(). Default: a fresh temp dir, removed on stop(). */
  storeDir?: string;
  /** Client port. Default: a free port. */
  port?: number;
  /** `server_name` (federated servers need distinct names). */
  name?: string;
  /** JetStream on this server (default true); a federation hub runs without. */
  jetStream?: boolean;
  /** The server's JetStream domain (federation: one per country). */
  domain?: string;
  /** More configuration, in nats-server's configuration syntax (leafnodes, authorization, ...). */
  config?: string;
}

const READY_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 5_000;
const MAX_START_ATTEMPTS = 3;

const MISSING_BINARY_MESSAGE =
  "nats-server binary not found (looked on PATH and in /usr/sbin, /usr/local/sbin). " +
  "Install it with `bash scripts/ensure-system-deps.sh nats` (as root) or `apt-get install nats-server`.";

/** Locates `nats-server`: PATH first, then sbin dirs (Debian installs it in /usr/sbin, off a user's PATH). */
export function findNatsServerBinary(): string | undefined {
  const dirs = (process.env.PATH ?? "").split(delimiter).filter((d) => d !== "");
  dirs.push("/usr/local/sbin", "/usr/sbin", "/usr/local/bin", "/usr/bin");
  for (const dir of dirs) {
    const candidate = join(dir, "nats-server");
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

export async function startNatsServer(
  opts: StartNatsServerOptions = {},
): Promise<NatsServerHandle> {
  const binary = findNatsServerBinary();
  if (binary === undefined) throw new Error(MISSING_BINARY_MESSAGE);

  const ownsStoreDir = opts.storeDir === undefined;
  const storeDir = opts.storeDir ?? (await mkdtemp(join(tmpdir(), "liaison-nats-")));
  try {
    for (let attempt = 1; ; attempt++) {
      const port = opts.port ?? (await freePort());
      const monitorPort = await freePort();
      try {
        return await launch(binary, storeDir, ownsStoreDir, port, monitorPort, opts);
      } catch (err) {
        // freePort() is racy: another process may take the port before nats-server binds it.
        if (err instanceof PortInUseError && attempt < MAX_START_ATTEMPTS) continue;
        throw err;
      }
    }
  } catch (err) {
    if (ownsStoreDir) await rm(storeDir, { recursive: true, force: true });
    throw err;
  }
}

async function launch(
  binary: string,
  storeDir: string,
  ownsStoreDir: boolean,
  port: number,
  monitorPort: number,
  opts: StartNatsServerOptions,
): Promise<NatsServerHandle> {
  const args = ["-a", "127.0.0.1", "-p", String(port), "-m", String(monitorPort)];
  if (opts.jetStream !== false) args.push("-js", "-sd", storeDir);
  if (opts.name !== undefined || opts.domain !== undefined || opts.config !== undefined) {
    // The command line sets address, ports and store; the file the rest. Next to the store, so
    // that a restart on the same store dir finds the same file.
    const lines = [
      ...(opts.name === undefined ? [] : [`server_name: ${JSON.stringify(opts.name)}`]),
      ...(opts.domain === undefined
        ? []
        : [`jetstream { domain: ${JSON.stringify(opts.domain)} }`]),
      opts.config ?? "",
    ];
    const file = join(storeDir, "nats-server.conf");
    writeFileSync(file, `${lines.join("\n")}\n`, { mode: 0o600 });
    args.push("-c", file);
  }
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
  const output = captureOutput(child);
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once("error", (error) => resolve({ code: null, signal: null, error }));
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
  const tracked: Tracked = { child, storeDir: ownsStoreDir ? storeDir : undefined };
  track(tracked);

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
        await exited;
        clearTimeout(timer);
      } else {
        await exited;
      }
      untrack(tracked);
      if (ownsStoreDir) await rm(storeDir, { recursive: true, force: true });
    })();
    return stopping;
  };

  const describe = (why: string): string =>
    `nats-server (${binary} ${args.join(" ")}) ${why}\n--- last output ---\n${output.tail()}`;

  const deadline = Date.now() + READY_TIMEOUT_MS;
  let exitInfo: ExitInfo | undefined;
  void exited.then((info) => {
    exitInfo = info;
  });
  for (;;) {
    if (exitInfo !== undefined) {
      untrack(tracked);
      throw startupFailure(exitInfo, describe, output.tail());
    }
    if (await healthy(monitorPort)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(describe(`was not ready within ${READY_TIMEOUT_MS} ms`));
    }
    await sleep(50);
  }

  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    pid: child.pid as number,
    storeDir,
    monitorUrl: `http://127.0.0.1:${monitorPort}`,
    stop,
  };
}

/** GET /healthz on the monitoring port; true on HTTP 200 (JetStream included). */
function healthy(monitorPort: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = httpGet(
      {
        host: "127.0.0.1",
        port: monitorPort,
        path: "/healthz?js-enabled-only=true",
        agent: false,
        timeout: 1000,
      },
      (res) => {
        res.resume();
        res.once("end", () => resolve(res.statusCode === 200));
        res.once("error", () => resolve(false));
      },
    );
    req.once("timeout", () => req.destroy(new Error("timeout")));
    req.once("error", () => resolve(false));
  });
}

// --- make sure no server outlives this process -------------------------------------------------

interface Tracked {
  child: ChildProcess;
  /** Set when the store dir is ours to delete. */
  storeDir: string | undefined;
}

const { track, untrack } = exitGuard<Tracked>(({ child, storeDir }) => {
  if (child.exitCode !== null || child.signalCode !== null) return;
  // A store dir we own is deleted anyway: no need for a graceful shutdown.
  child.kill(storeDir === undefined ? "SIGTERM" : "SIGKILL");
  if (storeDir !== undefined) rmSync(storeDir, { recursive: true, force: true, maxRetries: 3 });
});
