import { findVisibleIds, readVisible } from '../access/enforce';
import type { AccessPolicy } from '../access/policy';
import { idOfReference } from '../kernel/id';
import type { Queryable } from '../store/db';
import { checkTime } from './draft';
import type { ReadingIdentity } from './reading-identity';
import { DOOR_SOURCE_PREFIX, type DoseDraft, READING_ID_SYSTEM, ReadingError } from './reading';

/**
 * A dose a pill box or the home tablet reported, stated as the MedicationAdministration it
 * records, linked to the order it fulfils. The medication capability judges it like any other
 * administration (src/medication: on time, late, a missed-dose Flag caught up), because it is
 * written through the same unit of work.
 *
 * The order is found with the caller's rights: named (`MedicationRequest/id`, which must be the
 * same patient's), or by the medication's code among the patient's active orders. A code that
 * matches no active order is still recorded (the patient took something not prescribed here),
 * unlinked; one that matches several is refused: the box must name the order.
 */

export interface DoseContext {
  db: Queryable;
  policy: AccessPolicy;
  device: fhir4.Identifier;
  deviceRef?: string;
  patientRef: string;
  now?: number;
  identity: ReadingIdentity;
  /** As DraftContext.confinedTo. */
  confinedTo?: string;
}

/** Orders looked up once per payload: a box reports many doses of few orders. */
export type OrderCache = Map<string, Promise<{ id: string; request: fhir4.MedicationRequest } | undefined>>;

async function namedOrder(ctx: DoseContext, ref: string, cache: OrderCache) {
  const id = idOfReference(ref, 'MedicationRequest');
  if (!id) throw new ReadingError(400, `request '${ref.slice(0, 80)}' is not a MedicationRequest/id reference`, 'value');
  let found = cache.get(ref);
  if (!found) {
    found = readVisible<fhir4.MedicationRequest>(ctx.db, ctx.policy, 'MedicationRequest', id).then((r) => (r ? { id, request: r.resource } : undefined));
    cache.set(ref, found);
  }
  const order = await found;
  // Unknown and not visible read alike: the door does not tell what the caller may not read.
  if (!order) throw new ReadingError(422, `${ref} is not known`, 'not-found');
  // An order of another patient is refused by the medication capability's validate stage.
  return order;
}

async function orderByCode(ctx: DoseContext, coding: fhir4.Coding, cache: OrderCache) {
  const key = `${ctx.patientRef}|${coding.system ?? ''}|${coding.code ?? ''}`;
  let found = cache.get(key);
  if (!found) {
    found = (async () => {
      const search = new URLSearchParams({ subject: ctx.patientRef, status: 'active', code: `${coding.system ? `${coding.system}|` : ''}${coding.code}` });
      const ids = await findVisibleIds(ctx.db, ctx.policy, 'MedicationRequest', search, 2);
      if (ids.length > 1) {
        throw new ReadingError(422, `${ctx.patientRef} has several active orders for ${coding.system ?? ''}|${coding.code ?? ''}; the dose must name its request`, 'multiple-matches');
      }
      const read = ids[0] ? await readVisible<fhir4.MedicationRequest>(ctx.db, ctx.policy, 'MedicationRequest', ids[0]) : undefined;
      return read ? { id: ids[0]!, request: read.resource } : undefined;
    })();
    cache.set(key, found);
  }
  return found;
}

function medicationOf(order: fhir4.MedicationRequest | undefined, coding: fhir4.Coding | undefined): Pick<fhir4.MedicationAdministration, 'medicationCodeableConcept' | 'medicationReference'> {
  if (order?.medicationCodeableConcept) return { medicationCodeableConcept: order.medicationCodeableConcept };
  if (order?.medicationReference) return { medicationReference: order.medicationReference };
  return { medicationCodeableConcept: { coding: [coding!] } };
}

/** The dose as its MedicationAdministration, with the deterministic id of the report (a retry names the same resource). */
export async function doseToAdministration(draft: DoseDraft, ctx: DoseContext, cache: OrderCache): Promise<fhir4.MedicationAdministration> {
  checkTime(draft.time, ctx.now);
  const order = draft.request ? await namedOrder(ctx, draft.request, cache) : await orderByCode(ctx, draft.medication!, cache);
  // The order or the medicine is part of the id, as the code is for a reading: two pills taken
  // at the same minute, reported without ids of their own, are two administrations.
  const what = order ? `MedicationRequest/${order.id}` : `${draft.medication!.system ?? ''}|${draft.medication!.code ?? ''}`;
  const id = ctx.identity.id(ctx.device, what, draft.time, draft.sourceKey, ctx.confinedTo);
  return {
    resourceType: 'MedicationAdministration',
    id,
    meta: { source: `${DOOR_SOURCE_PREFIX}doses` },
    identifier: [{ system: READING_ID_SYSTEM, value: id }],
    status: draft.status,
    ...medicationOf(order?.request, draft.medication),
    subject: { reference: ctx.patientRef },
    effectiveDateTime: draft.time,
    ...(order ? { request: { reference: `MedicationRequest/${order.id}` } } : {}),
    ...(ctx.deviceRef ? { device: [{ reference: ctx.deviceRef }] } : {}),
    ...(draft.note ? { note: [{ text: draft.note }] } : {}),
  };
}
