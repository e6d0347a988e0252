import type { AccessPolicy } from '../access/policy';
import { parseRelativeReference } from '../kernel/id';
import { OperationOutcomeError } from '../kernel/outcome';
import { errorEntry, writeEntry } from '../fhir/bundle/response';
import type { FhirContext } from '../fhir/context';
import { executeWrites, type WriteOp, type WriteOutcome } from '../pipeline';
import { idsWrittenBefore, readResource } from '../store/repository';
import { type ReadingIdentity, readingIdentity } from './reading-identity';
import { findDevice, type KnownDevice, patientAt } from './assignment';
import { doseToAdministration, type OrderCache } from './dose';
import { draftToObservation } from './draft';
import { type Draft, isDose, READING_ID_SYSTEM, ReadingError } from './reading';

/** One entry of a payload: the readings (or doses) it decoded to, or why it could not be decoded. */
export type PayloadEntry = { drafts: Draft[] } | { error: ReadingError };

export interface Payload {
  /** Which door decoded it (`readings`, `ble`, `withings`, `doses`): the resources' meta.source. */
  door: string;
  device?: fhir4.Identifier;
  /** Create the Device on first sight. */
  createDevice: boolean;
  patient?: string;
  entries: PayloadEntry[];
  /**
   * A reading stored `preliminary` that one of these repeats as `final` is completed by it (its
   * next version), instead of being refused as another reading (409); one stored final that is
   * re-sent preliminary is that same reading (200). The Withings door's: a group of an ambiguous
   * user (attrib 1) that the user confirmed since (./doors.ts). Nothing else may change.
   */
  completesPreliminary?: boolean;
}

/** Where each reading of a payload ended: a write, or why it was refused before one. */
type Slot = { error: OperationOutcomeError } | { op: WriteOp & { kind: 'create' } };

/** What a 409 says when another reading is stored under the same deterministic id (./reading-identity.ts). */
function conflictNote(draft: Draft, device: fhir4.Identifier, resource: { resourceType: string; id?: string }): string {
  const what = isDose(draft) ? 'dose report' : 'reading';
  const code = isDose(draft) ? 'its medication' : `code ${draft.source.system ?? ''}|${draft.source.code ?? ''}`;
  return (
    `a different ${what} is stored for device ${device.system ?? ''}|${device.value ?? ''}, ${code} and time ${draft.time} ` +
    `(${resource.resourceType}/${resource.id ?? ''}); this one is not stored. A re-sent ${what} must be the same; ` +
    `two ${what}s at one time are told apart by a reading id of their own (\`id\`, a BLE or Withings sourceKey)`
  );
}

/**
 * Readings taken before the database's reading key may be stored under their unkeyed id
 * (./reading-identity.ts): where one was stored before the key was made, the reading takes that
 * id, so a retry or a re-sync after the upgrade matches it (200, or 409 for another reading)
 * instead of storing it twice. One written since is not matched: anyone could have computed
 * that id and written it over REST.
 */
async function matchLegacyIds(ctx: FhirContext, slots: Slot[], identity: ReadingIdentity): Promise<void> {
  const candidates = new Map<string, Array<{ op: WriteOp & { kind: 'create' }; legacy: string }>>();
  for (const s of slots) {
    if (!('op' in s) || !s.op.id) continue;
    const legacy = identity.legacyOf(s.op.id);
    if (!legacy) continue;
    const list = candidates.get(s.op.type) ?? [];
    list.push({ op: s.op, legacy });
    candidates.set(s.op.type, list);
  }
  for (const [type, list] of candidates) {
    const stored = await idsWrittenBefore(ctx.db, type, list.map((c) => c.legacy), identity.keyMade);
    for (const { op, legacy } of list) {
      if (!stored.has(legacy)) continue;
      const resource = op.resource as fhir4.Observation | fhir4.MedicationAdministration;
      op.id = legacy;
      resource.id = legacy;
      resource.identifier = resource.identifier?.map((i) => (i.system === READING_ID_SYSTEM ? { ...i, value: legacy } : i));
    }
  }
}

function refusal(err: unknown): OperationOutcomeError {
  if (err instanceof OperationOutcomeError) return err;
  if (err instanceof ReadingError) return new OperationOutcomeError(err.status, { code: err.code, diagnostics: err.message });
  throw err;
}

/**
 * A device payload through the one write pipeline: each reading's device and patient are found
 * with the caller's rights, each reading is stated as its Observation (./draft.ts) and each dose
 * as its MedicationAdministration (./dose.ts), and all of
 * them are one per-entry unit of work, where the mapping stage codes them and every other stage
 * judges them as it judges any write. The answer is a batch-response Bundle with one entry per
 * reading, in order.
 */
