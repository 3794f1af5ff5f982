/**
 * The JWK Set a gateway publishes at /.well-known/jwks.json (RFC 7517 §5), with one extra
 * top-level member, `party`, describing the publisher. Each key carries the registry's validity
 * as extra members (`validFrom`, `validUntil`, `revokedAt`, RFC 3339), which JOSE libraries
 * ignore. Keys are signing keys (`use: "sig"`, EdDSA or ES256) or encryption keys (`use: "enc"`,
 * X25519 for ECDH-ES+A256KW, which personal data is encrypted to). `partners add` reads this
 * document from a file or a URL.
 */
import { calculateJwkThumbprint, importJWK, type JWK } from "jose";
import { type ErrorIssue, LiaisonError } from "../protocol/errors.ts";
import { COUNTRY, LITERAL_SUBJECT, NATS_DOMAIN, PARTY_ID } from "../protocol/identifiers.ts";
import { checkJsonValue, MAX_JSON_DEPTH } from "../protocol/json-limits.ts";
import { ALLOWED_ALGS, type SigningAlg } from "../protocol/jws-profile.ts";
import { PERSONAL_DATA_ALG } from "../protocol/personal-data.ts";
import type { KeyRecord, PartyRecord } from "../protocol/types.ts";

interface PublishedValidity {
  validFrom: string;
  validUntil?: string;
  revokedAt?: string;
}

export type PublishedKey =
  | (JWK & PublishedValidity & { kid: string; alg: SigningAlg; use: "sig" })
  | (JWK & PublishedValidity & { kid: string; alg: typeof PERSONAL_DATA_ALG; use: "enc" });

export interface PartyDocument {
  party: PartyRecord;
  keys: PublishedKey[];
}

export function buildPartyDocument(party: PartyRecord, keys: KeyRecord[]): PartyDocument {
  return {
    party,
    keys: keys.map((k): PublishedKey => {
      const validity: PublishedValidity = {
        validFrom: k.validFrom.toISOString(),
        ...(k.validUntil === null ? {} : { validUntil: k.validUntil.toISOString() }),
        ...(k.revokedAt === null ? {} : { revokedAt: k.revokedAt.toISOString() }),
      };
      const jwk = k.publicJwk as JWK;
      return k.use === "enc"
        ? { ...jwk, kid: k.kid, alg: PERSONAL_DATA_ALG, use: "enc", ...validity }
        : { ...jwk, kid: k.kid, alg: k.alg as SigningAlg, use: "sig", ...validity };
    }),
  };
}

function invalid(why: string, issues?: ErrorIssue[]): never {
  throw new LiaisonError(
    "request_invalid",
    `party document: ${why}`,
    issues === undefined ? undefined : { issues },
  );
}

const RFC3339 =
  /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$/;

/** Refuses dates that Date.parse would roll over (2026-02-30 becomes 2 March) and leap seconds. */
function calendarDate(value: string): boolean {
  const [y, m, d] = value.slice(0, 10).split("-").map(Number) as [number, number, number];
  // setUTCFullYear: Date.UTC would read the years 0000 to 0099 as 1900 to 1999.
  const day = new Date(0);
  day.setUTCFullYear(y, m - 1, d);
  const [hh, mm, ss] = value.slice(11, 19).split(":").map(Number) as [number, number, number];
  return day.getUTCMonth() === m - 1 && day.getUTCDate() === d && hh < 24 && mm < 60 && ss < 60;
}

/**
 * The instants a key's times may name: the years 0001 to 9999, in UTC. PostgreSQL's timestamptz
 * has no year 0 (0000 is 1 BC, which JavaScript writes as year 0), and an offset can carry
 * `0001-01-01T00:00:00+01:00` into it, or `9999-12-31T23:00:00-05:00` into the year 10000.
 */
const EARLIEST = Date.parse("0001-01-01T00:00:00.000Z");
const LATEST = Date.parse("9999-12-31T23:59:59.999Z");

function date(value: unknown, field: string): Date | null {
  if (value === undefined) return null;
  if (typeof value !== "string" || !RFC3339.test(value) || !calendarDate(value)) {
    invalid(`${field} must be an RFC 3339 time with a zone`);
  }
  const instant = new Date(value);
  if (!(instant.getTime() >= EARLIEST && instant.getTime() <= LATEST)) {
    invalid(`${field} must lie in the years 0001 to 9999 (UTC)`);
  }
  return instant;
}

