import { readFileSync } from "node:fs";
import { createServer } from "node:net";

/** The lowest port the kernel gives outgoing connections (Linux), or undefined elsewhere. */
function ephemeralFloor(): number | undefined {
  try {
    const [low] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8")
      .trim()
      .split(/\s+/);
    const floor = Number(low);
    return Number.isInteger(floor) && floor > 0 ? floor : undefined;
  } catch {
    return undefined;
  }
}

/** Ports below this are never picked (well-known ports and the usual services' ones). */
const LOWEST = 10_000;

/**
 * A TCP port on 127.0.0.1 unused right now.
 *
 * It is picked at random below the kernel's ephemeral range where there is room: a port from
 * that range, released, can be given at once to any process's next outgoing connection as its
 * local port, and a server started on it then fails with "address already in use" (seen in the
 * fault suite). Below the range only another listener picking the same port can take it. The
 * port is still released before this resolves, so callers that spawn servers should be ready to
 * retry on "address already in use".
 */
export async function freePort(): Promise<number> {
  const floor = ephemeralFloor();
  if (floor !== undefined && floor - LOWEST >= 1_000) {
    for (let attempt = 0; attempt < 20; attempt++) {
      const port = LOWEST + Math.floor(Math.random() * (floor - LOWEST));
      if (await bindable(port)) return port;
    }
  }
  return bindAndRelease(0);
}

async function bindable(port: number): Promise<boolean> {
  try {
    return (await bindAndRelease(port)) === port;
  } catch {
    return false;
  }
}

function bindAndRelease(port: number): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        server.close();
        reject(new Error(`freePort: unexpected server address ${String(address)}`));
        return;
      }
      const bound = address.port;
      server.close((err) => (err ? reject(err) : resolve(bound)));
    });
  });
}
