/**
 * A victim's journey (docs/examples/messages) between two test gateways, and what the e2e tests
 * of the case workflow need around it: every API answer through one recorder (error bodies are
 * kept, to be searched for personal data), the journey played step by step (each step sent once
 * the previous one is delivered), envelopes signed directly with a party's key to put on the
 * wire what its gateway would never send, and the places personal data must never reach (log
 * lines, error bodies, wire bytes, database rows) searched for a canary without printing them.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { sql } from "drizzle-orm";
import { flattenedVerify, importJWK, type JWK } from "jose";
import type { NatsConnection } from "nats";
import { buildEnvelope } from "../../src/protocol/build-envelope.ts";
import { MESSAGE_TYP } from "../../src/protocol/jws-profile.ts";
import { signCompact } from "../../src/protocol/sign.ts";
import type { Envelope } from "../../src/protocol/types.ts";
import { call, type Pair, type TestNode, waitFor } from "./network.ts";

export const HEKOU = "CN-MPS-HEKOU";
export const LAOCAI = "VN-BGC-LAOCAI";
/** The case reference of the examples: rewritten for every test case (forCase). */
export const EXAMPLE_CASE_REF = "CN-HEKOU-2026-0107";
export const COUNTERSIGNED = "09b-handover.completed";

const EXAMPLES = new URL("../../docs/examples/messages/", import.meta.url);

/** One example file: a local submit request, with its file stem as `name`. */
export interface JourneyStep {
  name: string;
  from: string;
  to: string[];
  type: string;
  caseRef: string;
  inReplyTo?: string;
  handling?: unknown;
  body: Record<string, unknown>;
  personalData?: Record<string, unknown>;
  handoverRecord?: Record<string, unknown>;
}

/** Every example (01 … 12), in journey order. */
export function exampleSteps(): JourneyStep[] {
  return readdirSync(EXAMPLES)
    .filter((f) => /^\d\d-.*\.json$/.test(f))
    .sort()
    .map((file) => ({
      name: file.replace(/\.json$/, ""),
      ...(JSON.parse(readFileSync(new URL(file, EXAMPLES), "utf8")) as Omit<JourneyStep, "name">),
    }));
}

/** The example whose file name starts with `prefix` ("07"), as a fresh copy. */
export function exampleStep(prefix: string): JourneyStep {
  const step = exampleSteps().find((s) => s.name.startsWith(`${prefix}-`));
  if (step === undefined) throw new Error(`no example ${prefix}`);
  return step;
}

/** A case reference no other test uses: tests and test files run in parallel. */
export function uniqueCaseRef(prefix = "CN-HEKOU"): string {
  return `${prefix}-T${randomBytes(5).toString("hex").toUpperCase()}`;
}

/** The example moved to another case: caseRef, record.caseRef and document links alike. */
export function forCase(step: JourneyStep, caseRef: string): JourneyStep {
  return JSON.parse(JSON.stringify(step).replaceAll(EXAMPLE_CASE_REF, caseRef)) as JourneyStep;
}

/** "@NN-<name>" stands for the id the message of that example received when it was sent. */
export function resolveRefs<T>(value: T, ids: Map<string, string>): T {
  return JSON.parse(
    JSON.stringify(value, (_k, v: unknown) => {
      if (typeof v !== "string" || !/^@\d\d/.test(v)) return v;
      const id = ids.get(v.slice(1));
      if (id === undefined) throw new Error(`${v} was not sent yet`);
      return id;
    }),
  ) as T;
}

export function payloadOf<T = Record<string, unknown>>(jws: string): T {
  return JSON.parse(Buffer.from(jws.split(".")[1] ?? "", "base64url").toString("utf8")) as T;
}

export type Answer = Awaited<ReturnType<typeof call>>;

/**
 * Every API call of a test goes through one recorder, which keeps every error answer (status
 * 400 and above) to be searched for personal data afterwards.
 */
export class Api {
  readonly errors: Array<{ path: string; status: number; text: string }> = [];

