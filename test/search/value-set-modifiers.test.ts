import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { startTestServer, type TestServer, unique } from '../helpers/server';
import { startSecuredServer, type SecuredServer } from '../security/helpers';

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

  describe('ValueSets and CodeSystems stored on the server', () => {
    const base = `http://example.org/fhir/${unique('vs')}`;
    const url = (name: string) => `${base}/ValueSet/${name}`;
    /** The system of the temperature's local coding; the fragment's URL is this run's own. */
    const LOCAL_CS = 'urn:test:local';
    const coded = (system: string, ...codes: string[]) => ({ system, concept: codes.map((code) => ({ code })) });
    const valueSet = (name: string, compose: object, fields: object = {}) => ({ resourceType: 'ValueSet', url: url(name), status: 'active', compose, ...fields });
    let pairId = '';

    before(async () => {
      // heartRate and glucose, enumerated.
      pairId = await create(valueSet('pair', { include: [coded(LOINC, '8867-4', '2339-0')] }));
      // A shipped value set nested in a stored one, minus one of its codes.
      await create(valueSet('vitals-but-weight', { include: [{ valueSet: [VITALS] }], exclude: [coded(LOINC, '29463-7')] }));
      // Two value sets in one include: their intersection (8867-4); a second include adds to it.
      await create(valueSet('both', { include: [{ valueSet: [url('pair'), VITALS] }, coded(LOINC, '29463-7')] }));
      // A whole stored CodeSystem (a nested concept counts), and one that is only a fragment.
      await create({ resourceType: 'CodeSystem', url: LOCAL_CS, status: 'active', content: 'complete', concept: [{ code: 'group', concept: [{ code: 'temp' }] }] });
      await create({ resourceType: 'CodeSystem', url: `${base}/CodeSystem/fragment`, status: 'active', content: 'fragment', concept: [{ code: 'temp' }] });
      await create(valueSet('local', { include: [{ system: LOCAL_CS }] }));
      await create(valueSet('fragment', { include: [{ system: `${base}/CodeSystem/fragment` }] }));
      // A cycle through two stored sets, and a filter.
      await create(valueSet('ping', { include: [{ valueSet: [url('pong')] }] }));
      await create(valueSet('pong', { include: [{ valueSet: [url('ping')] }] }));
      await create(valueSet('filtered', { include: [{ system: LOINC, filter: [{ property: 'COMPONENT', op: '=', value: 'Glucose' }] }] }));
      // A filter the server cannot expand, with a complete expansion that answers for it.
      await create(valueSet('expanded', { include: [{ system: LOINC, filter: [{ property: 'COMPONENT', op: '=', value: 'Body weight' }] }] }, { expansion: { timestamp: '2026-11-01T00:00:00Z', total: 1, contains: [{ system: LOINC, code: '29463-7' }] } }));
      // Two versions of one URL: `|1` names the first; without a version, the one stored last.
      await create(valueSet('versioned', { include: [coded(LOINC, '8867-4')] }, { version: '1' }));
      await create(valueSet('versioned', { include: [coded(LOINC, '29463-7')] }, { version: '2' }));
    });

    it(':in expands a stored ValueSet named by its url or as ValueSet/{id}, and :not-in is its negation', async () => {
      expect(await matched(`code:in=${encodeURIComponent(url('pair'))}`)).to.equal(['glucose', 'heartRate']);
      expect(await matched(`code:in=ValueSet/${pairId}`)).to.equal(['glucose', 'heartRate']);
      expect(await matched(`code:not-in=${encodeURIComponent(url('pair'))}`)).to.equal(['snomed', 'temperature', 'textOnly', 'weight']);
    });

    it('expands include.valueSet (intersected within one include), a whole stored CodeSystem, exclude and expansion.contains', async () => {
      expect(await matched(`code:in=${encodeURIComponent(url('vitals-but-weight'))}`)).to.equal(['heartRate', 'temperature']);
      expect(await matched(`code:in=${encodeURIComponent(url('both'))}`)).to.equal(['heartRate', 'weight']);
      expect(await matched(`code:in=${encodeURIComponent(url('local'))}`)).to.equal(['temperature']);
      expect(await matched(`code:in=${encodeURIComponent(url('expanded'))}`)).to.equal(['weight']);
      expect(await matched(`code:in=${encodeURIComponent(`${url('versioned')}|1`)}`)).to.equal(['heartRate']);
      expect(await matched(`code:in=${encodeURIComponent(url('versioned'))}`)).to.equal(['weight']);
    });

    it('$lastn takes a stored set; a Subscription, matched in memory with the shipped sets only, refuses one', async () => {
      const lastn = await app.request({ method: 'GET', url: `/fhir/Observation/$lastn?patient=${pid}&code:in=${encodeURIComponent(url('pair'))}` });
      expect(lastn.statusCode, JSON.stringify(lastn.json)).to.equal(200);
      expect(lastn.json.entry.map((e: any) => e.resource.id).sort()).to.equal([obs.glucose, obs.heartRate].sort());
      const sub = { resourceType: 'Subscription', status: 'requested', reason: 'vs', criteria: `Observation?code:in=${url('pair')}`, channel: { type: 'rest-hook', endpoint: 'https://example.org/hook' } };
      const refused = await app.request({ method: 'POST', url: '/fhir/Subscription', payload: sub });
      expect(refused.statusCode).to.equal(400);
      expect(refused.json.issue[0].diagnostics).to.contain(`'${url('pair')}' cannot be expanded`);
    });

    it('a cycle, a filter, a fragment CodeSystem or an unknown ValueSet/{id} is a 400 naming the value set and why', async () => {
      for (const [name, why] of [['ping', 'refers back'], ['filtered', 'filter (COMPONENT = Glucose)'], ['fragment', "content is 'fragment'"]] as const) {
        const { status, json } = await search(`code:in=${encodeURIComponent(url(name))}`);
        expect(status, name).to.equal(400);
        expect(json.issue[0].diagnostics, name).to.contain(`'${url(name)}'`).and.to.contain(why);
        expect(json.issue[0].expression).to.equal(['code:in']);
      }
      const { status, json } = await search('code:not-in=ValueSet/no-such-set');
      expect(status).to.equal(400);
      expect(json.issue[0].diagnostics).to.contain("'ValueSet/no-such-set' is not known");
    });
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

/**
 * A stored ValueSet is looked up under the caller's own access policy (decision 039): one the
 * caller may not read answers exactly as one that does not exist.
 */
describe('token :in with a stored ValueSet the caller may not read', () => {
  let app: SecuredServer;
  let pid = '';
  let vsId = '';
  let obsId = '';
  const stored = `http://example.org/fhir/${unique('vs')}/ValueSet/heart`;
  const unknown = `http://example.org/fhir/${unique('vs')}/ValueSet/heart`;

  before(async () => {
    app = await startSecuredServer();
    pid = await app.create({ resourceType: 'Patient', name: [{ family: unique('vs') }] });
    obsId = await app.create({ resourceType: 'Observation', status: 'final', code: { coding: [{ system: LOINC, code: '8867-4' }] }, subject: { reference: `Patient/${pid}` } });
    vsId = await app.create({ resourceType: 'ValueSet', url: stored, status: 'active', compose: { include: [{ system: LOINC, concept: [{ code: '8867-4' }] }] } });
  });
  after(() => app?.stop());

  async function search(headers: Record<string, string>, valueSet: string): Promise<{ status: number; json: any }> {
    const res = await app.request({ method: 'GET', url: `/fhir/Observation?code:in=${encodeURIComponent(valueSet)}`, headers });
    return { status: res.statusCode, json: res.json };
  }

  it('answers the same 400 as for an unknown one, and expands it for a caller who may read it', async () => {
    for (const scopes of ['patient/Observation.rs', 'patient/*.rs']) {
      const headers = await app.as(scopes, { patient: pid });
      for (const [hidden, missing] of [[stored, unknown], [`ValueSet/${vsId}`, 'ValueSet/not-there']]) {
        const seen = await search(headers, hidden!);
        const none = await search(headers, missing!);
        expect(seen.status, `${scopes} ${hidden}`).to.equal(400);
        expect(JSON.stringify(seen.json).replaceAll(hidden!, 'X')).to.equal(JSON.stringify(none.json).replaceAll(missing!, 'X'));
      }
    }
    // The same token with the right to search ValueSets expands it.
    const reader = await search(await app.as('patient/Observation.rs user/ValueSet.rs', { patient: pid }), stored);
    expect(reader.status, JSON.stringify(reader.json)).to.equal(200);
    expect(reader.json.entry.map((e: any) => e.resource.id)).to.equal([obsId]);
  });

  it('a value set nested in a readable one is looked up under the same policy', async () => {
    const outer = `${stored}-outer`;
    await app.create({ resourceType: 'ValueSet', url: outer, status: 'active', compose: { include: [{ valueSet: [stored] }] } });
    // Only the outer set is readable (a granular scope on ValueSet.url): the inner one is unknown to this caller.
    const narrow = await app.as(`patient/Observation.rs user/ValueSet.rs?url=${encodeURIComponent(outer)}`, { patient: pid });
    const hidden = await search(narrow, outer);
    expect(hidden.status).to.equal(400);
    expect(hidden.json.issue[0].diagnostics).to.contain(`the value set '${stored}' is not known to this server`);
    const wide = await search(await app.as('patient/Observation.rs user/ValueSet.rs', { patient: pid }), outer);
    expect(wide.status, JSON.stringify(wide.json)).to.equal(200);
    expect(wide.json.entry.map((e: any) => e.resource.id)).to.equal([obsId]);
  });

  it('a granular scope naming a stored ValueSet is refused: a limit does not expand what its holder may edit', async () => {
    const headers = await app.as(`user/Observation.rs?code:in=${stored} user/ValueSet.cruds`);
    const res = await app.request({ method: 'GET', url: '/fhir/Observation', headers });
    expect(res.statusCode).to.equal(400);
    expect(res.json.issue[0].diagnostics).to.contain(`'${stored}' cannot be expanded`);
  });
});
