import { timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { LiaisonError } from "../protocol/errors.ts";

/**
 * Bearer-token authentication; the token is compared in constant time. `token` undefined means
 * the routes behind it are switched off by configuration: every call is refused with `why`.
 */
export function bearerAuth(
  token: string | undefined,
  why = "a valid bearer token is required",
): MiddlewareHandler {
  const expected = token === undefined ? undefined : Buffer.from(token);
  return async (c, next) => {
    const header = c.req.header("authorization") ?? "";
    const presented = Buffer.from(header.startsWith("Bearer ") ? header.slice(7) : "");
    if (
      expected === undefined ||
      presented.length !== expected.length ||
      !timingSafeEqual(presented, expected)
    ) {
      throw new LiaisonError("unauthorized", why);
    }
    await next();
  };
}