  async call(node: TestNode, path: string, init: Parameters<typeof call>[2] = {}): Promise<Answer> {
    const answer = await call(node, path, init);
    if (answer.status >= 400) {
      this.errors.push({ path, status: answer.status, text: JSON.stringify(answer.body) });
    }
    return answer;
  }

  /** The raw response, for the content type of a problem answer; the error body is kept too. */
  async raw(node: TestNode, path: string, init: RequestInit = {}): Promise<Response> {
    const res = await node.gateway.app.request(path, {
      ...init,
      headers: {
        authorization: `Bearer ${node.token}`,
        "content-type": "application/json",
        ...(init.headers ?? {}),
      },
    });
    if (res.status >= 400) {
      this.errors.push({ path, status: res.status, text: await res.clone().text() });
    }
    return res;
  }

  submit(node: TestNode, request: unknown): Promise<Answer> {
    return this.call(node, "/v1/messages", { method: "POST", json: request });
  }

  /** The message's status once it is no longer queued or sent (delivered, rejected, failed). */
  finalStatus(node: TestNode, id: string, timeoutMs = 20_000): Promise<Answer["body"]> {
    return waitFor(
      `final status of ${id} at ${node.gateway.self.id}`,
      async () => {
        const { body } = await this.call(node, `/v1/messages/${id}`);
        return ["queued", "sent"].includes(body.status as string) ? undefined : body;
      },
      timeoutMs,
    );
  }

  async caseAt(node: TestNode, caseRef: string): Promise<Record<string, unknown>> {
    const { status, body } = await this.call(node, `/v1/cases/${caseRef}`);
    if (status !== 200) throw new Error(`GET /v1/cases/${caseRef}: ${status} ${body.code}`);
    return body;
  }
}

export interface TimelineItem {
  id: string;
  direction: "inbound" | "outbound";
  type: string;
  from: string;
  sentAt: string;
  inReplyTo?: string;
  outcome: "applied" | "superseded" | "refused";
  code?: string;
  deliveries: Array<{ recipient: string; status: string }>;
  receipts: Array<{ id: string; from: string; status: string; codes: string[] }>;
}

export const timelineOf = (view: Record<string, unknown>) => view.timeline as TimelineItem[];

/**
 * One case of the journey between the two gateways of a pair: steps are sent in order, each
 * once the previous one is delivered; with a canary, it is the victim's given name wherever the
 * examples carry one.
 */
export class Journey {
  readonly ids = new Map<string, string>();

  constructor(
    readonly pair: Pair,
    readonly api: Api,
    readonly caseRef: string,
    readonly canary?: string,
  ) {}

  node(party: string): TestNode {
    if (party === HEKOU) return this.pair.hekou;
    if (party === LAOCAI) return this.pair.laocai;
    throw new Error(`${party} is not in the pair`);
  }

  /** The submit request of an example in this case, references resolved. */
  request(step: JourneyStep): Record<string, unknown> {
    const moved = forCase(step, this.caseRef);
    const names = moved.personalData?.names as Record<string, unknown> | undefined;
    if (this.canary !== undefined && names !== undefined) names.given = this.canary;
    const { name: _name, from: _from, ...request } = moved;
    return resolveRefs(request, this.ids);
  }

  /** Submits the step at its sender; returns its id once delivered (throws otherwise). */
  async send(step: JourneyStep): Promise<string> {
    const from = this.node(step.from);
    const res = await this.api.submit(from, this.request(step));
    if (res.status !== 202) {
      throw new Error(`${step.name}: submit answered ${res.status} ${res.body.code}`);
    }
    const id = res.body.id as string;
    this.ids.set(step.name, id);
    const done = await this.api.finalStatus(from, id);
    if (done.status !== "delivered") throw new Error(`${step.name}: ${done.status}`);
    return id;
  }

