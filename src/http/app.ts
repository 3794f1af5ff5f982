/**
 * The Hono application: local users submit and follow messages; partners fetch our public keys.
 * Routes are thin: they parse, call the delivery layer, and shape the answer. Every error goes
 * through `onError` and leaves as problem+json.
 */
import { readFileSync } from "node:fs";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { SubmitRequest } from "../delivery/submit-message.ts";
import type { Logger } from "../observability/logger.ts";
import { LiaisonError } from "../protocol/errors.ts";
import type { Envelope } from "../protocol/types.ts";
import type { PartnerRegistry } from "../registry/partner-registry.ts";
import { buildPartyDocument, parsePartyDocument } from "../registry/party-document.ts";
import type { KeyRecord, MessageRow, MessageStore, PartyRecord } from "../store/message-store.ts";
import { bearerAuth } from "./auth.ts";
import { ERRORS_DOC, problem } from "./problem.ts";
import { parseSubmitRequest } from "./submit-request.ts";

export interface AppDeps {
  apiToken: string;
  /** Operator token for partner registration; undefined switches POST /v1/partners off. */
  adminToken: string | undefined;
  self: PartyRecord;
  ownKeys: () => KeyRecord[];
  store: MessageStore;
  registry: PartnerRegistry;
  submit: (request: SubmitRequest) => Promise<Envelope>;
  ready: () => Promise<boolean>;
  maxRequestBytes: number;
  log: Logger;
}

const MAX_PAGE = 200;

const errorsDoc = readFileSync(new URL("../../docs/errors.md", import.meta.url), "utf8");

export function createApp(deps: AppDeps): Hono {
  const app = new Hono();

  app.onError((err, c) => {
    if (err instanceof LiaisonError) return problem(c, err.code, err.message, err.issues);
    deps.log.error({ err: err.name, path: c.req.path }, "unhandled error in HTTP route");
    return problem(c, "internal", "an internal error occurred; see the gateway's log");
  });
  app.notFound((c) => problem(c, "not_found", "no such route"));

  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/readyz", async (c) =>
    (await deps.ready())
      ? c.json({ status: "ready" })
      : problem(c, "not_ready", "database or NATS not reachable, or no signing key valid now"),
  );
  app.get(ERRORS_DOC, (c) =>
    c.body(errorsDoc, 200, { "content-type": "text/markdown; charset=utf-8" }),
  );
  app.get("/.well-known/jwks.json", (c) => c.json(buildPartyDocument(deps.self, deps.ownKeys())));

  const api = new Hono();
  // Local users hold the API token; registering partners (whose keys we then trust and whose
  // subjects receive our messages) needs the operator's admin token.
  const user = bearerAuth(deps.apiToken);
  const admin = bearerAuth(
    deps.adminToken,
    deps.adminToken === undefined
      ? "partner registration over HTTP is off: set LIAISON_ADMIN_TOKEN, or use liaison partners add"
      : "the admin bearer token is required",
  );

  api.post(
    "/messages",
    user,
    bodyLimit({
      maxSize: deps.maxRequestBytes,
      onError: () => {
        throw new LiaisonError(
          "payload_too_large",
          `request body exceeds ${deps.maxRequestBytes} bytes`,
        );
      },
    }),
    async (c) => {
      if (!(c.req.header("content-type") ?? "").startsWith("application/json")) {
        throw new LiaisonError("request_invalid", "content-type must be application/json");
      }
      let json: unknown;
      try {
        json = await c.req.json();
      } catch {
        throw new LiaisonError("request_invalid", "the request body is not JSON");
      }
      const envelope = await deps.submit(parseSubmitRequest(json));
      const statusUrl = `/v1/messages/${envelope.id}`;
      c.header("location", statusUrl);
      return c.json(
        {
          id: envelope.id,
          status: "queued",
          statusUrl,
          sentAt: envelope.sentAt,
          expiresAt: envelope.expiresAt,
        },
        202,
      );
    },
  );

  api.get("/messages/:id", user, async (c) => {
    const id = c.req.param("id").toLowerCase();
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id)) {
      throw new LiaisonError("not_found", "no message with this id");
    }
    const found = await deps.store.getMessage(id);
    if (found === undefined) throw new LiaisonError("not_found", "no message with this id");
    const { message } = found;
    return c.json({
      ...summary(message),
      status:
        message.direction === "outbound"
          ? overallStatus(found.deliveries.map((d) => d.status))
          : "accepted",
      deliveries: found.deliveries.map((d) => ({
        recipient: d.recipient,
        status: d.status,
        attempts: d.attempts,
        lastError: d.lastError,
        receiptId: d.receiptId,
        updatedAt: d.updatedAt.toISOString(),
      })),
      receipts: found.receipts.map((r) => ({
        id: r.id,
        from: r.fromParty,
        to: r.toParty,
        status: r.status,
        errors: r.errors,
        jws: r.jws,
        digest: r.digest,
        messageDigest: r.messageDigest,
      })),
      jws: message.jws,
      digest: message.digest,
    });
  });

  api.get("/messages", user, async (c) => {
    const direction = c.req.query("direction") ?? "inbound";
    if (direction !== "inbound" && direction !== "outbound") {
      throw new LiaisonError("request_invalid", "direction must be inbound or outbound", {
        issues: [{ path: "direction", message: "must be inbound or outbound" }],
      });
    }
    const limit = pageLimit(c.req.query("limit"));
    const before = cursor(c.req.query("cursor"));
    const rows = await deps.store.listMessages({ direction, before, limit });
    const last = rows.at(-1);
    return c.json({
      items: rows.map(summary),
      nextCursor: rows.length === limit && last !== undefined ? encodeCursor(last.seq) : null,
    });
  });

  api.get("/quarantine", user, async (c) => {
    const limit = pageLimit(c.req.query("limit"));
    const after = cursor(c.req.query("cursor"));
    const rows = await deps.store.listQuarantine({ after, limit });
    const last = rows.at(-1);
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
      nextCursor: rows.length === limit && last !== undefined ? encodeCursor(last.seq) : null,
    });
  });

  api.get("/partners", user, (c) => c.json({ items: deps.registry.listParties() }));

  // Registers or updates a partner from its party document (the JWKS it publishes), at run time.
  api.post(
    "/partners",
    admin,
    bodyLimit({
      maxSize: 64 * 1024,
      onError: () => {
        throw new LiaisonError("payload_too_large", "a party document is at most 64 KiB");
      },
    }),
    async (c) => {
      let json: unknown;
      try {
        json = await c.req.json();
      } catch {
        throw new LiaisonError("request_invalid", "the request body is not JSON");
      }
      const { party, keys } = await parsePartyDocument(json);
      if (party.id === deps.self.id) {
        throw new LiaisonError(
          "request_invalid",
          "this gateway's own keys come from its key directory",
        );
      }
      await deps.registry.add(party, keys);
      deps.log.info({ partyId: party.id, keys: keys.length }, "partner registered");
      return c.json({ party, kids: keys.map((k) => k.kid) }, 201);
    },
  );

  app.route("/v1", api);
  return app;
}

