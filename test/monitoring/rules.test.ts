import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { projectRoot } from '../../src/kernel/paths';
import { countRows, startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';
const FLAG_DETAIL = 'http://hl7.org/fhir/StructureDefinition/flag-detail';
const FLAG_CAREPLAN = 'http://rpm.example.org/fhir/StructureDefinition/flag-careplan';
const FLAG_COUNT = 'http://rpm.example.org/fhir/StructureDefinition/flag-event-count';
const FLAG_PRIORITY = 'http://hl7.org/fhir/StructureDefinition/flag-priority';

const q = (value: number, code: string) => ({ value, unit: code, system: UCUM, code });
const measure = (code: string) => ({ coding: [{ system: LOINC, code }] });
const range = (code: string, unit: string, low?: number, high?: number) => ({
  measure: measure(code),
  detailRange: { ...(low !== undefined ? { low: q(low, unit) } : {}), ...(high !== undefined ? { high: q(high, unit) } : {}) },
});

/** A plan with contained Goals: BP 90–140 / 60–90, critical systolic > 180, weight ≤ 90 kg. */
function plan(patient: string, extra: object = {}): object {
  return {
    resourceType: 'CarePlan',
    status: 'active',
    intent: 'plan',
    subject: { reference: `Patient/${patient}` },
    contained: [
      { resourceType: 'Goal', id: 'bp', lifecycleStatus: 'active', description: { text: 'BP' }, subject: { reference: `Patient/${patient}` }, target: [range('8480-6', 'mm[Hg]', 90, 140), range('8462-4', 'mm[Hg]', 60, 90)] },
      {
        resourceType: 'Goal', id: 'crit', lifecycleStatus: 'active', description: { text: 'BP critical' }, subject: { reference: `Patient/${patient}` },
        priority: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/goal-priority', code: 'high-priority' }] },
        target: [range('8480-6', 'mm[Hg]', undefined, 180)],
      },
      { resourceType: 'Goal', id: 'weight', lifecycleStatus: 'active', description: { text: 'weight' }, subject: { reference: `Patient/${patient}` }, target: [range('29463-7', 'kg', 40, 90)] },
    ],
    goal: [{ reference: '#bp' }, { reference: '#crit' }, { reference: '#weight' }],
    ...extra,
  };
}

function bp(patient: string, systolic: number, diastolic: number, time = new Date().toISOString()): object {
  return {
    resourceType: 'Observation',
    status: 'final',
    code: measure('85354-9'),
    subject: { reference: `Patient/${patient}` },
    effectiveDateTime: time,
    component: [
      { code: measure('8480-6'), valueQuantity: q(systolic, 'mm[Hg]') },
      { code: measure('8462-4'), valueQuantity: q(diastolic, 'mm[Hg]') },
    ],
  };
}

function weight(patient: string, value: number, unit: string, time = new Date().toISOString()): object {
  return { resourceType: 'Observation', status: 'final', code: measure('29463-7'), subject: { reference: `Patient/${patient}` }, effectiveDateTime: time, valueQuantity: q(value, unit) };
}

const ext = (flag: any, url: string) => (flag.extension ?? []).filter((e: any) => e.url === url);

describe('monitoring rules', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer({ ALLOW_CLOCK_OVERRIDE: 'true' });
  });
  after(() => app.stop());

  const create = async (resource: any) => {
    const res = await app.request({ method: 'POST', url: `/fhir/${resource.resourceType}`, payload: resource });
    expect(res.statusCode, JSON.stringify(res.json)).to.equal(201);
    return res.json;
  };
  const newPatient = async () => (await create({ resourceType: 'Patient', name: [{ family: unique('mon') }] })).id as string;
  const flagsOf = async (patient: string, query = '') => {
    const res = await app.request({ method: 'GET', url: `/fhir/Flag?patient=Patient/${patient}${query}` });
    expect(res.statusCode).to.equal(200);
    return (res.json.entry ?? []).map((e: any) => e.resource);
  };

  it('accepts the fixture plan (stored and contained Goals, critical limits, schedule) as a transaction', async () => {
    const bundle = JSON.parse(readFileSync(join(projectRoot, 'fixtures', 'monitoring', 'careplan-hypertension.json'), 'utf8'));
    bundle.entry[0].resource.identifier[0].value = unique('fixture');
    bundle.entry[0].request.ifNoneExist = `identifier=urn:example:rpm:patient|${bundle.entry[0].resource.identifier[0].value}`;
    const res = await app.request({ method: 'POST', url: '/fhir', payload: bundle });
    expect(res.statusCode, JSON.stringify(res.json)).to.equal(200);
    expect(res.json.entry.map((e: any) => e.response.status)).to.equal(['201 Created', '201 Created', '201 Created', '201 Created']);
    const sub = await app.request({ method: 'GET', url: `/fhir/${res.json.entry[3].response.location.split('/_history')[0]}` });
    expect(sub.json.status).to.equal('active');
    // Deactivate it: the endpoint is a placeholder (.invalid never resolves, RFC 6761).
    await app.request({ method: 'PUT', url: `/fhir/Subscription/${sub.json.id}`, payload: { ...sub.json, status: 'off' } });
  });

  it('a breaching systolic inside a BP panel raises exactly one Flag referencing the Observation and the CarePlan, with H on the component', async () => {
    const patient = await newPatient();
    const carePlan = await create(plan(patient));
    const obs = await create(bp(patient, 152, 80));
    const systolic = obs.component[0];
    expect(systolic.interpretation[0].coding[0]).to.include({ code: 'H', system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation' });
    expect(systolic.referenceRange.some((r: any) => r.high?.value === 140 && r.low?.value === 90)).to.be.true();
    expect(obs.component[1].interpretation).to.not.exist();
    expect(obs.interpretation).to.not.exist();

    const flags = await flagsOf(patient, '&status=active&category=clinical');
    expect(flags).to.have.length(1);
    const flag = flags[0];
    expect(flag.status).to.equal('active');
    expect(flag.code.text).to.equal('Systolic blood pressure 152 mm[Hg] above limit 140 mm[Hg]');
    expect(flag.code.coding.some((c: any) => c.system === LOINC && c.code === '8480-6')).to.be.true();
    expect(flag.period.start).to.equal(obs.effectiveDateTime);
    expect(ext(flag, FLAG_DETAIL).map((e: any) => e.valueReference.reference)).to.equal([`Observation/${obs.id}`]);
    expect(ext(flag, FLAG_CAREPLAN)[0].valueReference.reference).to.equal(`CarePlan/${carePlan.id}`);
    expect(ext(flag, FLAG_PRIORITY)).to.have.length(0);
    const byDate = await app.request({ method: 'GET', url: `/fhir/Flag?patient=${patient}&date=ge2000-01-01` });
    expect(byDate.json.entry).to.have.length(1);
  });

  it('a reading in range raises no Flag and gets no H', async () => {
    const patient = await newPatient();
    await create(plan(patient));
    const obs = await create(bp(patient, 120, 75));
    expect(obs.component.every((c: any) => c.interpretation === undefined)).to.be.true();
    expect(obs.component[0].referenceRange).to.not.exist();
    expect(await flagsOf(patient)).to.have.length(0);
  });

  it('a critical breach gives HH and a high-priority Flag', async () => {
    const patient = await newPatient();
    await create(plan(patient));
    const obs = await create(bp(patient, 195, 85));
    expect(obs.component[0].interpretation[0].coding[0].code).to.equal('HH');
    const [flag] = await flagsOf(patient);
    expect(ext(flag, FLAG_PRIORITY)[0].valueCodeableConcept.coding[0].code).to.equal('PH');
    expect(flag.code.text).to.contain('above critical limit 180');
  });

  it('a second breach updates the same Flag; after the clinician inactivates it a new breach opens a new Flag', async () => {
    const patient = await newPatient();
    await create(plan(patient));
    const first = await create(bp(patient, 150, 80));
    const second = await create(bp(patient, 160, 80));
    let flags = await flagsOf(patient);
    expect(flags).to.have.length(1);
    expect(ext(flags[0], FLAG_DETAIL).map((e: any) => e.valueReference.reference)).to.equal([`Observation/${first.id}`, `Observation/${second.id}`]);
    expect(ext(flags[0], FLAG_COUNT)[0].valueInteger).to.equal(2);
    expect(flags[0].meta.versionId).to.equal('2');

    // A low diastolic is another direction and measure: a Flag of its own.
    await create(bp(patient, 120, 50));
    expect(await flagsOf(patient)).to.have.length(2);

    const closed = await app.request({
      method: 'PATCH', url: `/fhir/Flag/${flags[0].id}`, headers: { 'content-type': 'application/json-patch+json' },
      payload: JSON.stringify([{ op: 'replace', path: '/status', value: 'inactive' }]),
    });
    expect(closed.statusCode).to.equal(200);
    const third = await create(bp(patient, 170, 80));
    flags = await flagsOf(patient, '&status=active');
    const systolic = flags.filter((f: any) => f.code.coding.some((c: any) => c.code === '8480-6'));
    expect(systolic).to.have.length(1);
    expect(systolic[0].id).to.not.equal(closed.json.id);
    expect(ext(systolic[0], FLAG_DETAIL).map((e: any) => e.valueReference.reference)).to.equal([`Observation/${third.id}`]);
    expect(await flagsOf(patient, '&status=inactive')).to.have.length(1);
  });

  it('a reading taken back (corrected into the limits, deleted, entered-in-error) leaves its Flag; a Flag left with none was raised in error', async () => {
    const patient = await newPatient();
    await create(plan(patient));
    const first = await create(bp(patient, 150, 80));
    const second = await create(bp(patient, 160, 80));
    const details = (flag: any) => ext(flag, FLAG_DETAIL).map((e: any) => e.valueReference.reference);
    const [raised] = await flagsOf(patient);
    expect(details(raised)).to.equal([`Observation/${first.id}`, `Observation/${second.id}`]);

    // The nurse corrects the first reading: 120 was the systolic. The Flag keeps the second only.
    const corrected = await app.request({ method: 'PUT', url: `/fhir/Observation/${first.id}`, payload: { ...first, status: 'amended', component: [{ ...first.component[0], valueQuantity: q(120, 'mm[Hg]') }, first.component[1]] } });
    expect(corrected.statusCode).to.equal(200);
    let [flag] = await flagsOf(patient);
    expect(flag.status).to.equal('active');
    expect(details(flag)).to.equal([`Observation/${second.id}`]);
    expect(ext(flag, FLAG_COUNT)[0].valueInteger).to.equal(1);
    const version = flag.meta.versionId;

    // A correction that still breaches the same limit changes nothing.
    const still = await app.request({ method: 'PUT', url: `/fhir/Observation/${second.id}`, payload: { ...second, component: [{ ...second.component[0], valueQuantity: q(170, 'mm[Hg]') }, second.component[1]] } });
    expect(still.statusCode).to.equal(200);
    [flag] = await flagsOf(patient);
    expect(flag.meta.versionId).to.equal(version);

    // The last breach deleted: nothing supports the Flag, which was raised in error.
    expect((await app.request({ method: 'DELETE', url: `/fhir/Observation/${second.id}` })).statusCode).to.equal(204);
    [flag] = await flagsOf(patient);
    expect(flag.status).to.equal('entered-in-error');
    expect(details(flag)).to.equal([]);
    expect(ext(flag, FLAG_COUNT)[0].valueInteger).to.equal(0);
    expect(flag.period.end).to.exist();
    expect(await flagsOf(patient, '&status=active')).to.have.length(0);

    // A new breach opens a new Flag; marked entered-in-error, it takes that one back too.
    const third = await create(bp(patient, 155, 80));
    const [reopened] = await flagsOf(patient, '&status=active');
    expect(reopened.id).to.not.equal(flag.id);
    await app.request({ method: 'PUT', url: `/fhir/Observation/${third.id}`, payload: { ...third, status: 'entered-in-error' } });
    expect(await flagsOf(patient, '&status=active')).to.have.length(0);

    // A Flag the clinician already closed keeps its record as it was.
    const fourth = await create(bp(patient, 158, 80));
    const [open] = await flagsOf(patient, '&status=active');
    const closed = await app.request({ method: 'PATCH', url: `/fhir/Flag/${open.id}`, headers: { 'content-type': 'application/json-patch+json' }, payload: JSON.stringify([{ op: 'replace', path: '/status', value: 'inactive' }]) });
    expect(closed.statusCode).to.equal(200);
    await app.request({ method: 'PUT', url: `/fhir/Observation/${fourth.id}`, payload: { ...fourth, status: 'entered-in-error' } });
    const kept = await app.request({ method: 'GET', url: `/fhir/Flag/${open.id}` });
    expect(kept.json.status).to.equal('inactive');
    expect(kept.json.meta.versionId).to.equal(closed.json.meta.versionId);
  });

  it('a Flag whose breach is taken back is described by the breaches it still holds: latest text, first time, priority', async () => {
    const patient = await newPatient();
    await create(plan(patient));
    const at = (hoursAgo: number) => new Date(Date.now() - hoursAgo * 3_600_000).toISOString();
    const first = await create(bp(patient, 150, 80, at(3)));
    const second = await create(bp(patient, 160, 80, at(2)));
    const third = await create(bp(patient, 195, 80, at(1)));
    let [flag] = await flagsOf(patient);
    expect(flag.code.text).to.equal('Systolic blood pressure 195 mm[Hg] above critical limit 180 mm[Hg]');
    expect(ext(flag, FLAG_PRIORITY)).to.have.length(1);
    expect(flag.period.start).to.equal(first.effectiveDateTime);

    // The critical reading, the latest, is deleted: the Flag names the 160 and is no longer critical.
    expect((await app.request({ method: 'DELETE', url: `/fhir/Observation/${third.id}` })).statusCode).to.equal(204);
    [flag] = await flagsOf(patient);
    expect(flag.status).to.equal('active');
    expect(ext(flag, FLAG_COUNT)[0].valueInteger).to.equal(2);
    expect(flag.code.text).to.equal('Systolic blood pressure 160 mm[Hg] above limit 140 mm[Hg]');
    expect(ext(flag, FLAG_PRIORITY)).to.have.length(0);
    expect(flag.period.start).to.equal(first.effectiveDateTime);

    // The first, which opened the Flag, is corrected into the limits: the Flag starts at the second.
    const corrected = await app.request({ method: 'PUT', url: `/fhir/Observation/${first.id}`, payload: { ...first, status: 'amended', component: [{ ...first.component[0], valueQuantity: q(120, 'mm[Hg]') }, first.component[1]] } });
    expect(corrected.statusCode).to.equal(200);
    [flag] = await flagsOf(patient);
    expect(ext(flag, FLAG_DETAIL).map((e: any) => e.valueReference.reference)).to.equal([`Observation/${second.id}`]);
    expect(flag.code.text).to.equal('Systolic blood pressure 160 mm[Hg] above limit 140 mm[Hg]');
    expect(flag.period.start).to.equal(second.effectiveDateTime);
  });

  it('a breaching reading corrected to a critical value escalates its Flag; once the Flag is closed, a correction opens a new one', async () => {
    const patient = await newPatient();
    await create(plan(patient));
    const reading = await create(bp(patient, 150, 80, new Date(Date.now() - 3_600_000).toISOString()));
    let [flag] = await flagsOf(patient);
    expect(ext(flag, FLAG_PRIORITY)).to.have.length(0);
    const correct = async (systolic: number, stored: any) => {
      const res = await app.request({ method: 'PUT', url: `/fhir/Observation/${reading.id}`, payload: { ...stored, meta: undefined, status: 'corrected', component: [{ ...stored.component[0], valueQuantity: q(systolic, 'mm[Hg]') }, stored.component[1]] } });
      expect(res.statusCode, res.payload).to.equal(200);
      return res.json;
    };
    const corrected = await correct(195, reading);
    [flag] = await flagsOf(patient);
    expect(flag.code.text).to.equal('Systolic blood pressure 195 mm[Hg] above critical limit 180 mm[Hg]');
    expect(ext(flag, FLAG_PRIORITY)).to.have.length(1);
    // Still one breach, named once.
    expect(ext(flag, FLAG_COUNT)[0].valueInteger).to.equal(1);
    expect(ext(flag, FLAG_DETAIL).map((e: any) => e.valueReference.reference)).to.equal([`Observation/${reading.id}`]);
    // Corrected again within the critical range: nothing new to say, no new Flag version.
    const version = flag.meta.versionId;
    await correct(196, corrected);
    [flag] = await flagsOf(patient);
    expect(flag.meta.versionId).to.equal(version);

    // The clinician closes the Flag; a reading it held is then corrected from high to critical:
    // a value nobody has seen as critical opens a Flag of its own.
    const other = await create(bp(patient, 150, 80, new Date(Date.now() - 1_800_000).toISOString()));
    [flag] = await flagsOf(patient);
    const closed = await app.request({ method: 'PUT', url: `/fhir/Flag/${flag.id}`, payload: { ...flag, meta: undefined, status: 'inactive', period: { ...flag.period, end: new Date().toISOString() } } });
    expect(closed.statusCode, closed.payload).to.equal(200);
    const put = await app.request({ method: 'PUT', url: `/fhir/Observation/${other.id}`, payload: { ...other, meta: undefined, status: 'corrected', component: [{ ...other.component[0], valueQuantity: q(190, 'mm[Hg]') }, other.component[1]] } });
    expect(put.statusCode, put.payload).to.equal(200);
    const active = await flagsOf(patient, '&status=active');
    expect(active).to.have.length(1);
    expect(active[0].id).to.not.equal(flag.id);
    expect(active[0].code.text).to.equal('Systolic blood pressure 190 mm[Hg] above critical limit 180 mm[Hg]');
    expect(ext(active[0], FLAG_COUNT)[0].valueInteger).to.equal(1);
  });

  it('a reading marked entered-in-error and then restored raises its Flag again (it used to be taken back in the same write)', async () => {
    const patient = await newPatient();
    await create(plan(patient));
    const reading = await create(bp(patient, 165, 80));
    await app.request({ method: 'PUT', url: `/fhir/Observation/${reading.id}`, payload: { ...reading, status: 'entered-in-error' } });
    expect(await flagsOf(patient, '&status=active')).to.have.length(0);
    const restored = await app.request({ method: 'PUT', url: `/fhir/Observation/${reading.id}`, payload: { ...reading, status: 'final' } });
    expect(restored.statusCode).to.equal(200);
    const active = await flagsOf(patient, '&status=active');
    expect(active).to.have.length(1);
    expect(ext(active[0], FLAG_DETAIL).map((e: any) => e.valueReference.reference)).to.equal([`Observation/${reading.id}`]);
  });

  it('a Flag left active names only the latest 20 breaching Observations, counts them all, and stays small', async () => {
    const patient = await newPatient();
    await create(plan(patient));
    const entry = Array.from({ length: 24 }, (_, i) => ({
      fullUrl: `urn:uuid:${unique('b')}`,
      resource: bp(patient, 150 + i, 80, new Date(Date.now() - (30 - i) * 60_000).toISOString()),
      request: { method: 'POST', url: 'Observation' },
    }));
    const bundle = await app.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'transaction', entry } });
    expect(bundle.statusCode).to.equal(200);
    const ids = bundle.json.entry.map((e: any) => e.response.location.split('/_history')[0]);
    const last = await create(bp(patient, 175, 80));
    const [flag, ...others] = await flagsOf(patient);
    expect(others).to.have.length(0);
    expect(ext(flag, FLAG_DETAIL).map((e: any) => e.valueReference.reference)).to.equal([...ids.slice(-19), `Observation/${last.id}`]);
    expect(ext(flag, FLAG_COUNT)[0].valueInteger).to.equal(25);
    // The earlier details are in the Flag's first version.
    const first = (await app.request({ method: 'GET', url: `/fhir/Flag/${flag.id}/_history/1` })).json;
    expect(ext(first, FLAG_DETAIL)).to.have.length(20);
    expect(ext(first, FLAG_DETAIL)[0].valueReference.reference).to.equal(ids[4]);
  });

  it('judges a weight in pounds against a limit in kg', async () => {
    const patient = await newPatient();
    await create(plan(patient));
    const heavy = await create(weight(patient, 220, '[lb_av]'));
    expect(heavy.interpretation[0].coding[0].code).to.equal('H');
    const [flag] = await flagsOf(patient);
    expect(flag.code.text).to.equal('Body weight 220 [lb_av] (99.7903 kg) above limit 90 kg');
    const fine = await create(weight(patient, 180, '[lb_av]'));
    expect(fine.interpretation).to.not.exist();
  });

  it('a plan whose period has ended raises nothing', async () => {
    const patient = await newPatient();
    await create(plan(patient, { period: { start: '2020-01-01', end: '2020-12-31' } }));
    const obs = await create(bp(patient, 200, 120));
    expect(obs.component[0].interpretation).to.not.exist();
    expect(await flagsOf(patient)).to.have.length(0);
    // An observation of that period is judged.
    await create(bp(patient, 200, 80, '2020-06-01T10:00:00Z'));
    expect(await flagsOf(patient)).to.have.length(1);
  });

  it('does not judge entered-in-error Observations or readings without a number, nor plans that are not active', async () => {
    const patient = await newPatient();
    const carePlan = await create(plan(patient));
    await create({ ...(bp(patient, 200, 80) as object), status: 'entered-in-error' });
    await create({ resourceType: 'Observation', status: 'final', code: measure('29463-7'), subject: { reference: `Patient/${patient}` }, effectiveDateTime: new Date().toISOString(), valueString: 'heavy' });
    expect(await flagsOf(patient)).to.have.length(0);
    await app.request({ method: 'PUT', url: `/fhir/CarePlan/${carePlan.id}`, payload: { ...carePlan, status: 'revoked' } });
    await create(bp(patient, 200, 80));
    expect(await flagsOf(patient)).to.have.length(0);
  });

  it('limits from stored Goals apply, and a changed Goal applies to later readings', async () => {
    const patient = await newPatient();
    const goal = await create({ resourceType: 'Goal', lifecycleStatus: 'active', description: { text: 'HR' }, subject: { reference: `Patient/${patient}` }, target: [range('8867-4', '/min', 50, 100)] });
    await create({ resourceType: 'CarePlan', status: 'active', intent: 'plan', subject: { reference: `Patient/${patient}` }, goal: [{ reference: `Goal/${goal.id}` }] });
    const hr = (value: number) => ({ resourceType: 'Observation', status: 'final', code: measure('8867-4'), subject: { reference: `Patient/${patient}` }, effectiveDateTime: new Date().toISOString(), valueQuantity: q(value, '/min') });
    expect((await create(hr(95))).interpretation).to.not.exist();
    const put = await app.request({ method: 'PUT', url: `/fhir/Goal/${goal.id}`, payload: { ...goal, target: [range('8867-4', '/min', 50, 90)] } });
    expect(put.statusCode).to.equal(200);
    expect((await create(hr(95))).interpretation[0].coding[0].code).to.equal('H');
  });

  it('refuses limits that cannot be acted on, naming the element, whether or not the profile is claimed', async () => {
    const patient = await newPatient();
    // An upside-down range breaks R4's own rng-2, which the core validation holds every Range to
    // (400, decision 040) before the monitoring rules judge it.
    const cases: Array<[object, string, string, number]> = [
      [range('8480-6', 'kg', undefined, 140), 'CarePlan.contained[0].target[0].detailRange.high.code', 'not comparable', 422],
      [range('8480-6', 'mm[Hg]', 150, 140), 'CarePlan.contained[0].target[0].detailRange', 'rng-2', 400],
      [range('99999-9', 'mm[Hg]', undefined, 140), 'CarePlan.contained[0].target[0].measure', 'unknown LOINC measure 99999-9', 422],
    ];
    for (const [target, expression, text, status] of cases) {
      for (const profile of [undefined, ['http://rpm.example.org/fhir/StructureDefinition/monitoring-careplan']]) {
        const body = {
          resourceType: 'CarePlan', status: 'active', intent: 'plan', subject: { reference: `Patient/${patient}` },
          ...(profile ? { meta: { profile } } : {}),
          contained: [{ resourceType: 'Goal', id: 'g', lifecycleStatus: 'active', description: { text: 'x' }, subject: { reference: `Patient/${patient}` }, target: [target] }],
          goal: [{ reference: '#g' }],
        };
        const res = await app.request({ method: 'POST', url: '/fhir/CarePlan', payload: body });
        expect(res.statusCode).to.equal(status);
        expect(res.json.resourceType).to.equal('OperationOutcome');
        expect(res.json.issue[0].expression).to.equal([expression]);
        expect(res.json.issue[0].diagnostics).to.contain(text);
      }
    }
    // A stored Goal read by an active plan is held to the same rules when it changes.
    const goal = await create({ resourceType: 'Goal', lifecycleStatus: 'active', description: { text: 'x' }, subject: { reference: `Patient/${patient}` }, target: [range('29463-7', 'kg', 40, 90)] });
    await create({ resourceType: 'CarePlan', status: 'active', intent: 'plan', subject: { reference: `Patient/${patient}` }, goal: [{ reference: `Goal/${goal.id}` }] });
    const changed = await app.request({ method: 'PUT', url: `/fhir/Goal/${goal.id}`, payload: { ...goal, target: [range('29463-7', 'mm[Hg]', 1, 2)] } });
    expect(changed.statusCode).to.equal(422);
    expect(changed.json.issue[0].expression).to.equal(['Goal.target[0].detailRange.low.code']);
    // A plan that is not acted on (ended) is stored as sent.
    const ended = await app.request({ method: 'POST', url: '/fhir/CarePlan', payload: { resourceType: 'CarePlan', status: 'active', intent: 'plan', subject: { reference: `Patient/${patient}` }, period: { end: '2017-06-01' }, goal: [{ reference: 'Goal/nowhere' }] } });
    expect(ended.statusCode).to.equal(201);
  });

  it('a failed Flag write rolls the Observation back and the client is told', async () => {
    const patient = await newPatient();
    await create(plan(patient));
    // A trigger that refuses this patient's Flags: the database, not the rule, fails the write.
    await app.ctx.db.exec(`
      CREATE OR REPLACE FUNCTION test_refuse_flag() RETURNS trigger AS $$
      BEGIN
        IF NEW.content->'subject'->>'reference' = 'Patient/${patient}' THEN RAISE EXCEPTION 'flag refused by test'; END IF;
        RETURN NEW;
      END $$ LANGUAGE plpgsql;
      CREATE TRIGGER test_refuse_flag BEFORE INSERT ON flag FOR EACH ROW EXECUTE FUNCTION test_refuse_flag();`);
    try {
      const before = await countRows(app, 'Observation');
      const res = await app.request({ method: 'POST', url: '/fhir/Observation', payload: bp(patient, 199, 80) });
      expect(res.statusCode).to.equal(500);
      expect(res.json.resourceType).to.equal('OperationOutcome');
      expect(await countRows(app, 'Observation')).to.equal(before);
      const inRange = await app.request({ method: 'POST', url: '/fhir/Observation', payload: bp(patient, 120, 80) });
      expect(inRange.statusCode).to.equal(201);
    } finally {
      await app.ctx.db.exec('DROP TRIGGER test_refuse_flag ON flag; DROP FUNCTION test_refuse_flag();');
    }
    expect(await flagsOf(patient)).to.have.length(0);
    const search = await app.request({ method: 'GET', url: `/fhir/Observation?subject=Patient/${patient}` });
    expect(search.json.entry).to.have.length(1);
  });

  it('the same rules fire through a transaction bundle, one Flag per plan, measure and direction', async () => {
    const patient = await newPatient();
    await create(plan(patient));
    const entries = [bp(patient, 150, 80), bp(patient, 120, 80), bp(patient, 165, 95), weight(patient, 95, 'kg')].map((resource) => ({ resource, request: { method: 'POST', url: 'Observation' } }));
    const res = await app.request({ method: 'POST', url: '/fhir', headers: { prefer: 'return=representation' }, payload: { resourceType: 'Bundle', type: 'transaction', entry: entries } });
    expect(res.statusCode).to.equal(200);
    expect(res.json.entry[0].resource.component[0].interpretation[0].coding[0].code).to.equal('H');
    expect(res.json.entry[1].resource.component[0].interpretation).to.not.exist();
    const flags = await flagsOf(patient);
    const summary = flags.map((f: any) => [f.code.coding[1].code, ext(f, FLAG_COUNT)[0].valueInteger]).sort();
    expect(summary).to.equal([['29463-7', 1], ['8462-4', 1], ['8480-6', 2]]);
  });

  it('the same rules fire through device ingest', async () => {
    const patient = await newPatient();
    await create(plan(patient));
    const res = await app.request({
      method: 'POST', url: '/ingest/readings',
      payload: {
        device: { identifier: { system: 'urn:test:serial', value: unique('sn') }, create: true },
        patient: { reference: `Patient/${patient}` },
        readings: [
          { code: { system: LOINC, code: '85354-9' }, time: new Date().toISOString(), components: [{ code: { system: LOINC, code: '8480-6' }, value: 171, unit: 'mm[Hg]' }, { code: { system: LOINC, code: '8462-4' }, value: 80, unit: 'mm[Hg]' }] },
          { code: { system: LOINC, code: '29463-7' }, value: '154.2', unit: '[lb_av]', time: new Date().toISOString() },
        ],
      },
    });
    expect(res.statusCode, JSON.stringify(res.json)).to.equal(200);
    const flags = await flagsOf(patient);
    expect(flags).to.have.length(1);
    expect(flags[0].code.text).to.equal('Systolic blood pressure 171 mm[Hg] above limit 140 mm[Hg]');
  });

  it('$evaluate re-judges stored observations of a period against changed limits, idempotently', async () => {
    const patient = await newPatient();
    const carePlan = await create(plan(patient));
    await create(bp(patient, 135, 80, '2026-01-10T08:00:00Z'));
    await create(bp(patient, 138, 80, '2026-01-11T08:00:00Z'));
    await create(bp(patient, 139, 80, '2026-03-11T08:00:00Z'));
    expect(await flagsOf(patient)).to.have.length(0);
    const stricter = { ...carePlan, contained: carePlan.contained.map((g: any) => (g.id === 'bp' ? { ...g, target: [range('8480-6', 'mm[Hg]', 90, 130)] } : g)) };
    expect((await app.request({ method: 'PUT', url: `/fhir/CarePlan/${carePlan.id}`, payload: stricter })).statusCode).to.equal(200);
    const evaluate = () => app.request({ method: 'POST', url: `/fhir/CarePlan/${carePlan.id}/$evaluate?start=2026-01-01&end=2026-01-31`, payload: { resourceType: 'Parameters' } });
    const first = await evaluate();
    expect(first.statusCode, JSON.stringify(first.json)).to.equal(200);
    expect(first.json.parameter.find((p: any) => p.name === 'judged').valueInteger).to.equal(2);
    let flags = await flagsOf(patient);
    expect(flags).to.have.length(1);
    expect(ext(flags[0], FLAG_COUNT)[0].valueInteger).to.equal(2);
    await evaluate();
    flags = await flagsOf(patient);
    expect(flags).to.have.length(1);
    expect(ext(flags[0], FLAG_COUNT)[0].valueInteger).to.equal(2);
    expect(flags[0].meta.versionId).to.equal('1');
    const get = await app.request({ method: 'GET', url: `/fhir/CarePlan/${carePlan.id}/$evaluate` });
    expect(get.statusCode).to.equal(405);
  });

  it('$evaluate takes back the breaches of the period whose readings no longer break the limits, and says so', async () => {
    const patient = await newPatient();
    const carePlan = await create(plan(patient));
    await create(bp(patient, 150, 80, '2026-01-10T08:00:00Z'));
    const later = await create(bp(patient, 155, 80, '2026-01-20T08:00:00Z'));
    const march = await create(bp(patient, 160, 80, '2026-03-10T08:00:00Z'));
    let [flag] = await flagsOf(patient);
    expect(ext(flag, FLAG_COUNT)[0].valueInteger).to.equal(3);
    const evaluate = (start: string, end: string) => app.request({ method: 'POST', url: `/fhir/CarePlan/${carePlan.id}/$evaluate?start=${start}&end=${end}`, payload: { resourceType: 'Parameters' } });
    const parameter = (res: any, name: string) => res.json.parameter.filter((p: any) => p.name === name).map((p: any) => p.valueInteger ?? p.valueReference.reference);
    const withLimits = (goals: any[]) => app.request({ method: 'PUT', url: `/fhir/CarePlan/${carePlan.id}`, payload: { ...carePlan, contained: goals, goal: goals.map((g: any) => ({ reference: `#${g.id}` })) } });

    // The physician relaxes systolic to 152 and re-evaluates January: the 150 is taken back, the 155 stays.
    const relaxed = carePlan.contained.map((g: any) => (g.id === 'bp' ? { ...g, target: [range('8480-6', 'mm[Hg]', 90, 152), range('8462-4', 'mm[Hg]', 60, 90)] } : g));
    expect((await withLimits(relaxed)).statusCode).to.equal(200);
    const res = await evaluate('2026-01-01', '2026-01-31');
    expect(res.statusCode, JSON.stringify(res.json)).to.equal(200);
    expect(parameter(res, 'judged')).to.equal([2]);
    expect(parameter(res, 'breaches')).to.equal([1]);
    expect(parameter(res, 'flag')).to.equal([]);
    expect(parameter(res, 'retracted')).to.equal([1]);
    expect(parameter(res, 'retracted-flag')).to.equal([`Flag/${flag.id}`]);
    [flag] = await flagsOf(patient);
    expect(flag.status).to.equal('active');
    expect(ext(flag, FLAG_DETAIL).map((e: any) => e.valueReference.reference)).to.equal([`Observation/${later.id}`, `Observation/${march.id}`]);
    expect(ext(flag, FLAG_COUNT)[0].valueInteger).to.equal(2);
    expect(flag.period.start).to.equal(later.effectiveDateTime);
    expect(flag.code.text).to.equal('Systolic blood pressure 160 mm[Hg] above limit 140 mm[Hg]');

    // Again: nothing more to take back, the Flag is not written.
    const again = await evaluate('2026-01-01', '2026-01-31');
    expect(parameter(again, 'retracted')).to.equal([0]);
    expect(parameter(again, 'retracted-flag')).to.equal([]);
    expect((await flagsOf(patient))[0].meta.versionId).to.equal(flag.meta.versionId);

    // No systolic limit at all (only weight is watched): the whole year's breaches go, the
    // Flag with them, though no limit names the measure any more.
    expect((await withLimits(carePlan.contained.filter((g: any) => g.id === 'weight'))).statusCode).to.equal(200);
    const all = await evaluate('2026-01-01', '2026-12-31');
    expect(all.statusCode, JSON.stringify(all.json)).to.equal(200);
    expect(parameter(all, 'retracted')).to.equal([2]);
    [flag] = await flagsOf(patient);
    expect(flag.status).to.equal('entered-in-error');
    expect(ext(flag, FLAG_COUNT)[0].valueInteger).to.equal(0);
  });

  it('a missed daily measurement raises one Flag per missed window, updated while active, and none when measured', async () => {
    const patient = await newPatient();
    const start = Date.now() - 3_600_000;
    const carePlan = await create(plan(patient, {
      period: { start: new Date(start).toISOString() },
      activity: [
        { detail: { status: 'in-progress', code: measure('29463-7'), scheduledTiming: { repeat: { frequency: 1, period: 1, periodUnit: 'd' } } } },
        { detail: { status: 'in-progress', code: measure('85354-9'), scheduledTiming: { repeat: { frequency: 1, period: 1, periodUnit: 'd' } } } },
      ],
    }));
    // BP measured in the first window; weight never.
    await create(bp(patient, 120, 80, new Date(start + 2 * 3_600_000).toISOString()));
    const check = (now: number) => app.request({ method: 'POST', url: `/fhir/CarePlan/$check-adherence?now=${new Date(now).toISOString()}`, payload: { resourceType: 'Parameters' } });

    const early = await check(start + 23 * 3_600_000);
    expect(early.statusCode, JSON.stringify(early.json)).to.equal(200);
    expect(await flagsOf(patient)).to.have.length(0);

    await check(start + 25 * 3_600_000);
    let flags = await flagsOf(patient, '&status=active');
    expect(flags).to.have.length(1);
    expect(flags[0].code.coding[0]).to.include({ system: 'http://rpm.example.org/fhir/CodeSystem/monitoring-flag', code: 'missed-measurement' });
    expect(flags[0].code.coding[1].code).to.equal('29463-7');
    expect(ext(flags[0], FLAG_CAREPLAN)[0].valueReference.reference).to.equal(`CarePlan/${carePlan.id}`);
    expect(ext(flags[0], FLAG_COUNT)[0].valueInteger).to.equal(1);

    // The same window is judged once.
    await check(start + 26 * 3_600_000);
    flags = await flagsOf(patient);
    expect(flags).to.have.length(1);
    expect(ext(flags[0], FLAG_COUNT)[0].valueInteger).to.equal(1);

    // Next window: weight missed again (same Flag, count 2) and BP missed too (its own Flag).
    await app.request({ method: 'POST', url: `/fhir/CarePlan/${carePlan.id}/$check-adherence`, payload: { resourceType: 'Parameters', parameter: [{ name: 'now', valueDateTime: new Date(start + 49 * 3_600_000).toISOString() }] } });
    flags = await flagsOf(patient);
    expect(flags).to.have.length(2);
    const weightFlag = flags.find((f: any) => f.code.coding[1].code === '29463-7');
    expect(ext(weightFlag, FLAG_COUNT)[0].valueInteger).to.equal(2);
    expect(ext(weightFlag, 'http://rpm.example.org/fhir/StructureDefinition/flag-missed-window')[0].valuePeriod.end).to.equal(new Date(start + 48 * 3_600_000).toISOString());
  });

  it('a reading entered in error, or cancelled, is no measurement taken: its window is missed', async () => {
    const patient = await newPatient();
    const start = Date.now() - 3_600_000;
    await create(plan(patient, {
      period: { start: new Date(start).toISOString() },
      activity: [{ detail: { status: 'in-progress', code: measure('85354-9'), scheduledTiming: { repeat: { frequency: 1, period: 1, periodUnit: 'd' } } } }],
    }));
    const reading = await create(bp(patient, 120, 80, new Date(start + 2 * 3_600_000).toISOString()));
    const put = await app.request({ method: 'PUT', url: `/fhir/Observation/${reading.id}`, payload: { ...reading, meta: undefined, status: 'entered-in-error' } });
    expect(put.statusCode, put.payload).to.equal(200);
    await create({ ...bp(patient, 118, 78, new Date(start + 3 * 3_600_000).toISOString()), status: 'cancelled' });
    const checked = await app.request({ method: 'POST', url: `/fhir/CarePlan/$check-adherence?now=${new Date(start + 25 * 3_600_000).toISOString()}`, payload: { resourceType: 'Parameters' } });
    expect(checked.statusCode, checked.payload).to.equal(200);
    const flags = await flagsOf(patient, '&status=active');
    expect(flags.map((f: any) => f.code.coding[0].code)).to.equal(['missed-measurement']);
  });
});