  /** Lao Cai's answer to Hekou's signed record: the gateway countersigns it (no handoverRecord). */
  countersignStep(): JourneyStep {
    return {
      name: COUNTERSIGNED,
      from: LAOCAI,
      to: [HEKOU],
      type: "handover.completed",
      caseRef: this.caseRef,
      inReplyTo: "@09-handover.completed",
      handling: { classification: "confidential", onwardDissemination: "forbidden" },
      body: { notes: "Record countersigned on receipt of the person." },
    };
  }

  /** The steps 01 … 11 (no reminder), the countersigned record after 09, up to `last`. */
  journeySteps(): JourneyStep[] {
    const steps: JourneyStep[] = [];
    for (const step of exampleSteps()) {
      if (step.type === "case.reminder") continue;
      steps.push(step);
      if (step.name.startsWith("09-")) steps.push(this.countersignStep());
    }
    return steps;
  }

  /** Plays the journey from the first step not sent yet through the step named `last`. */
  async playThrough(last: string): Promise<void> {
    const steps = this.journeySteps();
    const end = steps.findIndex((s) => s.name === last || s.name.startsWith(`${last}-`));
    if (end < 0) throw new Error(`no step ${last}`);
    for (const step of steps.slice(0, end + 1)) {
      if (!this.ids.has(step.name)) await this.send(step);
    }
  }

  id(name: string): string {
    const found = [...this.ids].find(([n]) => n === name || n.startsWith(`${name}-`));
    if (found === undefined) throw new Error(`${name} was not sent`);
    return found[1];
  }
}

/**
 * An envelope signed with `from`'s signing key, as its gateway signs them but without its
 * gateway's checks: what a partner's faulty (or crossing) implementation could put on the wire.
 */
export async function signedEnvelope(
  from: TestNode,
  input: {
    type: string;
    to: string[];
    caseRef: string;
    inReplyTo?: string | undefined;
    body: Record<string, unknown>;
    sentAt?: Date;
  },
): Promise<{ envelope: Envelope; jws: string }> {
  const envelope = buildEnvelope(
    {
      type: input.type,
      schemaVersion: 1,
      to: input.to,
      caseRef: input.caseRef,
      inReplyTo: input.inReplyTo,
      handling: { classification: "confidential", onwardDissemination: "forbidden" },
      body: input.body,
    },
    {
      self: from.gateway.self.id,
      clock: () => input.sentAt ?? new Date(),
      ids: randomUUID,
      ttlMs: 3_600_000,
    },
  );
  return { envelope, jws: await signCompact(envelope, from.signingKey, MESSAGE_TYP) };
}

/** Puts bytes straight onto `to`'s inbound subject, as a partner's gateway publishes them. */
export async function publishTo(nc: NatsConnection, to: TestNode, jws: string): Promise<void> {
  await nc.jetstream().publish(to.gateway.config.inboundSubject, new TextEncoder().encode(jws), {
    msgID: randomUUID(),
  });
}

export interface QuarantineItem {
  code: string;
  kind: string;
  claimedFrom: string | null;
  messageId: string | null;
  digest: string;
  receiptId: string | null;
}

/** The quarantine row of `kind` (message or receipt) naming `messageId`, once it is there. */
export function quarantinedAt(
  api: Api,
  node: TestNode,
  messageId: string,
  kind: "message" | "receipt",
): Promise<QuarantineItem> {
  return waitFor(`${kind} ${messageId} in quarantine at ${node.gateway.self.id}`, async () => {
    let cursor: string | null = null;
    do {
      const page = await api.call(
        node,
        `/v1/quarantine?limit=200${cursor === null ? "" : `&cursor=${cursor}`}`,
      );
      const items = page.body.items as QuarantineItem[];
      const found = items.find((q) => q.messageId === messageId && q.kind === kind);
      if (found !== undefined) return found;
      cursor = page.body.nextCursor as string | null;
    } while (cursor !== null);
    return undefined;
  });
}

/** Rows of a table as JSON text (every column), from either store (postgres.js or PGlite). */
export async function rowsAsText(node: TestNode, table: string): Promise<string[]> {
  const result = await node.gateway.database.db.execute(
    sql`select row_to_json(t)::text as row from ${sql.identifier(table)} t`,
  );
  const rows = (Array.isArray(result) ? result : (result as { rows: unknown[] }).rows) as Array<{
    row: string;
  }>;
  return rows.map((r) => r.row);
}

