import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { type SecuredServer, startSecuredServer } from './helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * Issue 11, oracles: a refusal must not depend on content the caller may not read. The
 * caller's right to act on a resource is decided before If-Match, before a JSON Patch `test`,
 * before any validation of what it sent.
 */
describe('authorization comes before any answer that depends on content', () => {
  let app: SecuredServer;
  let bobObs: string;
  let aliceApp: Record<string, string>;
  let readOnly: Record<string, string>;
  let alice: string;
  before(async () => {
    app = await startSecuredServer();
    alice = await app.create({ resourceType: 'Patient' });
    const bob = await app.create({ resourceType: 'Patient' });
    bobObs = await app.create({ resourceType: 'Observation', status: 'final', code: { text: 'HIV test' }, subject: { reference: `Patient/${bob}` }, valueString: 'positive' });
    aliceApp = await app.as('patient/*.cruds', { patient: alice, fhirUser: `Patient/${alice}` });
    readOnly = await app.as('system/Observation.rs');
  });
  after(() => app.stop());

  const patch = (headers: Record<string, string>, value: string) =>
    app.request({
      method: 'PATCH', url: `/fhir/Observation/${bobObs}`, headers: { ...headers, 'content-type': 'application/json-patch+json' },
      payload: JSON.stringify([{ op: 'test', path: '/valueString', value }, { op: 'replace', path: '/status', value: 'amended' }]),
    });

  it('a JSON Patch test answers the same whether its guess is right or wrong', async () => {
    // A resource the caller may not read is unknown to a PATCH (decision 031); without update rights, 403.
    for (const [headers, status] of [[aliceApp, 404], [readOnly, 403]] as const) {
      const right = await patch(headers, 'positive');
      const wrong = await patch(headers, 'negative');
      expect([right.statusCode, wrong.statusCode]).to.equal([status, status]);
      expect(right.json.issue[0].diagnostics).to.equal(wrong.json.issue[0].diagnostics);
    }
  });

  it("another patient's deleted resource answers a PATCH and an If-Match as an id never used, never with its version", async () => {
    const bob = await app.create({ resourceType: 'Patient' });
    const gone = await app.create({ resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient/${bob}` } });
    expect((await app.request({ method: 'DELETE', url: `/fhir/Observation/${gone}`, headers: app.system })).statusCode).to.equal(204);
    const aliceWriter = await app.as('patient/Observation.cruds', { patient: alice });
    const answers = async (id: string) => {
      const out: unknown[] = [];
      for (const version of ['1', '2']) {
        const del = await app.request({ method: 'DELETE', url: `/fhir/Observation/${id}`, headers: { ...aliceWriter, 'if-match': `W/"${version}"` } });
        out.push(del.statusCode, del.payload.replace(id, 'ID'));
      }
      const patched = await app.request({ method: 'PATCH', url: `/fhir/Observation/${id}`, headers: { ...aliceWriter, 'content-type': 'application/json-patch+json' }, payload: '[]' });
      out.push(patched.statusCode, patched.payload.replace(id, 'ID'));
      return out;
    };
    const never = await answers(`never-${gone}`);
    expect(never.filter((x) => typeof x === 'number')).to.equal([412, 412, 404]);
    expect(await answers(gone)).to.equal(never);
    // The deletion's own version (2) is not answered 204 either: the same 412 as version 1.
    expect((await app.request({ method: 'GET', url: `/fhir/Observation/${gone}/_history/2`, headers: app.system })).statusCode).to.equal(410);
  });

  it("the caller's own deleted resource still answers its version to If-Match and 410 to a PATCH", async () => {
    const own = await app.create({ resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient/${alice}` } });
    const writer = await app.as('patient/Observation.cruds', { patient: alice });
    expect((await app.request({ method: 'DELETE', url: `/fhir/Observation/${own}`, headers: writer })).statusCode).to.equal(204);
    const stale = await app.request({ method: 'DELETE', url: `/fhir/Observation/${own}`, headers: { ...writer, 'if-match': 'W/"1"' } });
    expect([stale.statusCode, stale.json.issue[0].diagnostics]).to.equal([412, `If-Match W/"1" does not match the current version 2 of Observation/${own}`]);
    const patched = await app.request({ method: 'PATCH', url: `/fhir/Observation/${own}`, headers: { ...writer, 'content-type': 'application/json-patch+json' }, payload: '[]' });
    expect(patched.statusCode).to.equal(410);
  });

  it("a patient's own deleted resource is 410 to its token, with its history and versions; another patient's deleted one is 404 as an id never used", async () => {
    const own = await app.create({ resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient/${alice}` } });
    const bob = await app.create({ resourceType: 'Patient' });
    const others = await app.create({ resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient/${bob}` } });
    for (const id of [own, others]) expect((await app.request({ method: 'DELETE', url: `/fhir/Observation/${id}`, headers: app.system })).statusCode).to.equal(204);
    const reader = await app.as('patient/Observation.rs', { patient: alice });
    const get = async (url: string) => (await app.request({ method: 'GET', url, headers: reader })).statusCode;

    expect(await get(`/fhir/Observation/${own}`)).to.equal(410);
    const history = await app.request({ method: 'GET', url: `/fhir/Observation/${own}/_history`, headers: reader });
    expect(history.statusCode).to.equal(200);
    expect(history.json.entry.map((e: { request: { method: string } }) => e.request.method)).to.equal(['DELETE', 'POST']);
    expect([await get(`/fhir/Observation/${own}/_history/1`), await get(`/fhir/Observation/${own}/_history/2`)]).to.equal([200, 410]);

    for (const url of [`/fhir/Observation/${others}`, `/fhir/Observation/${others}/_history`, `/fhir/Observation/${others}/_history/1`, `/fhir/Observation/${others}/_history/2`]) {
      const res = await app.request({ method: 'GET', url, headers: reader });
      const never = await app.request({ method: 'GET', url: url.replace(others, `never-${others}`), headers: reader });
      expect([res.statusCode, res.payload.replace(others, 'ID')], url).to.equal([404, never.payload.replace(`never-${others}`, 'ID')]);
    }
  });

  it('If-Match answers 403, not 412, to a caller that may not write the resource', async () => {
    for (const headers of [aliceApp, readOnly]) {
      for (const version of ['1', '7']) {
        const res = await app.request({
          method: 'PUT', url: `/fhir/Observation/${bobObs}`, headers: { ...headers, 'if-match': `W/"${version}"` },
          payload: { resourceType: 'Observation', id: bobObs, status: 'final', code: { text: 'x' } },
        });
        expect(res.statusCode, `If-Match ${version}`).to.equal(403);
      }
      const del = await app.request({ method: 'DELETE', url: `/fhir/Observation/${bobObs}`, headers: { ...headers, 'if-match': 'W/"9"' } });
      expect(del.statusCode).to.equal(403);
    }
  });

  it('a conditional create that matches answers return=minimal to a create-and-search token, whose search found the match anyway', async () => {
    const creator = await app.as('system/Observation.cs');
    const headers = { ...creator, 'if-none-exist': `_id=${bobObs}`, prefer: 'return=minimal' };
    const res = await app.request({ method: 'POST', url: '/fhir/Observation', headers, payload: { resourceType: 'Observation', status: 'final', code: { text: 'x' } } });
    expect([res.statusCode, res.payload, res.headers.etag]).to.equal([200, '', 'W/"1"']);
    expect(res.headers.location).to.match(new RegExp(`/Observation/${bobObs}/_history/1$`));
  });

  it("a MedicationAdministration naming another patient's MedicationRequest answers as for a request never stored, and counts no dose of it", async () => {
    const bob = await app.create({ resourceType: 'Patient' });
    const rx = await app.create({
      resourceType: 'MedicationRequest', status: 'active', intent: 'order', subject: { reference: `Patient/${bob}` }, medicationCodeableConcept: { text: 'x' },
      dosageInstruction: [{ timing: { repeat: { frequency: 24, period: 1, periodUnit: 'd' } } }],
    });
    const given = (request: string) => app.request({
      method: 'POST', url: '/fhir/MedicationAdministration', headers: aliceApp,
      payload: { resourceType: 'MedicationAdministration', status: 'completed', subject: { reference: `Patient/${alice}` }, medicationCodeableConcept: { text: 'x' }, effectiveDateTime: new Date().toISOString(), request: { reference: `MedicationRequest/${request}` } },
    });
    const linked = await given(rx);
    const never = await given(`never-${rx}`);
    // It was a 422 naming Bob's request and Bob: existence and owner of a request Alice may not read.
    expect([linked.statusCode, never.statusCode]).to.equal([201, 201]);
    expect(linked.payload).to.not.include(bob);
    const due = await app.request({ method: 'GET', url: `/fhir/MedicationRequest/${rx}/$due?start=${new Date(Date.now() - 3_600_000).toISOString()}`, headers: app.system });
    expect(due.statusCode).to.equal(200);
    expect(due.payload).to.not.include(linked.json.id);
  });

  it('a body that fails validation is still a 403 for a caller that may not write there', async () => {
    const res = await app.request({ method: 'PUT', url: `/fhir/Observation/${bobObs}`, headers: aliceApp, payload: { resourceType: 'Observation', id: bobObs, status: 'not-a-status' } });
    expect(res.statusCode).to.equal(403);
  });
});

