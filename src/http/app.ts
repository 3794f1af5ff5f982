/**
 * The Hono application, assembled from the route declarations of routes/: each route gets the
 * auth its declaration names, its body limit, and its declared input checks (compiled once with
 * the schema registry's ajv); the same declarations make GET /openapi.json. Every error goes
 * through `onError` and leaves as problem+json.
 */
import { type Handler, Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { CaseFile } from "../cases/case-book.ts";
import { errorSummary } from "../delivery/error-summary.ts";
import type { CaseKeys, Clock, Idempotency } from "../delivery/ports.ts";
import type { SubmitRequest, Submitted } from "../delivery/submitter.ts";
import type { Logger } from "../observability/logger.ts";
import { LiaisonError } from "../protocol/errors.ts";
import type { Envelope, KeyRecord, PartyRecord } from "../protocol/types.ts";
import type { PartnerRegistry } from "../registry/partner-registry.ts";
import type { SchemaRegistry } from "../schemas/schema-registry.ts";
import { isStoreUnavailable } from "../store/database.ts";
import type { ReadQueries } from "../store/read-queries.ts";
import { bearerAuth } from "./auth.ts";
import { buildOpenApiDocument } from "./openapi.ts";
import { problem } from "./problem.ts";
import { compileInput } from "./request-input.ts";
import type { AuthLevel, RouteContext, RouteDeclaration } from "./route.ts";
import { ROUTES } from "./routes/index.ts";

export interface AppDeps {
  apiToken: string;
  /** Operator token for partner registration; undefined switches POST /v1/partners off. */
  adminToken: string | undefined;
  self: PartyRecord;
  /** Our own public keys, for /.well-known/jwks.json. */
  keyring: { publicKeys(): KeyRecord[] };
  queries: ReadQueries;
  registry: PartnerRegistry;
  submitter: {
    submit(request: SubmitRequest): Promise<Envelope>;
    /** A submit with an Idempotency-Key (Submitter.submitWithKey). */
    submitWithKey(request: SubmitRequest, idempotency: Idempotency): Promise<Submitted>;
  };
  readiness: { isReady(): Promise<boolean> };
  /** Route request schemas are compiled with schemas.compile(): the one ajv instance. */
  schemas: SchemaRegistry;
  maxRequestBytes: number;
  log: Logger;
  /** Victims' cases, read through the fold. */
  caseFiles: { read(caseRef: string): Promise<CaseFile | null> };
  /** Our decryption keys, for the personal-data route. */
  caseKeys: Pick<CaseKeys, "decryptionKeys">;
  clock: Clock;
  /** GET /metrics. */
  metrics: { render(): Promise<{ contentType: string; text: string }> };
}

export function createApp(deps: AppDeps, routes: readonly RouteDeclaration[] = ROUTES): Hono {
  const app = new Hono();

  app.onError((err, c) => {
    if (err instanceof LiaisonError) return problem(c, err.code, err.message, err.issues);
    if (isStoreUnavailable(err)) {
      // Transient: the pool reconnects by itself once the database answers again.
      deps.log.warn({ err: errorSummary(err), path: c.req.path }, "database unavailable");
      return problem(
        c,
        "store_unavailable",
        "the database cannot be reached right now; try again after Retry-After seconds",
      );
    }
    deps.log.error({ err: err.name, path: c.req.path }, "unhandled error in HTTP route");
    return problem(c, "internal", "an internal error occurred; see the gateway's log");
  });
  app.notFound((c) => problem(c, "not_found", "no such route"));

  // Local users hold the API token; registering partners (whose keys we then trust and whose
  // subjects receive our messages) needs the operator's admin token.
  const auth: Record<AuthLevel, Handler[]> = {
    none: [],
    user: [bearerAuth(deps.apiToken)],
    admin: [
      bearerAuth(
        deps.adminToken,
        deps.adminToken === undefined
          ? "partner registration over HTTP is off: set LIAISON_ADMIN_TOKEN, or use liaison partners add"
          : "the admin bearer token is required",
      ),
    ],
  };

  // Built at start: a declaration the document cannot describe stops the gateway, not a request.
  const document = buildOpenApiDocument(routes, deps.schemas.documents());
  const context: RouteContext = { deps, openapi: () => document };

  for (const route of routes) {
    const middleware: Handler[] = [...auth[route.auth]];
    const body = route.request?.body;
    if (body !== undefined) {
      const maxSize = body.maxBytes(deps);
      middleware.push(
        bodyLimit({
          maxSize,
          onError: () => {
            throw new LiaisonError("payload_too_large", body.tooLarge(maxSize));
          },
        }),
      );
    }
    const readInput = compileInput(route, deps.schemas);
    const handler: Handler = async (c) => route.handler(c, await readInput(c), context);
    const [first = handler, ...rest] = [...middleware, handler];
    app.on(route.method.toUpperCase(), route.path, first, ...rest);
  }
  return app;
}
