/**
 * Keyset paging for the list routes: a page of `limit` items and an opaque `nextCursor` (the
 * base64url of the last item's sequence number), null on the last page.
 */
import { LiaisonError } from "../protocol/errors.ts";
import type { JsonSchema, ParamDeclaration } from "./route.ts";

export const MAX_PAGE = 200;
export const DEFAULT_PAGE = 50;

const CURSOR_INVALID = {
  code: "request_invalid",
  detail: "cursor is not valid",
  issue: "is not a cursor from a previous page",
} as const;

export const limitParam: ParamDeclaration = {
  description: `Page size, 1 to ${MAX_PAGE}.`,
  schema: { type: "integer", minimum: 1, maximum: MAX_PAGE, default: DEFAULT_PAGE },
  invalid: {
    code: "request_invalid",
    detail: `limit must be an integer from 1 to ${MAX_PAGE}`,
    issue: `must be 1..${MAX_PAGE}`,
  },
};

export const cursorParam: ParamDeclaration = {
  description: "`nextCursor` of the previous page; absent for the first page.",
  schema: { type: "string", pattern: "^[A-Za-z0-9_-]{1,24}$" },
  invalid: CURSOR_INVALID,
};

/** `{items, nextCursor}` with items of `item`. */
export function pageSchema(item: JsonSchema): JsonSchema {
  return {
    type: "object",
    additionalProperties: false,
    required: ["items", "nextCursor"],
    properties: {
      items: { type: "array", items: item },
      nextCursor: {
        description: "Pass as `cursor` for the next page; null on the last page.",
        type: ["string", "null"],
        pattern: "^[A-Za-z0-9_-]{1,24}$",
      },
    },
  };
}

export function encodeCursor(seq: number): string {
  return Buffer.from(String(seq)).toString("base64url");
}

/** The sequence number in a cursor that passed `cursorParam`'s schema; undefined when absent. */
export function decodeCursor(raw: string | number | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const decoded = Buffer.from(String(raw), "base64url").toString();
  const n = /^\d{1,15}$/.test(decoded) ? Number(decoded) : Number.NaN;
  if (!Number.isSafeInteger(n)) {
    throw new LiaisonError(CURSOR_INVALID.code, CURSOR_INVALID.detail, {
      issues: [{ path: "cursor", message: CURSOR_INVALID.issue }],
    });
  }
  return n;
}

/** The cursor of the page after `rows`: null when the page is not full. */
export function nextCursor(rows: Array<{ seq: number }>, limit: number): string | null {
  const last = rows.at(-1);
  return rows.length === limit && last !== undefined ? encodeCursor(last.seq) : null;
}
