import { findVisibleIds } from '../access/enforce';
import type { AccessPolicy } from '../access/policy';
import { isValidId, newResourceId } from '../kernel/id';
import { badRequest, preconditionFailed } from '../kernel/outcome';
import type { Queryable } from '../store/db';
import type { ResolvedOp, WriteOp } from './ops';

/**
 * Finds the id an op acts on. Conditional forms search inside the transaction, under an
 * advisory lock on the search itself so that two identical conditional creates cannot both
 * find nothing and both create.
 */
export async function resolveTarget(tx: Queryable, op: WriteOp, policy: AccessPolicy): Promise<ResolvedOp> {
  const search = op.kind === 'create' ? op.ifNoneExist : op.match;
  if (!search) {
    const id = op.kind === 'create' ? (op.id ?? newResourceId()) : op.id;
    if (id !== undefined && !isValidId(id)) throw badRequest(`'${id.slice(0, 80)}' is not a FHIR id ([A-Za-z0-9-.], 1 to 64 characters)`, ['id']);
    return { op, id };
  }
  await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`${op.type}?${search.toString()}`]);
  const matches = await findConditionMatches(tx, policy, op.type, search);
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
    return { op, id: typeof bodyId === 'string' ? bodyId : newResourceId() };
  }
  if (op.id && matches[0] && op.id !== matches[0]) {
    throw badRequest(`the resource id ${op.id} does not match the resource found by ${op.type}?${search.toString()}`);
  }
  return { op, id: matches[0] };
}

/**
 * What a condition (If-None-Exist, a conditional update, patch or delete, a transaction's
 * conditional reference) matches: exactly what the caller's own search of `type` would find —
 * its compartment, its granular scopes' parameters, what Consents deny it — at most two ids,
 * enough to tell none, one and several apart. Anything else does not exist for the condition:
 * a 200-versus-201, a 412 or a deletion that depended on it would answer about data the caller
 * may not read. A 403 without the right to search the type.
 */
export function findConditionMatches(tx: Queryable, policy: AccessPolicy, type: string, search: URLSearchParams): Promise<string[]> {
  return findVisibleIds(tx, policy, type, search, 2);
}

/** `Type/id` of each op that writes a resource (for the once-per-unit rule and shared-target checks). */
export function targetKey(r: ResolvedOp): string | undefined {
  return r.id && !r.existingMatch ? `${r.op.type}/${r.id}` : undefined;
}
