import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { profilesDir } from '../../src/kernel/paths';
import { nativeInvariant } from '../../src/validation/invariants';
import { interopFiles } from '../helpers/interop';
import { startTestServer } from '../helpers/server';

export const lab = Lab.script();
const { describe, it } = lab;

// eslint-disable-next-line @typescript-eslint/no-require-imports
const fhirpath = require('fhirpath') as { compile(expr: string, model: unknown): (r: unknown, env?: unknown) => unknown[] };
// eslint-disable-next-line @typescript-eslint/no-require-imports
const r4Model = require('fhirpath/fhir-context/r4');

/** Every error invariant of the profiles we hold that has a native check. */
function nativeInvariants() {
  const found = new Map<string, { key: string; relative: string; expression: string }>();
  for (const file of readdirSync(profilesDir).filter((f) => f.startsWith('StructureDefinition-'))) {
    const sd = JSON.parse(readFileSync(join(profilesDir, file), 'utf8')) as fhir4.StructureDefinition;
    for (const e of sd.snapshot?.element ?? []) {
      for (const c of e.constraint ?? []) {
        const relative = e.path.split('.').slice(1).join('.').replace(/\[x\]/g, '');
        if (c.expression && nativeInvariant(c.key, relative, c.expression)) found.set(`${c.key}@${relative}`, { key: c.key, relative, expression: c.expression });
      }
    }
  }
  return [...found.values()];
}

/** Real Observations, plus variants that break or stretch each invariant. */
function samples(): any[] {
  const real = [...interopFiles('r4-spec-examples/Observation'), ...interopFiles('device-observations/hl7-phd-stu2'), ...interopFiles('device-observations/us-core')]
    .map((f) => f.json)
    .filter((r) => r.resourceType === 'Observation');
  const bp = {
    resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '85354-9' }] },
    effectiveDateTime: '2026-01-01T08:00:00Z',
    component: [
      { code: { coding: [{ system: 'http://loinc.org', code: '8480-6' }] }, valueQuantity: { value: 120 } },
      { code: { coding: [{ system: 'http://loinc.org', code: '8462-4' }] }, valueQuantity: { value: 80 } },
    ],
  };
  const variants: any[] = [
    bp,
    { ...bp, effectiveDateTime: '2026-01' },
    { ...bp, effectiveDateTime: '2026-01-01' },
    { ...bp, component: [{ code: { text: 'no value' } }] },
    { ...bp, component: [{ code: { text: 'absent' }, dataAbsentReason: { text: 'x' } }] },
    { ...bp, valueQuantity: { value: 1 }, dataAbsentReason: { text: 'x' } },
    { ...bp, valueQuantity: { value: 1 } },
    { ...bp, valueQuantity: { value: 1 }, component: [{ code: { coding: [{ system: 'http://loinc.org', code: '85354-9' }] }, valueQuantity: { value: 2 } }] },
    { ...bp, valueQuantity: { value: 1 }, component: [{ code: { coding: [{ code: '85354-9', system: 'http://loinc.org' }] }, valueQuantity: { value: 2 } }] },
    { ...bp, valueQuantity: { value: 1 }, component: [{ code: { coding: [{ system: 'http://loinc.org', code: '85354-9', display: 'BP' }] }, valueQuantity: { value: 2 } }] },
    { ...bp, component: undefined },
    { ...bp, component: undefined, valueString: 'x' },
    { ...bp, component: undefined, hasMember: [{ reference: 'Observation/1' }] },
    { ...bp, referenceRange: [{ text: 'normal' }] },
    { ...bp, referenceRange: [{ appliesTo: [{ text: 'x' }] }] },
    { ...bp, contained: [{ resourceType: 'Patient', id: 'p', meta: { versionId: '1' } }] },
    { ...bp, contained: [{ resourceType: 'Patient', id: 'p', meta: { security: [{ code: 'R' }] } }] },
    { ...bp, contained: [{ resourceType: 'Patient', id: 'p', contained: [{ resourceType: 'Patient', id: 'q' }] }] },
    { ...bp, contained: [{ resourceType: 'Patient', id: 'p' }] },
  ];
  return [...real, ...variants];
}

describe('native profile invariants', () => {
  it('agree with fhirpath on every sample Observation (vs-1 deliberately differs on Periods)', () => {
    const invariants = nativeInvariants();
    // obs-3, obs-6 and obs-7 are the base Observation's: checked on every resource (core-invariants.test.ts).
    expect(invariants.map((i) => i.key).sort()).to.equal(['dom-2', 'dom-4', 'dom-5', 'vs-1', 'vs-2', 'vs-3']);
    const all = samples();
    let compared = 0;
    for (const inv of invariants) {
      const native = nativeInvariant(inv.key, inv.relative, inv.expression)!;
      // Element invariants hold at every occurrence of the element, as profile.ts evaluates them.
      const check = fhirpath.compile(inv.relative ? `${inv.relative}.all(${inv.expression})` : inv.expression, r4Model);
      for (const r of all) {
        const result = check(r, { resource: r });
        const fhirpathHolds = !(result.length === 1 && result[0] === false);
        // vs-1 constrains dateTime values only; as `effective.all(...)`, fhirpath also fails a Period.
        const expected = inv.key === 'vs-1' && r.effectivePeriod ? true : fhirpathHolds;
        expect(native(r), `${inv.key} on ${r.id ?? JSON.stringify(r).slice(0, 120)}`).to.equal(expected);
        compared++;
      }
    }
    expect(compared).to.be.above(6 * 20);
  });

  it('refuses to stand in for an invariant whose expression differs from the one implemented', () => {
    expect(nativeInvariant('vs-2', '', '(component.empty() and hasMember.empty()) implies value.exists()')).to.not.exist();
    expect(nativeInvariant('vs-2', '', '(component.empty() and hasMember.empty()) implies (dataAbsentReason.exists() or value.exists())')).to.exist();
  });
});

describe('vital-signs profile over HTTP', () => {
  it('accepts a heart rate measured over a period, and refuses one dated only to the month', async () => {
    const app = await startTestServer();
    try {
      const hr = (effective: Record<string, unknown>) => ({
        resourceType: 'Observation', meta: { profile: ['http://hl7.org/fhir/StructureDefinition/heartrate'] }, status: 'final',
        category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
        code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] }, subject: { reference: 'Patient/example' },
        valueQuantity: { value: 64, unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' }, ...effective,
      });
      const period = await app.request({ method: 'POST', url: '/fhir/Observation', payload: hr({ effectivePeriod: { start: '2026-11-02T08:00:00Z', end: '2026-11-02T08:05:00Z' } }) });
      expect(period.statusCode, period.payload).to.equal(201);
      const month = await app.request({ method: 'POST', url: '/fhir/Observation', payload: hr({ effectiveDateTime: '2026-11' }) });
      expect(month.statusCode).to.equal(422);
      expect(month.payload).to.contain('vs-1');
    } finally {
      await app.stop();
    }
  });
});
