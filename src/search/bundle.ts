import { operationOutcome } from '../kernel/outcome';
import { isoNow } from '../kernel/clock';
import type { FoundResource } from './include';

/**
 * The searchset Bundle as JSON text. Stored resources are spliced in as the database returned
 * them (`content::text`), never parsed and re-serialised: DESIGN measured per-request
 * JavaScript, not SQL, as the limit of the closest peer server.
 */
export interface BundleParts {
  baseUrl: string;
  total?: number;
  links: Array<{ relation: string; url: string }>;
  matches: readonly FoundResource[];
  included: readonly FoundResource[];
  /** Warnings for the client (ignored parameters under lenient handling). */
  warnings: string[];
}

/** An entry's pieces, its stored resource text between them, then the comma that follows it. */
function pushEntry(pieces: string[], baseUrl: string, r: FoundResource, mode: 'match' | 'include'): void {
  pieces.push(`{"fullUrl":${JSON.stringify(`${baseUrl}/${r.type}/${r.id}`)},"resource":`, r.json, `,"search":{"mode":"${mode}"}}`, ',');
}

/**
 * The Bundle's text, joined once from its pieces. Measured reason: entries joined, then the
 * head, then the braces made three copies of a page's resources (65 kB for 50 vital signs) where
 * the socket needs one.
 */
export function searchsetJson(parts: BundleParts): string {
  const entries: string[] = [];
  for (const r of parts.matches) pushEntry(entries, parts.baseUrl, r, 'match');
  for (const r of parts.included) pushEntry(entries, parts.baseUrl, r, 'include');
  if (parts.warnings.length) {
    const outcome = operationOutcome(parts.warnings.map((diagnostics) => ({ severity: 'warning', code: 'not-supported', diagnostics })));
    entries.push(`{"resource":${JSON.stringify(outcome)},"search":{"mode":"outcome"}}`, ',');
  }
  const head = [`{"resourceType":"Bundle","meta":{"lastUpdated":"${isoNow()}"},"type":"searchset",`];
  if (parts.total !== undefined) head.push(`"total":${parts.total},`);
  head.push(`"link":${JSON.stringify(parts.links)}`);
  if (entries.length === 0) return `${head.join('')}}`;
  // The last entry's comma closes the array instead.
  entries[entries.length - 1] = ']}';
  return [...head, ',"entry":[', ...entries].join('');
}
