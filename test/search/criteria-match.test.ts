import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { criteriaMatcher, findMatchingIds, type TypeLimits, withinLimits } from '../../src/search';
import { startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const LOINC = 'http://loinc.org';
const CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';
const OTHER = 'http://other.org/fhir';
const MRN = 'urn:test:criteria:mrn';
const VITALS = 'http://hl7.org/fhir/ValueSet/observation-vitalsignresult';
const CATEGORIES = 'http://hl7.org/fhir/ValueSet/observation-category';
const STATUSES = 'http://hl7.org/fhir/ValueSet/observation-status';

/**
 * Subscription matching judges plain criteria and the subscriber's limits in memory
 * (src/search/criteria-match.ts, src/monitoring/notify.ts) where it used to search. Both must
 * answer alike: every criteria shape judged exactly, over every stored resource, against the
 * database's own search of the same criteria restricted to that id.
 */
describe('criteria judged in memory agree with the search', () => {
  let app: TestServer;
  let alice: string;
  let bob: string;
  const stored: fhir4.Observation[] = [];
  before(async () => {
    app = await startTestServer();
    const create = async (resource: object) => {
      const res = await app.request({ method: 'POST', url: `/fhir/${(resource as { resourceType: string }).resourceType}`, payload: resource });
      expect(res.statusCode, res.payload).to.equal(201);
      return res.json;
    };
    alice = (await create({ resourceType: 'Patient', name: [{ family: unique('alice') }] })).id;
    bob = (await create({ resourceType: 'Patient', name: [{ family: unique('bob') }] })).id;
    const reading = (patient: string, code: string, category: string, status: string, extra: object = {}) => ({
      resourceType: 'Observation', status,
      category: [{ coding: [{ system: CATEGORY, code: category }] }],
      code: { coding: [{ system: LOINC, code }], text: `reading ${code}` },
      subject: { reference: `Patient/${patient}` }, effectiveDateTime: '2026-11-01T10:00:00Z', ...extra,
    });
    const panel = (patient: string) => reading(patient, '85354-9', 'vital-signs', 'final', {
      component: [{ code: { coding: [{ system: LOINC, code: '8480-6' }] }, valueQuantity: { value: 150, unit: 'mm[Hg]', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } }],
    });
    for (const r of [
      reading(alice, '8867-4', 'vital-signs', 'final'),
      reading(alice, '2339-0', 'laboratory', 'amended'),
      reading(bob, '8867-4', 'vital-signs', 'preliminary'),
      reading(bob, '29463-7', 'vital-signs', 'final', { performer: [{ reference: `Patient/${alice}` }] }),
      panel(alice),
      panel(bob),
      { resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://snomed.info/sct', code: '8867-4' }] }, subject: { reference: `Group/${alice}` } },
      { resourceType: 'Observation', status: 'final', code: { text: 'no coding' }, subject: { reference: `Patient/${bob}` } },
      // A coding without a system, and a category of another system: a value set's codes judge the first (decision 039), not the second.
      { resourceType: 'Observation', status: 'cancelled', code: { coding: [{ code: '29463-7' }] }, category: [{ coding: [{ system: OTHER, code: 'vital-signs' }] }], subject: { reference: `Patient/${alice}` } },
      // Absolute: another server's patient with alice's id is not alice (decision 034); this server's own base is.
      reading(alice, '8867-4', 'vital-signs', 'final', { subject: { reference: `${OTHER}/Patient/${alice}` } }),
      reading(bob, '2339-0', 'laboratory', 'final', { subject: { reference: `${app.ctx.baseUrl}/Patient/${bob}/_history/1` } }),
      // By identifier (decision 035): alone, typed, and beside a literal reference.
      reading(alice, '8867-4', 'vital-signs', 'final', { subject: { identifier: { system: MRN, value: alice } } }),
      reading(alice, '8867-4', 'vital-signs', 'final', { subject: { type: 'Patient', identifier: { system: MRN, value: alice } } }),
      reading(bob, '2339-0', 'laboratory', 'final', { subject: { reference: `Patient/${bob}`, identifier: { system: MRN, value: bob } } }),
    ]) stored.push(await create(r));
  });
  after(() => app?.stop());

  const criteria = () => [
    `patient=Patient/${alice}`, `patient=${bob}`, `subject=${alice}`, `subject=Patient/${alice}`, `subject=Group/${alice}`, `subject:Patient=${alice}`,
    `code=8867-4`, `code=${LOINC}|8867-4`, `code=http://snomed.info/sct|8867-4`, `code=${LOINC}|`, `code=|8867-4`, `code=8867-4,2339-0`,
    `category=laboratory`, `category=${CATEGORY}|vital-signs`, `status=final,amended`, `status=preliminary`,
    `combo-code=8480-6`, `component-code=${LOINC}|8480-6`, `code=85354-9&patient=Patient/${bob}`, `code=8867-4&code=${LOINC}|8867-4&subject=${alice}`,
    `performer=Patient/${alice}`, `code=8867-4&date=ge2026-01-01`, `code:text=reading`, `status:not=final`,
    `subject=${OTHER}/Patient/${alice}`, `patient=${OTHER}/Patient/${alice}`, `subject=${app.ctx.baseUrl}/Patient/${bob}`,
    `patient=${app.ctx.baseUrl}/Patient/${bob}/_history/1`, `category=laboratory&subject=${bob}`,
    `subject:identifier=${MRN}|${alice}`, `subject:identifier=${alice},${bob}`, `subject:identifier=${MRN}|`, `subject:identifier=|${alice}`,
    `patient:identifier=${MRN}|${alice}`, `patient:identifier=${bob}&category=laboratory`, `subject:identifier=${MRN}|${alice}&code=${LOINC}|8867-4`,
    // Value sets (decision 039): enumerated, a whole code system, a `code` element without system; negated.
    `code:in=${VITALS}`, `code:not-in=${VITALS}`, `combo-code:in=${VITALS}&patient=${bob}`, `category:in=${CATEGORIES}`, `category:not-in=${CATEGORIES}`,
    `status:in=${STATUSES}`, `status:not-in=${STATUSES}`, `code:in=${VITALS}&status:not=final`, `code:not-in=${VITALS},${STATUSES}&subject=${alice}`,
  ].map((c) => new URLSearchParams(c));

  it('matches exactly where every filter is judged, and never rules out what the search finds', async () => {
    let exact = 0;
    for (const params of criteria()) {
      const matcher = criteriaMatcher('Observation', params);
      if (matcher.exact) exact++;
      for (const resource of stored) {
        const byQuery = new URLSearchParams(params);
        byQuery.set('_id', resource.id!);
        const found = (await findMatchingIds(app.ctx.db, 'Observation', byQuery)).length === 1;
        const judged = matcher.mayMatch(resource);
        if (matcher.exact) expect(judged, `${params} on ${resource.id}`).to.equal(found);
        else if (found) expect(judged, `${params} on ${resource.id}`).to.be.true();
      }
    }
    expect(exact).to.be.at.least(40);
  });

  it('judges a subscriber\'s limits on the version as the search applies them', async () => {
    const limits: TypeLimits[] = [
      { compartmentPatientId: alice },
      { compartmentPatientId: bob, constraint: new URLSearchParams(`category=${CATEGORY}|vital-signs`) },
      { constraint: new URLSearchParams('category=laboratory') },
      { exclude: [{ patientId: alice }] },
      { exclude: [{ patientId: bob, constraint: new URLSearchParams(`category=${CATEGORY}|vital-signs`) }] },
      { constraint: new URLSearchParams(`_id=${stored[0]!.id},${stored[3]!.id}`) },
      { constraint: new URLSearchParams(`subject:identifier=${MRN}|${alice},${MRN}|${bob}`) },
      { constraint: new URLSearchParams(`code:in=${VITALS}`) },
      { compartmentPatientId: alice, constraint: new URLSearchParams(`code:not-in=${VITALS}`) },
      { exclude: [{ patientId: bob, constraint: new URLSearchParams(`category:in=${CATEGORIES}`) }] },
    ];
    for (const l of limits) {
      for (const resource of stored) {
        const query = new URLSearchParams({ _id: resource.id! });
        for (const [k, v] of l.constraint ?? []) query.append(k, v);
        const reach = () => ({ ...(l.exclude ? { exclude: l.exclude } : {}) });
        const found = (await findMatchingIds(app.ctx.db, 'Observation', query, undefined, l.compartmentPatientId, reach)).length === 1;
        expect(withinLimits('Observation', resource, l), `${JSON.stringify(l)} on ${resource.id}`).to.equal(found);
      }
    }
  });
});
