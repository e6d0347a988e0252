import type { AccessPolicy, Action } from './policy';
import { parseResourceScope, type ScopeContext } from './scopes';
import { consentRestrictsCaller } from './consent';
import { subscriptionReadCondition } from './subscriber';
import { findMatchingIds, findReachableIds, isUnlimited, patientsOf, type PatientExclusion, type Reach, withinLimits } from '../search';
import type { Queryable } from '../store/db';
import { readResource } from '../store/repository';
import { idSlices } from '../kernel/input-limits';
import { notFound, OperationOutcomeError } from '../kernel/outcome';

/**
 * Enforcement of a request's SMART access policy in the FHIR layer, one module for every
 * interaction: the routes, bundle entries and the write pipeline all ask here. Patient
 * confinement and granular constraints become search conditions in SQL, never a filter of
 * results after the fact.
 */

export function forbidden(diagnostics: string): OperationOutcomeError {
  return new OperationOutcomeError(403, { code: 'forbidden', diagnostics });
}

/**
 * Whether a scope names `type` itself — not a wildcard — in one of `contexts`, with `action` when
 * given. Some rights are too wide to come with `*`: reading the audit trail, erasing a patient.
 */
export function hasNamedScope(policy: AccessPolicy, type: string, only: { contexts?: readonly ScopeContext[]; action?: Action } = {}): boolean {
  return policy.scopes.map(parseResourceScope).some(
    (s) => s !== undefined && s.type === type && (only.contexts === undefined || only.contexts.includes(s.context)) && (only.action === undefined || s.actions.has(only.action)),
  );
}

const ACTION_NAMES: Record<Action, string> = { c: 'create', r: 'read', u: 'update', d: 'delete', s: 'search' };

/** 403 unless a granted scope allows `action` on `type`. */
export function requireAction(policy: AccessPolicy, type: string, action: Action): void {
  if (!policy.allows(type, action)) {
    throw forbidden(`the access token grants no ${ACTION_NAMES[action]} of ${type} (scopes: ${policy.scopes.join(' ') || 'none'})`);
  }
}

/** Where reads of `type` must stay: the context patient's compartment, and/or granular parameters. */
export interface ReadLimits {
  compartmentPatientId?: string;
  /** Parameters every result must also match (AND), from a granular scope or a caregiver's Consent. */
  constraint?: URLSearchParams;
  /** Patients' data a Consent denies the caller (decision record 015). */
  exclude?: readonly PatientExclusion[];
}

/**
 * The limits on `action` (r or s) of `type`. Granular scopes give alternatives (OR of sets);
 * one set becomes extra search parameters (AND). Several sets are merged when they constrain
 * the same single parameter (category=a OR category=b is `category=a,b`); other combinations
 * are refused rather than widened.
 */
export function readLimits(policy: AccessPolicy, type: string, action: 'r' | 's'): ReadLimits {
  const limits = scopeLimits(policy, type, action);
  // Someone else's Subscription is, to the caller, an id never used (decision 032): the same
  // condition on every read path, as a granular scope's is.
  const held = type === 'Subscription' ? subscriptionReadCondition(policy) : undefined;
  if (!held) return limits;
  const constraint = new URLSearchParams(limits.constraint);
  for (const [k, v] of held) constraint.append(k, v);
  return { ...limits, constraint };
}

function scopeLimits(policy: AccessPolicy, type: string, action: 'r' | 's'): ReadLimits {
  requireAction(policy, type, action);
  const limits: ReadLimits = {};
  if (policy.confinedToPatient(type, action)) limits.compartmentPatientId = policy.patient;
  const exclude = policy.exclusions?.(type);
  if (exclude?.length) limits.exclude = exclude;
  const alternatives = policy.constraints(type, action);
  if (alternatives === undefined) return limits;
  if (alternatives.length === 0) throw forbidden(`the access token grants no ${ACTION_NAMES[action]} of ${type}`);
  if (alternatives.length === 1) return { ...limits, constraint: alternatives[0] };
  const keys = new Set(alternatives.flatMap((a) => [...a.keys()]));
  if (keys.size === 1 && alternatives.every((a) => [...a.keys()].length === 1)) {
    const [key] = keys;
    return { ...limits, constraint: new URLSearchParams({ [key!]: alternatives.map((a) => a.get(key!)!).join(',') }) };
  }
  throw forbidden(`the granular scopes for ${type} combine parameters in a way this server cannot enforce; ask for one scope per parameter`);
}

/** Whether the stored resource `type/id` may be read under `limits` (one indexed query; no query when unlimited). */
export async function mayRead(db: Queryable, type: string, id: string, limits: ReadLimits): Promise<boolean> {
  if (isUnlimited(limits)) return true;
  const params = new URLSearchParams(limits.constraint);
  params.set('_id', id);
  // The reach hands search the exclusions of this type (the rest is in params and compartment).
  return (await findMatchingIds(db, type, params, 1, limits.compartmentPatientId, () => limits)).length > 0;
}

/** For a read of one resource: 404 (not 403) when it is outside what the token may see, so its existence does not leak. */
export async function requireReadable(db: Queryable, policy: AccessPolicy, type: string, id: string): Promise<void> {
  if (!(await mayRead(db, type, id, readLimits(policy, type, 'r')))) throw notFound(`${type}/${id} is not known`);
}

/**
 * The ids of `type` matching `params` that `policy` may search (`action` s) or read (r): its compartment and granular
 * limits are conditions of the SQL. 403 without the right to search the type. For doors and
 * capabilities that look resources up on a caller's behalf (a device door finding its Device).
 */
