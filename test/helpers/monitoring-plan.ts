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
