/**
 * The outbound path up to the outbox: a local user's request is checked (type known, body valid
 * against its schema, recipients registered), enveloped, held to the limits a partner's gateway
 * applies to what it receives, signed, and logged together with one outbox row per recipient in
 * a single transaction (group-committed with concurrent submits). The dispatcher takes it from
 * there.
 *
 * Steps of a victim's case take a path of their own: personal data submitted in clear is
 * validated and encrypted to every addressee and to ourselves (it is never signed or stored in
 * clear); a handover record is signed (or countersigned) with our key; and the message log
 * rows, the outbox rows and the case update commit in one transaction, after the case admitted
 * the step (409 otherwise).
 */
import type { CaseBook } from "../cases/case-book.ts";
import { isCaseType, REMINDER_TYPE } from "../cases/case-types.ts";
import { caseMessageKey } from "../cases/fold-case.ts";
import { buildEnvelope } from "../protocol/build-envelope.ts";
import { sha256Hex } from "../protocol/digest.ts";
import { LiaisonError } from "../protocol/errors.ts";
import { checkJsonValue, MAX_JSON_DEPTH } from "../protocol/json-limits.ts";
import { MESSAGE_TYP } from "../protocol/jws-profile.ts";
import { openPersonalData, sealPersonalData } from "../protocol/personal-data.ts";
import type { Envelope, Handling, PartyId } from "../protocol/types.ts";
import { type SchemaRegistry, underBody } from "../schemas/schema-registry.ts";
import { GroupCommit } from "./group-commit.ts";
import {
  type CaseKeys,
  type Clock,
  type EncryptionKeys,
  type Idempotency,
  IdempotencyKeyTaken,
  type IdSource,
  type Lease,
  type Metrics,
  type PromptPublisher,
  type SignedMessage,
  type Signer,
  type Store,
} from "./ports.ts";
import type { WakeSignal } from "./wake-signal.ts";

export interface SubmitRequest {
  type: string;
  schemaVersion?: number | undefined;
  to: PartyId | PartyId[];
  caseRef: string;
  inReplyTo?: string | undefined;
  handling?: Handling | undefined;
  body: Record<string, unknown>;
  /** Personal data in clear (schemas/personal-data.v1.json): encrypted into body.personalData. */
  personalData?: Record<string, unknown> | undefined;
  /** A handover record's payload (schemas/handover-record.v1.json): signed into body.record. */
  handoverRecord?: Record<string, unknown> | undefined;
}

/** Body members the gateway makes from the request; a request may not set them itself. */
const MADE_MEMBERS = { record: "handoverRecord" } as const;

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
  /**
   * The dispatcher's prompt path: committed messages are leased to it and published at once
   * (instead of raising `wake` for its next pass to find them).
   */
  prompt?: PromptPublisher;
  /** Admits case steps and keeps the case row in step, in the log's transaction. */
  cases: CaseBook;
  /** Our encryption key and the handover record signatures. */
  caseKeys: CaseKeys;
  /** Partners' encryption keys. */
  encryption: EncryptionKeys;
  /**
   * Failures that say nothing about the messages (the database unreachable): a group commit
   * that fails so fails its whole group at once, each submit answered 503, rather than trying
   * each message alone (each would wait as long again).
   */
  storeUnavailable?: (err: unknown) => boolean;
  /** Observes each submit that commits (the submit stage's time). */
  metrics?: Metrics;
}

/** What a submit with an Idempotency-Key answers: the message, made now or earlier. */
export interface Submitted {
  envelope: Envelope;
  /** The key was taken by an earlier submit of the same bytes: its message, nothing made now. */
  replayed: boolean;
}

/** The request header a submit's idempotency key travels in (IETF httpapi draft's name). */
export const IDEMPOTENCY_KEY_HEADER = "Idempotency-Key";

export const DEFAULT_HANDLING: Handling = {
  classification: "restricted",
  onwardDissemination: "forbidden",
};

export class Submitter {
  private readonly commits: GroupCommit<SignedMessage>;

  constructor(private readonly deps: SubmitterDeps) {
    // The log rows and their outbox rows: one transaction per group (outbound.insert opens it).
    this.commits = new GroupCommit(
      async (group) => {
        const lease = deps.prompt?.deliveryLease();
        await deps.store.outbound.insert(group, lease);
        this.committed(group, lease);
      },
      undefined,
      deps.storeUnavailable,
    );
  }

