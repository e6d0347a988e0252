import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { type SecuredServer, startSecuredServer } from '../security/helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * Observation/$lastn (R4 OperationDefinition Observation-lastn): a patient's newest readings of
 * each code, grouped as R4 says (codings transitively, text-only codes by their exact text),
 * held to what the caller may search.
 */
describe('Observation/$lastn', () => {
  let app: SecuredServer;
  let alice: string;
  let bob: string;
  /** Observation ids by label. */
  const id: Record<string, string> = {};

  const VITALS = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] };
  const DIARY = { coding: [{ system: 'urn:test:category', code: 'diary' }] };
  const HEART_RATE = { coding: [{ system: 'http://loinc.org', code: '8867-4' }] };
  const WEIGHT = { coding: [{ system: 'http://loinc.org', code: '29463-7' }] };
  const coded = (...codes: string[]) => ({ coding: codes.map((code) => ({ system: 'urn:test:code', code })) });

  const vital = (patient: string, code: fhir4.CodeableConcept, when: string, value: number, unit: string) => ({
    resourceType: 'Observation', status: 'final', category: [VITALS], code, subject: { reference: `Patient/${patient}` }, effectiveDateTime: when,
    valueQuantity: { value, unit, system: 'http://unitsofmeasure.org', code: unit },
  });
  const diary = (patient: string, code: fhir4.CodeableConcept, when: string) => ({
    resourceType: 'Observation', status: 'final', category: [DIARY], code, subject: { reference: `Patient/${patient}` }, effectiveDateTime: when, valueString: 'noted',
  });

  const lastn = async (query: string, headers = app.system) => {
    const res = await app.request({ method: 'GET', url: `/fhir/Observation/$lastn?${query}`, headers });
    return res;
  };
  /** The labels of a Bundle's entries, in order. */
  const labels = (bundle: fhir4.Bundle) => (bundle.entry ?? []).map((e) => Object.keys(id).find((k) => id[k] === e.resource!.id) ?? `unknown ${e.resource!.id}`);

  before(async () => {
    app = await startSecuredServer();
    alice = await app.create({ resourceType: 'Patient', name: [{ family: 'Lastnalice' }] });
    bob = await app.create({ resourceType: 'Patient', name: [{ family: 'Lastnbob' }] });
    for (const [label, day, bpm] of [['hr1', '01', 61], ['hr2', '02', 62], ['hr3', '03', 63], ['hr4', '04', 64]] as const) {
      id[label] = await app.create(vital(alice, HEART_RATE, `2026-11-${day}T10:00:00Z`, bpm, '/min'));
    }
    // Two weights taken at the same instant: a tie for the newest.
    id.wt1 = await app.create(vital(alice, WEIGHT, '2026-11-01T09:00:00Z', 71, 'kg'));
    id.wt2a = await app.create(vital(alice, WEIGHT, '2026-11-02T09:00:00Z', 72, 'kg'));
    id.wt2b = await app.create(vital(alice, WEIGHT, '2026-11-02T09:00:00Z', 72.5, 'kg'));
    id.bobHr = await app.create(vital(bob, HEART_RATE, '2026-11-05T10:00:00Z', 70, '/min'));
    // R4's example of transitive grouping: a, b, and one coded both a and c: groups [a, c] and [b].
    id.a = await app.create(diary(alice, coded('a'), '2026-10-01T08:00:00Z'));
    id.b = await app.create(diary(alice, coded('b'), '2026-10-02T08:00:00Z'));
    id.ac = await app.create(diary(alice, coded('a', 'c'), '2026-09-01T08:00:00Z'));
    id.c = await app.create(diary(alice, coded('c'), '2026-10-03T08:00:00Z'));
    // Text-only codes group by their exact text.
    id.text1 = await app.create(diary(alice, { text: 'Text' }, '2026-10-04T08:00:00Z'));
    id.text2 = await app.create(diary(alice, { text: 'text' }, '2026-10-05T08:00:00Z'));
    // Undated: found though the patient's date-ordered rows do not hold it, its group last.
    const { effectiveDateTime: _, ...undated } = diary(alice, coded('u'), '');
    id.undated = await app.create(undated);
  });

  after(async () => {
    await app.stop();
  });

  it('answers the newest reading of each code, newest group first', async () => {
    const res = await lastn(`patient=${alice}&category=vital-signs`);
    expect(res.statusCode, res.payload).to.equal(200);
    expect(res.json.type).to.equal('searchset');
    // The weights of 2 November tie: both are the newest.
    expect(labels(res.json)).to.equal(['hr4', 'wt2a', 'wt2b']);
    expect(res.json.total).to.equal(3);
    expect(res.json.entry.every((e: fhir4.BundleEntry) => e.search?.mode === 'match')).to.be.true();
  });

  it('answers up to max of each code, newest first, ties included', async () => {
    const res = await lastn(`subject=Patient/${alice}&category=vital-signs&max=3`);
    expect(res.statusCode, res.payload).to.equal(200);
    expect(labels(res.json)).to.equal(['hr4', 'hr3', 'hr2', 'wt2a', 'wt2b', 'wt1']);
    const one = await lastn(`patient=${alice}&code=http://loinc.org|29463-7&max=1`);
    expect(labels(one.json)).to.equal(['wt2a', 'wt2b']);
  });

  it('groups codings transitively and text-only codes by their exact text', async () => {
    const res = await lastn(`patient=${alice}&category=urn:test:category|diary&max=5`);
    expect(res.statusCode, res.payload).to.equal(200);
    // Groups by their newest: 'text' (5 Oct), 'Text' (4 Oct), [a, c] (3 Oct), [b] (2 Oct), then the undated.
    expect(labels(res.json)).to.equal(['text2', 'text1', 'c', 'a', 'ac', 'b', 'undated']);
    const newest = await lastn(`patient=${alice}&category=urn:test:category|diary`);
    expect(labels(newest.json)).to.equal(['text2', 'text1', 'c', 'b', 'undated']);
  });

  it('applies the other search parameters before grouping', async () => {
    const res = await lastn(`patient=${alice}&category=vital-signs&date=le2026-11-02&max=2`);
    expect(labels(res.json)).to.equal(['hr2', 'hr1', 'wt2a', 'wt2b']);
    // A subject named through a chain: no patient index drives it, the same answer.
    const chained = await lastn('subject:Patient.family=Lastnalice&category=vital-signs&max=2');
    expect(chained.statusCode, chained.payload).to.equal(200);
    expect(labels(chained.json)).to.equal(['hr4', 'hr3', 'wt2a', 'wt2b']);
    const none = await lastn(`patient=${alice}&category=vital-signs&status=amended`);
    expect(none.statusCode).to.equal(200);
    expect(none.json.total).to.equal(0);
    expect(none.json.entry).to.not.exist();
  });

  it('takes its parameters from a Parameters body too, and subsets with _elements', async () => {
    const post = await app.request({
      method: 'POST', url: '/fhir/Observation/$lastn', headers: app.system,
      payload: { resourceType: 'Parameters', parameter: [{ name: 'patient', valueString: alice }, { name: 'code', valueString: 'http://loinc.org|8867-4' }, { name: 'max', valuePositiveInt: 2 }] },
    });
    expect(post.statusCode, post.payload).to.equal(200);
    expect(labels(post.json)).to.equal(['hr4', 'hr3']);
    const subset = await lastn(`patient=${alice}&code=http://loinc.org|8867-4&_elements=code`);
    const resource = subset.json.entry[0].resource;
    expect(resource.code).to.exist();
    expect(resource.valueQuantity).to.not.exist();
    expect(resource.meta.tag.some((t: fhir4.Coding) => t.code === 'SUBSETTED')).to.be.true();
  });

  it('refuses a call without a subject, without a code or category, or with a bad max or a paging parameter (400 OperationOutcome)', async () => {
    for (const q of [
      'category=vital-signs',
      `patient=${alice}`,
      `patient=${alice}&status=final`,
      `patient=${alice}&category=vital-signs&max=0`,
      `patient=${alice}&category=vital-signs&max=two`,
      `patient=${alice}&category=vital-signs&max=1&max=2`,
      `patient=${alice}&category=vital-signs&max=100000`,
      `patient=${alice}&category=vital-signs&_sort=-date`,
      `patient=${alice}&category=vital-signs&_count=5`,
      `patient=${alice}&category=vital-signs&_include=Observation:subject`,
      `patient=${alice}&category=vital-signs&nonsense=1`,
      `patient=${alice}&category=vital-signs&_summary=count`,
    ]) {
      const res = await lastn(q);
      expect(res.statusCode, q).to.equal(400);
      expect(res.json.resourceType, q).to.equal('OperationOutcome');
    }
  });

  it('holds every condition to each reading it returns, and groups only by the matches, whichever index reads them', async () => {
    // Each on a patient of its own, so that the readings above stay as they are.
    const carol = await app.create({ resourceType: 'Patient', name: [{ family: 'Lastncarol' }] });
    const at = (day: string) => `2026-11-${day}T10:00:00Z`;
    const hr = (day: string, extra: Record<string, unknown> = {}) => ({ ...vital(carol, HEART_RATE, at(day), 60, '/min'), ...extra });
    id.c1 = await app.create(hr('01'));
    id.c2 = await app.create(hr('02'));
    // The newest heart rate is not final: `status=final` walks past it to the one before.
    id.c3 = await app.create(hr('03', { status: 'amended' }));
    // Newer still, then deleted: never served, nor counted as one of max.
    const gone = await app.create(hr('04'));
    expect((await app.request({ method: 'DELETE', url: `/fhir/Observation/${gone}`, headers: app.system })).statusCode).to.equal(204);
    // A weight whose coding is repeated with two displays (two index rows of one reading): one of max.
    const twice = { coding: [{ ...WEIGHT.coding[0], display: 'Body weight' }, { ...WEIGHT.coding[0], display: 'Weight' }] };
    id.cw1 = await app.create(vital(carol, twice, at('01'), 70, 'kg'));
    id.cw2 = await app.create(vital(carol, twice, at('02'), 71, 'kg'));
    // Once a weight, now a heart rate of 5 November: its old version's code no longer counts.
    id.moved = await app.create(vital(carol, WEIGHT, at('03'), 72, 'kg'));
    const updated = await app.request({ method: 'PUT', url: `/fhir/Observation/${id.moved}`, headers: app.system, payload: { ...vital(carol, HEART_RATE, at('05'), 90, '/min'), id: id.moved } });
    expect(updated.statusCode, updated.payload).to.equal(200);

    const final = await lastn(`patient=${carol}&category=vital-signs&status=final&max=2`);
    expect(final.statusCode, final.payload).to.equal(200);
    expect(labels(final.json)).to.equal(['moved', 'c2', 'cw2', 'cw1']);
    expect(labels((await lastn(`patient=${carol}&code=http://loinc.org|8867-4&max=2`)).json)).to.equal(['moved', 'c3']);
    // Within a grant of final readings only, the same walk.
    const finalOnly = await app.as('system/Observation.rs?status=final');
    expect(labels((await lastn(`patient=${carol}&code=http://loinc.org|8867-4&max=2`, finalOnly)).json)).to.equal(['moved', 'c2']);

    // Codings join groups only through a match: p and q stay apart while their joiner is filtered out.
    const [p, q, pq] = [coded('p'), coded('q'), coded('p', 'q')];
    id.p = await app.create(diary(carol, p, at('10')));
    id.q = await app.create(diary(carol, q, at('11')));
    id.pq = await app.create({ ...diary(carol, pq, at('01')), status: 'amended' });
    expect(labels((await lastn(`patient=${carol}&category=urn:test:category|diary&status=final`)).json)).to.equal(['q', 'p']);
    expect(labels((await lastn(`patient=${carol}&category=urn:test:category|diary`)).json)).to.equal(['q']);

    // A coding without a code names no code: two such readings group by their texts (decision 042).
    const systemOnly = (text: string) => ({ coding: [{ system: 'urn:test:code' }], text });
    id.s1 = await app.create(diary(carol, systemOnly('first'), at('20')));
    id.s2 = await app.create(diary(carol, systemOnly('second'), at('21')));
    expect(labels((await lastn(`patient=${carol}&category=urn:test:category|diary&date=ge2026-11-20`)).json)).to.equal(['s2', 's1']);
  });

  it("is audited as an operation naming the patients whose readings it disclosed", async () => {
    const res = await lastn(`patient=${alice}&category=vital-signs`);
    expect(res.statusCode, res.payload).to.equal(200);
    await app.audit.flush();
    const auditor = await app.as('system/AuditEvent.rs');
    const trail = await app.request({ method: 'GET', url: `/fhir/AuditEvent?date=ge2020-01-01&_count=100`, headers: auditor });
    const mine = (trail.json as fhir4.Bundle).entry!.map((e) => e.resource as fhir4.AuditEvent)
      .filter((e) => e.entity?.some((x) => x.type?.code === 'XrequestId' && x.what?.identifier?.value === res.headers['x-request-id']));
    expect(mine.length).to.be.above(0);
    const patients = mine.flatMap((e) => (e.entity ?? []).filter((x) => x.role?.code === '1').map((x) => x.what?.reference));
    expect(patients).to.equal([`Patient/${alice}`]);
    expect(mine.every((e) => e.action === 'E' && e.outcome === '0')).to.be.true();
  });

  it("stays within the grant: a patient token sees its own patient's readings only, a narrower scope its own category", async () => {
    const bobToken = await app.as('patient/Observation.rs', { patient: bob });
    const own = await lastn('category=vital-signs', bobToken);
    expect(own.statusCode, own.payload).to.equal(200);
    expect(labels(own.json)).to.equal(['bobHr']);
    const other = await lastn(`patient=${alice}&category=vital-signs`, bobToken);
    expect(other.statusCode, other.payload).to.equal(200);
    expect(other.json.total).to.equal(0);
    const diaryOnly = await app.as('system/Observation.rs?category=urn:test:category|diary');
    const narrowed = await lastn(`patient=${alice}&category=vital-signs`, diaryOnly);
    expect(narrowed.statusCode, narrowed.payload).to.equal(200);
    expect(narrowed.json.total).to.equal(0);
    const noSearch = await app.as('system/Observation.r');
    expect((await lastn(`patient=${alice}&category=vital-signs`, noSearch)).statusCode).to.equal(403);
    expect((await lastn(`patient=${alice}&category=vital-signs`, {})).statusCode).to.equal(401);
  });
});