/** The raw bytes kept in a gateway's quarantine. */
export async function quarantineBytes(node: TestNode): Promise<Buffer[]> {
  const result = await node.gateway.database.db.execute(
    sql`select encode(raw, 'base64') as raw from quarantine`,
  );
  const rows = (Array.isArray(result) ? result : (result as { rows: unknown[] }).rows) as Array<{
    raw: string;
  }>;
  return rows.map((r) => Buffer.from(r.raw, "base64"));
}

/**
 * How a secret could show in text: itself, and the part of its base64 / base64url encoding that
 * does not depend on what precedes it (at each of the three byte alignments).
 */
export function leakForms(secret: string): string[] {
  const bytes = Buffer.from(secret, "utf8");
  const forms = new Set([secret]);
  for (let k = 0; k < 3; k++) {
    const padded = Buffer.concat([Buffer.alloc(k), bytes]);
    const from = Math.ceil((8 * k) / 6);
    const to = Math.floor((8 * (k + bytes.length)) / 6);
    forms.add(padded.toString("base64url").slice(from, to));
    forms.add(padded.toString("base64").slice(from, to));
  }
  return [...forms];
}

/**
 * The text, and every compact JWS in it opened: its header and payload decoded, and inside the
 * payload every base64url run decoded too (a handover record's payload, a protected header).
 * Ciphertext stays ciphertext: that is the point.
 */
export function readable(text: string): string {
  const parts = [text];
  for (const [jws] of text.matchAll(/[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g)) {
    const [header = "", payload = ""] = jws.split(".");
    for (const segment of [header, payload]) {
      const decoded = Buffer.from(segment, "base64url").toString("utf8");
      parts.push(decoded);
      for (const [inner] of decoded.matchAll(/[A-Za-z0-9_-]{16,}/g)) {
        parts.push(Buffer.from(inner, "base64url").toString("utf8"));
      }
    }
  }
  return parts.join("\n");
}

/** Where (by label) any form of `secret` shows in `texts`: labels only, never the text. */
export function leaksOf(secret: string, texts: Array<{ where: string; text: string }>): string[] {
  const forms = leakForms(secret);
  return texts
    .filter(({ text }) => {
      const open = readable(text);
      return forms.some((f) => open.includes(f));
    })
    .map(({ where }) => where);
}

/** A gateway's published keys (/.well-known/jwks.json, over HTTP, as a partner reads them). */
export async function publishedKeys(node: TestNode): Promise<Array<JWK & { kid: string }>> {
  const doc = (await (await fetch(`${node.gateway.url}/.well-known/jwks.json`)).json()) as {
    keys: Array<JWK & { kid: string }>;
  };
  return doc.keys;
}

/**
 * Verifies EACH signature of a handover record (General JSON JWS) on its own, with nothing but
 * the published keys: what anyone holding the two countries' public keys can do offline.
 * Returns the kid of each signature that verifies, in signature order; throws on one that does
 * not.
 */
export async function verifyRecordOffline(
  record: { payload: string; signatures: Array<{ protected: string; signature: string }> },
  keys: Array<JWK & { kid: string }>,
): Promise<string[]> {
  const kids: string[] = [];
  for (const [i, s] of record.signatures.entries()) {
    const header = JSON.parse(Buffer.from(s.protected, "base64url").toString("utf8")) as {
      alg: string;
      kid: string;
    };
    const jwk = keys.find((k) => k.kid === header.kid && k.use === "sig");
    if (jwk === undefined) throw new Error(`signature ${i + 1}: no published key ${header.kid}`);
    const key = await importJWK(jwk, header.alg);
    await flattenedVerify(
      { payload: record.payload, protected: s.protected, signature: s.signature },
      key,
      { algorithms: [header.alg] },
    );
    kids.push(header.kid);
  }
  return kids;
}