  /** Committed: the prompt path publishes leased deliveries now, else the next pass does. */
  private committed(messages: SignedMessage[], lease: Lease | undefined): void {
    const { prompt, wake } = this.deps;
    if (prompt === undefined || lease === undefined) {
      wake.raise();
      return;
    }
    prompt.sendDeliveries(
      messages.flatMap(({ envelope, jws, digest }) =>
        envelope.to.map((recipient) => ({
          messageId: envelope.id,
          recipient,
          jws,
          digest,
          attempts: 1,
        })),
      ),
    );
  }

  async submit(request: SubmitRequest): Promise<Envelope> {
    return this.make(request, undefined);
  }

  /**
   * `submit` under an Idempotency-Key: one message per key. The key is looked up first (nothing
   * is validated, encrypted or signed for a request made before); the message commits with it,
   * and the key's unique index decides a race between concurrent submits with one key: the
   * loser's commit writes nothing (IdempotencyKeyTaken; for a case step, the whole transaction
   * rolls back, or the case refuses the step its winner applied), and it answers with the
   * winner's message. The same key with other request bytes: idempotency_key_reused.
   */
  async submitWithKey(request: SubmitRequest, idempotency: Idempotency): Promise<Submitted> {
    const earlier = await this.madeBefore(idempotency);
    if (earlier !== undefined) return earlier;
    try {
      return { envelope: await this.make(request, idempotency), replayed: false };
    } catch (err) {
      // Not when the store is unavailable: a second query would wait as long again.
      if (!(err instanceof IdempotencyKeyTaken || err instanceof LiaisonError)) throw err;
      const winner = await this.madeBefore(idempotency);
      if (winner !== undefined) return winner;
      throw err;
    }
  }

  /** The message made under this key, if any; idempotency_key_reused for other bytes. */
  private async madeBefore(idempotency: Idempotency): Promise<Submitted | undefined> {
    const found = await this.deps.store.outbound.findByIdempotencyKey(idempotency.key);
    if (found === undefined) return undefined;
    if (found.requestDigest !== idempotency.requestDigest) {
      throw new LiaisonError(
        "idempotency_key_reused",
        "this Idempotency-Key was used for another request (other body bytes): use a new key for a new request",
        { issues: [{ path: IDEMPOTENCY_KEY_HEADER, message: "taken by another request" }] },
      );
    }
    const payload = found.jws.split(".")[1] ?? "";
    const envelope = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as Envelope;
    return { envelope, replayed: true };
  }

