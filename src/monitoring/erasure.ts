import type { ErasedCompartment, UnitOfWork } from '../pipeline';

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
