/** GET /v1/alerts: failures an operator must see, newest first. */
import { ref } from "../api-schemas.ts";
import { cursorParam, decodeCursor, encodeCursor, limitParam, pageSchema } from "../paging.ts";
import { problemResponses, STORE_UNAVAILABLE } from "../problem.ts";
import { defineRoute, jsonResponse } from "../route.ts";

export const getAlerts = defineRoute({
  operationId: "listAlerts",
  method: "get",
  path: "/v1/alerts",
  auth: "user",
  tags: ["operations"],
  summary: "Alerts: partners whose deliveries fail, newest first",
  description:
    "One alert per episode: deliveries to a partner failed (no receipt within the retry budget, or the message expired), since `since`, until a later delivery to it got its receipt (`resolvedAt`). At most one active alert per kind and partner. The alert watch raises and resolves them every `LIAISON_ALERT_CHECK_SECONDS`. `active=true`: only active alerts; `active=false`: only resolved ones; absent: both. `nextCursor` is null on the last page.",
  request: {
    query: {
      active: {
        description: "`true`: only active alerts; `false`: only resolved ones; absent: both.",
        schema: { type: "string", enum: ["true", "false"] },
        invalid: {
          code: "request_invalid",
          detail: "active must be true or false",
          issue: "must be true or false",
        },
      },
      limit: limitParam,
      cursor: cursorParam,
    },
  },
  responses: {
    200: jsonResponse("A page of alerts.", pageSchema(ref("Alert"))),
    ...problemResponses({
      request_invalid: "active, limit or cursor is not valid",
      store_unavailable: STORE_UNAVAILABLE,
    }),
  },
  async handler(c, input, { deps }) {
    const limit = input.query.limit as number;
    const active = input.query.active;
    const rows = await deps.queries.listAlerts({
      active: active === undefined ? undefined : active === "true",
      before: decodeCursor(input.query.cursor),
      limit,
    });
    const last = rows.at(-1);
    return c.json({
      items: rows.map((a) => ({
        id: a.id,
        kind: a.kind,
        partner: a.partner,
        active: a.resolvedAt === null,
        since: a.since.toISOString(),
        lastFailureAt: a.lastFailureAt.toISOString(),
        count: a.count,
        resolvedAt: a.resolvedAt?.toISOString() ?? null,
      })),
      nextCursor: rows.length === limit && last !== undefined ? encodeCursor(last.id) : null,
    });
  },
});
