import { CompactSign } from "jose";
import type { JwsTyp } from "./jws-profile.ts";
import type { SigningKey } from "./types.ts";

const encoder = new TextEncoder();

/** Signs a JSON payload as a compact JWS with `alg`, `kid` and `typ` in the protected header. */
export async function signCompact(payload: unknown, key: SigningKey, typ: JwsTyp): Promise<string> {
  return new CompactSign(encoder.encode(JSON.stringify(payload)))
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ })
    .sign(key.key);
}
