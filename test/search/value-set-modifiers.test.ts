import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const LOINC = 'http://loinc.org';
const CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';
/** Enumerated: 13 LOINC codes (8867-4, 29463-7, 8310-5, 85354-9, …), terminology/valuesets. */
const VITALS = 'http://hl7.org/fhir/ValueSet/observation-vitalsignresult';
/** The whole observation-category CodeSystem. */
const CATEGORIES = 'http://hl7.org/fhir/ValueSet/observation-category';
/** The whole observation-status CodeSystem, bound to a `code` element (no system in the resource). */
const STATUSES = 'http://hl7.org/fhir/ValueSet/observation-status';

/**
 * Token `:in` and `:not-in` (R4 search.html#token) over the value sets the server ships
 * (decision 039), on one patient's Observations created per run.
 */
describe('token :in and :not-in', () => {
  let app: TestServer;
  let pid = '';
  const obs: Record<string, string> = {};

  async function create(resource: Record<string, unknown>): Promise<string> {
    const res = await app.request({ method: 'POST', url: `/fhir/${resource.resourceType as string}`, payload: resource });
    expect(res.statusCode, JSON.stringify(res.json)).to.equal(201);
    return res.json.id as string;
  }

  async function search(query: string): Promise<{ status: number; json: any }> {
    const res = await app.request({ method: 'GET', url: `/fhir/Observation?patient=${pid}&${query}` });
    return { status: res.statusCode, json: res.json };
  }

  /** The names (keys of `obs`) of this patient's Observations a search matches. */
  async function matched(query: string): Promise<string[]> {
    const { status, json } = await search(query);
    expect(status, JSON.stringify(json)).to.equal(200);
    const byId = new Map(Object.entries(obs).map(([name, id]) => [id, name]));
    return (json.entry ?? []).map((e: any) => byId.get(e.resource.id) ?? `?${e.resource.id}`).sort();
  }

  before(async () => {
    app = await startTestServer();
    pid = await create({ resourceType: 'Patient', name: [{ family: unique('vs') }] });
    const observation = (code: object, fields: object = {}) => ({
      resourceType: 'Observation', status: 'final', code, subject: { reference: `Patient/${pid}` },
      category: [{ coding: [{ system: CATEGORY, code: 'vital-signs' }] }], effectiveDateTime: '2026-11-01T10:00:00Z', ...fields,
    });
    const spec: Record<string, object> = {
      heartRate: observation({ coding: [{ system: LOINC, code: '8867-4' }] }),
      weight: observation({ coding: [{ system: LOINC, code: '29463-7' }] }, { effectiveDateTime: '2026-10-01T10:00:00Z' }),
      // A local coding beside a LOINC one of the set: any coding in the set is enough.
      temperature: observation({ coding: [{ system: 'urn:test:local', code: 'temp' }, { system: LOINC, code: '8310-5' }] }),
      glucose: observation({ coding: [{ system: LOINC, code: '2339-0' }] }, { status: 'amended', category: [{ coding: [{ system: CATEGORY, code: 'laboratory' }] }] }),
      // The set's code under another system is not in the set.
      snomed: observation({ coding: [{ system: 'http://snomed.info/sct', code: '8867-4' }] }, { category: [{ coding: [{ system: 'urn:test:local', code: 'vital-signs' }] }] }),
      // No coding at all: in no set, so found by :not-in (as by :not).
      textOnly: observation({ text: 'a note' }, { category: undefined }),
    };
    for (const [name, resource] of Object.entries(spec)) obs[name] = await create(resource as Record<string, unknown>);
  });
  after(() => app?.stop());

  it(':in matches resources with any coding whose system|code is in the expansion', async () => {
    expect(await matched(`code:in=${VITALS}`)).to.equal(['heartRate', 'temperature', 'weight']);
    // A whole code system: the category of another system with the same code is not in it.
    expect(await matched(`category:in=${CATEGORIES}`)).to.equal(['glucose', 'heartRate', 'temperature', 'weight']);
    // A `code` element has no system in the resource: its code is judged against the set's codes.
    expect(await matched(`status:in=${STATUSES}`)).to.have.length(6);
    // A `|version` suffix is read as the terminology module reads it.
    expect(await matched(`code:in=${VITALS}|4.0.1`)).to.equal(['heartRate', 'temperature', 'weight']);
  });

  it(':not-in matches resources with no coding in the set, including those with no coding', async () => {
    expect(await matched(`code:not-in=${VITALS}`)).to.equal(['glucose', 'snomed', 'textOnly']);
    expect(await matched(`category:not-in=${CATEGORIES}`)).to.equal(['snomed', 'textOnly']);
    expect(await matched(`status:not-in=${STATUSES}`)).to.equal([]);
  });

  it('combines with other parameters, with a comma list of value sets, and with :in of another parameter', async () => {
    expect(await matched(`code:in=${VITALS}&date=lt2026-10-15`)).to.equal(['weight']);
    expect(await matched(`code:in=${VITALS}&code=8867-4`)).to.equal(['heartRate']);
    expect(await matched(`code:not-in=${VITALS}&category=laboratory`)).to.equal(['glucose']);
    expect(await matched(`code:in=${VITALS}&category:not-in=${CATEGORIES}`)).to.equal([]);
    expect(await matched(`code:in=http://hl7.org/fhir/ValueSet/ucum-bodyweight,${VITALS}`)).to.equal(['heartRate', 'temperature', 'weight']);
    // POST _search with a form body parses the same.
    const res = await app.request({ method: 'POST', url: '/fhir/Observation/_search', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `patient=${pid}&code:in=${encodeURIComponent(VITALS)}` });
    expect(res.statusCode).to.equal(200);
    expect(res.json.entry.map((e: any) => e.resource.id).sort()).to.equal([obs.heartRate, obs.temperature, obs.weight].sort());
  });

  it('a value set the server cannot expand is a 400 naming it', async () => {
    for (const [name, url] of [['code:in', 'http://example.org/fhir/ValueSet/unknown'], ['code:not-in', 'ValueSet/123'], ['status:in', 'http://hl7.org/fhir/ValueSet/observation-codes']]) {
      const { status, json } = await search(`${name}=${encodeURIComponent(url)}`);
      expect(status, `${name}=${url}`).to.equal(400);
      expect(json.resourceType).to.equal('OperationOutcome');
      expect(json.issue[0].diagnostics).to.contain(`'${url}'`);
      expect(json.issue[0].expression).to.equal([name]);
    }
  });

  it('the modifiers are refused where R4 does not give them', async () => {
    for (const query of [`_id:in=${VITALS}`, `date:in=${VITALS}`, `subject:not-in=${VITALS}`]) {
      const { status, json } = await search(query);
      expect(status, query).to.equal(400);
      expect(json.issue[0].code).to.equal('not-supported');
    }
  });

  it('a value set larger than MAX_VALUE_SET_CODES is a 400 naming the limit', async () => {
    const small = await startTestServer({ MAX_VALUE_SET_CODES: '10' });
    try {
      const res = await small.request({ method: 'GET', url: `/fhir/Observation?patient=${pid}&code:in=${VITALS}` });
      expect(res.statusCode).to.equal(400);
      expect(res.json.issue[0].code).to.equal('too-costly');
      expect(res.json.issue[0].diagnostics).to.contain('13 codes, more than the 10');
      expect(res.json.issue[0].expression).to.equal(['code:in']);
      // Within the limit, the same server answers.
      const within = await small.request({ method: 'GET', url: `/fhir/Observation?patient=${pid}&code:not-in=http://hl7.org/fhir/ValueSet/ucum-bodyweight` });
      expect(within.statusCode).to.equal(200);
      expect(within.json.entry).to.have.length(6);
    } finally {
      await small.stop();
    }
  });

  it('a Subscription whose criteria name a value set the server cannot expand is refused', async () => {
    const sub = (criteria: string) => ({ resourceType: 'Subscription', status: 'requested', reason: 'vs', criteria, channel: { type: 'rest-hook', endpoint: 'https://example.org/hook' } });
    const bad = await app.request({ method: 'POST', url: '/fhir/Subscription', payload: sub('Observation?code:in=http://example.org/fhir/ValueSet/unknown') });
    expect(bad.statusCode).to.equal(400);
    expect(bad.json.issue[0].diagnostics).to.contain('http://example.org/fhir/ValueSet/unknown');
    const good = await app.request({ method: 'POST', url: '/fhir/Subscription', payload: sub(`Observation?code:in=${VITALS}`) });
    expect(good.statusCode, JSON.stringify(good.json)).to.equal(201);
    await app.request({ method: 'DELETE', url: `/fhir/Subscription/${good.json.id}` });
  });
});
