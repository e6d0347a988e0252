import type { FhirContext } from '../fhir/context';
import { searchResources } from '../search';
import { linkedPatient, withConsents } from '../access/consent';
import { policyReach, readLimits, readVisible } from '../access/enforce';
import { type AccessPolicy, policyFromScopes } from '../access/policy';
import { readCurrent, readResource } from '../store/repository';
import type { PatientLabel } from './pages';

/**
 * What the authorization server needs to know of FHIR resources: whether a Patient or
 * Practitioner exists (launch contexts, fhirUser of federated logins), a list of patients
 * for the picker, and a caregiver's linked patient. Through the search and store modules' public surfaces only.
 */
export interface Directory {
  exists(type: 'Patient' | 'Practitioner', id: string): Promise<boolean>;
  /** The patients `who` may read (Consents that deny them a patient hide it), newest first. */
  listPatients(who: PickingUser, name?: string): Promise<Array<{ id: string; label: PatientLabel }>>;
  /** Whether `who` may read Patient `id`, so choose it as a launch's patient (picked, or handed over by an EHR launch). */
  mayPick(who: PickingUser, id: string): Promise<boolean>;
  /** Whether Patient `id` exists and `policy` may read it (an EHR asking for a launch: what it may not read it cannot hand on). */
  isReadable(policy: AccessPolicy, id: string): Promise<boolean>;
  /** How the consent page names the patient (a person reads a name, not an id); undefined when unknown. */
  describePatient(id: string): Promise<PatientLabel | undefined>;
  /** The patient a caregiver's RelatedPerson links while the link holds; undefined otherwise. */
  linkedPatient(relatedPersonId: string): Promise<string | undefined>;
}

/** A signed-in user choosing a patient for an app: who a Consent may name (their FHIR identity, the app). */
export interface PickingUser {
  clientId: string;
  username: string;
  fhirUser?: string;
}

const PICKER_SIZE = 50;

/**
 * What the user may read of Patients, as a `user/Patient.rs` token of theirs for this app would:
 * the picker offers only what the token it leads to may read (a patient whose Consent denies
 * this clinician or app is neither listed nor accepted).
 */
function pickerPolicy(ctx: FhirContext, who: PickingUser): Promise<AccessPolicy> {
  return withConsents(ctx.db, policyFromScopes(['user/Patient.rs'], { clientId: who.clientId, subject: who.username, ...(who.fhirUser ? { fhirUser: who.fhirUser } : {}) }));
}

export function fhirDirectory(ctx: FhirContext): Directory {
  return {
    async exists(type, id) {
      const found = await readCurrent(ctx.db, type, id);
      return found !== undefined && !found.deleted;
    },
    async listPatients(who, name) {
      const policy = await pickerPolicy(ctx, who);
      const params = new URLSearchParams({ _count: String(PICKER_SIZE), _sort: '-_lastUpdated' });
      if (name) params.set('name', name);
      for (const [key, value] of readLimits(policy, 'Patient', 's').constraint ?? []) params.append(key, value);
      const result = await searchResources(ctx, { resourceType: 'Patient', params, preferLenient: true, reach: policyReach(policy) });
      const body = JSON.parse(result.body.json) as fhir4.Bundle;
      return (body.entry ?? [])
        .map((e) => e.resource as fhir4.Patient | undefined)
        .filter((p): p is fhir4.Patient => p?.resourceType === 'Patient' && typeof p.id === 'string')
        .map((p) => ({ id: p.id!, label: patientLabel(p) }));
    },
    async mayPick(who, id) {
      return (await readVisible(ctx.db, await pickerPolicy(ctx, who), 'Patient', id)) !== undefined;
    },
    async isReadable(policy, id) {
      return (await readVisible(ctx.db, policy, 'Patient', id)) !== undefined;
    },
    async describePatient(id) {
      const found = await readCurrent(ctx.db, 'Patient', id);
      return found && !found.deleted && found.json ? patientLabel(JSON.parse(found.json) as fhir4.Patient) : undefined;
    },
    async linkedPatient(id) {
      return linkedPatient((await readResource<fhir4.RelatedPerson>(ctx.db, 'RelatedPerson', id))?.resource);
    },
  };
}

/** The official (else first) name, as written; birth date beside it, since names repeat. */
function patientLabel(p: fhir4.Patient): PatientLabel {
  const n = p.name?.find((x) => x.use === 'official') ?? p.name?.[0];
  const name = (n?.text ?? [...(n?.prefix ?? []), ...(n?.given ?? []), n?.family ?? ''].join(' ')).trim();
  return { name: name || `unnamed patient ${p.id}`, ...(p.birthDate ? { birthDate: p.birthDate } : {}) };
}

/** For offline CLIs, which have no FHIR context. */
export const noDirectory: Directory = {
  exists: () => Promise.reject(new Error('no FHIR directory in this process')),
  listPatients: () => Promise.resolve([]),
  mayPick: () => Promise.resolve(false),
  isReadable: () => Promise.resolve(false),
  describePatient: () => Promise.resolve(undefined),
  linkedPatient: () => Promise.resolve(undefined),
};
