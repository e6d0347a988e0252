import type { AccessPolicy } from '../access/policy';
import { supportedTypes } from '../kernel/resource-types';
import { canBeInPatientCompartment, eraseSearchIndex, findMatchingIds, localReference, patientsOf } from '../search';
import { eraseResources, eraseVersions, type FoundVersion, versionsContaining } from '../store/erasure';
import { lockCurrent } from '../store/repository';
import type { ErasedCompartment } from './stages';
import type { UnitOfWork } from './unit-of-work';

/** What an erasure removed and what it left, by count and reference only (the answer names no content). */
export interface Erasure {
  /** Resources erased whole, ids by type (the Patient among them). */
  resources: Map<string, string[]>;
  /** Replaced versions erased from resources that now belong to someone else (moved since). */
  pastVersions: number;
  /**
   * Resources in this compartment and in another patient's too (a Group, an Observation with a
   * second patient as performer): kept, since erasing them erases someone else's data; the answer
   * lists them for the administrator to edit.
   */
  shared: string[];
}

/**
 * Erases Patient `patientId`'s compartment (GDPR Art. 17) in `uow`'s transaction: every version
 * (current and history) and every index row of every resource that is, or was when it was
 * deleted, in the compartment by the R4 CompartmentDefinition (the search module's own rule),
 * every Binary whose securityContext is the patient, and the Patient itself; then each capability forgets its own rows about them (the `erase`
 * hooks), all or nothing. Undefined, having changed nothing, when there is nothing to erase.
 *
 * The Patient need not be stored: the server does not refuse writes whose reference dangles, so
 * data can reach the compartment of a Patient erased (or never created) before; it is found by
 * the same rule and erased the same way (decision 014, "Erasure gaps closed").
 *
 * The rows are locked first (FOR UPDATE), so a concurrent write of one of them waits, then finds
 * the resource gone.
 */
export async function eraseCompartment(uow: UnitOfWork, patientId: string, policy: AccessPolicy): Promise<Erasure | undefined> {
  const tx = uow.tx;
  const types = [...supportedTypes.filter(canBeInPatientCompartment), 'Binary'];
  // The text match only narrows: it catches every spelling of a reference to Patient/<id> —
  // relative, versioned (`/_history/n`), absolute on any base — and patientsNamed, the index's
  // own rule, then keeps those that name this server's Patient (decision 034: another base's is not).
  const spellings = [`Patient/${patientId}"`, `Patient/${patientId}/_history/`];
  const naming = (versions: FoundVersion[]) => versions.filter((v) => patientsNamed(v.type, v.resource).includes(patientId));
  // Past versions that were in the compartment: the only trace of resources deleted or moved since.
  const past = naming(await versionsContaining(tx, types, spellings));
  // Binaries have no index of their securityContext: the current ones are found by content too.
  const binaries = naming(await versionsContaining(tx, ['Binary'], spellings, { current: true })).map((v) => v.id);
  const erasure: Erasure = { resources: new Map(), pastVersions: 0, shared: [] };
  const partial = new Map<string, Array<{ id: string; versionId: number }>>();
  for (const type of types) {
    const live = type === 'Patient' ? [patientId] : type === 'Binary' ? binaries : await findMatchingIds(tx, type, new URLSearchParams(), undefined, patientId);
    const pastOfType = past.filter((v) => v.type === type);
    const candidates = [...new Set([...live, ...pastOfType.map((v) => v.id)])];
    if (candidates.length === 0) continue;
    const whole: string[] = [];
    for (const [id, row] of await lockCurrent(tx, type, candidates)) {
      const patients = row.resource ? patientsNamed(type, row.resource) : [patientId];
      if (type === 'Patient' || (patients.length === 1 && patients[0] === patientId)) whole.push(id);
      else if (patients.includes(patientId)) erasure.shared.push(`${type}/${id}`);
      else {
        // Moved to another patient since: only the versions that were this patient's go.
        const versions = pastOfType.filter((v) => v.id === id).map((v) => ({ id, versionId: v.versionId }));
        partial.set(type, [...(partial.get(type) ?? []), ...versions]);
        erasure.pastVersions += versions.length;
      }
    }
    if (whole.length) erasure.resources.set(type, whole.sort());
  }
  if (erasure.resources.size === 0 && erasure.pastVersions === 0 && erasure.shared.length === 0) return undefined;

  const erased: ErasedCompartment = { patientId, resources: erasure.resources, policy };
  for (const { hook } of uow.ctx.stages.of('erase')) await hook(uow, erased);
  for (const [type, ids] of erasure.resources) {
    await eraseSearchIndex(tx, type, ids);
    await eraseResources(tx, type, ids);
  }
  for (const [type, versions] of partial) await eraseVersions(tx, type, versions);
  return erasure;
}

/**
 * The patients a stored version concerns, for erasure: those of its compartment (the search
 * module's rule), and for a Binary, which R4 puts in no compartment, the Patient its
 * securityContext names — a scanned letter or an export file of the patient is their data
 * (Art. 17; decision 014).
 */
function patientsNamed(type: string, resource: fhir4.FhirResource): string[] {
  if (type !== 'Binary') return patientsOf(type, resource);
  const context = (resource as fhir4.Binary).securityContext?.reference;
  const local = context ? localReference(context) : undefined;
  return local?.type === 'Patient' ? [local.id] : [];
}
