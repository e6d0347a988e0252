import { findVisibleIds, readLimits } from '../access/enforce';
import type { AccessPolicy } from '../access/policy';
import { isValidId, newResourceId } from '../kernel/id';
import { badRequest, OperationOutcomeError, preconditionFailed } from '../kernel/outcome';
import { compartmentUrlsOf, criteriaMatcher, withinLimits } from '../search';
import type { Queryable } from '../store/db';
import type { ResolvedOp, WriteOp } from './ops';

/**
 * What a condition sees of the unit it is part of: the ops resolved before it, in processing
 * order, and the references of a resource the door still rewrites after resolution (a
 * transaction's `urn:uuid:` and conditional references).
 */
export interface UnitSoFar {
  before: readonly ResolvedOp[];
  pendingReferences?: (resource: unknown) => string[];
}

/**
 * Finds the id an op acts on. Conditional forms search inside the transaction, under an
 * advisory lock on the search itself so that two identical conditional creates cannot both
 * find nothing and both create, and see the ops of the unit before them (`findConditionMatches`).
 */
export async function resolveTarget(tx: Queryable, op: WriteOp, policy: AccessPolicy, unit?: UnitSoFar): Promise<ResolvedOp> {
  const search = op.kind === 'create' ? op.ifNoneExist : op.match;
  if (!search) {
    const id = op.kind === 'create' ? (op.id ?? newResourceId()) : op.id;
    if (id !== undefined && !isValidId(id)) throw badRequest(`'${id.slice(0, 80)}' is not a FHIR id ([A-Za-z0-9-.], 1 to 64 characters)`, ['id']);
    return { op, id };
  }
  await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`${op.type}?${search.toString()}`]);
  const matches = await findConditionMatches(tx, policy, op.type, search, unit);
  if (matches.length > 1) {
    throw preconditionFailed(`the condition ${op.type}?${search.toString()} matches more than one resource`);
  }
  if (op.kind === 'create') {
    return matches.length === 1 ? { op, id: matches[0], existingMatch: true } : { op, id: op.id ?? newResourceId() };
  }
  if (op.kind === 'update' && matches.length === 0) {
    // FHIR R4 conditional update: no match creates, with the body's id if it has one.
    const bodyId = (op.resource as { id?: unknown } | null)?.id;
    if (typeof bodyId === 'string' && !isValidId(bodyId)) throw badRequest(`'${bodyId.slice(0, 80)}' is not a FHIR id`, ['id']);
    return typeof bodyId === 'string' ? { op, id: bodyId, createOnly: true } : { op, id: newResourceId() };
  }
  if (op.id && matches[0] && op.id !== matches[0]) {
    throw badRequest(`the resource id ${op.id} does not match the resource found by ${op.type}?${search.toString()}`);
  }
  return { op, id: matches[0] };
}

/**
 * What a condition (If-None-Exist, a conditional update, patch or delete, a transaction's
 * conditional reference) matches: exactly what the caller's own search of `type` would find —
 * its compartment, its granular scopes' parameters, what Consents deny it — at most two ids
 * from the database, enough to tell none, one and several apart. Anything else does not exist
 * for the condition: a 200-versus-201, a 412 or a deletion that depended on it would answer
 * about data the caller may not read. A 403 without the right to search the type.
 *
 * In a unit of several ops (a transaction), the condition is judged as the unit stands when its
 * op comes: R4 http.html#trules processes deletes, then creates, then updates and patches, so
 * it sees the ops before it (`unit.before`). What an earlier op deletes is gone; what an earlier
 * op creates or updates is judged as it will be written — in memory (`criteriaMatcher`), within
 * the same search limits (`withinLimits`) — so it counts exactly when the caller's search after
 * the transaction would find it. A conditional create whose match an earlier DELETE removes
 * therefore creates (201), as the specified order makes it, instead of answering with a resource
 * the transaction deletes; the overlap rule of trules is about the identities of conditional
 * updates and deletes, and a create evaluated after the deletes shares none.
 *
 * Where memory cannot judge an earlier entry (a criterion the matcher judges only in the
 * database, references the door has yet to rewrite), that entry is left to the database, as
 * every entry was before: it is not counted, so two such conditions can still both create.
 * Refusing instead was measured to refuse nearly every transaction with two conditional creates
 * of a type on a name or a date (review of 2026-12-07). Only a stored match that an earlier entry
 * patches is refused: its patched form is not known until the patch runs, and counting either
 * form would be a guess that writes the wrong thing.
 */
export async function findConditionMatches(tx: Queryable, policy: AccessPolicy, type: string, search: URLSearchParams, unit?: UnitSoFar): Promise<string[]> {
  const earlier = (unit?.before ?? []).filter((r) => r.op.type === type && r.id !== undefined && !r.existingMatch);
  // The stored state of what an earlier op deletes, replaces or patches is not what the condition meets.
  const changed = new Set(earlier.filter((r) => r.op.kind !== 'create').map((r) => r.id!));
  // At most two ids besides the changed ones: enough to tell none, one and several apart.
  const found = await findVisibleIds(tx, policy, type, search, 2 + changed.size);
  const stored = found.filter((id) => !changed.has(id));
  if (!earlier.length) return stored;
  const condition = `${type}?${search.toString()}`;
  const matcher = criteriaMatcher(type, search);
  const limits = readLimits(policy, type, 's');
  // Compartment limits and Consent exclusions read the references of the compartment's parameters.
  const limitsReadReferences = limits.compartmentPatientId !== undefined || (limits.exclude?.length ?? 0) > 0;
  const own: string[] = [];
  for (const r of earlier) {
    if (r.op.kind === 'delete') continue;
    if (r.op.kind === 'patch') {
      if (found.includes(r.id!)) throw cannotJudge(condition, `it matches ${type}/${r.id}, which an earlier entry patches`);
      continue;
    }
    if (!matcher.exact) continue;
    const resource = asWritten(r);
    const unresolved = new Set(unit?.pendingReferences?.(resource));
    const judged = [...matcher.urlsJudged(resource), ...(limitsReadReferences ? compartmentUrlsOf(type, resource) : [])];
    if (judged.some((url) => unresolved.has(url))) continue;
    if (withinLimits(type, resource, limits) && matcher.mayMatch(resource)) own.push(r.id!);
  }
  return [...new Set([...stored, ...own])];
}

/**
 * An earlier op's resource with the id it gets, one object per op: the matcher extracts a
 * resource's index rows once per object, and every later condition of the unit judges it again.
 */
const written = new WeakMap<ResolvedOp, fhir4.FhirResource>();
function asWritten(r: ResolvedOp): fhir4.FhirResource {
  let resource = written.get(r);
  if (!resource) written.set(r, (resource = { ...((r.op as { resource: fhir4.FhirResource }).resource), id: r.id }));
  return resource;
}

function cannotJudge(condition: string, why: string): OperationOutcomeError {
  return new OperationOutcomeError(400, { code: 'not-supported', diagnostics: `the condition ${condition} cannot be judged: ${why}; send these entries in separate transactions` });
}

/** `Type/id` of each op that writes a resource (for the once-per-unit rule and shared-target checks). */
export function targetKey(r: ResolvedOp): string | undefined {
  return r.id && !r.existingMatch ? `${r.op.type}/${r.id}` : undefined;
}
