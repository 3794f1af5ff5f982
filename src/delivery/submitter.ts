/**
 * The outbound path up to the outbox: a local user's request is checked (type known, body valid
 * against its schema, recipients registered), enveloped, held to the limits a partner's gateway
 * applies to what it receives, signed, and logged together with one outbox row per recipient in
 * a single transaction (group-committed with concurrent submits). The dispatcher takes it from
 * there.
 */
import { buildEnvelope } from "../protocol/build-envelope.ts";
import { sha256Hex } from "../protocol/digest.ts";
import { LiaisonError } from "../protocol/errors.ts";
import { checkJsonValue, MAX_JSON_DEPTH } from "../protocol/json-limits.ts";
import { MESSAGE_TYP } from "../protocol/jws-profile.ts";
import type { Envelope, Handling, PartyId } from "../protocol/types.ts";
import { type SchemaRegistry, underBody } from "../schemas/schema-registry.ts";
import { GroupCommit } from "./group-commit.ts";
import type { Clock, IdSource, SignedMessage, Signer, Store } from "./ports.ts";
import type { WakeSignal } from "./wake-signal.ts";

export interface SubmitRequest {
  type: string;
  schemaVersion?: number | undefined;
  to: PartyId | PartyId[];
  caseRef: string;
  inReplyTo?: string | undefined;
  handling?: Handling | undefined;
  body: Record<string, unknown>;
}

export interface SubmitterDeps {
  self: PartyId;
  store: Store;
  /** Who may be addressed: the partner registry. */
  recipients: { hasParty(partyId: PartyId): boolean };
  schemas: SchemaRegistry;
  signer: Signer;
  clock: Clock;
  ids: IdSource;
  /** expiresAt = sentAt + ttlMs. */
  ttlMs: number;
  /** The largest signed message a recipient accepts (LIAISON_MAX_MESSAGE_BYTES). */
  maxMessageBytes: number;
  /** Raised when a message is in the outbox, so the dispatcher publishes it now. */
  wake: WakeSignal;
}

export const DEFAULT_HANDLING: Handling = {
  classification: "restricted",
  onwardDissemination: "forbidden",
};

export class Submitter {
  private readonly commits: GroupCommit<SignedMessage>;

  constructor(private readonly deps: SubmitterDeps) {
    // The log rows and their outbox rows: one transaction per group (outbound.insert opens it).
    this.commits = new GroupCommit((group) => deps.store.outbound.insert(group));
  }

  async submit(request: SubmitRequest): Promise<Envelope> {
    const { deps } = this;
    const schemaVersion = request.schemaVersion ?? latestVersion(deps.schemas, request.type);
    if (schemaVersion === undefined || !deps.schemas.hasType(request.type, schemaVersion)) {
      throw new LiaisonError("type_unknown", `message type ${request.type} is not supported`);
    }
    const body = deps.schemas.validateBody(request.type, schemaVersion, request.body);
    if (body === undefined || !body.ok) {
      throw new LiaisonError(
        "schema_invalid",
        `body does not match ${request.type} v${schemaVersion}`,
        { issues: body?.ok === false ? underBody(body.issues) : [] },
      );
    }
    const to = [...new Set(Array.isArray(request.to) ? request.to : [request.to])];
    for (const [i, recipient] of to.entries()) {
      if (recipient === deps.self) {
        throw new LiaisonError(
          "request_invalid",
          "a message cannot be addressed to this gateway itself",
          { issues: [{ path: `/to/${i}`, message: "is this gateway's own party id" }] },
        );
      }
      if (!deps.recipients.hasParty(recipient)) {
        throw new LiaisonError("recipient_unknown", "a recipient is not a registered partner", {
          issues: [{ path: `/to/${i}`, message: "is not in the partner registry" }],
        });
      }
    }
    const envelope = buildEnvelope(
      {
        type: request.type,
        schemaVersion,
        to,
        caseRef: request.caseRef,
        inReplyTo: request.inReplyTo,
        handling: request.handling ?? DEFAULT_HANDLING,
        body: request.body,
      },
      { self: deps.self, clock: deps.clock, ids: deps.ids, ttlMs: deps.ttlMs },
    );
    const shape = deps.schemas.validateEnvelope(envelope);
    if (!shape.ok) {
      throw new LiaisonError("request_invalid", "the request does not make a valid envelope", {
        issues: shape.issues,
      });
    }
    // What a partner running this version would refuse as malformed (verifyInbound), refused
    // before it is signed. Only the body can hold such strings (every other member is held to a
    // pattern), and it passed its schema, whose objects are closed: the pointer names schema
    // members and array indexes, never submitted text.
    const limits = checkJsonValue(envelope, MAX_JSON_DEPTH);
    if (limits !== null) {
      throw new LiaisonError(
        "schema_invalid",
        limits.kind === "depth"
          ? `the message would nest deeper than ${MAX_JSON_DEPTH} levels, which partners refuse`
          : "a string holds U+0000 or a lone surrogate, which partners refuse",
        { issues: [{ path: limits.path, message: limits.message }] },
      );
    }
    const { jws, kid } = await deps.signer.sign(envelope, MESSAGE_TYP);
    // The limit partners apply is on the signed bytes, which base64url makes a third larger than
    // the request: refuse here what no recipient would accept.
    if (Buffer.byteLength(jws) > deps.maxMessageBytes) {
      throw new LiaisonError(
        "payload_too_large",
        `the signed message would exceed ${deps.maxMessageBytes} bytes, the largest partners accept`,
      );
    }
    await this.commits.add({ envelope, jws, digest: sha256Hex(jws), kid });
    deps.wake.raise();
    return envelope;
  }
}

function latestVersion(schemas: SchemaRegistry, type: string): number | undefined {
  const versions = schemas
    .types()
    .filter((t) => t.type === type)
    .map((t) => t.schemaVersion);
  return versions.length === 0 ? undefined : Math.max(...versions);
}
