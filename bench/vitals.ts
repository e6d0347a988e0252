/**
 * Realistic remote-monitoring Observations for write workloads: the three readings home
 * devices send most (blood-pressure panel with systolic/diastolic components, heart rate, body
 * weight), shaped like the R4 vital-signs profile examples, about 1–1.5 kB of JSON each.
 * Values vary with the index so no two bodies are identical (no accidental caching).
 * Kept as typed code rather than a fixture file so the compiler checks them against R4 types.
 */

const VITAL_SIGNS: fhir4.CodeableConcept[] = [
  {
    coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs', display: 'Vital Signs' }],
    text: 'Vital Signs',
  },
];

function quantity(value: number, unit: string, code: string): fhir4.Quantity {
  return { value, unit, system: 'http://unitsofmeasure.org', code };
}

/** A deterministic spread of plausible values: same index, same reading. */
function wobble(i: number, salt: number, spread: number): number {
  return ((i * 7919 + salt * 104729) % (2 * spread + 1)) - spread;
}

export interface VitalOptions {
  patientRef: string;
  identifierSystem: string;
  /** Unique per resource within a run. */
  index: number;
  effective: Date;
}

/** The i-th reading: BP panel, heart rate and weight in turn (2:2:1, as devices send them). */
export function vitalSignObservation({ patientRef, identifierSystem, index, effective }: VitalOptions): fhir4.Observation {
  const common = {
    resourceType: 'Observation' as const,
    meta: { profile: ['http://hl7.org/fhir/StructureDefinition/vitalsigns'] },
    identifier: [{ system: identifierSystem, value: String(index) }],
    status: 'final' as const,
    category: VITAL_SIGNS,
    subject: { reference: patientRef },
    effectiveDateTime: effective.toISOString(),
    device: { display: 'home monitoring device' },
  };
  switch (index % 5) {
    case 0:
    case 3: {
      const systolic = 128 + wobble(index, 1, 22);
      const diastolic = 82 + wobble(index, 2, 12);
      return {
        ...common,
        code: {
          coding: [{ system: 'http://loinc.org', code: '85354-9', display: 'Blood pressure panel with all children optional' }],
          text: 'Blood pressure systolic & diastolic',
        },
        component: [
          {
            code: { coding: [{ system: 'http://loinc.org', code: '8480-6', display: 'Systolic blood pressure' }] },
            valueQuantity: quantity(systolic, 'mmHg', 'mm[Hg]'),
            interpretation: [interpretation(systolic >= 140 ? 'H' : 'N')],
          },
          {
            code: { coding: [{ system: 'http://loinc.org', code: '8462-4', display: 'Diastolic blood pressure' }] },
            valueQuantity: quantity(diastolic, 'mmHg', 'mm[Hg]'),
            interpretation: [interpretation(diastolic >= 90 ? 'H' : 'N')],
          },
        ],
      };
    }
    case 1:
    case 4:
      return {
        ...common,
        code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }], text: 'Heart rate' },
        valueQuantity: quantity(72 + wobble(index, 3, 20), 'beats/minute', '/min'),
      };
    default:
      return {
        ...common,
        code: { coding: [{ system: 'http://loinc.org', code: '29463-7', display: 'Body weight' }], text: 'Body weight' },
        valueQuantity: quantity(Math.round((78 + wobble(index, 4, 150) / 10) * 10) / 10, 'kg', 'kg'),
      };
  }
}

function interpretation(code: 'H' | 'N'): fhir4.CodeableConcept {
  return {
    coding: [{
      system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation',
      code,
      display: code === 'H' ? 'High' : 'Normal',
    }],
  };
}

export function benchPatient(identifierSystem: string, index: number): fhir4.Patient {
  return {
    resourceType: 'Patient',
    identifier: [{ system: identifierSystem, value: `patient-${index}` }],
    active: true,
    name: [{ family: `Bench${index}`, given: ['Remote', 'Monitoring'] }],
    gender: index % 2 === 0 ? 'female' : 'male',
    birthDate: `19${40 + (index % 40)}-0${1 + (index % 9)}-1${index % 10}`,
  };
}
