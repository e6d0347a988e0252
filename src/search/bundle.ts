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

/** The text before and after an entry's resource, `mode` being match or include. */
function entryParts(parts: string[], baseUrl: string, r: FoundResource, mode: 'match' | 'include'): void {
  parts.push(`{"fullUrl":${JSON.stringify(`${baseUrl}/${r.type}/${r.id}`)},"resource":`, r.json, `,"search":{"mode":"${mode}"}}`, ',');
}

/**
 * The Bundle's text, joined once from its pieces. Measured reason: entries joined, then the
 * head, then the braces made three copies of a page's resources (65 kB for 50 vital signs) where
 * the socket needs one.
 */
export function searchsetJson(parts: BundleParts): string {
  const out: string[] = [
    '{"resourceType":"Bundle",',
    `"meta":{"lastUpdated":"${isoNow()}"},`,
    '"type":"searchset",',
  ];
  if (parts.total !== undefined) out.push(`"total":${parts.total},`);
  out.push(`"link":${JSON.stringify(parts.links)}`);
  const entriesAt = out.length;
  for (const r of parts.matches) entryParts(out, parts.baseUrl, r, 'match');
  for (const r of parts.included) entryParts(out, parts.baseUrl, r, 'include');
  if (parts.warnings.length) {
    const outcome = operationOutcome(parts.warnings.map((diagnostics) => ({ severity: 'warning', code: 'not-supported', diagnostics })));
    out.push(`{"resource":${JSON.stringify(outcome)},"search":{"mode":"outcome"}}`, ',');
  }
  if (out.length > entriesAt) {
    out[entriesAt] = `,"entry":[${out[entriesAt]}`;
    out[out.length - 1] = ']';
  }
  out.push('}');
  return out.join('');
}
