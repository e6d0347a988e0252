import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { startTestServer, type TestServer, unique } from '../helpers/server';

type Client = import('fhir-kit-client', { with: { 'resolution-mode': 'import' } }).Client;

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';
const VITALS = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] };

/**
 * Search over HTTP on one patient's data created per run (the database is shared: every search
 * is pinned to this run's patient, identifier system or family name).
 */
describe('FHIR search over HTTP', () => {
  let app: TestServer;
  const run = unique('s').replace(/-/g, '');
  const family = `Müller${run}`;
  const idSystem = `urn:test:${run}`;
  let pid = '';
  let other = '';
  const obs: Record<string, string> = {};
  const flags: Record<string, string> = {};
  let deviceId = '';

  async function create(resource: Record<string, unknown>): Promise<string> {
    const res = await app.request({ method: 'POST', url: `/fhir/${resource.resourceType as string}`, payload: resource });
    expect(res.statusCode, JSON.stringify(res.json)).to.equal(201);
    return res.json.id as string;
  }

  async function search(url: string, headers: Record<string, string> = {}): Promise<{ status: number; bundle: any }> {
    const res = await app.request({ method: 'GET', url: `/fhir/${url}`, headers });
    return { status: res.statusCode, bundle: res.json };
  }

  /** The names (keys of `obs`) of the Observations matched by a search. */
  async function matched(url: string): Promise<string[]> {
    const { status, bundle } = await search(url);
    expect(status, JSON.stringify(bundle)).to.equal(200);
    const byId = new Map(Object.entries(obs).map(([name, id]) => [id, name]));
    return (bundle.entry ?? [])
      .filter((e: any) => e.search.mode === 'match')
      .map((e: any) => byId.get(e.resource.id) ?? `?${e.resource.resourceType}/${e.resource.id}`)
      .sort();
  }

  function observation(name: string, fields: Record<string, unknown>): Record<string, unknown> {
    return {
      resourceType: 'Observation',
      status: 'final',
      category: [VITALS],
      subject: { reference: `Patient/${pid}` },
      identifier: [{ system: idSystem, value: name }],
      ...fields,
    };
  }

  before(async () => {
    app = await startTestServer();
    pid = await create({
      resourceType: 'Patient',
      identifier: [{ system: idSystem, value: 'patient', type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR' }] } }],
      name: [{ family, given: ['Jürgen'] }],
      birthDate: '1950-03',
      gender: 'male',
    });
    other = await create({ resourceType: 'Patient', name: [{ family: `Other${run}` }] });
    const weight = (value: number, unit: string, code: string) => ({ value, unit, system: UCUM, code });
    const bp = (sys: number, dia: number) => [
      { code: { coding: [{ system: LOINC, code: '8480-6', display: 'Systolic blood pressure' }] }, valueQuantity: { value: sys, unit: 'mmHg', system: UCUM, code: 'mm[Hg]' } },
      { code: { coding: [{ system: LOINC, code: '8462-4', display: 'Diastolic blood pressure' }] }, valueQuantity: { value: dia, unit: 'mmHg', system: UCUM, code: 'mm[Hg]' } },
    ];
    const spec: Array<[string, Record<string, unknown>]> = [
      ['w180lb', { code: { coding: [{ system: LOINC, code: '29463-7', display: 'Body weight' }] }, effectiveDateTime: '2026-01-15T10:00:00Z', valueQuantity: weight(180, 'lb', '[lb_av]') }],
      ['w70kg', { code: { coding: [{ system: LOINC, code: '29463-7', display: 'Body weight' }] }, effectiveDateTime: '2026-02-01T09:30:00Z', valueQuantity: weight(70, 'kg', 'kg') }],
      ['bpHigh', { code: { coding: [{ system: LOINC, code: '85354-9' }], text: 'Blood pressure' }, effectiveDateTime: '2026-02-10T08:00:00Z', component: bp(150, 95) }],
      ['bpNormal', { code: { coding: [{ system: LOINC, code: '85354-9' }] }, effectiveDateTime: '2025-12-31T23:00:00Z', component: bp(120, 80) }],
      ['hrJanuary', { code: { coding: [{ system: LOINC, code: '8867-4' }] }, effectivePeriod: { start: '2026-01-01', end: '2026-01-31' }, valueQuantity: { value: 72, unit: '/min', system: UCUM, code: '/min' } }],
      ['hrUndated', { status: 'preliminary', code: { coding: [{ system: LOINC, code: '8867-4' }] }, valueQuantity: { value: 60, unit: '/min', system: UCUM, code: '/min' } }],
    ];
    for (const [name, fields] of spec) obs[name] = await create(observation(name, fields));
    deviceId = await create({ resourceType: 'Device', patient: { reference: `Patient/${pid}` }, identifier: [{ system: idSystem, value: 'cuff' }], manufacturer: 'Omron' });
    flags.active = await create({ resourceType: 'Flag', status: 'active', subject: { reference: `Patient/${pid}` }, code: { text: 'BP over limit' }, category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/flag-category', code: 'clinical' }] }] });
    flags.inactive = await create({ resourceType: 'Flag', status: 'inactive', subject: { reference: `Patient/${pid}` }, code: { text: 'old' } });
    flags.otherActive = await create({ resourceType: 'Flag', status: 'active', subject: { reference: `Patient/${other}` }, code: { text: 'other patient' } });
  });
  after(() => app.stop());

  describe('string', () => {
    it('matches case- and accent-insensitive prefixes by default', async () => {
      const { bundle } = await search(`Patient?name=${encodeURIComponent(`MULLER${run}`)}`);
      expect(bundle.entry.map((e: any) => e.resource.id)).to.equal([pid]);
      const given = await search(`Patient?given=jurg&family=${encodeURIComponent(family)}`);
      expect(given.bundle.entry.map((e: any) => e.resource.id)).to.equal([pid]);
    });

    it(':exact compares the text as written and :contains any substring', async () => {
      expect((await search(`Patient?family:exact=${encodeURIComponent(family)}`)).bundle.entry.map((e: any) => e.resource.id)).to.equal([pid]);
      expect((await search(`Patient?family:exact=${encodeURIComponent(family.toLowerCase())}`)).bundle.entry).to.not.exist();
      expect((await search(`Patient?family:contains=ller${run.slice(0, 6)}`)).bundle.entry.map((e: any) => e.resource.id)).to.equal([pid]);
    });
  });

  describe('token', () => {
    it('code, system|code, |code and system|', async () => {
      expect(await matched(`Observation?patient=${pid}&code=29463-7`)).to.equal(['w180lb', 'w70kg']);
      expect(await matched(`Observation?patient=${pid}&code=${LOINC}|29463-7`)).to.equal(['w180lb', 'w70kg']);
      expect(await matched(`Observation?patient=${pid}&code=|29463-7`)).to.equal([]);
      expect(await matched(`Observation?patient=${pid}&identifier=${idSystem}|`)).to.have.length(6);
      expect(await matched(`Observation?identifier=${idSystem}|bpHigh`)).to.equal(['bpHigh']);
    });

    it('an identifier with the patient is found by the code index: only coded rows drive the patient index', async () => {
      expect(await matched(`Observation?patient=${pid}&identifier=${idSystem}|bpHigh`)).to.equal(['bpHigh']);
      expect(await matched(`Observation?patient=${other}&identifier=${idSystem}|bpHigh`)).to.equal([]);
      expect(await matched(`Observation?subject=Patient/${pid}&identifier=${idSystem}|w70kg&date=ge2026-01-01`)).to.equal(['w70kg']);
      // Only the hot path's driving rows (a code, not an identifier, not an Observation's status)
      // are in the patient index and carry the date; every row keeps the patient key.
      const { rows } = await app.ctx.db.query<{ param: string; drives: boolean; dated: boolean; keyed: boolean }>(
        `SELECT param, drives, date_high IS NOT NULL AS dated, patient IS NOT NULL AS keyed FROM observation_token WHERE id = $1 ORDER BY param, drives`,
        [obs.bpHigh],
      );
      expect(rows.map((r) => `${r.param}:${r.drives}:${r.dated}`)).to.equal(['category:true:true', 'code:false:false', 'code:true:true', 'component-code:true:true', 'component-code:true:true', 'identifier:false:false', 'status:false:false']);
      expect(rows.every((r) => r.keyed)).to.be.true();
    });

    it(':not includes resources without the value; :text searches displays', async () => {
      expect(await matched(`Observation?patient=${pid}&code:not=8867-4`)).to.equal(['bpHigh', 'bpNormal', 'w180lb', 'w70kg']);
      expect(await matched(`Observation?patient=${pid}&code:text=body`)).to.equal(['w180lb', 'w70kg']);
      expect(await matched(`Observation?patient=${pid}&code:text=pressure`)).to.equal(['bpHigh']);
      expect(await matched(`Observation?patient=${pid}&status=preliminary`)).to.equal(['hrUndated']);
    });

    it(':missing and :of-type', async () => {
      expect(await matched(`Observation?patient=${pid}&date:missing=true`)).to.equal(['hrUndated']);
      expect(await matched(`Observation?patient=${pid}&value-quantity:missing=true`)).to.equal(['bpHigh', 'bpNormal']);
      const ofType = await search(`Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|patient&family=${encodeURIComponent(family)}`);
      expect(ofType.bundle.entry.map((e: any) => e.resource.id)).to.equal([pid]);
    });
  });

  describe('date', () => {
    it('partial dates are ranges: eq contains, ne does not', async () => {
      expect(await matched(`Observation?patient=${pid}&date=2026-01`)).to.equal(['hrJanuary', 'w180lb']);
      expect(await matched(`Observation?patient=${pid}&date=2026-01-15`)).to.equal(['w180lb']);
      expect(await matched(`Observation?patient=${pid}&date=ne2026-01`)).to.equal(['bpHigh', 'bpNormal', 'w70kg']);
      expect(await matched(`Observation?patient=${pid}&date=2025`)).to.equal(['bpNormal']);
    });

    it('gt/ge/lt/le compare ranges; sa and eb need the whole range after/before', async () => {
      expect(await matched(`Observation?patient=${pid}&date=ge2026-02-01`)).to.equal(['bpHigh', 'w70kg']);
      expect(await matched(`Observation?patient=${pid}&date=lt2026-01-01`)).to.equal(['bpNormal']);
      // The January period starts before the 15th: it is "le 2026-01-15" but does not "end before" it.
      expect(await matched(`Observation?patient=${pid}&date=le2026-01-15`)).to.equal(['bpNormal', 'hrJanuary', 'w180lb']);
      expect(await matched(`Observation?patient=${pid}&date=eb2026-01-15`)).to.equal(['bpNormal']);
      expect(await matched(`Observation?patient=${pid}&date=le2026-01-01`)).to.equal(['bpNormal']);
      expect(await matched(`Observation?patient=${pid}&date=sa2026-01-10`)).to.equal(['bpHigh', 'w180lb', 'w70kg']);
      expect(await matched(`Observation?patient=${pid}&date=gt2026-01-30`)).to.equal(['bpHigh', 'hrJanuary', 'w70kg']);
      expect(await matched(`Observation?patient=${pid}&date=ge2026-01-15T10:00:00Z&date=le2026-01-15T10:00:00Z`)).to.equal(['hrJanuary', 'w180lb']);
    });

    it('time zones shift the instant', async () => {
      expect(await matched(`Observation?patient=${pid}&date=${encodeURIComponent('2026-01-15T11:00:00+01:00')}`)).to.equal(['w180lb']);
      // A `+` sent unencoded arrives as a space: read as the `+` it was, not refused.
      expect(await matched(`Observation?patient=${pid}&date=2026-01-15T11:00:00+01:00`)).to.equal(['w180lb']);
      expect(await matched(`Observation?patient=${pid}&date=ge2026-01-15T11:00:00+01:00&date=le2026-01-15T11:00:00+01:00`)).to.equal(['hrJanuary', 'w180lb']);
      const history = await app.request({ method: 'GET', url: `/fhir/Observation/${obs.w180lb}/_history?_since=2000-01-01T00:00:00+01:00` });
      expect(history.statusCode, history.payload).to.equal(200);
      expect(history.json.entry).to.have.length(1);
      const spaced = await search(`Observation?patient=${pid}&date=2026-01-15T11:00:00 01:00x`);
      expect(spaced.status).to.equal(400);
    });

    it('ap finds values near the date; _lastUpdated searches the write time', async () => {
      expect(await matched(`Observation?patient=${pid}&date=ap2026-02-01T09:30:00Z`)).to.include('w70kg');
      expect(await matched(`Observation?patient=${pid}&_lastUpdated=gt2000-01-01`)).to.have.length(6);
      expect(await matched(`Observation?patient=${pid}&_lastUpdated=lt2000-01-01`)).to.equal([]);
    });
  });

  describe('quantity and composite', () => {
    it('compares UCUM quantities in canonical units: 180 [lb_av] is ge 80 kg', async () => {
      expect(await matched(`Observation?patient=${pid}&value-quantity=ge80|${UCUM}|kg`)).to.equal(['w180lb']);
      expect(await matched(`Observation?patient=${pid}&value-quantity=lt75000|${UCUM}|g`)).to.equal(['w70kg']);
      expect(await matched(`Observation?patient=${pid}&value-quantity=70||kg`)).to.equal(['w70kg']);
      expect(await matched(`Observation?patient=${pid}&value-quantity=72`)).to.equal(['hrJanuary']);
      expect(await matched(`Observation?patient=${pid}&value-quantity=ap65||/min`)).to.equal(['hrUndated']);
      expect(await matched(`Observation?patient=${pid}&value-quantity=ap70||/min`)).to.equal(['hrJanuary']);
    });

    it('matches a composite within one component', async () => {
      expect(await matched(`Observation?patient=${pid}&component-code-value-quantity=${LOINC}|8480-6$gt140`)).to.equal(['bpHigh']);
      // 95 is a diastolic value: systolic > 90 is both, diastolic > 90 only bpHigh.
      expect(await matched(`Observation?patient=${pid}&component-code-value-quantity=${LOINC}|8462-4$gt90`)).to.equal(['bpHigh']);
      expect(await matched(`Observation?patient=${pid}&code-value-quantity=${LOINC}|29463-7$ge80|${UCUM}|kg`)).to.equal(['w180lb']);
      expect(await matched(`Observation?patient=${pid}&combo-code-value-quantity=8480-6$lt130`)).to.equal(['bpNormal']);
      expect(await matched(`Observation?patient=${pid}&combo-code=8480-6`)).to.equal(['bpHigh', 'bpNormal']);
      expect(await matched(`Observation?patient=${pid}&component-value-quantity=gt140`)).to.equal(['bpHigh']);
    });

    it('comma is OR and a repeated parameter is AND', async () => {
      expect(await matched(`Observation?patient=${pid}&code=29463-7,85354-9`)).to.equal(['bpHigh', 'bpNormal', 'w180lb', 'w70kg']);
      expect(await matched(`Observation?patient=${pid}&date=ge2026-01-01&date=le2026-01-31`)).to.equal(['hrJanuary', 'w180lb']);
      expect(await matched(`Observation?patient=${pid}&code=29463-7&code=85354-9`)).to.equal([]);
    });
  });

  describe('reference', () => {
    it('Type/id, id, :Type, absolute URL of this server and :missing', async () => {
      const all = ['bpHigh', 'bpNormal', 'hrJanuary', 'hrUndated', 'w180lb', 'w70kg'];
      expect(await matched(`Observation?subject=Patient/${pid}`)).to.equal(all);
      expect(await matched(`Observation?subject=${pid}`)).to.equal(all);
      expect(await matched(`Observation?subject:Patient=${pid}`)).to.equal(all);
      expect(await matched(`Observation?subject=${encodeURIComponent(`${app.ctx.baseUrl}/Patient/${pid}`)}`)).to.equal(all);
      expect(await matched(`Observation?subject=Patient/${pid}&device:missing=true`)).to.equal(all);
    });

    it(':Type takes a reference of that type too (as HAPI does), and refuses one that contradicts it', async () => {
      const all = ['bpHigh', 'bpNormal', 'hrJanuary', 'hrUndated', 'w180lb', 'w70kg'];
      expect(await matched(`Observation?subject:Patient=Patient/${pid}`)).to.equal(all);
      expect(await matched(`Observation?subject:Patient=${encodeURIComponent(`${app.ctx.baseUrl}/Patient/${pid}`)}`)).to.equal(all);
      expect(await matched(`Observation?subject:Patient=Patient/${other}`)).to.equal([]);
      for (const [value, says] of [[`Group/${pid}`, 'to a Group, not a Patient'], [`http://other.org/fhir/Patient/${pid}`, 'takes an id or a Patient/id']]) {
        const { status, bundle } = await search(`Observation?subject:Patient=${encodeURIComponent(value)}`);
        expect(status, value).to.equal(400);
        expect(bundle.issue[0].diagnostics, value).to.contain(says);
        expect(bundle.issue[0].expression, value).to.equal(['subject:Patient']);
      }
    });

    it('chains one level and reverse-chains with _has', async () => {
      expect(await matched(`Observation?subject:Patient.family=${encodeURIComponent(family)}&code=8867-4`)).to.equal(['hrJanuary', 'hrUndated']);
      expect(await matched(`Observation?subject.identifier=${idSystem}|patient&code=85354-9`)).to.equal(['bpHigh', 'bpNormal']);
      const has = await search(`Patient?_has:Observation:subject:identifier=${idSystem}|bpHigh`);
      expect(has.bundle.entry.map((e: any) => e.resource.id)).to.equal([pid]);
      const hasFlag = await search(`Patient?_has:Flag:patient:status=active&_id=${pid},${other}`);
      expect(hasFlag.bundle.entry.map((e: any) => e.resource.id).sort()).to.equal([pid, other].sort());
    });

    it('chains through up to three references, and refuses a fourth', async () => {
      const create = async (resource: Record<string, unknown>) => (await app.request({ method: 'POST', url: `/fhir/${String(resource.resourceType)}`, payload: resource })).json.id as string;
      const parent = await create({ resourceType: 'Organization', name: 'Chainparent Health' });
      const child = await create({ resourceType: 'Organization', name: 'Chainchild Clinic', partOf: { reference: `Organization/${parent}` } });
      const patient = await create({ resourceType: 'Patient', name: [{ family: 'Chainpatient' }], managingOrganization: { reference: `Organization/${child}` } });
      const reading = await create({ resourceType: 'Observation', status: 'final', code: { text: 'chained' }, subject: { reference: `Patient/${patient}` } });
      const ids = async (query: string) => {
        const { status, bundle } = await search(query);
        expect(status, JSON.stringify(bundle)).to.equal(200);
        return (bundle.entry ?? []).map((e: any) => e.resource.id);
      };
      expect(await ids('Observation?subject:Patient.organization.name=Chainchild')).to.equal([reading]);
      expect(await ids('Observation?patient.organization.name=Chainparent')).to.equal([]);
      expect(await ids('Observation?patient.organization.partof.name=Chainparent')).to.equal([reading]);
      expect(await ids('Observation?subject:Patient.organization:Organization.partof.name:exact=Chainparent Health')).to.equal([reading]);
      expect(await ids('Patient?organization.partof.name=Chainparent')).to.equal([patient]);
      const { status, bundle } = await search('Observation?patient.organization.partof.partof.name=x');
      expect(status).to.equal(400);
      expect(bundle.issue[0].expression).to.equal(['patient.organization.partof.partof.name']);
    });
  });

  describe('monitoring queries', () => {
    it('Flag?patient=&status=active returns only that patient\'s active flags', async () => {
      const { bundle } = await search(`Flag?patient=${pid}&status=active`);
      expect(bundle.entry.map((e: any) => e.resource.id)).to.equal([flags.active]);
      const cat = await search(`Flag?patient=${pid}&category=clinical`);
      expect(cat.bundle.entry.map((e: any) => e.resource.id)).to.equal([flags.active]);
    });

    it('a patient\'s readings of one code since a date, newest first', async () => {
      const { bundle } = await search(`Observation?subject=Patient/${pid}&code=${LOINC}|29463-7&date=ge2026-01-01&_sort=-date&_count=50`);
      expect(bundle.entry.map((e: any) => e.resource.id)).to.equal([obs.w70kg, obs.w180lb]);
      expect(bundle.total).to.equal(2);
    });

    it('the same without _sort answers newest first, pages by cursor, and checks each of a Timing\'s dates', async () => {
      const patient = await create({ resourceType: 'Patient', name: [{ family: `Height${run}` }] });
      const height = (effective: Record<string, unknown>) =>
        create({ resourceType: 'Observation', status: 'final', subject: { reference: `Patient/${patient}` }, code: { coding: [{ system: LOINC, code: '8302-2' }] }, ...effective, valueQuantity: { value: 170, unit: 'cm', system: UCUM, code: 'cm' } });
      // Two measurements in one resource: its date envelope [June 2025, 1 Feb 2026] is not a
      // value, so `ge2026-02-01` (a day) must match it through the 1 February event alone.
      const timing = await height({ effectiveTiming: { event: ['2025-06-01T08:00:00Z', '2026-02-01T08:00:00Z'] } });
      const march = await height({ effectiveDateTime: '2026-03-01T08:00:00Z' });
      const old = await height({ effectiveDateTime: '2025-05-01T08:00:00Z' });
      const ids = async (url: string) => ((await search(url)).bundle.entry ?? []).map((e: any) => e.resource.id);
      const hot = `Observation?subject=Patient/${patient}&code=${LOINC}|8302-2`;
      expect(await ids(hot)).to.equal([march, timing, old]);
      expect(await ids(`${hot}&date=ge2026-02-01`)).to.equal([march, timing]);
      expect(await ids(`${hot}&date=le2025-06-01`)).to.equal([timing, old]);
      expect(await ids(`${hot}&date=gt2026-02-01`)).to.equal([march]);
      // The generic path (no driving code filter) agrees.
      expect((await ids(`Observation?subject=Patient/${patient}&date=ge2026-02-01`)).sort()).to.equal([march, timing].sort());
      // Keyset paging over the index order: every row once, in order, and back.
      const seen: string[] = [];
      let url: string | undefined = `${hot}&_count=1`;
      let last: any;
      while (url) {
        const { bundle }: { bundle: any } = await search(url);
        seen.push(...bundle.entry.map((e: any) => e.resource.id));
        last = bundle;
        const next = bundle.link.find((l: any) => l.relation === 'next');
        url = next ? next.url.slice(app.ctx.baseUrl.length + 1) : undefined;
      }
      expect(seen).to.equal([march, timing, old]);
      const prev = last.link.find((l: any) => l.relation === 'previous');
      expect(await ids(prev.url.slice(app.ctx.baseUrl.length + 1))).to.equal([timing]);
    });

    it('Device?patient= finds the patient\'s devices', async () => {
      const { bundle } = await search(`Device?patient=${pid}`);
      expect(bundle.entry.map((e: any) => e.resource.id)).to.equal([deviceId]);
    });
  });

  describe('result control', () => {
    it('pages with next and previous cursor links, sorted on several keys', async () => {
      const seen: string[] = [];
      let url: string | undefined = `Observation?patient=${pid}&_sort=code,-date&_count=2`;
      const pages: any[] = [];
      while (url) {
        const { status, bundle }: { status: number; bundle: any } = await search(url);
        expect(status).to.equal(200);
        pages.push(bundle);
        seen.push(...bundle.entry.map((e: any) => e.resource.id));
        const next = bundle.link.find((l: any) => l.relation === 'next');
        url = next ? next.url.slice(app.ctx.baseUrl.length + 1) : undefined;
      }
      expect(pages).to.have.length(3);
      expect(pages[0].total).to.not.exist();
      // code ascending (29463-7 < 85354-9 < 8867-4 as text), then newest first; undated last.
      expect(seen).to.equal([obs.w70kg, obs.w180lb, obs.bpHigh, obs.bpNormal, obs.hrJanuary, obs.hrUndated]);
      const prev = pages[2].link.find((l: any) => l.relation === 'previous');
      const back = await search(prev.url.slice(app.ctx.baseUrl.length + 1));
      expect(back.bundle.entry.map((e: any) => e.resource.id)).to.equal([obs.bpHigh, obs.bpNormal]);
    });

    it('a page stays correct when a resource is written between pages', async () => {
      const first = await search(`Observation?patient=${pid}&_sort=_lastUpdated&_count=4`);
      const ids = first.bundle.entry.map((e: any) => e.resource.id);
      const extra = await create(observation('late', { code: { coding: [{ system: LOINC, code: '9279-1' }] }, effectiveDateTime: '2026-03-01T00:00:00Z' }));
      try {
        const next = first.bundle.link.find((l: any) => l.relation === 'next');
        const second = await search(next.url.slice(app.ctx.baseUrl.length + 1));
        const rest = second.bundle.entry.map((e: any) => e.resource.id);
        // Neither repeated nor skipped: the two not yet seen, then the new one (latest update).
        expect(rest).to.have.length(3);
        expect(rest.filter((id: string) => ids.includes(id))).to.equal([]);
        expect(rest[2]).to.equal(extra);
      } finally {
        await app.request({ method: 'DELETE', url: `/fhir/Observation/${extra}` });
      }
      expect(await matched(`Observation?patient=${pid}&code=9279-1`)).to.equal([]);
    });

    it('_sort=-_lastUpdated and -_id page newest first, forwards and back (their indexes read backwards)', async () => {
      const walk = async (start: string) => {
        const pages: any[] = [];
        for (let url: string | undefined = start; url; ) {
          const { status, bundle } = await search(url);
          expect(status, url).to.equal(200);
          pages.push(bundle);
          const next = bundle.link.find((l: any) => l.relation === 'next');
          url = next ? next.url.slice(app.ctx.baseUrl.length + 1) : undefined;
        }
        return { pages, resources: pages.flatMap((b) => b.entry.map((e: any) => e.resource)) };
      };
      const oldest = (await walk(`Observation?patient=${pid}&_sort=_lastUpdated&_count=2`)).resources;
      const newest = await walk(`Observation?patient=${pid}&_sort=-_lastUpdated&_count=2`);
      expect(oldest).to.have.length(6);
      expect(newest.resources.map((r: any) => r.id)).to.equal(oldest.map((r: any) => r.id).reverse());
      const stamps = newest.resources.map((r: any) => r.meta.lastUpdated);
      expect(stamps).to.equal([...stamps].sort().reverse());
      const byId = await walk(`Observation?patient=${pid}&_sort=-_id&_count=4`);
      expect(byId.resources.map((r: any) => r.id)).to.equal(oldest.map((r: any) => r.id).sort().reverse());
      // Back from the last page of the descending walk: the page before it.
      const prev = newest.pages[2].link.find((l: any) => l.relation === 'previous');
      const back = await search(prev.url.slice(app.ctx.baseUrl.length + 1));
      expect(back.bundle.entry.map((e: any) => e.resource.id)).to.equal(newest.pages[1].entry.map((e: any) => e.resource.id));
    });

    it('_total, _summary=count, _summary=true and _elements', async () => {
      const accurate = await search(`Observation?patient=${pid}&_count=1&_total=accurate`);
      expect(accurate.bundle.total).to.equal(6);
      expect(accurate.bundle.entry).to.have.length(1);
      const none = await search(`Observation?patient=${pid}&_total=none`);
      expect(none.bundle.total).to.not.exist();
      const count = await search(`Observation?patient=${pid}&_summary=count`);
      expect(count.bundle.total).to.equal(6);
      expect(count.bundle.entry).to.not.exist();
      const summary = await search(`Patient?_id=${pid}&_summary=true`);
      const patient = summary.bundle.entry[0].resource;
      expect(patient.name).to.exist();
      expect(patient.meta.tag.map((t: any) => t.code)).to.include('SUBSETTED');
      const elements = await search(`Observation?identifier=${idSystem}|w70kg&_elements=code,valueQuantity`);
      // Observation.status is mandatory (min 1 in the R4 definition), so it comes too.
      expect(Object.keys(elements.bundle.entry[0].resource).sort()).to.equal(['code', 'id', 'meta', 'resourceType', 'status', 'valueQuantity']);
    });

    it('_total=estimate is never fewer than the answer shows, and exact when the whole result is on the page', async () => {
      // The planner's guess on a small table: 1 for a page of 2 and 280 for a whole answer of 28, as probed.
      const whole = await search(`Observation?patient=${pid}&_total=estimate`);
      expect(whole.bundle.entry).to.have.length(6);
      expect(whole.bundle.total).to.equal(6);
      let url: string | undefined = `Observation?patient=${pid}&_sort=code,-date&_count=2&_total=estimate`;
      let pages = 0;
      while (url) {
        const { bundle }: { bundle: any } = await search(url);
        const next = bundle.link.find((l: any) => l.relation === 'next');
        const previous = bundle.link.some((l: any) => l.relation === 'previous');
        expect(bundle.total as number, `page ${pages}`).to.be.at.least(bundle.entry.length + (next ? 1 : 0) + (previous ? 1 : 0));
        url = next ? next.url.slice(app.ctx.baseUrl.length + 1) : undefined;
        pages++;
      }
      expect(pages).to.equal(3);
      const one = await search(`Patient?family:exact=${encodeURIComponent(family)}&_total=estimate`);
      expect([one.bundle.entry.length, one.bundle.total]).to.equal([1, 1]);
    });

    it('_summary=true keeps what the official R4 definitions mark summary, with primitives\' extensions', async () => {
      // R4 Binary: contentType and securityContext are summary, the data is not.
      const binary = await create({ resourceType: 'Binary', contentType: 'text/plain', data: 'aGVsbG8=' });
      const { bundle } = await search(`Binary?_id=${binary}&_summary=true`);
      expect(Object.keys(bundle.entry[0].resource).sort()).to.equal(['contentType', 'id', 'meta', 'resourceType']);
      // A primitive's `_name` companion (an extension in place of or beside its value) goes with it.
      const absent = { extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/data-absent-reason', valueCode: 'unknown' }] };
      const patient = await create({ resourceType: 'Patient', _birthDate: absent, photo: [{ contentType: 'image/png' }] });
      const summary = (await search(`Patient?_id=${patient}&_summary=true`)).bundle.entry[0].resource;
      expect(summary._birthDate).to.equal(absent);
      expect(summary.photo).to.not.exist();
      const text = (await search(`Observation?patient=${pid}&_summary=text&_count=1`)).bundle.entry[0].resource;
      expect(Object.keys(text).filter((k) => !['resourceType', 'id', 'meta', 'text'].includes(k)).sort()).to.equal(['code', 'status']);
    });

    it('_include, _revinclude, :iterate and * with search.mode include', async () => {
      const { bundle } = await search(`Observation?identifier=${idSystem}|bpHigh&_include=Observation:subject&_revinclude:iterate=Flag:patient`);
      const modes = bundle.entry.map((e: any) => `${e.search.mode}:${e.resource.resourceType}/${e.resource.id}`);
      expect(modes).to.include(`match:Observation/${obs.bpHigh}`);
      expect(modes).to.include(`include:Patient/${pid}`);
      expect(modes).to.include(`include:Flag/${flags.active}`);
      expect(modes).to.not.include(`include:Flag/${flags.otherActive}`);
      const rev = await search(`Patient?_id=${pid}&_revinclude=*`);
      const types = new Set(rev.bundle.entry.filter((e: any) => e.search.mode === 'include').map((e: any) => e.resource.resourceType));
      expect([...types].sort()).to.equal(['Device', 'Flag', 'Observation']);
      const star = await search(`Flag?_id=${flags.active}&_include=*`);
      expect(star.bundle.entry.map((e: any) => e.resource.id)).to.include(pid);
    });

    it('carries fullUrl, search.mode and an absolute self link', async () => {
      const { bundle } = await search(`Flag?_id=${flags.active}`);
      expect(bundle.type).to.equal('searchset');
      expect(bundle.entry[0].fullUrl).to.equal(`${app.ctx.baseUrl}/Flag/${flags.active}`);
      expect(bundle.link[0]).to.equal({ relation: 'self', url: `${app.ctx.baseUrl}/Flag?_id=${flags.active}` });
    });
  });

  describe('compartment and POST _search', () => {
    it('GET /Patient/{id}/Observation searches within the compartment', async () => {
      const res = await app.request({ method: 'GET', url: `/fhir/Patient/${pid}/Observation?code=85354-9` });
      expect(res.json.entry.map((e: any) => e.resource.id).sort()).to.equal([obs.bpHigh, obs.bpNormal].sort());
      const flag = await app.request({ method: 'GET', url: `/fhir/Patient/${other}/Flag` });
      expect(flag.json.entry.map((e: any) => e.resource.id)).to.equal([flags.otherActive]);
    });

    it('POST _search takes a form body', async () => {
      const res = await app.request({
        method: 'POST',
        url: '/fhir/Observation/_search',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: `patient=${pid}&code=${encodeURIComponent(`${LOINC}|29463-7`)}`,
      });
      expect(res.statusCode).to.equal(200);
      expect(res.json.entry).to.have.length(2);
    });
  });

  describe('bad parameters', () => {
    it('an unknown parameter is a 400 naming it and listing the supported ones', async () => {
      const { status, bundle } = await search(`Observation?patinet=${pid}`);
      expect(status).to.equal(400);
      expect(bundle.resourceType).to.equal('OperationOutcome');
      expect(bundle.issue[0].diagnostics).to.contain("'patinet'");
      expect(bundle.issue[0].diagnostics).to.contain('component-code-value-quantity');
    });

    it('an unsupported modifier, a bad date, prefix or quantity is a 400 naming the parameter', async () => {
      for (const [url, name] of [
        ['Observation?code:below=x', 'code:below'],
        ['Observation?date=2026-13-01', 'date'],
        ['Observation?date=xx2026', 'date'],
        // A zone beyond ±14:00 (R4 datatypes.html#dateTime) names no instant: +25:00 was searched.
        ['Observation?date=2026-01-01T10:00:00%2B25:00', 'date'],
        ['Observation?date=ge2026-01-01T10:00-25:00', 'date'],
        ['Observation?date=2026-01-01T10:00:00%2B14:30', 'date'],
        ['Observation?_lastUpdated=gt2026-01-01T10:00:00%2B13:60', '_lastUpdated'],
        ['Observation?value-quantity=abc', 'value-quantity'],
        [`Observation?value-quantity=5|${UCUM}|notaunit`, 'value-quantity'],
        ['Observation?_sort=nope', '_sort'],
        ['Observation?_count=-1', '_count'],
        ['Observation?_cursor=garbage', '_cursor'],
      ]) {
        const { status, bundle } = await search(url);
        expect(status, url).to.equal(400);
        expect(bundle.issue[0].expression, url).to.equal([name]);
      }
    });

    it('Prefer: handling=lenient ignores it, reports it and leaves it out of self', async () => {
      const { status, bundle } = await search(`Flag?patinet=x&_id=${flags.active}`, { prefer: 'handling=lenient' });
      expect(status).to.equal(200);
      const outcome = bundle.entry.find((e: any) => e.search.mode === 'outcome');
      expect(outcome.resource.issue[0].diagnostics).to.contain('patinet');
      expect(bundle.link[0].url).to.equal(`${app.ctx.baseUrl}/Flag?_id=${flags.active}`);
      expect(bundle.entry.filter((e: any) => e.search.mode === 'match')).to.have.length(1);
    });

    it('search values are bound, never SQL', async () => {
      const { status, bundle } = await search(`Patient?name=${encodeURIComponent("x'; DROP TABLE patient; --")}`);
      expect(status).to.equal(200);
      expect(bundle.entry).to.not.exist();
    });
  });

  describe('with a real client (fhir-kit-client) over a real port', () => {
    let server: TestServer;
    let client: Client;
    before(async () => {
      server = await startTestServer({}, { listen: true });
      const { Client } = await import('fhir-kit-client');
      client = new Client({ baseUrl: server.ctx.baseUrl });
    });
    after(() => server.stop());

    it('searches, pages through next links and reads includes', async () => {
      let bundle = (await client.search({ resourceType: 'Observation', searchParams: { patient: pid, _count: '2', _include: 'Observation:subject', _sort: '-date' } })) as unknown as fhir4.Bundle;
      const ids: string[] = [];
      let includedPatients = 0;
      for (;;) {
        for (const e of bundle.entry ?? []) {
          if (e.search?.mode === 'match') ids.push(e.resource!.id!);
          if (e.search?.mode === 'include' && e.resource?.resourceType === 'Patient') includedPatients++;
        }
        const next = await client.nextPage({ bundle: bundle as never });
        if (!next) break;
        bundle = next as unknown as fhir4.Bundle;
      }
      expect(ids).to.have.length(6);
      expect(new Set(ids).size).to.equal(6);
      expect(ids[0]).to.equal(obs.bpHigh);
      expect(includedPatients).to.equal(3);
    });
  });
});
