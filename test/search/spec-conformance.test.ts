import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';

/**
 * Deviations from R4 search.html found by probing the server as a conformance tester would,
 * each pinned to what the page says. Every search is confined to this run's identifier system.
 */
describe('R4 search conformance', () => {
  let app: TestServer;
  const run = unique('c').replace(/-/g, '');
  const idSystem = `urn:test:${run}`;
  let pid = '';
  const ids: Record<string, string> = {};

  async function create(resource: Record<string, unknown>): Promise<string> {
    const res = await app.request({ method: 'POST', url: `/fhir/${resource.resourceType as string}`, payload: resource });
    expect(res.statusCode, JSON.stringify(res.json)).to.equal(201);
    return res.json.id as string;
  }

  /** The names (keys of `ids`) of what a search matched, sorted. */
  async function matched(url: string): Promise<string[]> {
    const res = await app.request({ method: 'GET', url: `/fhir/${url}` });
    expect(res.statusCode, JSON.stringify(res.json)).to.equal(200);
    const byId = new Map(Object.entries(ids).map(([name, id]) => [id, name]));
    return (res.json.entry ?? [])
      .filter((e: any) => e.search.mode === 'match')
      .map((e: any) => byId.get(e.resource.id) ?? `?${e.resource.resourceType}/${e.resource.id}`)
      .sort();
  }

  before(async () => {
    app = await startTestServer();
    pid = await create({ resourceType: 'Patient', identifier: [{ system: idSystem, value: 'patient' }], name: [{ family: `Conf${run}`, given: ['Ada'] }], birthDate: '1944-05-06' });
    // Probabilities on the edges of the implicit ranges of 0.1 ([0.05, 0.15)) and 1.1 ([1.05, 1.15)).
    for (const [name, p] of [['p005', 0.05], ['p01', 0.1], ['p0149', 0.149], ['p015', 0.15], ['p02', 0.2], ['p105', 1.05], ['p115', 1.15]] as const) {
      ids[name] = await create({
        resourceType: 'RiskAssessment',
        status: 'final',
        subject: { reference: `Patient/${pid}` },
        identifier: [{ system: idSystem, value: name }],
        prediction: [{ probabilityDecimal: p }],
      });
    }
    // Body temperatures on the edges of 36.6's range [36.55, 36.65), in a unit sent without a system.
    for (const [name, v] of [['t3655', 36.55], ['t366', 36.6], ['t3665', 36.65]] as const) {
      ids[name] = await create({
        resourceType: 'Observation',
        status: 'final',
        code: { coding: [{ system: LOINC, code: '8310-5' }] },
        subject: { reference: `Patient/${pid}` },
        identifier: [{ system: idSystem, value: name }],
        effectiveDateTime: '2026-03-01T08:00:00Z',
        valueQuantity: { value: v, unit: 'Cel' },
      });
    }
  });

  after(async () => {
    await app?.stop();
  });

  describe('the implicit range of a number (search.html#number: 100 is [99.5, 100.5))', () => {
    it('is computed in decimal: 0.1 is [0.05, 0.15), never a binary neighbour of its ends', async () => {
      // 0.1 + 0.05 is 0.15000000000000002 in binary floating point: 0.15 was matched.
      expect(await matched(`RiskAssessment?subject=Patient/${pid}&probability=0.1`)).to.equal(['p005', 'p01', 'p0149']);
      expect(await matched(`RiskAssessment?subject=Patient/${pid}&probability=1.1`)).to.equal(['p105']);
      expect(await matched(`RiskAssessment?subject=Patient/${pid}&probability=ne0.1`)).to.equal(['p015', 'p02', 'p105', 'p115']);
    });

    it('in a quantity without a system: 36.6 matches 36.55 (36.6 − 0.05 is 36.550000000000004 in binary)', async () => {
      expect(await matched(`Observation?subject=Patient/${pid}&value-quantity=36.6`)).to.equal(['t3655', 't366']);
      expect(await matched(`Observation?subject=Patient/${pid}&value-quantity=36.6||Cel`)).to.equal(['t3655', 't366']);
      expect(await matched(`Observation?subject=Patient/${pid}&value-quantity=36.60`)).to.equal(['t366']);
    });

    it('written with an exponent has the precision of its decimal expansion: 1e-1 is 0.1, [0.05, 0.15)', async () => {
      // It was [-0.45, 0.55): the exponent's digits were not counted, so 1e-1 matched 0.2.
      expect(await matched(`RiskAssessment?subject=Patient/${pid}&probability=1e-1`)).to.equal(['p005', 'p01', 'p0149']);
      expect(await matched(`RiskAssessment?subject=Patient/${pid}&probability=1.5E-1`)).to.equal(['p0149', 'p015']);
      expect(await matched(`RiskAssessment?subject=Patient/${pid}&probability=ne1e-1`)).to.equal(['p015', 'p02', 'p105', 'p115']);
    });

    it('sa and eb need the value wholly after or before the range of the search value (search.html#prefix)', async () => {
      // They were gt and lt: sa0.1 matched 0.149, inside 0.1's range [0.05, 0.15).
      expect(await matched(`RiskAssessment?subject=Patient/${pid}&probability=sa0.1`)).to.equal(['p015', 'p02', 'p105', 'p115']);
      expect(await matched(`RiskAssessment?subject=Patient/${pid}&probability=eb0.2`)).to.equal(['p005', 'p01', 'p0149']);
      expect(await matched(`Observation?subject=Patient/${pid}&value-quantity=sa36.6`)).to.equal(['t3665']);
      expect(await matched(`Observation?subject=Patient/${pid}&value-quantity=eb36.65`)).to.equal(['t3655', 't366']);
    });

    it('prefixes other than eq, ne and ap compare the value itself (lt100: "less than exactly 100")', async () => {
      expect(await matched(`RiskAssessment?subject=Patient/${pid}&probability=gt0.149`)).to.equal(['p015', 'p02', 'p105', 'p115']);
      expect(await matched(`RiskAssessment?subject=Patient/${pid}&probability=le0.15`)).to.equal(['p005', 'p01', 'p0149', 'p015']);
    });
  });
  describe('result parameters', () => {
    it('the links carry the page size served: a _count over the cap reads as the cap', async () => {
      const res = await app.request({ method: 'GET', url: `/fhir/RiskAssessment?subject=Patient/${pid}&_count=100000` });
      expect(res.statusCode).to.equal(200);
      expect(res.json.link[0].url as string).to.endWith(`/fhir/RiskAssessment?subject=Patient%2F${pid}&_count=1000`);
    });


    it('_elements subsets the matches only: "The list of elements does not apply to included resources" (search.html#elements)', async () => {
      const res = await app.request({ method: 'GET', url: `/fhir/Observation?subject=Patient/${pid}&code=${LOINC}|8310-5&_elements=valueQuantity&_include=Observation:subject` });
      expect(res.statusCode).to.equal(200);
      const entries = res.json.entry as any[];
      const matches = entries.filter((e) => e.search.mode === 'match');
      expect(matches).to.have.length(3);
      for (const m of matches) {
        expect(m.resource.valueQuantity).to.exist();
        expect(m.resource.effectiveDateTime).to.not.exist();
        expect(m.resource.meta.tag.map((t: any) => t.code)).to.include('SUBSETTED');
      }
      const patient = entries.find((e) => e.search.mode === 'include').resource;
      expect(patient.id).to.equal(pid);
      expect(patient.name[0].given).to.equal(['Ada']);
      expect(patient.birthDate).to.equal('1944-05-06');
      expect((patient.meta.tag ?? []).map((t: any) => t.code)).to.not.include('SUBSETTED');
    });
  });
  describe('compartment searches (http.html "Variant Searches")', () => {
    const form = (payload: string, url: string) =>
      app.request({ method: 'POST', url, headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload });

    it('POST /Patient/{id}/{type}/_search takes a form body, as GET /Patient/{id}/{type} takes a query', async () => {
      const res = await form(`code=${encodeURIComponent(`${LOINC}|8310-5`)}&_count=2`, `/fhir/Patient/${pid}/Observation/_search`);
      expect(res.statusCode, res.payload).to.equal(200);
      expect(res.json.entry).to.have.length(2);
      const links = Object.fromEntries(res.json.link.map((l: any) => [l.relation, l.url]));
      expect(links.self as string).to.endWith(`/fhir/Patient/${pid}/Observation?code=${encodeURIComponent(`${LOINC}|8310-5`)}&_count=2`);
      const next = await app.request({ method: 'GET', url: new URL(links.next).pathname + new URL(links.next).search });
      expect(next.json.entry).to.have.length(1);
    });

    it('GET /Patient/{id}/* walks every type of the compartment, paging through next links', async () => {
      const seen: string[] = [];
      let url: string | undefined = `/fhir/Patient/${pid}/*?_count=4`;
      let first = true;
      while (url) {
        const res = await app.request({ method: 'GET', url });
        expect(res.statusCode, res.payload).to.equal(200);
        expect(res.json.type).to.equal('searchset');
        if (first) expect(res.json.link[0].url as string).to.endWith(`/fhir/Patient/${pid}/*?_count=4`);
        first = false;
        seen.push(...res.json.entry.map((e: any) => `${e.resource.resourceType}/${e.resource.id}`));
        const next = res.json.link.find((l: any) => l.relation === 'next');
        url = next ? new URL(next.url).pathname + new URL(next.url).search : undefined;
      }
      const expected = [`Patient/${pid}`, ...Object.entries(ids).map(([name, id]) => `${name.startsWith('t') ? 'Observation' : 'RiskAssessment'}/${id}`)];
      expect(seen.sort()).to.equal(expected.sort());

      const counted = await app.request({ method: 'GET', url: `/fhir/Patient/${pid}/*?_summary=count` });
      expect(counted.json.total).to.equal(expected.length);
    });

    it('POST /Patient/{id}/_search searches the compartment with a form body; a type outside it is a 400', async () => {
      const res = await form('_type=Observation,RiskAssessment&_lastUpdated=gt2000-01-01', `/fhir/Patient/${pid}/_search`);
      expect(res.statusCode, res.payload).to.equal(200);
      expect(res.json.entry).to.have.length(10);
      expect(res.json.total).to.equal(10);
      const outside = await app.request({ method: 'GET', url: `/fhir/Patient/${pid}/*?_type=Organization` });
      expect(outside.statusCode).to.equal(400);
      expect(outside.json.resourceType).to.equal('OperationOutcome');
    });
  });
  describe('refusals say what is wrong', () => {
    const refusal = async (url: string) => {
      const res = await app.request({ method: 'GET', url: `/fhir/${url}` });
      expect(res.statusCode, res.payload).to.equal(400);
      return res.json.issue[0].diagnostics as string;
    };

    it(':of-type on a token that is not an identifier is refused without offering :of-type', async () => {
      const code = await refusal('Observation?code:of-type=a|b|c');
      expect(code).to.include("Unsupported modifier ':of-type'");
      expect(code.split('supported:')[1]).to.not.include('of-type');
      // On an identifier it is a modifier like any other.
      expect(await matched(`Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|${run}`)).to.equal([]);
    });

    it('a modifier on a result parameter is refused, not ignored: _sort:desc=date was served oldest first', async () => {
      const sorted = await refusal(`RiskAssessment?subject=Patient/${pid}&_sort:desc=probability`);
      expect(sorted).to.include('_sort:desc').and.to.include('_sort=-probability');
      for (const url of ['RiskAssessment?_count:x=2', 'RiskAssessment?_summary:x=count', 'RiskAssessment?_total:x=accurate', 'RiskAssessment?_elements:x=id']) {
        expect(await refusal(url), url).to.include('takes none');
      }
      // Prefer: handling=lenient ignores it as any unknown modifier, and says so.
      const lenient = await app.request({ method: 'GET', url: `/fhir/RiskAssessment?subject=Patient/${pid}&_sort:desc=probability`, headers: { prefer: 'handling=lenient' } });
      expect(lenient.statusCode).to.equal(200);
      expect(lenient.json.entry.filter((e: any) => e.search.mode === 'match')).to.have.length(7);
      expect(lenient.json.entry.find((e: any) => e.search.mode === 'outcome').resource.issue[0].diagnostics).to.include('_sort:desc');
    });

    it('a repeated result parameter is refused, not decided by the last: _sort=date&_sort=code sorted by code alone', async () => {
      // R4 defines comma lists for _sort and _elements, never repetition (search.html#sort).
      const sorted = await refusal(`RiskAssessment?subject=Patient/${pid}&_sort=probability&_sort=-probability`);
      expect(sorted).to.include('_sort').and.to.include('_sort=probability,-probability');
      for (const url of ['RiskAssessment?_count=2&_count=3', 'RiskAssessment?_summary=count&_summary=true', 'RiskAssessment?_total=none&_total=accurate', 'RiskAssessment?_elements=id&_elements=status', 'RiskAssessment?_contained=true&_contained=false']) {
        const name = url.split('?')[1]!.split('=')[0]!;
        expect(await refusal(url), url).to.include(name);
      }
      // Prefer: handling=lenient keeps the first, and reports the others as ignored.
      const lenient = await app.request({ method: 'GET', url: `/fhir/RiskAssessment?subject=Patient/${pid}&_sort=probability&_sort=-probability`, headers: { prefer: 'handling=lenient' } });
      expect(lenient.statusCode, lenient.payload).to.equal(200);
      const byId = new Map(Object.entries(ids).map(([name, id]) => [id, name]));
      const order = lenient.json.entry.filter((e: any) => e.search.mode === 'match').map((e: any) => byId.get(e.resource.id));
      expect(order).to.equal(['p005', 'p01', 'p0149', 'p015', 'p02', 'p105', 'p115']);
      expect(lenient.json.entry.find((e: any) => e.search.mode === 'outcome').resource.issue[0].diagnostics).to.include('_sort');
      expect(lenient.json.link[0].url as string).to.endWith('_sort=probability');
    });

    it('a backslash that escapes none of \\ , $ | is refused (search.html#escaping); the four escapes still match', async () => {
      const family = `Esc${run}`;
      ids.escComma = await create({ resourceType: 'Patient', name: [{ family: `${family}x,y` }], identifier: [{ system: idSystem, value: 'a|b' }] });
      ids.escSlash = await create({ resourceType: 'Patient', name: [{ family: `${family}x\\y` }], identifier: [{ system: idSystem, value: 'a$b' }] });
      const q = encodeURIComponent;
      expect(await matched(`Patient?name=${q(`${family}x\\,y`)}`)).to.equal(['escComma']);
      expect(await matched(`Patient?name=${q(`${family}x\\\\y`)}`)).to.equal(['escSlash']);
      expect(await matched(`Patient?identifier=${q(`${idSystem}|a\\|b`)}`)).to.equal(['escComma']);
      expect(await matched(`Patient?identifier=${q(`${idSystem}|a\\$b`)}`)).to.equal(['escSlash']);
      // `x\y` was read as a literal backslash: a malformed escape names its parameter, chained or not.
      for (const [url, name] of [
        [`Patient?name=${q(`${family}x\\y`)}`, 'name'],
        [`Patient?name=${q(`${family}x\\`)}`, 'name'],
        [`Patient?identifier=${q(`${idSystem}|a\\b`)}`, 'identifier'],
        [`Observation?subject:Patient.name=${q('x\\y')}`, 'subject:Patient.name'],
      ]) {
        const diagnostics = await refusal(url!);
        expect(diagnostics, url).to.include(`'${name}'`).and.to.include('escape');
      }
      // A malformed value of a known parameter is the client's mistake to see, lenient or not.
      const lenient = await app.request({ method: 'GET', url: `/fhir/Patient?name=${q('x\\y')}`, headers: { prefer: 'handling=lenient' } });
      expect(lenient.statusCode).to.equal(400);
    });

    it('a bare _has is the form _has:Type:reference:parameter, not an unknown parameter listed as supported', async () => {
      expect(await refusal('Patient?_has=x')).to.include('_has:Type:reference:parameter');
    });
  });
});
