import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { createResource, searchAll, startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const LOINC = 'http://loinc.org';
const SNOMED = 'http://snomed.info/sct';
const UCUM = 'http://unitsofmeasure.org';

/**
 * Composite search over HTTP (`code-value-*`, `component-code-value-*`, `combo-*`): a code is
 * matched with its own value, never with another element's, and a term the composite rows
 * cannot answer is a 400 OperationOutcome rather than a database error.
 */
describe('composite search over HTTP', () => {
  let app: TestServer;
  let pid = '';
  const ids: Record<string, string> = {};

  /** The names (keys of `ids`) of the Observations a search of this patient lists. */
  async function matched(query: string): Promise<string[]> {
    const names = new Map(Object.entries(ids).map(([name, id]) => [id, name]));
    return (await searchAll(app, `/fhir/Observation?patient=${pid}&${query}`)).map((r) => names.get(r.id)!).sort();
  }

  before(async () => {
    app = await startTestServer();
    pid = await createResource(app, { resourceType: 'Patient', name: [{ family: unique('Composite') }] });
    const observation = (fields: Record<string, unknown>) => ({ resourceType: 'Observation', status: 'final', subject: { reference: `Patient/${pid}` }, ...fields });
    ids.smoker = await createResource(app, observation({
      code: { coding: [{ system: LOINC, code: '72166-2' }] },
      valueCodeableConcept: { coding: [{ system: SNOMED, code: '77176002', display: 'Smoker' }], text: 'smokes' },
    }));
    ids.onset = await createResource(app, observation({ code: { coding: [{ system: LOINC, code: '11368-8' }] }, valueDateTime: '2026-03-04' }));
    ids.weight = await createResource(app, observation({
      code: { coding: [{ system: LOINC, code: '29463-7' }, { system: 'urn:local', code: 'wt' }] },
      valueQuantity: { value: 82, unit: 'kg', system: UCUM, code: 'kg' },
    }));
    ids.bp = await createResource(app, observation({
      code: { coding: [{ system: LOINC, code: '85354-9' }] },
      component: [
        { code: { coding: [{ system: LOINC, code: '8480-6' }] }, valueQuantity: { value: 150, system: UCUM, code: 'mm[Hg]' } },
        { code: { coding: [{ system: LOINC, code: '8462-4' }] }, valueQuantity: { value: 82, system: UCUM, code: 'mm[Hg]' } },
      ],
    }));
  });
  after(() => app.stop());

  it('code-value-* match a code with its own value, by any coding of the code', async () => {
    expect(await matched(`code-value-quantity=${LOINC}|29463-7$gt80|${UCUM}|kg`)).to.equal(['weight']);
    expect(await matched(`code-value-quantity=urn:local|wt$82`)).to.equal(['weight']);
    expect(await matched(`code-value-quantity=${LOINC}|29463-7$gt90`)).to.equal([]);
    // The panel's own code has no value: 82 mm[Hg] is its diastolic component's.
    expect(await matched(`code-value-quantity=85354-9$82`)).to.equal([]);
    expect(await matched(`code-value-concept=${LOINC}|72166-2$${SNOMED}|77176002`)).to.equal(['smoker']);
    expect(await matched(`code-value-concept=72166-2$77176002`)).to.equal(['smoker']);
    expect(await matched(`code-value-date=11368-8$ge2026-03-01`)).to.equal(['onset']);
    expect(await matched(`code-value-date=11368-8$lt2026-03-01`)).to.equal([]);
    // OR within a parameter, AND across two.
    expect(await matched(`code-value-quantity=29463-7$gt90,29463-7$lt90`)).to.equal(['weight']);
    expect(await matched(`code-value-quantity=29463-7$82&code-value-quantity=urn:local|wt$gt90`)).to.equal([]);
  });

  it('component and combo composites pair within one component', async () => {
    expect(await matched(`component-code-value-quantity=8462-4$82`)).to.equal(['bp']);
    expect(await matched(`component-code-value-quantity=8480-6$82`)).to.equal([]);
    expect(await matched(`combo-code-value-quantity=29463-7$82`)).to.equal(['weight']);
    expect(await matched(`combo-code-value-quantity=8462-4$82`)).to.equal(['bp']);
    expect(await matched(`combo-code-value-quantity=29463-7$82,8480-6$gt140`)).to.equal(['bp', 'weight']);
  });

  it(':missing on a composite asks whether a pair exists (a panel\'s components are not its own value)', async () => {
    expect(await matched('code-value-quantity:missing=true')).to.equal(['bp', 'onset', 'smoker']);
    expect(await matched('code-value-quantity:missing=false')).to.equal(['weight']);
    expect(await matched('code-value-concept:missing=false')).to.equal(['smoker']);
    // combo-: the pairs of the resource's own value or of a component's.
    expect(await matched('combo-code-value-quantity:missing=false')).to.equal(['bp', 'weight']);
    expect(await matched('combo-code-value-quantity:missing=true')).to.equal(['onset', 'smoker']);
  });

  it('code-value-quantity finds its pairs across patients, by any coding and in canonical units; a code without its value finds nothing', async () => {
    const system = `urn:paired:${unique('c')}`;
    const other = await createResource(app, { resourceType: 'Patient', name: [{ family: unique('Paired') }] });
    const id = await createResource(app, {
      resourceType: 'Observation', status: 'final', subject: { reference: `Patient/${other}` },
      code: { coding: [{ system, code: 'a' }, { system, code: 'b' }] }, valueQuantity: { value: 5, unit: 'kg', system: UCUM, code: 'kg' },
    });
    // Not a pair: the code with no value at all.
    await createResource(app, { resourceType: 'Observation', status: 'final', subject: { reference: `Patient/${other}` }, code: { coding: [{ system, code: 'a' }] }, dataAbsentReason: { text: 'cuff error' } });
    const found = async (query: string) => (await searchAll(app, `/fhir/Observation?${query}`)).map((r) => r.id);
    expect(await found(`code-value-quantity=${system}|a$5`)).to.equal([id]);
    expect(await found(`code-value-quantity=${system}|b$5000|${UCUM}|g`)).to.equal([id]);
    expect(await found(`code-value-quantity=${system}|a$6,${system}|c$5`)).to.equal([]);
    expect(await found(`combo-code-value-quantity=${system}|b$le5`)).to.equal([id]);
  });

  it("a patient's code-value-quantity search pages newest first through every match, once each", async () => {
    for (const [day, kg] of [[3, 70], [1, 71], [5, 95], [2, 72], [4, 60]] as const) {
      await createResource(app, {
        resourceType: 'Observation', status: 'final', subject: { reference: `Patient/${pid}` }, effectiveDateTime: `2026-04-0${day}T08:00:00Z`,
        code: { coding: [{ system: LOINC, code: '29463-7' }] }, valueQuantity: { value: kg, unit: 'kg', system: UCUM, code: 'kg' },
      });
    }
    const listed = await searchAll(app, `/fhir/Observation?patient=${pid}&code-value-quantity=${LOINC}|29463-7$ge70|${UCUM}|kg&date=ge2026-04-01&_count=2`);
    const seen = listed.map((r) => (r.effectiveDateTime as string).slice(0, 10));
    // 60 kg (day 4) is below the threshold; the rest newest first, none twice.
    expect(seen).to.equal(['2026-04-05', '2026-04-03', '2026-04-02', '2026-04-01']);
  });

  it('a system-only token in a composite is a 400 OperationOutcome, not a database error', async () => {
    for (const query of [
      `code-value-quantity=${LOINC}|$gt1`,
      `component-code-value-quantity=${LOINC}|$gt1`,
      `combo-code-value-quantity=${LOINC}|$gt1`,
      `code-value-concept=72166-2$${SNOMED}|`,
    ]) {
      const res = await app.request({ method: 'GET', url: `/fhir/Observation?patient=${pid}&${query}` });
      expect(res.statusCode, query).to.equal(400);
      expect(res.json.resourceType).to.equal('OperationOutcome');
      expect(res.json.issue[0].code).to.equal('not-supported');
      expect(res.json.issue[0].expression).to.equal([query.slice(0, query.indexOf('='))]);
    }
  });
});
