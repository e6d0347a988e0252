import { policyReach, requireAction } from '../access/enforce';
import type { AccessPolicy } from '../access/policy';
import { isValidId, newResourceId } from '../kernel/id';
import { badRequest, preconditionFailed } from '../kernel/outcome';
import { findMatchingIds } from '../search';
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
  // A condition is a search: it needs the right to search, and a patient-scoped token searches
  // its own compartment only (else 200-versus-201 would reveal other patients' identifiers).
  requireAction(policy, op.type, 's');
  const compartment = policy.confinedToPatient(op.type, 's') ? policy.patient : undefined;
  await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`${op.type}?${search.toString()}`]);
  const matches = await findMatchingIds(tx, op.type, search, 2, compartment, policyReach(policy));
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

/** `Type/id` of each op that writes a resource (for the once-per-unit rule and shared-target checks). */
export function targetKey(r: ResolvedOp): string | undefined {
  return r.id && !r.existingMatch ? `${r.op.type}/${r.id}` : undefined;
}
