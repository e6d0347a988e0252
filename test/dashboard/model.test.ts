import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { adherenceOf, limitsOf, scheduleOf, seriesOf, storedGoalIds, wardOf } from '../../app/src/model';

export const lab = Lab.script();
const { describe, it } = lab;

// The dashboard's reading of FHIR resources (app/src/model.ts), compiled for Node by tsc.

const loinc = (code: string, display = code) => ({ coding: [{ system: 'http://loinc.org', code, display }] });
const range = (low?: number, high?: number) => ({
  ...(low !== undefined ? { low: { value: low, unit: 'mmHg' } } : {}),
  ...(high !== undefined ? { high: { value: high, unit: 'mmHg' } } : {}),
});
const goal = (id: string, code: string, low?: number, high?: number, critical = false): fhir4.Goal => ({
  resourceType: 'Goal', id, lifecycleStatus: 'active', description: { text: id }, subject: { reference: 'Patient/p' },
  ...(critical ? { priority: { coding: [{ code: 'high-priority' }] } } : {}),
  target: [{ measure: loinc(code), detailRange: range(low, high) }],
});
const plan = (goals: fhir4.Goal[], refs: string[], activity: fhir4.CarePlanActivity[] = []): fhir4.CarePlan => ({
  resourceType: 'CarePlan', status: 'active', intent: 'plan', subject: { reference: 'Patient/p' },
  contained: goals, goal: refs.map((reference) => ({ reference })), activity,
});
const bp = (id: string, time: string, systolic: number, diastolic: number): fhir4.Observation => ({
  resourceType: 'Observation', id, status: 'final', code: loinc('85354-9'), effectiveDateTime: time,
  component: [
    { code: loinc('8480-6', 'Systolic'), valueQuantity: { value: systolic, unit: 'mmHg' } },
    { code: loinc('8462-4', 'Diastolic'), valueQuantity: { value: diastolic, unit: 'mmHg' } },
  ],
});

describe('dashboard model', () => {
  it('takes the normal band from ordinary goals and critical limits from high-priority ones, contained or stored', () => {
    const plans = [plan([goal('bp', '8480-6', 90, 140), goal('crit', '8480-6', 80, 180, true)], ['#bp', '#crit', 'Goal/w'])];
    expect(storedGoalIds(plans)).to.equal(['w']);
    const limits = limitsOf(plans, new Map([['w', goal('w', '29463-7', 60, 90)]]));
    expect(limits.get('8480-6')).to.equal({ normal: { low: 90, high: 140 }, critical: { low: 80, high: 180 }, unit: 'mmHg' });
    expect(limits.get('29463-7')!.normal).to.equal({ low: 60, high: 90 });
  });

  it('of two plans keeps the narrower band; a one-sided limit stays one-sided; inactive goals give none', () => {
    const inactive = { ...goal('old', '8462-4', 0, 1), lifecycleStatus: 'cancelled' as const };
    const limits = limitsOf([plan([goal('a', '8480-6', 90, 140)], ['#a']), plan([goal('b', '8480-6', 95, 150), goal('s', '59408-5', 92), inactive], ['#b', '#s', '#old'])], new Map());
    expect(limits.get('8480-6')!.normal).to.equal({ low: 95, high: 140 });
    expect(limits.get('59408-5')!.normal).to.equal({ low: 92 });
    expect(limits.has('8462-4')).to.be.false();
  });

  it('splits blood-pressure panels into systolic and diastolic series, oldest first, breaches judged against the limits', () => {
    const limits = limitsOf([plan([goal('bp', '8480-6', 90, 140), goal('crit', '8480-6', 80, 180, true)], ['#bp', '#crit'])], new Map());
    const series = seriesOf([bp('2', '2026-11-02T08:00:00Z', 150, 80), bp('1', '2026-11-01T08:00:00Z', 120, 80), bp('3', '2026-11-03T08:00:00Z', 190, 80), bp('4', '2026-11-04T08:00:00Z', 85, 80)], limits);
    expect(series.map((s) => s.code)).to.equal(['8462-4', '8480-6']);
    const systolic = series.find((s) => s.code === '8480-6')!;
    expect(systolic.points.map((p) => [p.observationId, p.breach, p.critical])).to.equal([
      ['1', undefined, undefined], ['2', 'high', undefined], ['3', 'high', true], ['4', 'low', undefined],
    ]);
    expect(series.find((s) => s.code === '8462-4')!.points.every((p) => !p.breach)).to.be.true();
  });

  it('skips readings entered in error and readings without a time', () => {
    const wrong = { ...bp('x', '2026-11-01T08:00:00Z', 300, 200), status: 'entered-in-error' as const };
    const timeless = { ...bp('y', '2026-11-01T08:00:00Z', 120, 80), effectiveDateTime: undefined };
    expect(seriesOf([wrong, timeless as fhir4.Observation], new Map())).to.equal([]);
  });

  it('counts readings taken against those due by the schedule, from the plan start when it is later', () => {
    const schedule = scheduleOf([plan([], [], [{ detail: { status: 'in-progress', code: loinc('85354-9', 'BP'), scheduledTiming: { repeat: { frequency: 2, period: 1, periodUnit: 'd' } } } }, { detail: { status: 'in-progress', code: loinc('29463-7', 'Weight'), scheduledTiming: { repeat: { frequency: 1, period: 1, periodUnit: 'wk' } } } }])]);
    expect(schedule.map((s) => [s.code, s.perDay])).to.equal([['85354-9', 2], ['29463-7', 1 / 7]]);
    const now = Date.parse('2026-11-11T00:00:00Z');
    const taken = [bp('a', '2026-11-09T08:00:00Z', 120, 80), bp('b', '2026-11-10T08:00:00Z', 120, 80), bp('old', '2026-10-01T08:00:00Z', 120, 80)];
    const [bpAdherence, weight] = adherenceOf(schedule, taken, now, 30, Date.parse('2026-11-01T00:00:00Z'));
    expect(bpAdherence).to.include({ days: 10, expected: 20, taken: 2 });
    expect(weight).to.include({ expected: 1, taken: 0 });
  });

  it('orders the ward by each patient’s newest Flag change and ignores inactive Flags', () => {
    const flag = (id: string, patient: string, updated: string, status: 'active' | 'inactive' = 'active'): fhir4.Flag => ({
      resourceType: 'Flag', id, status, code: { text: id }, subject: { reference: `Patient/${patient}` }, meta: { lastUpdated: updated },
    });
    const rows = wardOf(
      [flag('a1', 'a', '2026-11-01T00:00:00Z'), flag('b1', 'b', '2026-11-02T00:00:00Z'), flag('a2', 'a', '2026-11-03T00:00:00Z'), flag('c1', 'c', '2026-11-04T00:00:00Z', 'inactive')],
      [{ resourceType: 'Patient', id: 'a', name: [{ family: 'A' }] }],
    );
    expect(rows.map((r) => [r.patientId, r.flags.map((f) => f.flag.id)])).to.equal([['a', ['a2', 'a1']], ['b', ['b1']]]);
    expect(rows[0]!.patient!.id).to.equal('a');
    expect(rows[1]!.patient).to.be.undefined();
  });
});
