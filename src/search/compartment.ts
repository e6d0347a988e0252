import { extractIndex } from './extract';
import { parameterOf, patientCompartmentOf, storedSourcesOf } from './registry';

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
