import type { PatientExclusion } from '../search';
import { type Action, type ResourceScope, parseResourceScope } from './scopes';

export type { Action } from './scopes';

/**
 * What a request may do, derived from its token's granted scopes. The FHIR layer asks it per
 * interaction (allows), turns constraints into SQL (granular scopes) and applies the patient
 * compartment in the query when confinedToPatient.
 */
export interface AccessPolicy {
  /** Who: client id, and subject/fhirUser when there is one. */
  readonly clientId: string;
  readonly subject?: string;
  /** The user's FHIR identity (`Practitioner/1`, `Patient/7`, `RelatedPerson/3`), when the token has a user with one. */
  readonly fhirUser?: string;
  /** patient/ scopes: the context patient's id; every patient-scoped access is confined to this compartment. */
  readonly patient?: string;
  /** Where the request came from (its id and network address), for the audit trail; absent for the server's own work. */
  readonly origin?: RequestOrigin;
  /** The granted scopes as strings (for introspection/audit). */
  readonly scopes: readonly string[];
  /**
   * When the token that carries this policy expires (epoch seconds); absent for access that does
   * not (the server's own). What outlives the request, a websocket binding, ends then.
   */
  readonly expiresAt?: number;
  /**
   * The grant the token belongs to (its jti, and its authorization grant when it has one), for
   * what acts on after the request under it (./grant.ts); absent for the server's own access.
   */
  readonly grant?: { readonly tokenId: string; readonly grantId?: string };
  /** Whether any granted scope allows `action` on `resourceType`. */
  allows(resourceType: string, action: Action): boolean;
  /**
   * For granular scopes: the alternatives of search-parameter sets that a resource must match for
   * `action` on `resourceType` (OR of sets; within a set, AND). `undefined` when some granted scope
   * is unrestricted for it. The lead turns these into SQL predicates through the search module.
   */
  constraints(resourceType: string, action: Action): URLSearchParams[] | undefined;
  /** Whether the patient compartment applies to `action` on `resourceType` (a patient/ scope is what grants it and no user/ or system/ scope does). */
  confinedToPatient(resourceType: string, action: Action): boolean;
  /**
   * Patients' data of `resourceType` this caller must not see although its scopes allow it: what
   * active Consents deny it (src/access/consent.ts). Absent or empty: nothing.
   */
  exclusions?(resourceType: string): readonly PatientExclusion[];
}

/** The request behind an access: its id (X-Request-Id) and the peer's address as the TCP connection knows it. */
export interface RequestOrigin {
  readonly requestId: string;
  readonly address?: string;
}

/** Full access, for AUTH_DISABLED and internal calls. */
export const unrestricted: AccessPolicy = Object.freeze({
  clientId: 'internal',
  scopes: Object.freeze(['system/*.cruds']),
  allows: () => true,
  constraints: () => undefined,
  confinedToPatient: () => false,
});

/**
 * The policy of a set of granted scopes. Unknown scope strings grant nothing. patient/ scopes
 * grant nothing without a context patient (there would be no compartment to confine them to).
 *
 * When both a patient/ scope and a user/ or system/ scope grant the same access, the compartment
 * does not apply and the constraints are those of the user/system scopes only: the contract
 * cannot say "in the compartment OR matching these parameters", so it keeps the narrower answer
 * (never wider than granted).
 */
export function policyFromScopes(
  scopes: string[],
  context: { clientId: string; subject?: string; patient?: string; fhirUser?: string; expiresAt?: number; grant?: AccessPolicy['grant'] },
): AccessPolicy {
  const parsed = scopes
    .map(parseResourceScope)
    .filter((s): s is ResourceScope => s !== undefined && (s.context !== 'patient' || context.patient !== undefined));
  const granting = (type: string, action: Action) => parsed.filter((s) => (s.type === '*' || s.type === type) && s.actions.has(action));
  const confined = (type: string, action: Action) => {
    const g = granting(type, action);
    return g.length > 0 && g.every((s) => s.context === 'patient');
  };
  return Object.freeze({
    clientId: context.clientId,
    ...(context.subject !== undefined ? { subject: context.subject } : {}),
    ...(context.patient !== undefined ? { patient: context.patient } : {}),
    ...(context.fhirUser !== undefined ? { fhirUser: context.fhirUser } : {}),
    ...(context.expiresAt !== undefined ? { expiresAt: context.expiresAt } : {}),
    ...(context.grant !== undefined ? { grant: context.grant } : {}),
    scopes: Object.freeze([...scopes]),
    allows: (type: string, action: Action) => granting(type, action).length > 0,
    confinedToPatient: confined,
    constraints(type: string, action: Action): URLSearchParams[] | undefined {
      let g = granting(type, action);
      if (g.length === 0) return [];
      if (!confined(type, action)) g = g.filter((s) => s.context !== 'patient');
      if (g.some((s) => !s.query)) return undefined;
      return g.map((s) => new URLSearchParams(s.query));
    },
  });
}
