import type { Clock, Envelope, Handling, IdSource, MessageId, PartyId } from "./types.ts";

export interface EnvelopeInput {
  type: string;
  schemaVersion: number;
  to: PartyId[];
  caseRef: string;
  inReplyTo?: MessageId | undefined;
  handling: Handling;
  body: Record<string, unknown>;
}

export interface EnvelopeContext {
  self: PartyId;
  clock: Clock;
  ids: IdSource;
  /** How long the message stays actionable; `expiresAt = sentAt + ttlMs`. */
  ttlMs: number;
}

/** Wraps a validated body into the envelope the sender signs. Pure: time and ids come in. */
export function buildEnvelope(input: EnvelopeInput, ctx: EnvelopeContext): Envelope {
  const sentAt = ctx.clock();
  const envelope: Envelope = {
    id: ctx.ids(),
    type: input.type,
    schemaVersion: input.schemaVersion,
    from: ctx.self,
    to: [...input.to],
    caseRef: input.caseRef,
    sentAt: sentAt.toISOString(),
    expiresAt: new Date(sentAt.getTime() + ctx.ttlMs).toISOString(),
    handling: { ...input.handling },
    body: input.body,
  };
  if (input.inReplyTo !== undefined) envelope.inReplyTo = input.inReplyTo;
  return envelope;
}
