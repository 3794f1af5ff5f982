/** GET /v1/messages/:id: one message with its deliveries and receipts. */
import { LiaisonError } from "../../protocol/errors.ts";
import { ref } from "../api-schemas.ts";
import { messageDetail } from "../message-view.ts";
import { problemResponses, STORE_UNAVAILABLE } from "../problem.ts";
import { defineRoute, jsonResponse } from "../route.ts";

const NOT_FOUND = "no message with this id";

export const getMessage = defineRoute({
  operationId: "getMessage",
  method: "get",
  path: "/v1/messages/:id",
  auth: "user",
  tags: ["messages"],
  summary: "One message, with its deliveries and receipts",
  description:
    "Message ids are unique per sender only: when several messages in the log have this id (one of ours and a partner's, or two partners' messages), the answer shows our outbound message if there is one, otherwise the inbound message logged first; `GET /v1/messages` lists them all. Outbound: `status` is the least advanced delivery, `deliveries` one per recipient and `receipts` the partners' receipts naming this message's digest. Inbound: `status` is `accepted`, `deliveries` is empty and `receipts` lists every receipt we issued that names this id, oldest first: receipts for copies under another signature encoding, negative receipts for rejected bytes claiming this id (e.g. `duplicate_conflict`), and receipts for another sender's message with the same id (compare `to` and `messageDigest`).",
  request: {
    params: {
      id: {
        description: "The message's UUID, in any case.",
        schema: {
          type: "string",
          pattern: "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        },
        invalid: { code: "not_found", detail: NOT_FOUND },
      },
    },
  },
  responses: {
    200: jsonResponse("The message.", ref("MessageDetail")),
    ...problemResponses({
      not_found: "the id is not a UUID, or no message in the log has it",
      store_unavailable: STORE_UNAVAILABLE,
    }),
  },
  async handler(c, input, { deps }) {
    const found = await deps.queries.getMessage((input.params.id ?? "").toLowerCase());
    if (found === undefined) throw new LiaisonError("not_found", NOT_FOUND);
    return c.json(messageDetail(found));
  },
});
