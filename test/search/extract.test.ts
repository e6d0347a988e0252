import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import * as fhirpath from 'fhirpath';
import r4Model from 'fhirpath/fhir-context/r4';
import { compileExpression } from '../../src/search/accessor';
import { parseDateRange } from '../../src/search/date-range';
import { extractIndex } from '../../src/search/extract';
import { parameterOf, patientCompartmentOf } from '../../src/search/registry';
import { toCanonical } from '../../src/terminology/ucum';

export const lab = Lab.script();
const { describe, it } = lab;

// eslint-disable-next-line @typescript-eslint/no-require-imports
const example = (name: string) => require(`hl7.fhir.r4.examples/${name}.json`) as fhir4.FhirResource;

describe('search registry', () => {
  it('loads the official R4 parameters per type plus ours, split from shared definitions', () => {
    expect(parameterOf('Observation', 'code')?.url).to.equal('http://hl7.org/fhir/SearchParameter/clinical-code');
    expect(parameterOf('Observation', 'code')?.expression).to.equal('Observation.code');
    expect(parameterOf('Flag', 'status')?.url).to.equal('http://rpm.example.org/fhir/SearchParameter/Flag-status');
    expect(parameterOf('Observation', '_tag')?.expression).to.equal('Observation.meta.tag');
    expect(parameterOf('Observation', 'dna-variant')).to.not.exist(); // experimental examples are left out
  });

  it('derives unions and subsets from stored parameters', () => {
    expect(parameterOf('Observation', 'combo-code')?.storage).to.equal({ kind: 'derived', sources: [{ code: 'code' }, { code: 'component-code' }] });
    expect(parameterOf('Observation', 'patient')?.storage).to.equal({ kind: 'derived', sources: [{ code: 'subject', targetType: 'Patient' }] });
    expect(patientCompartmentOf('Observation')).to.equal({ params: ['subject', 'performer'], keySource: { code: 'subject', targetType: 'Patient' }, keyIsExact: true });
    expect(patientCompartmentOf('Device').params).to.equal(['patient']);
  });

  it('evaluates Patient deceased natively, as fhirpath does, so that a Patient loads no FHIRPath engine', () => {
    const { expression } = parameterOf('Patient', 'deceased')!;
    const native = compileExpression(expression, 'Patient');
    const byFhirpath = fhirpath.compile(expression, r4Model, { resolveInternalTypes: false }) as (r: unknown) => unknown[];
    const patients = [{}, { deceasedBoolean: false }, { deceasedBoolean: true }, { deceasedDateTime: '2020' }, { deceasedDateTime: '2020-03-01T10:00:00Z' }, { deceasedBoolean: false, deceasedDateTime: '2020' }, { deceasedDateTime: '2020', deceasedBoolean: true }];
    for (const fields of patients) {
      const patient = { resourceType: 'Patient', ...fields };
      const result = byFhirpath(patient);
      expect(native.accessor({ value: patient, type: 'Patient' }), JSON.stringify(fields)).to.equal([{ value: fhirpath.resolveInternalTypes(result)[0], type: fhirpath.types(result)[0]!.replace('System.', '') }]);
    }
    expect(native.fast).to.be.true();
  });
});

describe('extraction', () => {
  it('indexes a BP panel: component pairs, canonical units, the patient key and the date on token rows', () => {
    const { patient, rows } = extractIndex('Observation', example('Observation-blood-pressure'));
    expect(patient).to.equal('example');
    const systolic = rows.composite.find((r) => r.param === 'component-code-value-quantity' && r.row[8] === 'mm[Hg]' && r.row[6] === 107);
    expect(systolic?.row[11]).to.equal('g.m-1.s-2');
    // The hot path's columns on driving rows (a code, not an identifier, not an Observation's status) only.
    const driving = rows.token.filter((t) => t.row[8] === true);
    expect(driving.map((t) => t.param).sort()).to.equal(['category', 'code', 'component-code', 'component-code', 'component-code', 'component-code']);
    expect(driving.every((t) => t.row[5] === '2012-09-17T00:00:00.000Z' && t.row[8] === true)).to.be.true();
    const others = rows.token.filter((t) => !driving.includes(t));
    // basedOn is a reference by identifier: its row serves `based-on:identifier` and never drives (decision 035).
    expect(others.map((t) => t.param).sort()).to.equal(['based-on:identifier', 'code', 'identifier', 'status']);
    expect(others.every((t) => t.row[5] === null && t.row[6] === null && t.row[8] === false)).to.be.true();
    expect(rows.composite.filter((r) => r.param === 'code-value-quantity')).to.equal([]); // a panel has no value[x]
  });

  it('accent- and case-folds strings, types ContactPoints and Identifiers', () => {
    const { rows } = extractIndex('Patient', { resourceType: 'Patient', name: [{ family: 'Müller', given: ['Zoë'] }], telecom: [{ system: 'phone', value: '123' }] });
    expect(rows.string.filter((s) => s.param === 'name').map((s) => s.row[0])).to.equal(['muller', 'zoe']);
    expect(rows.token.find((t) => t.param === 'phone')?.row.slice(0, 2)).to.equal(['phone', '123']);
  });
});

describe('token rows', () => {
  const hr = (text: string) => ({
    resourceType: 'Observation', status: 'final', subject: { reference: 'Patient/p' },
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }], text },
  }) as fhir4.Observation;
  const codeRows = (o: fhir4.Observation) => extractIndex('Observation', o).rows.token.filter((r) => r.param === 'code').map((r) => [r.row[1], r.row[4]]);

  it('keep a CodeableConcept.text row only when it says more than the codings display', () => {
    expect(codeRows(hr('Heart rate'))).to.equal([['8867-4', 'heart rate']]);
    expect(codeRows(hr('Pulse at rest'))).to.equal([['8867-4', 'heart rate'], [null, 'pulse at rest']]);
  });
});

describe('date ranges and UCUM', () => {
  it('partial dates cover their extent; zones shift the instant', () => {
    expect(parseDateRange('2026')).to.equal({ low: Date.UTC(2026, 0, 1), high: Date.UTC(2027, 0, 1) - 1 });
    expect(parseDateRange('2024-02')?.high).to.equal(Date.UTC(2024, 2, 1) - 1);
    expect(parseDateRange('2026-01-15T11:00:00+01:00')?.low).to.equal(Date.UTC(2026, 0, 15, 10));
    expect(parseDateRange('2026-02-30')).to.not.exist();
  });

  it('converts to canonical UCUM with cached factors', () => {
    expect(toCanonical(80, 'kg')).to.equal({ value: 80000, unit: 'g' });
    expect((toCanonical(180, '[lb_av]')?.value ?? 0) > 80000).to.be.true();
    expect(toCanonical(37, 'Cel')?.unit).to.equal('K');
    expect(toCanonical(1, 'bogus')).to.not.exist();
  });
});
