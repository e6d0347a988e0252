import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { createResource, searchAll, startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const LOINC = 'http://loinc.org';
const CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';
const UCUM = 'http://unitsofmeasure.org';

/**
 * Searches driven by the patient index (src/search/sql.ts, planDriver) by a bare code: a
 * resource whose codings share the code under two systems has two rows of it there, and must
 * still be listed once, on every page.
 */
describe('patient searches driven by a bare code', () => {
  let app: TestServer;
  let pid = '';
  const days: Record<string, string> = {};

  /** Every page of a search, as the days of the Observations listed, in order. */
  async function pages(query: string): Promise<string[]> {
    return (await searchAll(app, `/fhir/Observation?patient=${pid}&${query}`)).map((r) => days[r.id]!);
  }

  before(async () => {
    app = await startTestServer();
    pid = await createResource(app, { resourceType: 'Patient', name: [{ family: unique('Driven') }] });
    for (const day of [1, 2, 3, 4, 5]) {
      // Day 3's reading codes its category and its code twice, under a second system with the same codes.
      const twice = day === 3;
      const id = await createResource(app, {
        resourceType: 'Observation', status: 'final', subject: { reference: `Patient/${pid}` }, effectiveDateTime: `2026-05-0${day}T08:00:00Z`,
        category: [{ coding: [{ system: CATEGORY, code: 'vital-signs' }, ...(twice ? [{ system: 'urn:local:category', code: 'vital-signs' }] : [])] }],
        code: { coding: [{ system: LOINC, code: '8867-4' }, ...(twice ? [{ system: 'urn:local:code', code: '8867-4' }] : [])] },
        valueQuantity: { value: 60 + day, unit: '/min', system: UCUM, code: '/min' },
      });
      days[id] = `05-0${day}`;
    }
  });
  after(() => app.stop());

  it('lists a resource once when two of its codings share the searched code', async () => {
    for (const count of [50, 2]) {
      expect(await pages(`code=8867-4&_count=${count}`), `code, _count=${count}`).to.equal(['05-05', '05-04', '05-03', '05-02', '05-01']);
      expect(await pages(`category=vital-signs&_count=${count}`), `category, _count=${count}`).to.equal(['05-05', '05-04', '05-03', '05-02', '05-01']);
      expect(await pages(`category=vital-signs&date=ge2026-05-02&_sort=-date&_count=${count}`)).to.equal(['05-05', '05-04', '05-03', '05-02']);
      expect(await pages(`category=vital-signs&_sort=date&_count=${count}`)).to.equal(['05-01', '05-02', '05-03', '05-04', '05-05']);
    }
    const total = await app.request({ method: 'GET', url: `/fhir/Observation?patient=${pid}&code=8867-4&_summary=count` });
    expect(total.json.total).to.equal(5);
  });
});
