import { type AccessPolicy, unrestricted } from '../auth/policy';
import type { FhirContext } from '../fhir/context';
import { errorEntry, writeEntry } from '../fhir/bundle/response';
import { OperationOutcomeError } from '../fhir/outcome';
import { readCurrent } from '../store/repository';
import { executeWrites, type WriteOp, type WriteOutcome } from '../fhir/write';
import { validationIssues } from '../validation/resource';
import { findDevice, type KnownDevice, patientAt } from './assignment';
import { draftToObservation } from './observation';
import { type ReadingDraft, ReadingError } from './reading';

/** One entry of a payload: the readings it decoded to, or why it could not be decoded. */
export type PayloadEntry = { drafts: ReadingDraft[] } | { error: ReadingError };

export interface Payload {
  device?: fhir4.Identifier;
  /** Create the Device on first sight. */
  createDevice: boolean;
  patient?: string;
  entries: PayloadEntry[];
}

type Slot = { error: OperationOutcomeError } | { op: WriteOp & { kind: 'create' }; duplicateOf?: number };

const PATIENT_REF = /^Patient\/[A-Za-z0-9\-.]{1,64}$/;

function refusal(err: unknown): OperationOutcomeError {
  if (err instanceof OperationOutcomeError) return err;
  if (err instanceof ReadingError) return new OperationOutcomeError(err.status, { code: err.code, diagnostics: err.message });
  throw err;
}

/**
 * A device payload through the one write pipeline: each reading is mapped and checked on its
 * own (mapping, schema, ranges, patient), then the good ones are written in one executeWrites
 * call (one transaction, set-based); if that fails, one by one so each gets its own outcome.
 * The answer is a batch-response Bundle with one entry per reading, in order.
 */
export async function ingestPayload(ctx: FhirContext, payload: Payload, policy: AccessPolicy = unrestricted): Promise<fhir4.Bundle> {
  if (payload.patient !== undefined && !PATIENT_REF.test(payload.patient)) {
    throw new OperationOutcomeError(400, { code: 'invalid', diagnostics: `patient '${payload.patient}' is not a Patient/id reference`, expression: ['patient'] });
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

  // One lookup per distinct patient of the payload.
  const patients = new Map<string, Promise<boolean>>();
  const patientExists = (ref: string) => {
    let exists = patients.get(ref);
    if (!exists) {
      exists = readCurrent(ctx.db, 'Patient', ref.slice('Patient/'.length)).then((stored) => stored !== undefined && !stored.deleted);
      patients.set(ref, exists);
    }
    return exists;
  };

  const slots: Slot[] = [];
  const seen = new Map<string, number>();
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
        if (patientRef && !(await patientExists(patientRef))) {
          // Named explicitly or by an assignment, the patient must exist now: a reading is never
          // filed under a patient that is unknown or was deleted.
          throw new ReadingError(422, `no patient: ${patientRef} is not known (or was deleted); the reading is not stored`, 'not-found');
        }
        if (!patientRef) {
          throw new ReadingError(
            422,
            known
              ? `no patient: Device/${known.id} was assigned to nobody at ${draft.time} (no DeviceUseStatement covers it, no Device.patient) and the payload names no patient`
              : `no patient: device ${identifier?.system ?? ''}|${identifier?.value ?? '(none)'} is not known and the payload names no patient`,
            'not-found',
          );
        }
        const obs = draftToObservation(draft, {
          device: identifier ?? { system: 'urn:ietf:rfc:3986', value: 'urn:unknown-device' },
          deviceRef: known ? `Device/${known.id}` : undefined,
          patientRef,
          now,
        });
        const issues = validationIssues(obs);
        if (issues.length > 0) throw new OperationOutcomeError(422, issues);
        const first = seen.get(obs.id!);
        if (first !== undefined) {
          slots.push({ op: { kind: 'create', type: 'Observation', id: obs.id, resource: obs, onExistingId: 'match' }, duplicateOf: first });
        } else {
          seen.set(obs.id!, slots.length);
          slots.push({ op: { kind: 'create', type: 'Observation', id: obs.id, resource: obs, onExistingId: 'match' } });
        }
      } catch (err) {
        slots.push({ error: refusal(err) });
      }
    }
  }

  const toWrite = slots.map((s, i) => ({ s, i })).filter(({ s }) => 'op' in s && s.duplicateOf === undefined);
  const outcomes = new Map<number, WriteOutcome | OperationOutcomeError>();
  if (toWrite.length > 0) {
    try {
      const written = await executeWrites(ctx, toWrite.map(({ s }) => (s as { op: WriteOp }).op), policy);
      written.forEach((o, k) => outcomes.set(toWrite[k]!.i, o));
    } catch (err) {
      if (!(err instanceof Error)) throw err;
      for (const { s, i } of toWrite) {
        try {
          const [o] = await executeWrites(ctx, [(s as { op: WriteOp }).op], policy);
          outcomes.set(i, o!);
        } catch (one) {
          outcomes.set(i, refusal(one));
        }
      }
    }
  }

  const entry: fhir4.BundleEntry[] = slots.map((s, i) => {
    if ('error' in s) return errorEntry(s.error);
    const outcome = outcomes.get(s.duplicateOf ?? i)!;
    if (outcome instanceof OperationOutcomeError) return errorEntry(outcome);
    // A reading repeated within the payload is the same resource: 200, as a retry would be.
    return writeEntry(ctx.baseUrl, s.duplicateOf !== undefined ? { ...outcome, status: 200 } : outcome, 'minimal');
  });
  return { resourceType: 'Bundle', type: 'batch-response', entry };
}
