import type { AccessPolicy } from '../access/policy';
import type { PendingWrite } from '../pipeline';
import { CLIENT_ID_SYSTEM } from './event';

/** Who wrote a version (docs/decisions/013-audit-trail.md "Authorship"). */
export const VERSION_AUTHOR_URL = 'http://rpm.example.org/fhir/StructureDefinition/version-author';

/**
 * enrich stage: every version carries its author in `meta.extension`, so that "who changed this
 * Observation?" is answered by the version itself (vread, _history), without the audit trail's
 * scopes. The author is the user's FHIR identity, else the client; the server's own writes
 * (Flags a rule raised) name the server. A client's own claim under this URL is replaced.
 *
 * The stamp does not mark the write `changed` (src/pipeline/conform.ts): it is an Extension of a
 * fixed shape built here from non-empty strings, which the R4 schema cannot refuse, added to a
 * resource validated as it was sent. Marking it sent every version through the schema twice: 15 µs
 * of the server's ~140 µs per Observation of a 100-entry transaction (CPU profile, bench
 * transaction-100). test/audit/trail.test.ts validates each kind of author.
 */
export function stampAuthors(writes: readonly PendingWrite[], baseUrl: string): void {
  for (const w of writes) {
    if (!w.resource) continue;
    const meta = w.resource.meta ?? {};
    const others = (meta.extension ?? []).filter((e) => e.url !== VERSION_AUTHOR_URL);
    w.resource.meta = { ...meta, extension: [...others, { url: VERSION_AUTHOR_URL, valueReference: authorOf(w.policy, baseUrl) }] };
  }
}

export function authorOf(policy: AccessPolicy, baseUrl: string): fhir4.Reference {
  if (policy.fhirUser) return { reference: policy.fhirUser };
  if (policy.clientId === 'internal' && policy.origin === undefined) return { identifier: { system: 'urn:ietf:rfc:3986', value: baseUrl }, display: 'this server' };
  return { identifier: { system: CLIENT_ID_SYSTEM, value: policy.clientId }, display: policy.clientId };
}