export async function findVisibleIds(db: Queryable, policy: AccessPolicy, type: string, params: URLSearchParams, limit?: number, action: 'r' | 's' = 's'): Promise<string[]> {
  return findReachableIds(db, policyReach(policy), type, params, limit, false, action);
}

/**
 * Which of `ids` of `type` `policy` may search (or, `action` r, read: mayRead for many ids):
 * findVisibleIds over `_id`, asked in slices a search takes.
 */
export async function findVisibleAmong(db: Queryable, policy: AccessPolicy, type: string, ids: readonly string[], action: 'r' | 's' = 's'): Promise<Set<string>> {
  const visible = new Set<string>();
  for (const slice of idSlices(ids)) for (const id of await findVisibleIds(db, policy, type, new URLSearchParams({ _id: slice.join(',') }), undefined, action)) visible.add(id);
  return visible;
}

/** The stored resource `type/id` when `policy` may read it; undefined when unknown, deleted or not visible. */
export async function readVisible<T extends fhir4.FhirResource>(db: Queryable, policy: AccessPolicy, type: string, id: string): Promise<{ resource: T; versionId: number } | undefined> {
  if (!(await mayRead(db, type, id, readLimits(policy, type, 'r')))) return undefined;
  return readResource<T>(db, type, id);
}

/** The policy as search applies it to every type a query reaches (chains, _has, includes). */
export function policyReach(policy: AccessPolicy): Reach {
  return (type, action) => readLimits(policy, type, action);
}


/**
 * Whether the caller acts as a clinician or as the system, not as a patient or a patient's
 * relative: assigning a device to a patient is a clinical act (a patient who could file a
 * DeviceUseStatement for another patient's cuff would receive that patient's readings). A user
 * with no FHIR identity is the server's own clinician login (README "Users").
 */
export function isClinicalActor(policy: AccessPolicy, type: string, action: Action): boolean {
  if (policy.confinedToPatient(type, action)) return false;
  const kind = policy.fhirUser?.split('/')[0];
  return kind !== 'Patient' && kind !== 'RelatedPerson';
}

/**
 * A write of `type` under `policy`: the action must be granted, and a patient-confined token
 * may only write resources of its own patient, before and after the change. Its own means
 * every patient the resource names through the Patient compartment's parameters: an
 * Observation of Patient/B with Patient/A as performer is in A's compartment too, but writing
 * it would put A's words into B's record (and raise B's Flags). Granular (parameter-restricted)
 * write scopes are refused rather than half-enforced.
 */
export function requireWritable(policy: AccessPolicy, type: string, action: 'c' | 'u' | 'd', resource: fhir4.FhirResource | undefined, previous: fhir4.FhirResource | undefined): void {
  requireAction(policy, type, action);
  if (policy.constraints(type, action) !== undefined) {
    throw forbidden(`parameter-restricted ${ACTION_NAMES[action]} scopes for ${type} are not supported; ask for ${type}.${action} without parameters`);
  }
  if (!policy.confinedToPatient(type, action)) return;
  for (const r of [previous, resource]) {
    if (r && !isOwnPatients(type, r, policy.patient!)) {
      throw forbidden(`a patient-scoped token may only ${ACTION_NAMES[action]} ${type} resources of Patient/${policy.patient} and of no other patient`);
    }
  }
}

function isOwnPatients(type: string, resource: fhir4.FhirResource, patientId: string): boolean {
  const patients = patientsOf(type, resource);
  return patients.length > 0 && patients.every((p) => p === patientId);
}

/**
 * Whether `policy` may know of a deleted resource, judged by `lastLive`, the version its deletion
 * removed (undefined when that content is gone, as after an erasure). Never a 403: a caller
 * without the right to read `type` may not know of it either, and a refusal would tell it the
 * id was once used.
 */
export function mayReadDeleted(policy: AccessPolicy, type: string, lastLive: fhir4.FhirResource | undefined): boolean {
  if (!policy.allows(type, 'r')) return false;
  const limits = readLimits(policy, type, 'r');
  return isUnlimited(limits) || (lastLive !== undefined && withinLimits(type, lastLive, limits));
}

/**
 * An update, patch or delete acts on what is stored, and its answer (the patched resource, the
 * unchanged version, a failed JSON Patch `test`, If-Match) depends on it: the caller must be
 * able to read it, under the same limits as a read (compartment, granular scopes, Consent).
 * A resource it may not read is one it cannot patch (404, as for an unknown id); replacing or
 * deleting it is refused (403), never done blind over content hidden from the caller.
 * `existing` is the current version, or for a deleted resource the version its deletion
 * removed: recreating an id is acting on whose it was. A Consent that denies the caller is
 * readable but not the caller's to change or delete (decision 015).
 */
export function requireActingOnReadable(policy: AccessPolicy, type: string, id: string, action: 'u' | 'd' | 'patch', existing: fhir4.FhirResource): void {
  const limits = readLimits(policy, type, 'r');
  if (!withinLimits(type, existing, limits)) {
    if (action === 'patch') throw notFound(`${type}/${id} is not known`);
    throw forbidden(`the access token may not read ${type}/${id}, so it may not ${ACTION_NAMES[action]} it`);
  }
  // Readable, so the refusal tells the caller nothing it could not read (decision 015).
  if (type === 'Consent' && consentRestrictsCaller(existing as fhir4.Consent, policy)) {
    throw forbidden(`Consent/${id} denies this user or app access; only the patient, or someone it does not restrict, may ${action === 'd' ? 'delete' : 'change'} it`);
  }
}
