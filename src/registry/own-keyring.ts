/**
 * Our own keys, as the key directory holds them: the signer for outbound messages and receipts
 * (the newest signing key valid now), our encryption keys for personal data (the newest one to
 * encrypt to ourselves, all of them to decrypt), the public keys we publish (both kinds), and
 * the re-read that makes a `liaison keys generate` / `revoke` take effect without a restart.
 * Every change is registered in the partner registry before it is used, so our own messages keep
 * verifying locally.
 */

import type { CryptoKey } from "jose";
import type { CaseKeys, Signer } from "../delivery/ports.ts";
import { LiaisonError } from "../protocol/errors.ts";
import {
  countersignHandoverRecord,
  type HandoverRecord,
  signHandoverRecord,
} from "../protocol/handover-record.ts";
import type { JwsTyp } from "../protocol/jws-profile.ts";
import { signCompact } from "../protocol/sign.ts";
import type { Clock, KeyRecord, PartyRecord } from "../protocol/types.ts";
import {
  currentEncryptionKey,
  currentSigningKey,
  loadKeyFiles,
  type OwnEncryptionKey,
  type OwnKey,
  signingKeyValid,
} from "./key-files.ts";
import type { PartnerRegistry } from "./partner-registry.ts";

export class OwnKeyring implements Signer, CaseKeys {
  private registry: PartnerRegistry | undefined;

  private constructor(
    private readonly dir: string,
    private readonly self: PartyRecord,
    private readonly clock: Clock,
    private keys: OwnKey[],
  ) {}

  /**
   * Reads the key directory; refuses to start without a key valid now. Runs before anything
   * touches the database, so a broken key directory is reported as such.
   */
  static async read(opts: { dir: string; self: PartyRecord; clock: Clock }): Promise<OwnKeyring> {
    const keys = await loadKeyFiles(opts.dir);
    if (currentSigningKey(keys, opts.clock()) === undefined) {
      throw new LiaisonError(
        "key_store_invalid",
        `no signing key valid now in ${opts.dir}; run: liaison keys generate`,
      );
    }
    return new OwnKeyring(opts.dir, opts.self, opts.clock, keys);
  }

  /** Registers our keys in the partner registry, now and after every reload that changes them. */
  async register(registry: PartnerRegistry): Promise<void> {
    await registry.add(this.self, this.publicKeys());
    this.registry = registry;
  }

  async sign(payload: unknown, typ: JwsTyp): Promise<{ jws: string; kid: string }> {
    const key = currentSigningKey(this.keys, this.clock());
    if (key === undefined) {
      throw new LiaisonError("key_store_invalid", "no signing key is valid now");
    }
    return { jws: await signCompact(payload, key.signing, typ), kid: key.kid };
  }

  /** Signs a handover record with the signing key valid now (RFC 7515 §7.2.1, one signature). */
  signRecord(payload: Record<string, unknown>): Promise<HandoverRecord> {
    return signHandoverRecord(payload, this.signingKeyNow());
  }

  /** Adds our signature, with the signing key valid now, to a record the other party signed. */
  countersignRecord(record: HandoverRecord): Promise<HandoverRecord> {
    return countersignHandoverRecord(record, this.signingKeyNow());
  }

  private signingKeyNow() {
    const key = currentSigningKey(this.keys, this.clock());
    if (key === undefined) {
      throw new LiaisonError("key_store_invalid", "no signing key is valid now");
    }
    return key.signing;
  }

  /** Whether a signature by `kid` is still good to send: our signing key, valid now, not revoked. */
  canSignWith(kid: string): boolean {
    return signingKeyValid(this.keys, kid, this.clock());
  }

  hasValidKey(): boolean {
    return currentSigningKey(this.keys, this.clock()) !== undefined;
  }

  /**
   * Our current encryption key (the newest valid now, not revoked), PUBLIC half: personal data we
   * send is encrypted to it as well as to the addressees, so that we can read our own messages.
   * Undefined when the directory holds none valid now.
   */
  encryptionKey(): { kid: string; key: CryptoKey } | undefined {
    const key = currentEncryptionKey(this.keys, this.clock());
    return key === undefined ? undefined : { kid: key.kid, key: key.publicKey };
  }

  /**
   * Every encryption key's PRIVATE half, rotated-out, expired and revoked ones included: personal
   * data encrypted to an old key stays readable after a rotation.
   */
  decryptionKeys(): Array<{ kid: string; key: CryptoKey }> {
    return this.keys
      .filter((k): k is OwnEncryptionKey => k.use === "enc")
      .map((k) => ({ kid: k.kid, key: k.decryption }));
  }

  /**
   * Every key of the directory, signing and encryption keys, old and revoked ones included, as
   * the registry stores them (and the party document publishes them).
   */
  publicKeys(): KeyRecord[] {
    return this.records(this.keys);
  }

  private records(keys: OwnKey[]): KeyRecord[] {
    return keys.map((key) => {
      const { kid: _kid, alg: _alg, use: _use, ...publicJwk } = key.publicJwk;
      return {
        kid: key.kid,
        partyId: this.self.id,
        use: key.use,
        alg: key.alg,
        publicJwk,
        validFrom: key.validFrom,
        validUntil: key.validUntil,
        revokedAt: key.revokedAt,
      };
    });
  }

  /** Re-reads the directory; returns the kids when something changed, else null. */
  async reload(): Promise<string[] | null> {
    const fresh = await loadKeyFiles(this.dir);
    const fingerprint = (keys: OwnKey[]) =>
      keys.map((k) => `${k.kid}:${k.validUntil?.getTime()}:${k.revokedAt?.getTime()}`).join();
    if (fingerprint(fresh) === fingerprint(this.keys)) return null;
    // Registered first: should that fail, the next round tries again with the same change.
    await this.registry?.add(this.self, this.records(fresh));
    this.keys = fresh;
    return fresh.map((k) => k.kid);
  }
}
