import type { ErasedCompartment, UnitOfWork } from '../pipeline';
import { localReference } from '../search';
import { readLiveSubscriptions } from './notify';
import { parseCriteria } from './subscription-accept';

/**
 * erase hook: what monitoring keeps about an erased compartment, beside the resources — the
 * compiled plans, the Flags' keys, the breaches that raised them, adherence marks, queued
 * notifications about erased resources, and the owners of Subscriptions the patient's own
 * token made. One statement.
 */
export async function forgetMonitoring(uow: UnitOfWork, erased: ErasedCompartment): Promise<void> {
  const ids = (type: string) => [...(erased.resources.get(type) ?? [])];
  const refs = [...erased.resources].flatMap(([type, list]) => list.map((id) => `${type}/${id}`));
  await uow.tx.query(
    `WITH plans AS (DELETE FROM monitoring_plan WHERE patient = $1 OR careplan_id = ANY($2::text[])),
          flags AS (DELETE FROM monitoring_flag WHERE patient = $1 OR flag_id = ANY($3::text[])),
          breaches AS (DELETE FROM monitoring_breach WHERE observation_id = ANY($4::text[]) OR careplan_id = ANY($2::text[]) OR flag_id = ANY($3::text[])),
          adherence AS (DELETE FROM monitoring_adherence WHERE careplan_id = ANY($2::text[])),
          outbox AS (DELETE FROM monitoring_delivery WHERE resource_type || '/' || resource_id = ANY($5::text[]))
     DELETE FROM subscription_owner WHERE patient = $1`,
    [erased.patientId, ids('CarePlan'), ids('Flag'), ids('Observation'), refs],
  );
}

/** What a Subscription turned off by an erasure says: why, without naming whom it watched. */
export const ERASED_SUBSCRIPTION_ERROR = 'the patient its criteria name was erased (GDPR Art. 17)';

/**
 * erase hook: the live Subscriptions whose criteria name the erased patient are set to `off`,
 * through the erasing unit (versioned and audited as the server's own update, as
 * ./subscription-end.ts turns ended ones off), so that data written for the patient afterwards
 * (the server does not refuse dangling references) is not delivered to anyone. The criteria
 * stay as their subscriber wrote them: the Subscription is the subscriber's, and an
 * administrator edits or deletes it.
 */
export async function turnOffSubscriptionsOf(uow: UnitOfWork, erased: ErasedCompartment): Promise<void> {
  const live = await readLiveSubscriptions(uow.tx);
  const ops = [...live].filter(([, { resource }]) => criteriaName(resource.criteria, erased.patientId)).map(([id, { resource, versionId }]) => ({
    kind: 'update' as const, type: 'Subscription', id, ifMatch: versionId,
    resource: { ...resource, status: 'off' as const, error: ERASED_SUBSCRIPTION_ERROR },
  }));
  if (ops.length) await uow.apply(ops);
}

/**
 * Whether Subscription criteria name Patient `patientId`: a reference to it as a parameter value
 * (`subject=Patient/P`, versioned, or absolute on a base served here — decision 034), or the bare
 * id where the parameter says the type (`patient=P`, `subject:Patient=P`).
 */
function criteriaName(criteria: string | undefined, patientId: string): boolean {
  const parsed = parseCriteria(criteria);
  if (!parsed) return false;
  for (const [name, value] of parsed.params) {
    const [code, modifier] = name.split(':', 2) as [string, string | undefined];
    for (const v of value.split(',')) {
      if (v === patientId && (code === 'patient' || modifier === 'Patient')) return true;
      const local = localReference(v);
      if (local?.type === 'Patient' && local.id === patientId) return true;
    }
  }
  return false;
}
