import { pseudonym } from '../kernel/pseudonym';
import type { ErasedCompartment, UnitOfWork } from '../pipeline';
import { stageRecords } from './chain';
import { auditRecords, type Observer } from './event';

export { ERASED_PATIENT_SYSTEM } from './event';

/**
 * erase hook of the audit trail (decision 014): the trail is append-only and hash-chained, so it
 * forgets nothing; it records the erasure instead, in the erasing transaction. The record names
 * the patient only by a keyed pseudonym — enough to re-apply the erasure to a restored backup
 * (compute the pseudonym of each restored Patient, erase those that match), useless to anyone
 * without the key — and says how many resources of each type went, never which or what.
 */
export async function recordErasure(uow: UnitOfWork, erased: ErasedCompartment, observer: Observer, key: string | undefined): Promise<void> {
  const counts = [...erased.resources].map(([type, ids]) => `${type} ${ids.length}`).join(', ');
  const records = auditRecords(
    {
      kind: 'rest', subtype: 'operation', action: 'D', outcome: '0', outcomeDesc: `Patient compartment erased (GDPR Art. 17): ${counts}`, actor: { policy: erased.policy, origin: erased.policy.origin },
      ...(key !== undefined ? { erasedPatient: pseudonym(key, `Patient/${erased.patientId}`) } : {}),
    },
    observer,
  );
  stageRecords(uow.tx, records);
}
