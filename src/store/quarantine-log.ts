/** Every inbound byte string that was not accepted, exactly as received, once per digest. */
import { and, asc, eq, inArray } from "drizzle-orm";
import {
  type InboundKey,
  inboundKey,
  type QuarantineEntry,
  type QuarantineLog,
} from "../delivery/ports.ts";
import type { WireErrorCode } from "../protocol/errors.ts";
import type { PartyId } from "../protocol/types.ts";
import type { Db } from "./database.ts";
import { quarantine } from "./schema.ts";

export class SqlQuarantineLog implements QuarantineLog {
  constructor(private readonly db: Db) {}

  async insert(entry: QuarantineEntry): Promise<number | null> {
    const [row] = await this.db
      .insert(quarantine)
      .values(entry)
      .onConflictDoNothing({ target: quarantine.digest })
      .returning({ seq: quarantine.seq });
    return row?.seq ?? null;
  }

  async answerFor(digest: string): Promise<string | null> {
    const [row] = await this.db
      .select({ receiptId: quarantine.receiptId })
      .from(quarantine)
      .where(eq(quarantine.digest, digest));
    return row?.receiptId ?? null;
  }

  async refusedEarlier(
    keys: Array<{ from: PartyId; id: string }>,
    codes: readonly WireErrorCode[],
  ): Promise<Map<InboundKey, { code: WireErrorCode; detail: string }>> {
    if (keys.length === 0 || codes.length === 0) return new Map();
    const rows = await this.db
      .select({
        from: quarantine.claimedFrom,
        id: quarantine.messageId,
        code: quarantine.code,
        detail: quarantine.detail,
      })
      .from(quarantine)
      .where(
        and(
          eq(quarantine.kind, "message"),
          inArray(quarantine.messageId, [...new Set(keys.map((k) => k.id))]),
          inArray(quarantine.code, [...codes]),
        ),
      )
      .orderBy(asc(quarantine.seq));
    const wanted = new Set(keys.map((k) => inboundKey(k.from, k.id)));
    const found = new Map<InboundKey, { code: WireErrorCode; detail: string }>();
    for (const row of rows) {
      if (row.from === null || row.id === null) continue;
      const key = inboundKey(row.from, row.id);
      if (wanted.has(key) && !found.has(key))
        found.set(key, { code: row.code, detail: row.detail });
    }
    return found;
  }
}
