/**
 * How the `liaison` command and `npm start` end on an error they can name: `liaison: <code>:
 * <message>` on stderr and exit status 2. Anything else is a bug: its stack on stderr and exit
 * status 1.
 */
import { LiaisonError } from "../protocol/errors.ts";

export function reportFailure(err: unknown): never {
  if (err instanceof LiaisonError) {
    console.error(`liaison: ${err.code}: ${err.message}`);
    process.exit(2);
  }
  // node:util parseArgs: an unknown option, a missing or ambiguous value.
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && code.startsWith("ERR_PARSE_ARGS")) {
    console.error(`liaison: request_invalid: ${(err as Error).message.split("\n")[0]}`);
    process.exit(2);
  }
  // Not thrown on for Node to print: Node prints an uncaught error's own properties too, and one
  // may hold a secret (Node's URL errors keep the whole input, a password included). The stack
  // names the error and where it came from.
  console.error(err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : String(err));
  process.exit(1);
}
