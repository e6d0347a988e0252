import { expect } from '@hapi/code';
import type { TestServer } from '../helpers/server';

export const TIMEZONE = 'http://hl7.org/fhir/StructureDefinition/timezone';
export const GRACE = 'http://rpm.example.org/fhir/StructureDefinition/dose-grace-period';

export async function create(app: TestServer, resource: any, headers: Record<string, string> = {}): Promise<any> {
  const res = await app.request({ method: 'POST', url: `/fhir/${resource.resourceType}`, payload: resource, headers });
  expect(res.statusCode, JSON.stringify(res.json)).to.equal(201);
  return res.json;
}

export const patient = (zone: string, family = 'Dose') => ({ resourceType: 'Patient', name: [{ family }], extension: [{ url: TIMEZONE, valueCode: zone }] });

export function request(patientId: string, timing: fhir4.Timing, extra: Record<string, unknown> = {}): any {
  return {
    resourceType: 'MedicationRequest', status: 'active', intent: 'order', subject: { reference: `Patient/${patientId}` },
    medicationCodeableConcept: { coding: [{ system: 'http://www.nlm.nih.gov/research/umls/rxnorm', code: '860975', display: 'Metformin 500 MG' }], text: 'Metformin 500 mg' },
    dosageInstruction: [{ text: 'one tablet', timing }],
    ...extra,
  };
}

export const administration = (patientId: string, requestId: string, at: string, status = 'completed') => ({
  resourceType: 'MedicationAdministration', status, subject: { reference: `Patient/${patientId}` },
  medicationCodeableConcept: { text: 'Metformin 500 mg' }, request: { reference: `MedicationRequest/${requestId}` }, effectiveDateTime: at,
});

export interface Dose {
  request: string;
  due: string;
  status: string;
  administration?: string;
  /** Present when the order gave no time of day: patient-routine or server-default. */
  timeSource?: string;
}

/** The doses of a $due answer, flattened. */
export function dosesOf(parameters: any): Dose[] {
  return (parameters.parameter ?? []).filter((p: any) => p.name === 'dose').map((p: any) => {
    const part = (name: string) => p.part.find((x: any) => x.name === name);
    return {
      request: part('request').valueReference.reference,
      due: part('due').valueDateTime,
      status: part('status').valueCode,
      ...(part('administration') ? { administration: part('administration').valueReference.reference } : {}),
      ...(part('timeSource') ? { timeSource: part('timeSource').valueCode } : {}),
    };
  });
}

export function summaryOf(parameters: any): Record<string, number> {
  const summary = parameters.parameter.find((p: any) => p.name === 'summary');
  return Object.fromEntries(summary.part.map((p: any) => [p.name, p.valueInteger ?? p.valueDecimal]));
}
