/**
 * Parties and their public keys, signing and encryption keys, with validity and revocation: what
 * the registry persists.
 */
import { asc, eq, sql } from "drizzle-orm";
import { LiaisonError } from "../protocol/errors.ts";
import type { KeyRecord, PartyRecord } from "../protocol/types.ts";
import type { PartyStorage } from "../registry/partner-registry.ts";
import type { Db } from "./database.ts";
import { parties, partyKeys } from "./schema.ts";

export class SqlPartyStore implements PartyStorage {
  constructor(private readonly db: Db) {}

  /**
   * Registers or updates a party and its keys in one transaction: keys are inserted (with their
   * use, "sig" when absent), or their revocation and end of validity brought forward (never
   * back); a key's use, alg and public key never change; a kid never moves to another party
   * (request_invalid, and nothing of the call is written).
   */
  async register(party: PartyRecord, keys: KeyRecord[]): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx
        .insert(parties)
        .values({
          ...party,
          natsDomain: party.natsDomain ?? null,
          receiptBatches: party.receiptBatches === true,
        })
        .onConflictDoUpdate({
          target: parties.id,
          set: {
            name: party.name,
            country: party.country,
            kind: party.kind,
            inboundSubject: party.inboundSubject,
            natsDomain: party.natsDomain ?? null,
            receiptBatches: party.receiptBatches === true,
            updatedAt: sql`now()`,
          },
        });
      for (const key of keys) {
        const [row] = await tx
          .insert(partyKeys)
          .values({ ...key, use: key.use ?? "sig" })
          .onConflictDoUpdate({
            target: partyKeys.kid,
            // One way only: a revocation is never lifted and moves only earlier, a validity only
            // ends earlier, and validFrom never moves (an old or forged document cannot undo
            // a revocation). least() ignores nulls.
            set: {
              validUntil: sql`least(${partyKeys.validUntil}, excluded.valid_until)`,
              revokedAt: sql`least(${partyKeys.revokedAt}, excluded.revoked_at)`,
            },
            setWhere: eq(partyKeys.partyId, key.partyId),
          })
          .returning({ kid: partyKeys.kid });
        if (row === undefined) {
          throw new LiaisonError(
            "request_invalid",
            `key ${key.kid} is registered for another party`,
          );
        }
      }
    });
  }

  async listParties(): Promise<PartyRecord[]> {
    const rows = await this.db
      .select({
        id: parties.id,
        name: parties.name,
        country: parties.country,
        kind: parties.kind,
        inboundSubject: parties.inboundSubject,
        natsDomain: parties.natsDomain,
        receiptBatches: parties.receiptBatches,
      })
      .from(parties)
      .orderBy(asc(parties.id));
    return rows.map(({ natsDomain, receiptBatches, ...party }) => ({
      ...party,
      ...(natsDomain === null ? {} : { natsDomain }),
      ...(receiptBatches ? { receiptBatches } : {}),
    }));
  }

  listKeys(): Promise<KeyRecord[]> {
    return this.db
      .select({
        kid: partyKeys.kid,
        partyId: partyKeys.partyId,
        use: partyKeys.use,
        alg: partyKeys.alg,
        publicJwk: partyKeys.publicJwk,
        validFrom: partyKeys.validFrom,
        validUntil: partyKeys.validUntil,
        revokedAt: partyKeys.revokedAt,
      })
      .from(partyKeys)
      .orderBy(asc(partyKeys.partyId), asc(partyKeys.validFrom));
  }
}
