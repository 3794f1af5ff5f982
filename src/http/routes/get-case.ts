/** GET /v1/cases/:ref: one case, its deadlines, what may come next, and its timeline. */
import { LiaisonError } from "../../protocol/errors.ts";
import { CASE_DETAIL_SCHEMA, caseDetail } from "../case-view.ts";
import { problemResponses, STORE_UNAVAILABLE } from "../problem.ts";
import { defineRoute, jsonResponse } from "../route.ts";

export const CASE_REF_PARAM = {
  description: "The case reference.",
  schema: { type: "string", pattern: "^[A-Z]{2,3}-[A-Z0-9]+(?:-[A-Z0-9]+)*$", maxLength: 64 },
  invalid: { code: "not_found", detail: "no case with this reference" },
} as const;

export const getCase = defineRoute({
  operationId: "getCase",
  method: "get",
  path: "/v1/cases/:ref",
  auth: "user",
  tags: ["cases"],
  summary: "One case: state, deadlines, allowed next steps, timeline",
  description:
    "The case as the fold over its messages computes it (docs/cases.md): its state, who owes which step and by when (`awaiting`, `overdue`), the types this gateway may send now (`allowedNext`), and every message of the case in the fold's order with its outcome (`applied`; `superseded` by a message that crossed it; `refused`: one of ours the other party refused, never part of the case), its deliveries and receipts. Personal data is not here: see `GET /v1/cases/{ref}/personal-data`.",
  request: { params: { ref: CASE_REF_PARAM } },
  responses: {
    200: jsonResponse("The case.", CASE_DETAIL_SCHEMA),
    ...problemResponses({
      not_found: "no victim.identified opened a case with this reference",
      store_unavailable: STORE_UNAVAILABLE,
    }),
  },
  async handler(c, input, { deps }) {
    const file = await deps.caseFiles.read(input.params.ref ?? "");
    if (file === null) throw new LiaisonError("not_found", "no case with this reference");
    const timeline = await deps.queries.caseTimeline(file.messages.map((m) => m.message.id));
    return c.json(caseDetail(file, timeline, deps.self.id, deps.clock()));
  },
});
