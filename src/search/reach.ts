import { OperationOutcomeError } from '../kernel/outcome';

/**
 * What a caller may see of each type, as the access policy decides it. Search does not know
 * policies (it sits below them); the caller hands it this function, and search applies it to
 * every type a query reaches besides the one searched — chained targets, `_has` sources,
 * included and revincluded resources, at every `:iterate` level — as conditions of the SQL.
 */
export interface TypeLimits {
  /** Only resources in this Patient's compartment. */
  compartmentPatientId?: string;
  /** Parameters every resource must also match (a granular scope). */
  constraint?: URLSearchParams;
  /**
   * Data the caller must not see although the rest allows it: a patient's compartment, or the
   * part of it matching `constraint` (a Consent that denies this caller a patient's data or
   * one class of it; decision record 015). AND of NOTs.
   */
  exclude?: readonly PatientExclusion[];
}

/** One patient's data, or the part of it matching `constraint` (AND of its parameters). */
export interface PatientExclusion {
  patientId: string;
  constraint?: URLSearchParams;
}

/** Whether `limits` let everything through (no query needed to judge a resource). */
export function isUnlimited(limits: TypeLimits): boolean {
  return limits.compartmentPatientId === undefined && !limits.constraint && !limits.exclude?.length;
}

/** The limits of `action` on `type`; throws a 403 OperationOutcomeError when the caller may not at all. */
export type Reach = (type: string, action: 'r' | 's') => TypeLimits;

export const unlimited: Reach = () => ({});

/** The limits, or undefined when the caller may not reach the type (a wildcard skips it instead of failing). */
export function limitsIfAllowed(reach: Reach, type: string, action: 'r' | 's'): TypeLimits | undefined {
  try {
    return reach(type, action);
  } catch (err) {
    if (err instanceof OperationOutcomeError && err.status === 403) return undefined;
    throw err;
  }
}
