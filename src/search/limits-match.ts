import { OperationOutcomeError } from '../kernel/outcome';
import { isInPatientCompartment } from './compartment';
import { extractIndex } from './extract';
import { parseSearch } from './parse';
import type { TypeLimits } from './reach';
import { rowsOfParam } from './criteria-match';
import { IN_MEMORY_TOKEN_MODIFIERS, type TokenTerm, tokenRowMatches } from './types/token';

/**
 * Whether a stored version of `type` lies within a caller's limits, judged on the version
 * itself: a resource's past versions have no index rows, and a version from before it entered
 * the caller's compartment (or before its category changed) must not be read through history or
 * vread. The patient compartment is judged as it is on write; granular constraints on token
 * parameters (the `category=…` of SMART's granular scopes) are matched in memory. A constraint
 * this cannot judge is a 403, never a guess. What a Consent excludes is judged the same way.
 */
export function withinLimits(type: string, resource: fhir4.FhirResource, limits: TypeLimits): boolean {
  if (limits.compartmentPatientId !== undefined && !isInPatientCompartment(type, resource, limits.compartmentPatientId)) return false;
  if (limits.constraint && !matchesConstraint(type, resource, limits.constraint)) return false;
  for (const ex of limits.exclude ?? []) {
    if (isInPatientCompartment(type, resource, ex.patientId) && (!ex.constraint || matchesConstraint(type, resource, ex.constraint))) return false;
  }
  return true;
}

function matchesConstraint(type: string, resource: fhir4.FhirResource, constraint: URLSearchParams): boolean {
  if ([...constraint.keys()].length === 0) return true;
  const { filters } = parseSearch(type, constraint, { defaultCount: 0, maxCount: 0 });
  const tokens = extractIndex(type, resource).rows.token;
  return filters.every((filter) => {
    if (filter.kind !== 'param' || filter.param.type !== 'token' || filter.missing !== undefined || !IN_MEMORY_TOKEN_MODIFIERS.has(filter.modifier)) {
      throw unjudgeable(type);
    }
    if (filter.param.storage.kind === 'column') {
      // `_id`, a column rather than index rows: compared as the search compares it (r.id = ANY(…)).
      const matches = (filter.terms as TokenTerm[]).some((t) => (t.kind === 'code' || t.kind === 'systemCode') && t.code === resource.id);
      return filter.negate ? !matches : matches;
    }
    const rows = rowsOfParam(filter.param, tokens);
    const matches = (filter.terms as TokenTerm[]).some((term) =>
      rows.some((row) => {
        const matched = tokenRowMatches(term, row);
        if (matched === undefined) {
          throw unjudgeable(type);
        }
        return matched;
      }),
    );
    return filter.negate ? !matches : matches;
  });
}

/**
 * A limit this module cannot judge on one version. Said without naming the interaction: the
 * same judgement serves history and vread, writes (decision 031) and notifications.
 */
function unjudgeable(type: string): OperationOutcomeError {
  return new OperationOutcomeError(403, {
    code: 'forbidden',
    diagnostics: `the access token's limits on ${type} hold a condition that can be judged only by a search of current versions, not on one stored version (history, vread, or the version a write acts on)`,
  });
}