function summary(m: MessageRow) {
  return {
    id: m.id,
    direction: m.direction,
    type: m.type,
    schemaVersion: m.schemaVersion,
    from: m.fromParty,
    to: m.toParties,
    caseRef: m.caseRef,
    inReplyTo: m.inReplyTo,
    sentAt: m.sentAt.toISOString(),
    expiresAt: m.expiresAt.toISOString(),
    classification: m.classification,
    loggedAt: m.loggedAt.toISOString(),
  };
}

/** One status for a message to several recipients: the least advanced delivery decides. */
export function overallStatus(statuses: string[]): string {
  for (const s of ["queued", "sent", "failed", "rejected"]) if (statuses.includes(s)) return s;
  return statuses.length === 0 ? "queued" : "delivered";
}

function pageLimit(raw: string | undefined): number {
  if (raw === undefined) return 50;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > MAX_PAGE) {
    throw new LiaisonError("request_invalid", `limit must be an integer from 1 to ${MAX_PAGE}`, {
      issues: [{ path: "limit", message: `must be 1..${MAX_PAGE}` }],
    });
  }
  return n;
}

function encodeCursor(seq: number): string {
  return Buffer.from(String(seq)).toString("base64url");
}

function cursor(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const decoded = /^[A-Za-z0-9_-]{1,24}$/.test(raw) ? Buffer.from(raw, "base64url").toString() : "";
  const n = /^\d{1,15}$/.test(decoded) ? Number(decoded) : Number.NaN;
  if (!Number.isSafeInteger(n)) {
    throw new LiaisonError("request_invalid", "cursor is not valid", {
      issues: [{ path: "cursor", message: "is not a cursor from a previous page" }],
    });
  }
  return n;
}
