/** Error text for logs and last_error: the error's class and message, which never carry bodies. */
export function errorSummary(err: unknown): string {
  // A failed query's own message quotes its SQL and parameters (signed messages, raw bytes):
  // only the innermost cause, the driver's error, is summarised.
  let inner = err;
  while (inner instanceof Error && inner.cause instanceof Error) inner = inner.cause;
  if (inner instanceof Error) {
    const code = (inner as { code?: unknown }).code;
    return `${inner.name}${typeof code === "string" ? ` ${code}` : ""}: ${inner.message}`.slice(
      0,
      300,
    );
  }
  return String(inner).slice(0, 300);
}
