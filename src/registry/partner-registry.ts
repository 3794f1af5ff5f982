/**
 * The partner registry: parties and their public keys, persisted in the store and cached in
 * memory with every key imported once, so verifying a message never imports a key.
 */
import { type CryptoKey, importJWK, type JWK } from "jose";
import { LiaisonError } from "../protocol/errors.ts";
import type { SigningAlg } from "../protocol/jws-profile.ts";
import type { KeyRecord, KeyResolver, PartyRecord, RegisteredKey } from "../protocol/types.ts";

/** Where the registry keeps parties and keys (store/party-store.ts). */
export interface PartyStorage {
  /** Party and keys in one transaction; revocation and validity only ever move earlier. */
  register(party: PartyRecord, keys: KeyRecord[]): Promise<void>;
  listParties(): Promise<PartyRecord[]>;
  listKeys(): Promise<KeyRecord[]>;
}

export class PartnerRegistry implements KeyResolver {
  private parties = new Map<string, PartyRecord>();
  private keys = new Map<string, RegisteredKey>();
  /** Counts add() calls, so a reload that overlapped one does not drop what it added. */
  private version = 0;

  private constructor(private readonly store: PartyStorage) {}

  static async load(store: PartyStorage): Promise<PartnerRegistry> {
    const registry = new PartnerRegistry(store);
    await registry.reload();
    return registry;
  }

  /** Re-reads the store; call after another process (the CLI) changed the registry. */
  async reload(): Promise<void> {
    await this.refresh(this.version);
  }

  /** Replaces the cache with the store's content, unless an add() happened since `version`. */
  private async refresh(version = this.version): Promise<void> {
    const [parties, keys] = await Promise.all([this.store.listParties(), this.store.listKeys()]);
    const imported = await Promise.all(keys.map(importKey));
    // An add() while we read may be missing from what we read: keep the cache, reload next time.
    if (version !== this.version) return;
    this.parties = new Map(parties.map((p) => [p.id, p]));
    this.keys = new Map(imported.map((k) => [k.kid, k]));
  }

  /** Registers or updates a party and its keys (validity and revocation), then refreshes the cache. */
  async add(party: PartyRecord, keys: KeyRecord[]): Promise<void> {
    // Import first: a key that cannot be imported must never reach the store, where it would
    // stop the next start.
    await Promise.all(keys.map(importKey));
    await this.store.register(party, keys);
    this.version += 1;
    // The store decides what holds (a revocation is never lifted): cache what it now says.
    await this.refresh();
  }

  hasParty(partyId: string): boolean {
    return this.parties.has(partyId);
  }

  party(partyId: string): PartyRecord | undefined {
    return this.parties.get(partyId);
  }

  keyById(kid: string): RegisteredKey | undefined {
    return this.keys.get(kid);
  }

  listParties(): PartyRecord[] {
    return [...this.parties.values()];
  }
}

async function importKey(record: KeyRecord): Promise<RegisteredKey> {
  let key: CryptoKey;
  try {
    key = (await importJWK(record.publicJwk as JWK, record.alg)) as CryptoKey;
  } catch {
    throw new LiaisonError(
      "request_invalid",
      `key ${record.kid} cannot be imported as ${record.alg}`,
    );
  }
  return {
    kid: record.kid,
    partyId: record.partyId,
    alg: record.alg as SigningAlg,
    key,
    validFrom: record.validFrom,
    validUntil: record.validUntil,
    revokedAt: record.revokedAt,
  };
}
