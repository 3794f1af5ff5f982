/** GET /v1/messages: the log, one direction, newest first. */
import { ref } from "../api-schemas.ts";
import { messageSummary } from "../message-view.ts";
import { cursorParam, decodeCursor, limitParam, nextCursor, pageSchema } from "../paging.ts";
import { problemResponses, STORE_UNAVAILABLE } from "../problem.ts";
import { defineRoute, jsonResponse } from "../route.ts";

export const listMessages = defineRoute({
  operationId: "listMessages",
  method: "get",
  path: "/v1/messages",
  auth: "user",
  tags: ["messages"],
  summary: "The message log, newest first",
  description:
    "One direction of the log, newest first; each item has the members of `GET /v1/messages/{id}` from `id` to `loggedAt`. `nextCursor` is null on the last page.",
  request: {
    query: {
      direction: {
        description: "`inbound` (received) or `outbound` (sent).",
        schema: { type: "string", enum: ["inbound", "outbound"], default: "inbound" },
        invalid: {
          code: "request_invalid",
          detail: "direction must be inbound or outbound",
          issue: "must be inbound or outbound",
        },
      },
      limit: limitParam,
      cursor: cursorParam,
    },
  },
  responses: {
    200: jsonResponse("A page of the log.", pageSchema(ref("MessageSummary"))),
    ...problemResponses({
      request_invalid: "direction, limit or cursor is not valid",
      store_unavailable: STORE_UNAVAILABLE,
    }),
  },
  async handler(c, input, { deps }) {
    const limit = input.query.limit as number;
    const rows = await deps.queries.listMessages({
      direction: input.query.direction as "inbound" | "outbound",
      before: decodeCursor(input.query.cursor),
      limit,
    });
    return c.json({ items: rows.map(messageSummary), nextCursor: nextCursor(rows, limit) });
  },
});
