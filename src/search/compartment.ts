import { extractIndex } from './extract';
import { emptySink, type IndexRow } from './index-tables';
import { parameterOf, patientCompartmentOf, type SearchParameterDef, storedSourcesOf } from './registry';
import { typeModules } from './types';

/**
 * Whether `resource` belongs to Patient `patientId`'s compartment, by the same rule as the
 * SQL of compartment searches (compartmentCondition): a reference to that Patient from one of
 * the type's compartment parameters (R4 CompartmentDefinition-patient), or being that Patient.
 * For resources not stored yet (a patient-scoped write), where SQL cannot answer.
 */
export function isInPatientCompartment(resourceType: string, resource: fhir4.FhirResource, patientId: string): boolean {
  if (resourceType === 'Patient') return resource.id === patientId;
  const sources = new Set(
    patientCompartmentOf(resourceType).params.flatMap((code) => {
      const def = parameterOf(resourceType, code);
      return def ? storedSourcesOf(def).map((s) => s.code) : [];
    }),
  );
  if (sources.size === 0) return false;
  // Reference index rows: [target_type, target_id, url] after (id, param, patient).
  return extractIndex(resourceType, resource).rows.reference.some((r) => sources.has(r.param) && r.row[0] === 'Patient' && r.row[1] === patientId);
}

const compartmentSources = new Map<string, SearchParameterDef[]>();

/** The indexed reference parameters that put a `resourceType` in a Patient's compartment. */
function compartmentSourcesOf(resourceType: string): SearchParameterDef[] {
  let sources = compartmentSources.get(resourceType);
  if (!sources) {
    const codes = new Set(
      patientCompartmentOf(resourceType).params.flatMap((code) => {
        const def = parameterOf(resourceType, code);
        return def ? storedSourcesOf(def).map((s) => s.code) : [];
      }),
    );
    sources = [...codes].map((c) => parameterOf(resourceType, c)).filter((d): d is SearchParameterDef => d?.storage.kind === 'indexed');
    compartmentSources.set(resourceType, sources);
  }
  return sources;
}

/**
 * Every Patient whose compartment `resource` is in (the ids), by the rule of
 * isInPatientCompartment, evaluating only the compartment's parameters: the audit trail names
 * the patient of every resource it records, and a full index extraction would cost far more.
 */
export function patientsOf(resourceType: string, resource: fhir4.FhirResource): string[] {
  if (resourceType === 'Patient') return resource.id ? [resource.id] : [];
  const ids = new Set<string>();
  for (const row of compartmentRows(resourceType, resource)) if (row[0] === 'Patient' && typeof row[1] === 'string') ids.add(row[1]);
  return [...ids];
}

/**
 * The URLs (`urn:uuid:…`, absolute, conditional) the compartment's parameters hold in `resource`:
 * a writer that will still rewrite one of them cannot judge compartment membership yet.
 */
export function compartmentUrlsOf(resourceType: string, resource: fhir4.FhirResource): string[] {
  if (resourceType === 'Patient') return [];
  return compartmentRows(resourceType, resource).flatMap((row) => (typeof row[2] === 'string' ? [row[2]] : []));
}

function compartmentRows(resourceType: string, resource: fhir4.FhirResource): IndexRow[] {
  const sink = emptySink();
  const root = { value: resource, type: resourceType };
  for (const def of compartmentSourcesOf(resourceType)) {
    if (def.storage.kind !== 'indexed') continue;
    const values = def.storage.accessor(root);
    if (values.length) typeModules.reference.extract(values, def.code, sink);
  }
  return sink.reference.map((r) => r.row);
}