/**
 * A CarePlan's limits are the Goals it references, compiled on write and echoed back in 422s, in
 * the readings' referenceRange and in the Flags' text: referencing a stored Goal is reading it.
 */
describe('a CarePlan reads only Goals its writer may read, of its own patient', () => {
  const LOINC = 'http://loinc.org';
  const UCUM = 'http://unitsofmeasure.org';
  let app: SecuredServer;
  let alice: string;
  let bob: string;
  const goals: Record<string, string> = {};
  const goal = (patient: string, code: string) => ({
    resourceType: 'Goal', lifecycleStatus: 'active', description: { text: 'systolic' }, subject: { reference: `Patient/${patient}` },
    target: [{ measure: { coding: [{ system: LOINC, code }] }, detailRange: { high: { value: 137, unit: 'mm[Hg]', system: UCUM, code: 'mm[Hg]' } } }],
  });
  const plan = (patient: string, goalId: string) => ({ resourceType: 'CarePlan', status: 'active', intent: 'plan', subject: { reference: `Patient/${patient}` }, goal: [{ reference: `Goal/${goalId}` }] });
  before(async () => {
    app = await startSecuredServer();
    alice = await app.create({ resourceType: 'Patient' });
    bob = await app.create({ resourceType: 'Patient' });
    goals.bob = await app.create(goal(bob, '8480-6'));
    // Stored before it was acted on, so its unknown measure was not refused then.
    goals.bobOdd = await app.create(goal(bob, '99999-9'));
    goals.alice = await app.create(goal(alice, '8480-6'));
  });
  after(() => app.stop());

  const post = (headers: Record<string, string>, body: object) => app.request({ method: 'POST', url: '/fhir/CarePlan', headers, payload: body });
  const plansOf = async (patient: string) => (await app.request({ method: 'GET', url: `/fhir/CarePlan?subject=Patient/${patient}&_summary=count`, headers: app.system })).json.total as number;

  it("a patient token cannot tell another patient's Goal from none, nor read its limits through a plan", async () => {
    const aliceApp = await app.as('patient/*.cruds', { patient: alice, fhirUser: `Patient/${alice}` });
    const unknown = await post(aliceApp, plan(alice, 'no-such-goal'));
    expect(unknown.statusCode).to.equal(422);
    for (const hidden of [goals.bob!, goals.bobOdd!]) {
      const res = await post(aliceApp, plan(alice, hidden));
      expect(res.statusCode, res.payload).to.equal(422);
      expect(res.payload).to.not.include('99999-9');
      expect(res.json.issue[0].diagnostics.replace(hidden, 'X')).to.equal(unknown.json.issue[0].diagnostics.replace('no-such-goal', 'X'));
    }
    expect(await plansOf(alice)).to.equal(0);
    // So no reading of Alice's is judged by Bob's limit of 137.
    const reading = await app.request({
      method: 'POST', url: '/fhir/Observation', headers: aliceApp,
      payload: { resourceType: 'Observation', status: 'final', code: { coding: [{ system: LOINC, code: '8480-6' }] }, subject: { reference: `Patient/${alice}` }, effectiveDateTime: new Date().toISOString(), valueQuantity: { value: 139, unit: 'mm[Hg]', system: UCUM, code: 'mm[Hg]' } },
    });
    expect(reading.statusCode).to.equal(201);
    // Judged by no limit: no referenceRange or interpretation (ids and times may hold the digits 137).
    expect(reading.json.referenceRange).to.not.exist();
    expect(reading.json.interpretation).to.not.exist();
    expect(reading.payload).to.not.include('"value":137');
    // Her own Goal is hers to plan with.
    expect((await post(aliceApp, plan(alice, goals.alice!))).statusCode).to.equal(201);
  });

  it("whoever may read both, a plan is not made of another patient's Goal", async () => {
    const res = await post(app.system, plan(alice, goals.bob!));
    expect(res.statusCode).to.equal(422);
    expect(res.json.issue[0].diagnostics).to.equal(`CarePlan.goal[0]: Goal/${goals.bob} is not a Goal of Patient/${alice}, the plan's subject; a plan reads only its own patient's Goals`);
    expect((await post(app.system, plan(bob, goals.bob!))).statusCode).to.equal(201);
  });
});
