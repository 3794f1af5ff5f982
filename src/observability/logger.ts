/**
 * Structured JSON logs (pino), one event per line. Log calls pass identifiers and codes only
 * (message id, case reference, party, code); bodies, JWS text and raw bytes are never logged,
 * and the redaction list is a second line of defence should one slip into a log call.
 */
import { type DestinationStream, type Logger, pino } from "pino";

export type { Logger };

export const REDACTED_PATHS = [
  "body",
  "*.body",
  "jws",
  "*.jws",
  "raw",
  "*.raw",
  "payload",
  "*.payload",
  "token",
  "*.token",
  "authorization",
  "*.authorization",
  "personalData",
  "*.personalData",
  "handoverRecord",
  "*.handoverRecord",
  "record",
  "*.record",
  "content",
  "*.content",
];

export function createLogger(
  level: string,
  bindings: Record<string, string> = {},
  destination?: DestinationStream,
): Logger {
  const options = {
    level,
    base: bindings,
    redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}
