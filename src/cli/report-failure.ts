/**
 * How the `liaison` command and `npm start` end on an error they can name: `liaison: <code>:
 * <message>` on stderr and exit status 2. Anything else is rethrown (a bug: Node prints it).
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
  throw err;
}