/** Parses and checks a party document; every kid must be the thumbprint of its key. */
export async function parsePartyDocument(
  doc: unknown,
): Promise<{ party: PartyRecord; keys: KeyRecord[] }> {
  if (typeof doc !== "object" || doc === null) invalid("not a JSON object");
  // Anywhere in the document: the party's members are stored as text and each key as jsonb,
  // which refuse U+0000 and lone surrogates; the depth bounds whatever walks the document.
  const limits = checkJsonValue(doc, MAX_JSON_DEPTH);
  if (limits !== null) {
    invalid(
      limits.kind === "depth"
        ? `nests deeper than ${MAX_JSON_DEPTH} levels`
        : "a string holds U+0000 or a lone surrogate",
      [{ path: limits.path, message: limits.message }],
    );
  }
  const { party, keys } = doc as { party?: Record<string, unknown>; keys?: unknown };
  if (party === undefined || party === null || typeof party !== "object" || Array.isArray(party)) {
    invalid("the party member is missing");
  }
  for (const field of ["id", "name", "country", "kind", "inboundSubject"] as const) {
    if (typeof party[field] !== "string" || party[field] === "")
      invalid(`party.${field} is missing`);
  }
  const id = party.id as string;
  if (!PARTY_ID.test(id)) invalid("party.id is not a party id");
  if (!COUNTRY.test(party.country as string) || !id.startsWith(`${party.country}-`)) {
    invalid("party.country must be the party id's country prefix (ISO 3166-1 alpha-2 or INT)");
  }
  if (!LITERAL_SUBJECT.test(party.inboundSubject as string)) {
    invalid("party.inboundSubject must be a literal NATS subject (no wildcards or spaces)");
  }
  if (
    party.natsDomain !== undefined &&
    (typeof party.natsDomain !== "string" || !NATS_DOMAIN.test(party.natsDomain))
  ) {
    invalid("party.natsDomain must be a JetStream domain name (letters, digits, _ or -, up to 32)");
  }
  if (party.receiptBatches !== undefined && typeof party.receiptBatches !== "boolean") {
    invalid("party.receiptBatches must be true or false");
  }
  if (!Array.isArray(keys) || keys.length === 0) invalid("keys must be a non-empty array");
  if (keys.length > 64) invalid("keys holds more than 64 keys");
  const records: KeyRecord[] = [];
  for (const [i, raw] of keys.entries()) {
    if (typeof raw !== "object" || raw === null || Array.isArray(raw))
      invalid(`keys[${i}] is not a JSON object`);
    const jwk = raw as Record<string, unknown>;
    if ("d" in jwk) invalid(`keys[${i}] contains a private key`);
    // Encryption keys (use "enc"): X25519 keys that personal data is encrypted to (JWE). Any
    // other use, or none, is a signing key.
    const use = jwk.use === "enc" ? "enc" : "sig";
    if (use === "enc") {
      if (jwk.alg !== PERSONAL_DATA_ALG) {
        invalid(`keys[${i}].alg must be ${PERSONAL_DATA_ALG} for an encryption key`);
      }
      if (jwk.kty !== "OKP" || jwk.crv !== "X25519") {
        invalid(`keys[${i}] must be an X25519 key (kty OKP, crv X25519) for an encryption key`);
      }
    } else if (
      typeof jwk.alg !== "string" ||
      !(ALLOWED_ALGS as readonly string[]).includes(jwk.alg)
    ) {
      invalid(`keys[${i}].alg must be one of ${ALLOWED_ALGS.join(", ")}`);
    }
    const {
      kid,
      alg,
      use: _use,
      validFrom,
      validUntil,
      revokedAt,
      key_ops: _ops,
      ...publicJwk
    } = jwk;
    const thumbprint = await calculateJwkThumbprint(publicJwk as JWK, "sha256").catch(() =>
      invalid(`keys[${i}] is not a public JWK`),
    );
    if (kid !== thumbprint)
      invalid(`keys[${i}].kid must be the RFC 7638 SHA-256 thumbprint of the key`);
    if (records.some((r) => r.kid === thumbprint)) invalid(`keys[${i}] repeats kid ${thumbprint}`);
    records.push({
      kid: thumbprint,
      partyId: party.id as string,
      use,
      alg: alg as string,
      publicJwk: publicJwk as Record<string, unknown>,
      validFrom:
        date(validFrom, `keys[${i}].validFrom`) ?? invalid(`keys[${i}].validFrom is missing`),
      validUntil: date(validUntil, `keys[${i}].validUntil`),
      revokedAt: date(revokedAt, `keys[${i}].revokedAt`),
    });
  }
  // Encryption keys are optional (a party without one cannot receive personal data); a signing
  // key is not.
  if (!records.some((r) => r.use === "sig")) invalid("keys holds no signing key");
  for (const record of records) {
    if (record.validUntil !== null && record.validUntil.getTime() <= record.validFrom.getTime()) {
      invalid(`key ${record.kid}: validUntil must be after validFrom`);
    }
  }
  for (const record of records) {
    await importJWK(record.publicJwk as JWK, record.alg).catch(() =>
      invalid(`key ${record.kid} cannot be imported as ${record.alg}`),
    );
  }
  return {
    party: {
      id: party.id as string,
      name: party.name as string,
      country: party.country as string,
      kind: party.kind as string,
      inboundSubject: party.inboundSubject as string,
      ...(party.natsDomain === undefined ? {} : { natsDomain: party.natsDomain as string }),
      ...(party.receiptBatches === true ? { receiptBatches: true } : {}),
    },
    keys: records,
  };
}
