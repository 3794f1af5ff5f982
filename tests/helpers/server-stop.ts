/**
 * A PostgreSQL server that stops answering, as a hung server (stuck storage, a frozen machine)
 * does: its postmaster and every process it forked stopped with SIGSTOP. Its kernel still accepts
 * and acknowledges TCP, and keeps what clients send until the server, resumed with SIGCONT, reads
 * it. (tests/integration/database-hang.test.ts has the same two functions.)
 */
import { readdirSync, readFileSync } from "node:fs";

/** The postmaster of the cluster in `dataDir` (postmaster.pid's first line) and its children. */
export function serverProcesses(dataDir: string): number[] {
  const postmaster = Number(readFileSync(`${dataDir}/postmaster.pid`, "utf8").split("\n")[0]);
  const children: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // gone meanwhile
    }
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (ppid === postmaster) children.push(Number(entry));
  }
  return [postmaster, ...children];
}

/** SIGSTOP to the postmaster, then to its children (listed once it can fork no more). */
export function hangServer(dataDir: string): void {
  const [postmaster] = serverProcesses(dataDir);
  process.kill(postmaster as number, "SIGSTOP");
  for (const pid of serverProcesses(dataDir).slice(1)) {
    try {
      process.kill(pid, "SIGSTOP");
    } catch {
      // exited meanwhile
    }
  }
}

/** SIGCONT to every process of the cluster, children first. */
export function resumeServer(dataDir: string): void {
  for (const pid of serverProcesses(dataDir).reverse()) {
    try {
      process.kill(pid, "SIGCONT");
    } catch {
      // exited meanwhile
    }
  }
}
