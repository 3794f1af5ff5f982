/**
 * The shapes of identifiers shared by configuration, party documents and the local API. They
 * match schemas/common.v1.json (`partyId`) and docs/protocol.md.
 */

/** Country (ISO 3166-1 alpha-2, or INT for international organisations), agency, office. */
export const PARTY_ID_PATTERN = "^(?:[A-Z]{2}|INT)-[A-Z0-9]{2,12}-[A-Z0-9]{2,16}$";
export const PARTY_ID = new RegExp(PARTY_ID_PATTERN);

export const COUNTRY = /^(?:[A-Z]{2}|INT)$/;

/** A literal NATS subject: dot-separated tokens, no wildcards, no spaces. */
/** A JetStream domain name (one subject token): letters, digits, `_` and `-`, up to 32. */
export const NATS_DOMAIN = /^[A-Za-z0-9_-]{1,32}$/;
export const LITERAL_SUBJECT = /^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$/;
