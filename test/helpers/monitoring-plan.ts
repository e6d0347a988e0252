import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/paths';

/**
 * The example monitoring plan (fixtures/monitoring/careplan-hypertension.json) for one patient,
 * from `start`: only the contained goals (they carry the limits), and the activities that use them.
 */
export function examplePlanFor(patient: string, start: string): fhir4.CarePlan {
  const bundle = JSON.parse(readFileSync(join(projectRoot, 'fixtures/monitoring/careplan-hypertension.json'), 'utf8')) as fhir4.Bundle;
  const plan = structuredClone(bundle.entry!.find((e) => e.resource?.resourceType === 'CarePlan')!.resource as fhir4.CarePlan);
  plan.subject = { reference: `Patient/${patient}` };
  for (const goal of plan.contained ?? []) (goal as fhir4.Goal).subject = { reference: `Patient/${patient}` };
  plan.goal = plan.goal!.filter((g) => g.reference!.startsWith('#'));
  for (const a of plan.activity!) a.detail!.goal = a.detail!.goal!.filter((g) => g.reference!.startsWith('#'));
  plan.activity = plan.activity!.filter((a) => a.detail!.goal!.length > 0);
  plan.period = { start };
  return plan;
}

const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';

/** A CarePlan whose one Goal limits systolic pressure to 140 mm[Hg]: a reading above it raises a Flag. */
export function planWithHighSystolic(patient: string): object {
  return {
    resourceType: 'CarePlan', status: 'active', intent: 'plan', subject: { reference: `Patient/${patient}` },
    contained: [{
      resourceType: 'Goal', id: 'g', lifecycleStatus: 'active', description: { text: 'BP' }, subject: { reference: `Patient/${patient}` },
      target: [{ measure: { coding: [{ system: LOINC, code: '8480-6' }] }, detailRange: { high: { value: 140, unit: 'mm[Hg]', system: UCUM, code: 'mm[Hg]' } } }],
    }],
    goal: [{ reference: '#g' }],
  };
}

/** A blood-pressure panel of one systolic component, taken now. */
export function systolic(patient: string, value: number): object {
  return {
    resourceType: 'Observation', status: 'final', code: { coding: [{ system: LOINC, code: '85354-9' }] }, subject: { reference: `Patient/${patient}` },
    effectiveDateTime: new Date().toISOString(),
    component: [{ code: { coding: [{ system: LOINC, code: '8480-6' }] }, valueQuantity: { value, unit: 'mm[Hg]', system: UCUM, code: 'mm[Hg]' } }],
  };
}
