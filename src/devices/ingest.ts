import type { AccessPolicy } from '../access/policy';
import { parseRelativeReference } from '../kernel/id';
import { OperationOutcomeError } from '../kernel/outcome';
import { errorEntry, writeEntry } from '../fhir/bundle/response';
import type { FhirContext } from '../fhir/context';
import { executeWrites, type WriteOp, type WriteOutcome } from '../pipeline';
import { readResource } from '../store/repository';
import { findDevice, type KnownDevice, patientAt } from './assignment';
import { doseToAdministration, type OrderCache } from './dose';
import { draftToObservation } from './draft';
import { type Draft, isDose, ReadingError } from './reading';

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
}

/** Where each reading of a payload ended: a write, or why it was refused before one. */
type Slot = { error: OperationOutcomeError } | { op: WriteOp & { kind: 'create' }; duplicateOf?: number };

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
  // that patient is the write pipeline's decision (its compartment check on each Observation).
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
  const seen = new Map<string, number>();
  const orders: OrderCache = new Map();
  const now = Date.now();
  for (const entry of payload.entries) {
    if ('error' in entry) {
      slots.push({ error: refusal(entry.error) });
      continue;
    }
    for (const draft of entry.drafts) {
      try {
        const identifier = draft.device ?? payload.device;
        const known = identifier ? await deviceOf(identifier) : undefined;
        const patientRef = draft.patient ?? payload.patient ?? (known ? patientAt(known, draft.time) : undefined);
        if (!patientRef) {
          throw new ReadingError(
            422,
            known
              ? `no patient: Device/${known.id} was assigned to nobody at ${draft.time} (no DeviceUseStatement covers it, no Device.patient) and the payload names no patient`
              : `no patient: device ${identifier?.system ?? ''}|${identifier?.value ?? '(none)'} is not known and the payload names no patient`,
            'not-found',
          );
        }
        // A patient token may file only its own patient's readings (the pipeline's compartment
        // check says so too); said before the existence check, which would otherwise tell it
        // whether another patient id exists or was deleted (422 against 403).
        if (policy.patient !== undefined && parseRelativeReference(patientRef)?.id !== policy.patient) {
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
          ? await doseToAdministration(draft, { db: ctx.db, policy, device, deviceRef, patientRef, now }, orders)
          : draftToObservation(draft, { door: payload.door, device, deviceRef, patientRef, now });
        const op = { kind: 'create' as const, type: resource.resourceType, id: resource.id, resource, onExistingId: 'match' as const };
        const key = `${resource.resourceType}/${resource.id!}`;
        const first = seen.get(key);
        if (first === undefined) seen.set(key, slots.length);
        slots.push({ op, ...(first !== undefined ? { duplicateOf: first } : {}) });
      } catch (err) {
        slots.push({ error: refusal(err) });
      }
    }
  }

  const toWrite = slots.flatMap((s, i) => ('op' in s && s.duplicateOf === undefined ? [{ op: s.op, i }] : []));
  const results = new Map<number, WriteOutcome | OperationOutcomeError>();
  if (toWrite.length > 0) {
    const written = await executeWrites(ctx, toWrite.map((w) => w.op), { policy, mode: 'per-entry' });
    written.forEach((result, k) => results.set(toWrite[k]!.i, result));
  }

  const entry: fhir4.BundleEntry[] = slots.map((s, i) => {
    if ('error' in s) return errorEntry(s.error);
    const result = results.get(s.duplicateOf ?? i)!;
    if (result instanceof OperationOutcomeError) return errorEntry(result);
    // A reading repeated within the payload is the same resource: 200, as a retry would be.
    return writeEntry(ctx.baseUrl, s.duplicateOf !== undefined ? { ...result, status: 200 } : result, 'minimal');
  });
  return { resourceType: 'Bundle', type: 'batch-response', entry };
}
