/**
 * String normalisation shared by extraction and search, so the two can never disagree: FHIR
 * string search is case- and accent-insensitive by default ("Müller" is found by `name=mull`).
 */
const COMBINING_MARKS = /[\u0300-\u036f]/g;

export function normalizeText(value: string): string {
  // Plain ASCII is the common case (codes, LOINC displays): skip the Unicode decomposition.
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(value)) return value.toLowerCase();
  return value.normalize('NFD').replace(COMBINING_MARKS, '').toLowerCase();
}

export { escapeLike } from '../kernel/sql-like';
