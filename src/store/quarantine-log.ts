/** Every inbound byte string that was not accepted, exactly as received, once per digest. */
import { eq } from "drizzle-orm";
import type { QuarantineEntry, QuarantineLog } from "../delivery/ports.ts";
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
}
