import { createHmac } from 'node:crypto';

/**
 * A keyed pseudonym of `text` (HMAC-SHA-256, hex): the same text and key give the same pseudonym,
 * and without the key it cannot be computed from a guess (a plain hash of a short id could).
 * Pseudonymised data is still personal data for whoever holds the key (GDPR Recital 26).
 */
export function pseudonym(key: string, text: string): string {
  return createHmac('sha256', key).update(text).digest('hex');
}

/**
 * The key of one purpose, derived from the configured one (HMAC(key, purpose)): pseudonyms made
 * for different purposes from one PSEUDONYM_KEY cannot be matched to each other — an
 * anonymised extract's ids against the erasure records of the audit trail, for instance.
 */
export function purposeKey(key: string, purpose: string): string {
  return pseudonym(key, purpose);
}
