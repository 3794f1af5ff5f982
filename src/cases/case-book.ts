/**
 * Keeps every case in step with the message log, inside the caller's transaction: new messages
 * of a case are admitted only when the fold of the case with them applies them (otherwise they
 * are refused with the fold's code), and the case's summary row is saved from the same fold.
 * The submitter calls it for one message, the inbox for a batch, the receipt path when the
 * other party refused one of our steps (which then never became part of the case).
 */
import type { CaseLog, Stores } from "../delivery/ports.ts";
import type { Envelope, PartyId } from "../protocol/types.ts";
import {
  CASE_TYPES,
  type CaseMessage,
  type CaseView,
  type DeadlinePolicy,
  isCaseType,
} from "./case-types.ts";
import {
  admitToCase,
  caseMessageKey,
  compareCaseMessages,
  type FoldResult,
  foldCase,
  type Refusal,
} from "./fold-case.ts";

export interface CaseBookDeps {
  /** Maps the kids of a handover record's signatures to the parties that own them. */
  keys: { keyById(kid: string): { partyId: PartyId } | undefined };
  /** The deadlines that apply to the party that owes a step. */
  policy: (owing: PartyId) => DeadlinePolicy;
}

/** A case as the API shows it: the fold, and each message with its outcome. */
export interface CaseFile {
  view: CaseView;
  messages: Array<{
    message: CaseMessage;
    direction: "inbound" | "outbound";
    outcome: { applied: true } | ({ applied: false } & Refusal);
    /** One of our steps the other party refused: shown, but never part of the fold. */
    refusedByRecipient: boolean;
  }>;
}

export class CaseBook {
  constructor(private readonly deps: CaseBookDeps) {}

  /** The parties that signed a handover record, in signature order, from their kids. */
  private signersOf(envelope: Envelope): PartyId[] | undefined {
    if (envelope.type !== "handover.completed") return undefined;
    const signatures = (envelope.body.record as { signatures?: unknown } | undefined)?.signatures;
    if (!Array.isArray(signatures)) return undefined;
    return signatures.map((s) => {
      const kid = headerKid((s as { protected?: unknown }).protected);
      return (kid === undefined ? undefined : this.deps.keys.keyById(kid)?.partyId) ?? "";
    });
  }

  caseMessage(envelope: Envelope): CaseMessage {
    return {
      id: envelope.id,
      type: envelope.type,
      from: envelope.from,
      to: envelope.to,
      caseRef: envelope.caseRef,
      sentAt: envelope.sentAt,
      inReplyTo: envelope.inReplyTo,
      body: envelope.body,
      recordSigners: this.signersOf(envelope),
    };
  }

  /** The case's messages that count (without our steps the other party refused). */
  private async load(cases: CaseLog, caseRef: string) {
    return (await this.loadAll(cases, caseRef)).filter((l) => !l.refused);
  }

  private async loadAll(cases: CaseLog, caseRef: string) {
    const logged = await cases.messages(caseRef, CASE_TYPES);
    return logged.map(({ direction, jws, refused, acceptedBy }) => {
      const envelope = payloadOf(jws) as Envelope;
      return { direction, refused, acceptedBy, message: this.caseMessage(envelope) };
    });
  }

  /** The latest sentAt among the case's messages, or undefined for a case with none. */
  async lastSentAt(cases: CaseLog, caseRef: string): Promise<Date | undefined> {
    const times = (await this.load(cases, caseRef)).map((l) => Date.parse(l.message.sentAt));
    return times.length === 0 ? undefined : new Date(Math.max(...times));
  }

  /**
   * Admits the case messages among `candidates` into their cases (others are ignored), in the
   * fold's order, and saves every case touched. Returns the refused ones by caseMessageKey.
   * A candidate the log already holds (a redelivery, another replica) is left to the caller.
   */
  async admit(tx: Stores, candidates: Envelope[]): Promise<Map<string, Refusal>> {
    const refusals = new Map<string, Refusal>();
    const byCase = new Map<string, Envelope[]>();
    for (const e of candidates) {
      if (!isCaseType(e.type)) continue;
      byCase.set(e.caseRef, [...(byCase.get(e.caseRef) ?? []), e]);
    }
    if (byCase.size === 0) return refusals;
    await tx.cases.lock([...byCase.keys()]);
    for (const [caseRef, envelopes] of byCase) {
      const loaded = await this.load(tx.cases, caseRef);
      const held = new Set(loaded.map((l) => caseMessageKey(l.message)));
      // Who accepted which step: a step we received, we accepted by logging it; one of ours,
      // when the other party's accepted receipt is in. A step admitted in this batch: nobody yet.
      const logged = new Map(loaded.map((l) => [caseMessageKey(l.message), l]));
      const acknowledged = (step: CaseMessage, party: PartyId) => {
        const entry = logged.get(caseMessageKey(step));
        if (entry === undefined) return false;
        return entry.direction === "inbound" || entry.acceptedBy.includes(party);
      };
      let current = loaded.map((l) => l.message);
      let fold: FoldResult | undefined;
      const fresh = envelopes
        .map((e) => this.caseMessage(e))
        .filter((m) => !held.has(caseMessageKey(m)))
        .sort(compareCaseMessages);
      for (const m of fresh) {
        const admission = admitToCase(current, m, this.deps.policy, acknowledged);
        if (!admission.ok) {
          const { ok: _ok, ...refusal } = admission;
          refusals.set(caseMessageKey(m), refusal);
          continue;
        }
        current = [...current, m];
        held.add(caseMessageKey(m));
        fold = admission.fold;
      }
      if (fold?.view != null) await tx.cases.save(fold.view, current.length);
    }
    return refusals;
  }

  /** Recomputes these cases from the log (after one of our steps was refused by the other party). */
  async refresh(tx: Stores, caseRefs: string[]): Promise<void> {
    if (caseRefs.length === 0) return;
    await tx.cases.lock(caseRefs);
    for (const caseRef of caseRefs) {
      const loaded = await this.load(tx.cases, caseRef);
      const { view } = foldCase(
        loaded.map((l) => l.message),
        this.deps.policy,
      );
      if (view !== null) await tx.cases.save(view, loaded.length);
      else await tx.cases.remove(caseRef);
    }
  }

  /** The case with every message and its outcome; null when no message opened it. */
  async read(cases: CaseLog, caseRef: string): Promise<CaseFile | null> {
    const all = await this.loadAll(cases, caseRef);
    const fold = foldCase(
      all.filter((l) => !l.refused).map((l) => l.message),
      this.deps.policy,
    );
    if (fold.view === null) return null;
    return {
      view: fold.view,
      messages: [...all]
        .sort((a, b) => compareCaseMessages(a.message, b.message))
        .map(({ direction, message, refused }) => ({
          direction,
          message,
          outcome: fold.outcomes.get(caseMessageKey(message)) ?? { applied: true },
          refusedByRecipient: refused,
        })),
    };
  }
}

function payloadOf(jws: string): unknown {
  const payload = jws.split(".")[1] ?? "";
  return JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
}

function headerKid(protectedHeader: unknown): string | undefined {
  if (typeof protectedHeader !== "string") return undefined;
  try {
    const header = JSON.parse(Buffer.from(protectedHeader, "base64url").toString("utf8")) as {
      kid?: unknown;
    };
    return typeof header.kid === "string" ? header.kid : undefined;
  } catch {
    return undefined;
  }
}
