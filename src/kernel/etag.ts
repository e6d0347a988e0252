import { OperationOutcomeError } from './outcome';

/** Weak ETags carry the version id (R4 http.html#versioning): `W/"3"`. */
export const etag = (versionId: number | string) => `W/"${versionId}"`;

/** An instant as an HTTP date (Last-Modified). */
export const httpDate = (instant: string) => new Date(instant).toUTCString();

/** Largest version id accepted in a tag: PostgreSQL integer, so a huge number is a 400 or 404, never a 500. */
const MAX_VERSION = 2_147_483_647;

/**
 * An If-Match condition: a version, or `*`, any current version (RFC 9110 13.1.1: true when
 * the resource exists). `NO_VERSION` is a well-formed tag that names no version this server
 * issues (`W/"01"`, `W/"0"`, a number past the largest version): it matches nothing.
 */
export type VersionCondition = number | '*';

/** The condition of a tag that no version matches: version ids start at 1. */
export const NO_VERSION = 0;

/**
 * `W/"3"`, `"3"` or `3` → 3; `*` → '*'; anything else is a 400. Entity tags are opaque strings
 * compared character by character (RFC 9110 8.8.3.2), so `W/"01"` is not `W/"1"`: it is a
 * well-formed tag that names no version (NO_VERSION, a 412), not version 1.
 */
export function parseVersionTag(tag: string | undefined, header: string): VersionCondition | undefined {
  if (tag === undefined || tag === '') return undefined;
  if (tag.trim() === '*') return '*';
  const m = /^(?:W\/)?"?(\d{1,20})"?$/.exec(tag.trim());
  if (!m) {
    throw new OperationOutcomeError(400, { code: 'invalid', diagnostics: `${header} must be a version tag like W/"3", got ${tag.slice(0, 40)}` });
  }
  return parseVersionId(m[1]) ?? NO_VERSION;
}

/**
 * `If-None-Match` on an update (the header, or a bundle entry's `request.ifNoneMatch`): only `*`
 * (RFC 9110 13.1.2), create it only if it does not exist; true when it says so.
 */
export function parseIfNoneMatchOnUpdate(tag: string | undefined, header: string): boolean {
  if (tag === undefined) return false;
  if (tag.trim() === '*') return true;
  throw new OperationOutcomeError(400, { code: 'invalid', diagnostics: `${header} on an update takes only * (create it only if it does not exist); versions are compared with If-Match` });
}

/** A version id from a URL (`_history/{vid}`): a positive integer in range, else undefined. */
export function parseVersionId(text: string | undefined): number | undefined {
  // Version ids are strings (R4 resource.html#Meta): only the form this server issues names one, so `01` and `+1` name none.
  if (!text || !/^[1-9]\d{0,9}$/.test(text)) return undefined;
  const n = Number(text);
  return n >= 1 && n <= MAX_VERSION ? n : undefined;
}
