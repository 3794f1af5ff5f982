/** GET /v1/quarantine: inbound bytes that were not accepted, oldest first. */
import { ref } from "../api-schemas.ts";
import { cursorParam, decodeCursor, limitParam, nextCursor, pageSchema } from "../paging.ts";
import { problemResponses, STORE_UNAVAILABLE } from "../problem.ts";
import { defineRoute, jsonResponse } from "../route.ts";

export const listQuarantine = defineRoute({
  operationId: "listQuarantine",
  method: "get",
  path: "/v1/quarantine",
  auth: "user",
  tags: ["messages"],
  summary: "What was not accepted, oldest first",
  description:
    "Each byte string once (a redelivery of the same bytes adds no row), with the code and issues of its rejection, what it claimed to be, the digest and size of the exact bytes, and the negative receipt that answered it. The bytes themselves are not served.",
  request: { query: { limit: limitParam, cursor: cursorParam } },
  responses: {
    200: jsonResponse("A page of the quarantine.", pageSchema(ref("QuarantineItem"))),
    ...problemResponses({
      request_invalid: "limit or cursor is not valid",
      store_unavailable: STORE_UNAVAILABLE,
    }),
  },
  async handler(c, input, { deps }) {
    const limit = input.query.limit as number;
    const rows = await deps.queries.listQuarantine({
      after: decodeCursor(input.query.cursor),
      limit,
    });
    return c.json({
      items: rows.map((q) => ({
        seq: q.seq,
        receivedAt: q.receivedAt.toISOString(),
        subject: q.subject,
        code: q.code,
        detail: q.detail,
        issues: q.issues,
        kind: q.kind,
        claimedFrom: q.claimedFrom,
        messageId: q.messageId,
        digest: q.digest,
        bytes: q.raw.byteLength,
        receiptId: q.receiptId,
      })),
      nextCursor: nextCursor(rows, limit),
    });
  },
});
