/** Resources the Consent and caregiver suites build (decision record 015). */

export const VITAL_SIGNS = { system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' };

/** An active patient-privacy Consent of `patientId` with this root provision. */
export function consent(patientId: string, provision: fhir4.ConsentProvision): fhir4.Consent & Record<string, unknown> {
  return {
    resourceType: 'Consent',
    status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    patient: { reference: `Patient/${patientId}` },
    policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] },
    provision,
  };
}

/** A named actor of a provision: a caregiver or a clinician by their FHIR identity. */
export function actor(reference: string): fhir4.ConsentProvisionActor {
  return { role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-RoleClass', code: 'CAREGIVER' }] }, reference: { reference } };
}

export function observation(patientId: string, code: string, category: 'vital-signs' | 'laboratory'): Record<string, unknown> {
  return {
    resourceType: 'Observation', status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: category }] }],
    code: { coding: [{ system: 'http://loinc.org', code }] }, subject: { reference: `Patient/${patientId}` },
    effectiveDateTime: '2026-11-02T08:00:00Z', valueQuantity: { value: 70, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
  };
}
