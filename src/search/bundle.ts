import { operationOutcome } from '../kernel/outcome';
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

function entry(baseUrl: string, r: FoundResource, mode: 'match' | 'include'): string {
  return `{"fullUrl":${JSON.stringify(`${baseUrl}/${r.type}/${r.id}`)},"resource":${r.json},"search":{"mode":"${mode}"}}`;
}

export function searchsetJson(parts: BundleParts): string {
  const entries = [
    ...parts.matches.map((r) => entry(parts.baseUrl, r, 'match')),
    ...parts.included.map((r) => entry(parts.baseUrl, r, 'include')),
  ];
  if (parts.warnings.length) {
    const outcome = operationOutcome(parts.warnings.map((diagnostics) => ({ severity: 'warning', code: 'not-supported', diagnostics })));
    entries.push(`{"resource":${JSON.stringify(outcome)},"search":{"mode":"outcome"}}`);
  }
  const head: string[] = [
    '"resourceType":"Bundle"',
    `"meta":{"lastUpdated":"${new Date().toISOString()}"}`,
    '"type":"searchset"',
  ];
  if (parts.total !== undefined) head.push(`"total":${parts.total}`);
  head.push(`"link":${JSON.stringify(parts.links)}`);
  if (entries.length) head.push(`"entry":[${entries.join(',')}]`);
  return `{${head.join(',')}}`;
}