  private async make(
    request: SubmitRequest,
    idempotency: Idempotency | undefined,
  ): Promise<Envelope> {
    const { deps } = this;
    const started = performance.now();
    const schemaVersion = request.schemaVersion ?? latestVersion(deps.schemas, request.type);
    if (schemaVersion === undefined || !deps.schemas.hasType(request.type, schemaVersion)) {
      throw new LiaisonError("type_unknown", `message type ${request.type} is not supported`);
    }
    const to = [...new Set(Array.isArray(request.to) ? request.to : [request.to])];
    const made = await this.madeMembers(request, to);
    const fullBody = { ...request.body, ...made };
    const body = deps.schemas.validateBody(request.type, schemaVersion, fullBody);
    if (body === undefined || !body.ok) {
      throw new LiaisonError(
        "schema_invalid",
        `body does not match ${request.type} v${schemaVersion}`,
        { issues: body?.ok === false ? underBody(body.issues) : [] },
      );
    }
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
    // A step of a case is dated after every message the case holds: a partner whose clock runs
    // ahead (within the tolerated skew) must not make our answer sort before its request.
    const clock = isCaseType(request.type) ? await this.caseClock(request.caseRef) : deps.clock;
    const envelope = buildEnvelope(
      {
        type: request.type,
        schemaVersion,
        to,
        caseRef: request.caseRef,
        inReplyTo: request.inReplyTo,
        handling: request.handling ?? DEFAULT_HANDLING,
        body: fullBody,
      },
      { self: deps.self, clock, ids: deps.ids, ttlMs: deps.ttlMs },
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
    const message: SignedMessage = { envelope, jws, digest: sha256Hex(jws), kid, idempotency };
    if (isCaseType(envelope.type)) await this.commitCaseStep(message);
    else await this.commits.add(message);
    deps.metrics?.submitted((performance.now() - started) / 1000);
    return envelope;
  }

  /** Now, or 1 ms after the case's latest message when that is later. */
  private async caseClock(caseRef: string): Promise<() => Date> {
    const { deps } = this;
    const last = await deps.cases.lastSentAt(deps.store.cases, caseRef);
    const now = deps.clock();
    const at =
      last === undefined || last.getTime() < now.getTime() ? now : new Date(last.getTime() + 1);
    return () => at;
  }

  /** The log rows, the outbox rows and the case update: one transaction, or none at all. */
  private async commitCaseStep(message: SignedMessage): Promise<void> {
    const { store, cases, prompt } = this.deps;
    const lease = prompt?.deliveryLease();
    await store.transaction(async (tx) => {
      const refused = (await cases.admit(tx, [message.envelope])).get(
        caseMessageKey(message.envelope),
      );
      if (refused !== undefined) throw new LiaisonError(refused.code, refused.detail);
      await tx.outbound.insert([message], lease);
      const { type, body, caseRef } = message.envelope;
      // One reminder per deadline, whichever replica (or overlapping sweep) sends it: decided
      // under the case's lock.
      if (
        type === REMINDER_TYPE &&
        typeof body.dueAt === "string" &&
        !(await tx.cases.markReminded(caseRef, new Date(body.dueAt)))
      ) {
        throw new LiaisonError(
          "transition_not_allowed",
          "case.reminder: a reminder for this deadline was already sent",
        );
      }
    });
    this.committed([message], lease);
  }

  /**
   * The body members the gateway makes: `personalData` (the submitted personal data, validated,
   * encrypted to every addressee and to us) and `record` (the submitted handover record payload
   * signed by us, or — for the answer to a signed record — that record countersigned).
   */
  private async madeMembers(
    request: SubmitRequest,
    to: PartyId[],
  ): Promise<Record<string, unknown>> {
    const { deps } = this;
    for (const [member, instead] of Object.entries(MADE_MEMBERS)) {
      if (member in request.body) {
        throw new LiaisonError("request_invalid", `body.${member} is made by the gateway`, {
          issues: [{ path: `/body/${member}`, message: `submit ${instead} instead` }],
        });
      }
    }
    const made: Record<string, unknown> = {};
    if (request.body.personalData !== undefined) {
      if (request.personalData !== undefined) {
        throw new LiaisonError(
          "request_invalid",
          "personal data is submitted either in clear (personalData) or encrypted (body.personalData), not both",
          { issues: [{ path: "/body/personalData", message: "must be absent with personalData" }] },
        );
      }
      await this.checkEncrypted(request.body.personalData, to);
    } else if (request.personalData !== undefined) {
      const valid = deps.schemas.validatePersonalData(request.personalData);
      if (!valid.ok) {
        throw new LiaisonError("personal_data_invalid", "personalData does not match its schema", {
          issues: valid.issues.map((i) => ({ path: `/personalData${i.path}`, message: i.message })),
        });
      }
      made.personalData = await sealPersonalData(request.personalData, this.encryptionKeysFor(to));
    }
    if (request.type === "handover.completed") {
      made.record = await this.handoverRecord(request);
    } else if (request.handoverRecord !== undefined) {
      throw new LiaisonError("request_invalid", "only handover.completed carries a record", {
        issues: [{ path: "/handoverRecord", message: "not allowed for this type" }],
      });
    }
    return made;
  }

  /**
   * Personal data the local system encrypted itself (the gateway then never sees it in clear
   * at submit): held to what every recipient will check — an entry for us that decrypts to valid
   * content (`personal_data_not_for_us`, `personal_data_undecryptable`,
   * `personal_data_invalid`), and an entry for each addressee's current encryption key, without
   * which that addressee would refuse it as `personal_data_not_for_us`.
   */
  private async checkEncrypted(jwe: unknown, to: PartyId[]): Promise<void> {
    const { deps } = this;
    const opened = await openPersonalData(jwe, deps.caseKeys.decryptionKeys());
    if (!opened.ok) throw new LiaisonError(opened.code, opened.detail);
    const valid = deps.schemas.validatePersonalData(opened.content);
    if (!valid.ok) {
      throw new LiaisonError(
        "personal_data_invalid",
        "the personal data does not match its schema",
        {
          issues: valid.issues.map((i) => ({ path: `/personalData${i.path}`, message: i.message })),
        },
      );
    }
    const recipients =
      (jwe as { recipients?: Array<{ header?: { kid?: unknown } }> }).recipients ?? [];
    const kids = new Set(recipients.map((r) => r.header?.kid));
    const keys = this.encryptionKeysFor(to);
    // Only the addressees and we may read it: an entry for any other key would hand the person's
    // data to whoever holds that key, wherever the message is kept.
    const allowed = new Set([
      ...keys.map((k) => k.kid),
      ...deps.caseKeys.decryptionKeys().map((k) => k.kid),
    ]);
    for (const [i, r] of recipients.entries()) {
      if (!allowed.has(r.header?.kid as string)) {
        throw new LiaisonError(
          "request_invalid",
          "the personal data has a recipient entry for a key of no addressee",
          {
            issues: [
              { path: `/body/personalData/recipients/${i}`, message: "not an addressee's key" },
            ],
          },
        );
      }
    }
    for (const i of to.keys()) {
      if (!kids.has(keys[i]?.kid)) {
        throw new LiaisonError(
          "personal_data_not_for_us",
          "the personal data has no recipient entry for an addressee's current encryption key",
          { issues: [{ path: `/to/${i}`, message: "no recipient entry for its encryption key" }] },
        );
      }
    }
  }

  /** One recipient entry per addressee, and ours: we must be able to read what we sent. */
  private encryptionKeysFor(to: PartyId[]) {
    const { deps } = this;
    const now = deps.clock();
    const keys = to.map((party, i) => {
      const key = deps.encryption.encryptionKeyOf(party, now);
      if (key === undefined) {
        throw new LiaisonError(
          "recipient_unknown",
          "a recipient has no encryption key valid now: personal data cannot be sent to it",
          { issues: [{ path: `/to/${i}`, message: "has no encryption key valid now" }] },
        );
      }
      return key;
    });
    const own = deps.caseKeys.encryptionKey();
    if (own === undefined) {
      throw new LiaisonError(
        "key_store_invalid",
        "this gateway has no encryption key valid now; run: liaison keys generate",
      );
    }
    return [...keys, own];
  }

  private async handoverRecord(request: SubmitRequest): Promise<unknown> {
    const { deps } = this;
    if (request.handoverRecord !== undefined) {
      const valid = deps.schemas.validateHandoverRecord(request.handoverRecord);
      if (!valid.ok) {
        throw new LiaisonError(
          "handover_record_invalid",
          "handoverRecord does not match its schema",
          {
            issues: valid.issues.map((i) => ({
              path: `/handoverRecord${i.path}`,
              message: i.message,
            })),
          },
        );
      }
      return deps.caseKeys.signRecord(request.handoverRecord);
    }
    // The answer to the other side's signed record: that record, countersigned.
    const file = await deps.cases.read(deps.store.cases, request.caseRef);
    const signed = file?.view.signedRecord ?? null;
    if (signed === null) {
      throw new LiaisonError(
        "transition_not_allowed",
        "handover.completed without handoverRecord countersigns the case's signed record: there is none",
      );
    }
    if (signed.messageId !== request.inReplyTo) {
      throw new LiaisonError(
        "reply_unmatched",
        "handover.completed without handoverRecord countersigns the signed record it answers (inReplyTo)",
      );
    }
    const [protectedHeader = "", signature = ""] = signed.firstSignature.split(".");
    return deps.caseKeys.countersignRecord({
      payload: signed.payload,
      signatures: [{ protected: protectedHeader, signature }],
    });
  }
}

function latestVersion(schemas: SchemaRegistry, type: string): number | undefined {
  const versions = schemas
    .types()
    .filter((t) => t.type === type)
    .map((t) => t.schemaVersion);
  return versions.length === 0 ? undefined : Math.max(...versions);
}
