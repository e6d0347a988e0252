import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { type SecuredServer, startSecuredServer } from './helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';
const VITALS = `${CATEGORY}|vital-signs`;

/**
 * Issue 11's access-control suite: every read path, for a patient token, a granular patient
 * token, a granular system token and a narrow system token. Each path's whole answer (every
 * page, every included resource, every version) is searched for the ids the token must not
 * see, and for the ids it must see (so that a path that returns nothing cannot pass).
 */
describe('every read path stays inside the grant', () => {
  let app: SecuredServer;
  const id: Record<string, string> = {};

  const observation = (patient: string, category: 'vital-signs' | 'laboratory', code: string, extra: Record<string, unknown> = {}) => ({
    resourceType: 'Observation', status: 'final',
    category: [{ coding: [{ system: CATEGORY, code: category }] }],
    code: { coding: [{ system: 'http://loinc.org', code }] }, subject: { reference: `Patient/${patient}` },
    performer: [{ reference: `Practitioner/${id.doctor}` }],
    effectiveDateTime: '2026-10-02T08:00:00Z', valueQuantity: { value: 70, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
    ...extra,
  });

  before(async () => {
    app = await startSecuredServer();
    id.doctor = await app.create({ resourceType: 'Practitioner', name: [{ family: 'Who' }] });
    id.alice = await app.create({ resourceType: 'Patient', name: [{ family: 'Alicesurname' }], generalPractitioner: [{ reference: `Practitioner/${id.doctor}` }] });
    id.bob = await app.create({ resourceType: 'Patient', name: [{ family: 'Bobsurname' }] });
    id.aliceVital = await app.create(observation(id.alice, 'vital-signs', '8867-4'));
    id.aliceLab = await app.create(observation(id.alice, 'laboratory', '2339-0', { valueQuantity: { value: 5, unit: 'mmol/L', system: 'http://unitsofmeasure.org', code: 'mmol/L' } }));
    id.bobVital = await app.create(observation(id.bob, 'vital-signs', '8867-4'));
    id.bobLab = await app.create(observation(id.bob, 'laboratory', '2339-0', { valueQuantity: { value: 6, unit: 'mmol/L', system: 'http://unitsofmeasure.org', code: 'mmol/L' } }));
    id.bobFlag = await app.create({ resourceType: 'Flag', status: 'active', code: { text: 'bob only' }, subject: { reference: `Patient/${id.bob}` } });
    id.aliceFlag = await app.create({ resourceType: 'Flag', status: 'active', code: { text: 'alice flag' }, subject: { reference: `Patient/${id.alice}` } });
    // In Alice's compartment through `performer` alone (no subject): the compartment driver's second set.
    id.alicePerformedLab = await app.create({ ...observation(id.alice, 'laboratory', '2339-0'), subject: undefined, performer: [{ reference: `Patient/${id.alice}` }] });
    // Versions that must stay with their first owner: an Observation filed under Bob, then moved
    // to Alice; one that was laboratory, then vital signs.
    id.moved = await app.create(observation(id.bob, 'vital-signs', '9279-1', { note: [{ text: 'bob-era-secret' }] }));
    const moved = (await app.request({ method: 'GET', url: `/fhir/Observation/${id.moved}`, headers: app.system })).json;
    await app.request({ method: 'PUT', url: `/fhir/Observation/${id.moved}`, headers: app.system, payload: { ...moved, subject: { reference: `Patient/${id.alice}` }, note: [{ text: 'alice-era' }] } });
    id.recategorised = await app.create(observation(id.alice, 'laboratory', '2708-6', { note: [{ text: 'lab-era-secret' }] }));
    const recat = (await app.request({ method: 'GET', url: `/fhir/Observation/${id.recategorised}`, headers: app.system })).json;
    await app.request({ method: 'PUT', url: `/fhir/Observation/${id.recategorised}`, headers: app.system, payload: { ...recat, category: [{ coding: [{ system: CATEGORY, code: 'vital-signs' }] }], note: [{ text: 'vital-era' }] } });
  });
  after(() => app.stop());

  interface Grant {
    name: string;
    headers: () => Promise<Record<string, string>>;
    /** Must appear somewhere across the paths (ids, or text of a version). */
    sees: () => string[];
    /** Must never appear. */
    never: () => string[];
  }

  const grants: Grant[] = [
    {
      name: 'a patient token (standalone launch by Alice)',
      headers: () => app.as('patient/*.rs', { patient: id.alice!, fhirUser: `Patient/${id.alice}` }),
      sees: () => [id.alice!, id.aliceVital!, id.aliceLab!, id.aliceFlag!, id.alicePerformedLab!, 'alice-era'],
      never: () => [id.bob!, id.bobVital!, id.bobLab!, id.bobFlag!, 'bob-era-secret', 'Bobsurname'],
    },
    {
      name: 'a granular patient token (Alice, vital signs only)',
      headers: () => app.as(`patient/Observation.rs?category=${VITALS} patient/Patient.rs`, { patient: id.alice!, fhirUser: `Patient/${id.alice}` }),
      sees: () => [id.alice!, id.aliceVital!, 'vital-era'],
      never: () => [id.bob!, id.bobVital!, id.bobLab!, id.aliceLab!, id.alicePerformedLab!, id.bobFlag!, id.aliceFlag!, 'lab-era-secret', 'bob-era-secret'],
    },
    {
      name: 'a granular system token (vital signs of everyone, and Patients)',
      headers: () => app.as(`system/Observation.rs?category=${VITALS} system/Patient.rs`),
      sees: () => [id.alice!, id.bob!, id.aliceVital!, id.bobVital!, 'vital-era'],
      never: () => [id.aliceLab!, id.bobLab!, id.alicePerformedLab!, id.bobFlag!, id.aliceFlag!, 'lab-era-secret'],
    },
    {
      name: 'a narrow system token (Patients only)',
      headers: () => app.as('system/Patient.rs'),
      sees: () => [id.alice!, id.bob!],
      never: () => [id.aliceVital!, id.aliceLab!, id.alicePerformedLab!, id.bobVital!, id.bobLab!, id.bobFlag!, id.aliceFlag!, 'bob-era-secret', 'lab-era-secret', 'vital-era', 'alice-era'],
    },
  ];

  /** Every read path, as relative URLs (paging links are followed by `fetchAll`). */
  const paths = (): string[] => {
    const all = ['alice', 'bob', 'aliceVital', 'aliceLab', 'bobVital', 'bobLab', 'bobFlag', 'aliceFlag', 'moved', 'recategorised', 'doctor'];
    const typeOf = (k: string) => (k === 'alice' || k === 'bob' ? 'Patient' : k === 'doctor' ? 'Practitioner' : k.endsWith('Flag') ? 'Flag' : 'Observation');
    return [
      ...all.map((k) => `${typeOf(k)}/${id[k]}`),
      ...all.flatMap((k) => [`${typeOf(k)}/${id[k]}/_history`, `${typeOf(k)}/${id[k]}/_history/1`, `${typeOf(k)}/${id[k]}/_history/2`]),
      'Observation/_history', 'Patient/_history', '_history',
      'Observation', 'Observation?_count=1', 'Flag', 'Patient', `Observation?_id=${id.bobLab},${id.aliceLab},${id.bobVital}`,
      `Patient/${id.alice}/Observation`, `Patient/${id.bob}/Observation`, `Patient/${id.bob}/Flag`,
      // Every type of a compartment (http.html "Variant Searches"), walked a page of 2 at a time.
      `Patient/${id.alice}/*?_count=2`, `Patient/${id.bob}/*`, `Patient/${id.bob}/*?_type=Observation,Flag&_count=1`,
      // Compartment searches the patient's key rows drive, the members named by performer merged in.
      `Patient/${id.alice}/Observation?_sort=-date`, `Patient/${id.alice}/Observation?_sort=date&_count=1`, `Patient/${id.alice}/Observation?code=2339-0`,
      `Patient/${id.alice}/Observation?category=laboratory&date=ge2000-01-01`, `Patient/${id.bob}/Observation?_sort=-date`,
      `Observation?subject=Patient/${id.bob}`, 'Observation?subject.name=Bobsurname',
      // Searches the patient index drives: by a bare code, by a composite's code, by the patient key alone…
      `Observation?patient=${id.bob}&_sort=-date`, `Observation?patient=${id.alice}&_sort=-date`, `Observation?patient=${id.alice}&date=ge2000-01-01`, `Observation?patient=${id.alice}`,
      `Observation?patient=${id.bob}&category=laboratory`, `Observation?patient=${id.alice}&category=laboratory&_sort=-date`,
      // …and by a list of codes, one range scan per code merged; oldest first, the driving rows sorted before the join.
      `Observation?patient=${id.alice}&code=http://loinc.org|2339-0,http://loinc.org|8867-4`, `Observation?patient=${id.bob}&code=2339-0,8867-4&_sort=-date`,
      `Observation?patient=${id.alice}&_sort=date`, `Observation?patient=${id.alice}&category=laboratory&_sort=date`, `Observation?patient=${id.bob}&code=2339-0,8867-4&_sort=date`,
      // Newest first across patients, driven by the date index read backwards (the undated a second set).
      'Observation?_sort=-date', 'Observation?category=laboratory&_sort=-date', 'Observation?code=2339-0&_sort=-date&_count=1', 'Observation?date=ge2000-01-01&_sort=-date',
      // Unsorted searches for recent data, read in their date index's order (src/search/default-order.ts).
      'Observation?date=ge2000-01-01&_count=1', 'Observation?code=2339-0&date=gt2000-01-01', 'Observation?_lastUpdated=gt2000-01-01&_count=1', 'Flag?_lastUpdated=ge2000-01-01',
      `Observation?subject=Patient/${id.bob}&code-value-quantity=http://loinc.org|2339-0$gt0`, `Observation?patient=${id.alice}&code-value-quantity=2339-0$gt0`, 'Observation?patient.name=Bobsurname', 'Observation?subject:Patient.name=Bobsurname',
      'Patient?_has:Observation:patient:code=2339-0', 'Patient?_has:Observation:subject:category=laboratory', 'Patient?_has:Flag:patient:status=active',
      'Observation?_include=Observation:subject', 'Observation?_include=Observation:patient&_include:iterate=Patient:general-practitioner',
      'Observation?_include:recurse=Observation:subject', 'Observation?_include=*',
      'Patient?_revinclude=Observation:subject', 'Patient?_revinclude=Flag:patient', 'Patient?_revinclude=*', 'Patient?_revinclude:iterate=Observation:subject',
      'Practitioner?_revinclude=Observation:performer', 'Practitioner?_revinclude=Patient:general-practitioner&_revinclude:iterate=Observation:subject',
      `Patient?_id=${id.bob}&_revinclude=Observation:subject`, 'Observation?code=2339-0', 'Observation?category=laboratory', 'Flag?status=active',
      `Observation/${id.bobLab}/$validate`,
    ];
  };

  /**
   * What an answer discloses: its resources, never the OperationOutcomes or links that echo the
   * ids and parameters the client itself sent.
   */
  function disclosed(body: any): string {
    if (!body || typeof body !== 'object' || body.resourceType === 'OperationOutcome') return '';
    if (body.resourceType !== 'Bundle') return JSON.stringify(body);
    return (body.entry ?? []).map((e: any) => `${e.fullUrl ?? ''} ${disclosed(e.resource)} ${e.response?.location ?? ''}`).join('\n');
  }

  async function fetchAll(headers: Record<string, string>, url: string): Promise<{ statuses: number[]; text: string }> {
    const statuses: number[] = [];
    let text = '';
    let next: string | undefined = `/fhir/${url}`;
    for (let page = 0; next && page < 20; page++) {
      const res = await app.request({ method: 'GET', url: next, headers });
      statuses.push(res.statusCode);
      text += disclosed(res.json);
      const link = res.json?.link?.find((l: { relation: string }) => l.relation === 'next')?.url as string | undefined;
      next = link ? link.slice(link.indexOf('/fhir/')) : undefined;
    }
    return { statuses, text };
  }

  for (const grant of grants) {
    it(`${grant.name}: no read path shows what the grant excludes`, async () => {
      const headers = await grant.headers();
      const never = grant.never();
      let seen = '';
      const leaks: string[] = [];
      for (const path of paths()) {
        const { statuses, text } = await fetchAll(headers, path);
        expect(statuses.every((s) => s < 500), `${path}: ${statuses}`).to.be.true();
        for (const secret of never) if (text.includes(secret)) leaks.push(`${path} shows ${secret}`);
        seen += text;
      }
      // The same paths as GET entries of one batch.
      const batch = await app.request({
        method: 'POST', url: '/fhir', headers,
        payload: { resourceType: 'Bundle', type: 'batch', entry: paths().filter((p) => !p.includes('$')).map((url) => ({ request: { method: 'GET', url } })) },
      });
      expect(batch.statusCode).to.equal(200);
      const batchText = disclosed(batch.json);
      for (const secret of never) if (batchText.includes(secret)) leaks.push(`batch shows ${secret}`);
      expect(leaks).to.equal([]);
      // And the grant is not empty: each thing it covers showed up somewhere.
      expect(grant.sees().filter((s) => !seen.includes(s))).to.equal([]);
    });
  }

  it('answers searches that name a type the token cannot read with 403, before running them', async () => {
    const vitalsOnly = await app.as(`patient/Observation.rs?category=${VITALS}`, { patient: id.alice!, fhirUser: `Patient/${id.alice}` });
    for (const url of ['Observation?_include=Observation:performer:Practitioner', 'Observation?_revinclude=Flag:subject', 'Observation?subject:Patient.name=Alicesurname', 'Observation?_has:Flag:subject:status=active']) {
      const res = await app.request({ method: 'GET', url: `/fhir/${url}`, headers: vitalsOnly });
      expect(res.statusCode, url).to.be.within(400, 404);
    }
    // Each link of a longer chain too: Observation and Patient are granted, Organization is not.
    const noOrganizations = await app.as('patient/Observation.rs patient/Patient.rs', { patient: id.alice!, fhirUser: `Patient/${id.alice}` });
    const chained = await app.request({ method: 'GET', url: '/fhir/Observation?subject:Patient.organization.name=x', headers: noOrganizations });
    expect(chained.statusCode, chained.payload).to.equal(403);
  });
});