export async function ingestPayload(ctx: FhirContext, payload: Payload, policy: AccessPolicy): Promise<fhir4.Bundle> {
  if (payload.patient !== undefined && parseRelativeReference(payload.patient)?.type !== 'Patient') {
    throw new OperationOutcomeError(400, { code: 'invalid', diagnostics: `patient '${payload.patient.slice(0, 80)}' is not a Patient/id reference`, expression: ['patient'] });
  }
  const devices = new Map<string, Promise<KnownDevice | undefined>>();
  const deviceOf = (identifier: fhir4.Identifier) => {
    const key = `${identifier.system ?? ''}|${identifier.value ?? ''}`;
    let known = devices.get(key);
    if (!known) {
      known = findDevice(ctx, identifier, payload.createDevice, policy);
      devices.set(key, known);
    }
    return known;
  };
  // One lookup per distinct patient of the payload. Whether the caller may file readings for
  // that patient is the write pipeline's decision (its compartment check on each Observation);
  // a patient/ token's other patient is refused before the lookup (below).
  const patients = new Map<string, Promise<boolean>>();
  const patientExists = (ref: string) => {
    let exists = patients.get(ref);
    if (!exists) {
      exists = readResource(ctx.db, 'Patient', parseRelativeReference(ref)!.id).then((stored) => stored !== undefined);
      patients.set(ref, exists);
    }
    return exists;
  };

  const slots: Slot[] = [];
  const orders: OrderCache = new Map();
  const now = Date.now();
  const identity = await readingIdentity(ctx.db);
  const drafted: Array<{ op: WriteOp & { kind: 'create' }; draft: Draft; device: fhir4.Identifier }> = [];
  for (const entry of payload.entries) {
    if ('error' in entry) {
      slots.push({ error: refusal(entry.error) });
      continue;
    }
    for (const draft of entry.drafts) {
      try {
        const identifier = draft.device ?? payload.device;
        const known = identifier ? await deviceOf(identifier) : undefined;
        const assigned = !draft.patient && !payload.patient && known ? patientAt(known, draft.time, isDose(draft) ? undefined : draft.user) : undefined;
        if (assigned && 'refused' in assigned) throw new ReadingError(422, `no patient: ${assigned.refused}, and the payload names no patient`, 'not-found');
        const patientRef = draft.patient ?? payload.patient ?? assigned?.patient;
        if (!patientRef) {
          throw new ReadingError(422, `no patient: device ${identifier?.system ?? ''}|${identifier?.value ?? '(none)'} is not known and the payload names no patient`, 'not-found');
        }
        // A token confined to its patient's compartment (patient/ scopes) may file only that
        // patient's readings (the pipeline's compartment check says so too); said before the
        // existence check, which would otherwise tell it whether another patient id exists or was
        // deleted (422 against 403). A user/ token launched with a patient is not confined.
        const type = isDose(draft) ? 'MedicationAdministration' : 'Observation';
        const confinedTo = policy.confinedToPatient(type, 'c') ? `Patient/${policy.patient}` : undefined;
        if (confinedTo !== undefined && parseRelativeReference(patientRef)?.id !== policy.patient) {
          throw new ReadingError(403, `a patient token files readings only for its own patient, not ${patientRef}`, 'forbidden');
        }
        if (!(await patientExists(patientRef))) {
          // Named explicitly or by an assignment, the patient must exist now: a reading is never
          // filed under a patient that is unknown or was deleted.
          throw new ReadingError(422, `no patient: ${patientRef} is not known (or was deleted); the reading is not stored`, 'not-found');
        }
        const device = identifier ?? { system: 'urn:ietf:rfc:3986', value: 'urn:unknown-device' };
        const deviceRef = known ? `Device/${known.id}` : undefined;
        const resource = isDose(draft)
          ? await doseToAdministration(draft, { db: ctx.db, policy, device, deviceRef, patientRef, now, identity, confinedTo }, orders)
          : draftToObservation(draft, { door: payload.door, device, deviceRef, patientRef, now, identity, confinedTo });
        const op = {
          kind: 'create' as const, type: resource.resourceType, id: resource.id, resource, onExistingId: 'match' as const,
          ...(payload.completesPreliminary ? { completesPreliminary: true as const } : {}),
        };
        slots.push({ op });
        drafted.push({ op, draft, device });
      } catch (err) {
        slots.push({ error: refusal(err) });
      }
    }
  }

  await matchLegacyIds(ctx, slots, identity);
  // A reading already stored, or repeated within the payload, is matched by the pipeline: 200 if
  // it is the same reading, 409 (this note) if it is another one under the same identity.
  for (const { op, draft, device } of drafted) op.onConflict = conflictNote(draft, device, op.resource as fhir4.FhirResource);
  const toWrite = slots.flatMap((s, i) => ('op' in s ? [{ op: s.op, i }] : []));
  const results = new Map<number, WriteOutcome | OperationOutcomeError>();
  if (toWrite.length > 0) {
    const written = await executeWrites(ctx, toWrite.map((w) => w.op), { policy, mode: 'per-entry' });
    written.forEach((result, k) => results.set(toWrite[k]!.i, result));
  }

  const entry: fhir4.BundleEntry[] = slots.map((s, i) => {
    if ('error' in s) return errorEntry(s.error);
    const result = results.get(i)!;
    if (result instanceof OperationOutcomeError) return errorEntry(result);
    return writeEntry(ctx.baseUrl, result, 'minimal');
  });
  return { resourceType: 'Bundle', type: 'batch-response', entry };
}
