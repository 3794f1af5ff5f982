/**
 * The partner registry: parties and their public keys, persisted in the store and cached in
 * memory with every key imported once, so verifying a message (or encrypting to a partner) never
 * imports a key. Signing keys and encryption keys are kept apart: `keyById`, which signature
 * verification uses, only ever answers with a signing key.
 */
import { type CryptoKey, importJWK, type JWK } from "jose";
import { LiaisonError } from "../protocol/errors.ts";
import { ALLOWED_ALGS, type SigningAlg } from "../protocol/jws-profile.ts";
import { PERSONAL_DATA_ALG } from "../protocol/personal-data.ts";
import type {
  KeyRecord,
  KeyResolver,
  PartyId,
  PartyRecord,
  RegisteredKey,
} from "../protocol/types.ts";

/** Where the registry keeps parties and keys (store/party-store.ts). */
export interface PartyStorage {
  /** Party and keys in one transaction; revocation and validity only ever move earlier. */
  register(party: PartyRecord, keys: KeyRecord[]): Promise<void>;
  listParties(): Promise<PartyRecord[]>;
  listKeys(): Promise<KeyRecord[]>;
}

export class PartnerRegistry implements KeyResolver {
  private parties = new Map<string, PartyRecord>();
  /** Signing keys only, by kid. */
  private keys = new Map<string, RegisteredKey>();
  /** Encryption keys, by party. */
  private encryptionKeys = new Map<PartyId, EncryptionKey[]>();
  /** Counts add() calls, so a reload that overlapped one does not drop what it added. */
  private version = 0;
  /** Called after add() registered a party (federation follows at once, not at the next reload). */
  private readonly added: Array<() => Promise<void>> = [];

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
    const signing = new Map<string, RegisteredKey>();
    const encryption = new Map<PartyId, EncryptionKey[]>();
    for (const k of imported) {
      if (k.use === "sig") signing.set(k.registered.kid, k.registered);
      else {
        const ofParty = encryption.get(k.key.partyId);
        if (ofParty === undefined) encryption.set(k.key.partyId, [k.key]);
        else ofParty.push(k.key);
      }
    }
    this.keys = signing;
    this.encryptionKeys = encryption;
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
    for (const listener of this.added) await listener().catch(() => {});
  }

  /**
   * `listener` runs after each add(); it reports its own failures (the party is registered all
   * the same, and the reload timer catches up), and add() ignores them.
   */
  onAdded(listener: () => Promise<void>): void {
    this.added.push(listener);
  }

  hasParty(partyId: string): boolean {
    return this.parties.has(partyId);
  }

  party(partyId: string): PartyRecord | undefined {
    return this.parties.get(partyId);
  }

  /** A signing key; never an encryption key, whatever kid is asked for. */
  keyById(kid: string): RegisteredKey | undefined {
    return this.keys.get(kid);
  }

  /**
   * The party's encryption key to encrypt personal data to at `at`: the newest (by validFrom)
   * valid then and not revoked. Undefined when it has none: it cannot receive personal data.
   */
  encryptionKeyOf(partyId: PartyId, at: Date): { kid: string; key: CryptoKey } | undefined {
    const t = at.getTime();
    const key = (this.encryptionKeys.get(partyId) ?? [])
      .filter(
        (k) =>
          k.validFrom.getTime() <= t &&
          (k.validUntil === null || t < k.validUntil.getTime()) &&
          (k.revokedAt === null || t < k.revokedAt.getTime()),
      )
      .sort((a, b) => b.validFrom.getTime() - a.validFrom.getTime())[0];
    return key === undefined ? undefined : { kid: key.kid, key: key.key };
  }

  listParties(): PartyRecord[] {
    return [...this.parties.values()];
  }
}

/** A partner's (or our own) X25519 public key, imported once. */
interface EncryptionKey {
  kid: string;
  partyId: PartyId;
  key: CryptoKey;
  validFrom: Date;
  validUntil: Date | null;
  revokedAt: Date | null;
}

type ImportedKey = { use: "sig"; registered: RegisteredKey } | { use: "enc"; key: EncryptionKey };

/**
 * Imports a key for its use: a signing key for its signing alg, an encryption key as X25519 for
 * ECDH-ES+A256KW. Anything else is request_invalid, so it never reaches the store.
 */
async function importKey(record: KeyRecord): Promise<ImportedKey> {
  const use = record.use ?? "sig";
  const fits =
    use === "enc"
      ? record.alg === PERSONAL_DATA_ALG &&
        record.publicJwk.kty === "OKP" &&
        record.publicJwk.crv === "X25519"
      : (ALLOWED_ALGS as readonly string[]).includes(record.alg);
  let key: CryptoKey | undefined;
  if (fits) {
    try {
      key = (await importJWK(record.publicJwk as JWK, record.alg)) as CryptoKey;
    } catch {
      key = undefined;
    }
  }
  if (key === undefined) {
    throw new LiaisonError(
      "request_invalid",
      `key ${record.kid} cannot be imported as ${record.alg} for use ${use}`,
    );
  }
  const validity = {
    validFrom: record.validFrom,
    validUntil: record.validUntil,
    revokedAt: record.revokedAt,
  };
  if (use === "enc") {
    return { use, key: { kid: record.kid, partyId: record.partyId, key, ...validity } };
  }
  return {
    use,
    registered: {
      kid: record.kid,
      partyId: record.partyId,
      alg: record.alg as SigningAlg,
      key,
      ...validity,
    },
  };
}
