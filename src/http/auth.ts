import { timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { LiaisonError } from "../protocol/errors.ts";

/**
 * `Authorization: <scheme> 1*SP <credentials>` (RFC 9110 §11.4): the scheme is a token,
 * compared case-insensitively (§11.1), so `Bearer`, `bearer` and `BEARER` are one scheme.
 */
const CREDENTIALS = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) +(.*)$/s;

/** The token of a Bearer `Authorization` value; "" when the value is anything else. */
export function bearerToken(header: string): string {
  const match = CREDENTIALS.exec(header);
  return match !== null && match[1]?.toLowerCase() === "bearer" ? (match[2] ?? "") : "";
}

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
    const presented = Buffer.from(bearerToken(c.req.header("authorization") ?? ""));
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
