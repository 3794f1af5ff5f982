/** GET /v1/cases: the victims' cases this gateway is a party to, by reference. */
import { CASE_STATES } from "../../cases/case-types.ts";
import { PARTY_ID_PATTERN } from "../../protocol/identifiers.ts";
import { CASE_SUMMARY_SCHEMA, caseSummary } from "../case-view.ts";
import { limitParam } from "../paging.ts";
import { problemResponses, STORE_UNAVAILABLE } from "../problem.ts";
import { defineRoute, jsonResponse } from "../route.ts";

const CURSOR = "^[A-Za-z0-9_-]{1,100}$";

export const listCases = defineRoute({
  operationId: "listCases",
  method: "get",
  path: "/v1/cases",
  auth: "user",
  tags: ["cases"],
  summary: "Victims' cases, by reference",
  description:
    "Each case's state, who owes which step and by when (see docs/cases.md). Filters combine: `state`, `party` (a party of the case), `overdue=true` (a deadline has passed). No personal data. `nextCursor` is null on the last page.",
  request: {
    query: {
      state: {
        description: "Only cases in this state.",
        schema: { type: "string", enum: [...CASE_STATES] },
        invalid: {
          code: "request_invalid",
          detail: "state is not a case state",
          issue: "is not a case state",
        },
      },
      party: {
        description: "Only cases this party is a party of.",
        schema: { type: "string", pattern: PARTY_ID_PATTERN },
        invalid: {
          code: "request_invalid",
          detail: "party is not a party id",
          issue: "is not a party id",
        },
      },
      overdue: {
        description: "`true`: only cases with a step overdue now.",
        schema: { type: "string", enum: ["true", "false"], default: "false" },
        invalid: {
          code: "request_invalid",
          detail: "overdue must be true or false",
          issue: "must be true or false",
        },
      },
      limit: limitParam,
      cursor: {
        description: "`nextCursor` of the previous page; absent for the first page.",
        schema: { type: "string", pattern: CURSOR },
        invalid: {
          code: "request_invalid",
          detail: "cursor is not valid",
          issue: "is not a cursor from a previous page",
        },
      },
    },
  },
  responses: {
    200: jsonResponse("A page of cases.", {
      type: "object",
      additionalProperties: false,
      required: ["items", "nextCursor"],
      properties: {
        items: { type: "array", items: CASE_SUMMARY_SCHEMA },
        nextCursor: { type: ["string", "null"], pattern: CURSOR },
      },
    }),
    ...problemResponses({
      request_invalid: "a filter, limit or cursor is not valid",
      store_unavailable: STORE_UNAVAILABLE,
    }),
  },
  async handler(c, input, { deps }) {
    const limit = input.query.limit as number;
    const now = deps.clock();
    const cursor = input.query.cursor as string | undefined;
    const rows = await deps.queries.listCases({
      state: input.query.state as string | undefined,
      party: input.query.party as string | undefined,
      overdueAt: input.query.overdue === "true" ? now : undefined,
      after: cursor === undefined ? undefined : Buffer.from(cursor, "base64url").toString(),
      limit,
    });
    const last = rows.at(-1);
    return c.json({
      items: rows.map((row) => caseSummary(row, now)),
      nextCursor:
        rows.length === limit && last !== undefined
          ? Buffer.from(last.caseRef).toString("base64url")
          : null,
    });
  },
});
