/**
 * GET /metrics: the gateway's metrics in the Prometheus text format (src/observability/metrics.ts).
 * Behind the API token (Prometheus sends it with `authorization: {type: Bearer, credentials}`):
 * the figures name partners and volumes, which are nobody else's business.
 */
import { problemResponses, STORE_UNAVAILABLE } from "../problem.ts";
import { defineRoute } from "../route.ts";

export const getMetrics = defineRoute({
  operationId: "getMetrics",
  method: "get",
  path: "/metrics",
  auth: "user",
  tags: ["operations"],
  summary: "Metrics, Prometheus text format",
  description:
    "Deliveries by status and partner, the outboxes' depth and oldest age, quarantine by code, receipts, cases by state and overdue, the inbound consumer's backlog, keys' remaining validity, and latency histograms: end to end (sentAt to the partner's receipt) and by stage (inbound batch, publish). Labels are party ids, kids, statuses, kinds and codes: never content. See docs/operations.md.",
  responses: {
    200: {
      description: "The Prometheus text exposition format, version 0.0.4.",
      contentType: "text/plain",
    },
    ...problemResponses({ store_unavailable: STORE_UNAVAILABLE }),
  },
  async handler(c, _input, { deps }) {
    const { contentType, text } = await deps.metrics.render();
    return c.body(text, 200, { "content-type": contentType });
  },
});
