import { createServer } from "node:net";

/**
 * Asks the kernel for a currently unused TCP port on 127.0.0.1.
 *
 * The port is released before this resolves, so another process could grab it in between;
 * callers that spawn servers should be ready to retry on "address already in use".
 */
export async function freePort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        server.close();
        reject(new Error(`freePort: unexpected server address ${String(address)}`));
        return;
      }
      const { port } = address;
      server.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}
