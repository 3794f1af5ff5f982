import { timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { LiaisonError } from "../protocol/errors.ts";

/** Bearer-token authentication for local users; the token is compared in constant time. */
export function bearerAuth(token: string): MiddlewareHandler {
  const expected = Buffer.from(token);
  return async (c, next) => {
    const header = c.req.header("authorization") ?? "";
    const presented = Buffer.from(header.startsWith("Bearer ") ? header.slice(7) : "");
    if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) {
      throw new LiaisonError("unauthorized", "a valid bearer token is required");
    }
    await next();
  };
}
