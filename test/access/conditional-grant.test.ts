import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { type SecuredServer, startSecuredServer } from '../security/helpers';
import { countRows } from '../helpers/server';
import { actor, consent } from '../helpers/consent';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';
const VITALS = `${CATEGORY}|vital-signs`;
const LOINC = 'http://loinc.org';

/**
 * A conditional write finds its match with the caller's own search of the type: the compartment,
 * the granular constraints of its scopes and what Consents deny it. A resource that search would
 * not show does not exist for the condition — the write goes on as if nothing matched, and no
 * status or diagnostics name or count it. REST (If-None-Exist, conditional PUT and DELETE) and
 * transactions (ifNoneExist entries, conditional references) alike.
 */
describe('conditional writes match only what the caller may search', () => {
  let app: SecuredServer;
  const id: Record<string, string> = {};
  /** Vital signs of everyone to read, any Observation to write (the probe's token). */
  let granularSystem: Record<string, string>;
  /** Alice's own vital signs to read, her Observations to write. */
  let granularAlice: Record<string, string>;

  const observation = (patient: string, category: 'vital-signs' | 'laboratory', code: string, value: number, extra: Record<string, unknown> = {}) => ({
    resourceType: 'Observation', status: 'final',
    category: [{ coding: [{ system: CATEGORY, code: category }] }],
    code: { coding: [{ system: LOINC, code }] }, subject: { reference: `Patient/${patient}` },
    effectiveDateTime: '2026-10-02T08:00:00Z', valueQuantity: { value, unit: 'mg/dL', system: 'http://unitsofmeasure.org', code: 'mg/dL' },
    ...extra,
  });
  const read = (type: string, rid: string) => app.request({ method: 'GET', url: `/fhir/${type}/${rid}`, headers: app.system });
  /** Whether an answer names a hidden resource anywhere: status line aside, its whole text. */
  const expectSilentAbout = (payload: string, ...hidden: string[]) => {
    for (const h of hidden) expect(payload).to.not.contain(h);
  };

  before(async () => {
    app = await startSecuredServer();
    id.alice = await app.create({ resourceType: 'Patient' });
    id.bob = await app.create({ resourceType: 'Patient' });
    // Glucose (2345-7) and a second lab value (1234-6) hidden from vital-signs tokens; a heart rate they see.
    id.aliceGlucose = await app.create(observation(id.alice, 'laboratory', '2345-7', 120));
    id.bobGlucose = await app.create(observation(id.bob, 'laboratory', '2345-7', 130));
    id.aliceHr = await app.create(observation(id.alice, 'vital-signs', '8867-4', 70));
    granularSystem = await app.as(`system/Observation.rs?category=${VITALS} system/Observation.cud`);
    granularAlice = await app.as(`patient/Observation.rs?category=${VITALS} patient/Observation.cud`, { patient: id.alice, fhirUser: `Patient/${id.alice}` });
  });
  after(() => app.stop());

  describe('If-None-Exist', () => {
    const post = (headers: Record<string, string>, body: Record<string, unknown>, condition: string) =>
      app.request({ method: 'POST', url: '/fhir/Observation', payload: body, headers: { ...headers, 'if-none-exist': condition } });

    it('a hidden match neither answers with nor names the resource: the create goes ahead', async () => {
      const res = await post(granularSystem, observation(id.bob, 'vital-signs', '8310-5', 37), `code=${LOINC}|2345-7&patient=${id.bob}`);
      expect(res.statusCode, res.payload).to.equal(201);
      expectSilentAbout(res.payload, id.bobGlucose!);
      expect(res.json.id).to.not.equal(id.bobGlucose);
    });

    it('hidden values are no oracle: a condition over them answers the same whichever way they lie', async () => {
      const answers = [];
      for (const bound of ['gt95', 'gt150', 'lt95']) {
        const res = await post(granularAlice, observation(id.alice, 'vital-signs', '8310-5', 37), `code=${LOINC}|2345-7&value-quantity=${bound}`);
        expectSilentAbout(res.payload, id.aliceGlucose!);
        answers.push(res.statusCode);
      }
      expect(answers).to.equal([201, 201, 201]);
    });

    it('two matches, one hidden, are one match: no 412 counts the hidden one', async () => {
      const code = '2708-6';
      const visible = await app.create(observation(id.alice, 'vital-signs', code, 97));
      const hidden = await app.create(observation(id.alice, 'laboratory', code, 97));
      const res = await post(granularAlice, observation(id.alice, 'vital-signs', code, 98), `code=${LOINC}|${code}`);
      expect(res.statusCode, res.payload).to.equal(200);
      expect(res.json.id).to.equal(visible);
      expectSilentAbout(res.payload, hidden);
    });

    it('a visible match still answers 200 with that resource', async () => {
      const res = await post(granularAlice, observation(id.alice, 'vital-signs', '8867-4', 70), `code=${LOINC}|8867-4`);
      expect(res.statusCode, res.payload).to.equal(200);
      expect(res.json.id).to.equal(id.aliceHr);
    });
  });

  it('conditional DELETE of a resource the caller may not read deletes nothing', async () => {
    const hidden = await app.create(observation(id.bob, 'laboratory', '1234-6', 3));
    const res = await app.request({ method: 'DELETE', url: `/fhir/Observation?code=${LOINC}|1234-6`, headers: granularSystem });
    expect(res.statusCode, res.payload).to.equal(204);
    expectSilentAbout(res.payload + JSON.stringify(res.headers), hidden);
    const after = await read('Observation', hidden);
    expect(after.statusCode).to.equal(200);
    expect(after.json.meta.versionId).to.equal('1');
  });

  it('conditional PUT over a resource the caller may not read creates a new one and leaves it as it was', async () => {
    const hidden = await app.create(observation(id.alice, 'laboratory', '1920-8', 40));
    const res = await app.request({
      method: 'PUT', url: `/fhir/Observation?code=${LOINC}|1920-8`, headers: granularAlice,
      payload: observation(id.alice, 'vital-signs', '1920-8', 41),
    });
    expect(res.statusCode, res.payload).to.equal(201);
    expect(res.json.id).to.not.equal(hidden);
    expectSilentAbout(res.payload + JSON.stringify(res.headers), hidden);
    const after = await read('Observation', hidden);
    expect(after.json.meta.versionId).to.equal('1');
    expect(after.json.valueQuantity.value).to.equal(40);
  });

  it('a Consent-denied patient is not matched either (the search path\'s exclusions)', async () => {
    // A clinician a Consent of Bob's shuts out: Bob's Observations are not there for them.
    const drNo = await app.create({ resourceType: 'Practitioner' });
    await app.create(consent(id.bob!, { type: 'deny', actor: [actor(`Practitioner/${drNo}`)] }));
    const clinician = await app.as('user/Observation.cruds', { fhirUser: `Practitioner/${drNo}` });
    // A code of this test's own: the suites share one database, and Synthea's fixtures hold cholesterol (2093-3).
    const code = `denied-${Date.now()}`;
    const hidden = await app.create(observation(id.bob, 'laboratory', code, 190));
    const res = await app.request({ method: 'DELETE', url: `/fhir/Observation?code=${LOINC}|${code}`, headers: clinician });
    expect(res.statusCode, res.payload).to.equal(204);
    expect((await read('Observation', hidden)).json.meta.versionId).to.equal('1');
  });

  describe('in a transaction', () => {
    const transaction = (headers: Record<string, string>, entry: unknown[]) =>
      app.request({ method: 'POST', url: '/fhir', headers, payload: { resourceType: 'Bundle', type: 'transaction', entry } });

    it('an ifNoneExist entry does not match a hidden resource', async () => {
      const res = await transaction(granularSystem, [{
        resource: observation(id.bob, 'vital-signs', '8310-5', 37),
        request: { method: 'POST', url: 'Observation', ifNoneExist: `code=${LOINC}|2345-7&patient=${id.bob}` },
      }]);
      expect(res.statusCode, res.payload).to.equal(200);
      expect(res.json.entry[0].response.status).to.equal('201 Created');
      expectSilentAbout(res.payload, id.bobGlucose!);
    });

    it('a conditional reference does not resolve to a hidden resource, and its refusal counts nothing', async () => {
      // Glucose is hidden from the vital-signs token: the reference matches nothing it can see.
      const hiddenOne = await transaction(granularSystem, [{
        resource: observation(id.bob, 'vital-signs', '8310-5', 37, { derivedFrom: [{ reference: `Observation?code=${LOINC}|2345-7&patient=${id.bob}` }] }),
        request: { method: 'POST', url: 'Observation' },
      }]);
      expect(hiddenOne.statusCode, hiddenOne.payload).to.equal(412);
      expect(hiddenOne.json.issue[0].diagnostics).to.contain('matches no resource');
      expectSilentAbout(hiddenOne.payload, id.bobGlucose!);

      // Two hidden glucose values (Alice's and Bob's) and nothing visible: still no resource, not "more than one".
      const before = await countRows(app, 'Observation');
      const hiddenTwo = await transaction(granularSystem, [{
        resource: observation(id.bob, 'vital-signs', '8310-5', 37, { derivedFrom: [{ reference: `Observation?code=${LOINC}|2345-7` }] }),
        request: { method: 'POST', url: 'Observation' },
      }]);
      expect(hiddenTwo.statusCode, hiddenTwo.payload).to.equal(412);
      expect(hiddenTwo.json.issue[0].diagnostics).to.contain('matches no resource');
      expect(await countRows(app, 'Observation')).to.equal(before);

      // A visible one resolves as before.
      const visible = await transaction(granularAlice, [{
        resource: observation(id.alice, 'vital-signs', '8310-5', 37, { derivedFrom: [{ reference: `Observation?code=${LOINC}|8867-4` }] }),
        request: { method: 'POST', url: 'Observation' },
      }]);
      expect(visible.statusCode, visible.payload).to.equal(200);
      const created = await read('Observation', visible.json.entry[0].response.location.split('/')[1]);
      expect(created.json.derivedFrom[0].reference).to.equal(`Observation/${id.aliceHr}`);
    });

    it('an ifNoneExist entry sees earlier entries only as the caller\'s search would: hidden ones, stored or new, are not matched nor counted', async () => {
      const code = '2339-0';
      const hidden = await app.create(observation(id.alice, 'laboratory', code, 101));
      const res = await transaction(granularSystem, [
        // New, but a laboratory value: the token's search would not find it either.
        { resource: observation(id.alice, 'laboratory', code, 102), request: { method: 'POST', url: 'Observation' } },
        { resource: observation(id.alice, 'vital-signs', code, 103), request: { method: 'POST', url: 'Observation', ifNoneExist: `code=${LOINC}|${code}` } },
        // Matches the visible one just created, and only it: not 412 for the two hidden ones.
        { resource: observation(id.alice, 'vital-signs', code, 104), request: { method: 'POST', url: 'Observation', ifNoneExist: `code=${LOINC}|${code}` } },
      ]);
      expect(res.statusCode, res.payload).to.equal(200);
      expect(res.json.entry.map((e: any) => e.response.status)).to.equal(['201 Created', '201 Created', '200 OK']);
      const visible = res.json.entry[1].response.location.split('/')[1];
      expect(res.json.entry[2].response.location.split('/')[1]).to.equal(visible);
      expectSilentAbout(res.payload, hidden);
      const all = await app.request({ method: 'GET', url: `/fhir/Observation?code=${LOINC}|${code}&subject=Patient/${id.alice}`, headers: app.system });
      expect(all.json.entry.length).to.equal(3);
    });

    it('a conditional DELETE entry of a hidden resource deletes nothing', async () => {
      const hidden = await app.create(observation(id.bob, 'laboratory', '2951-2', 140));
      const res = await transaction(granularSystem, [{ request: { method: 'DELETE', url: `Observation?code=${LOINC}|2951-2` } }]);
      expect(res.statusCode, res.payload).to.equal(200);
      expectSilentAbout(res.payload, hidden);
      expect((await read('Observation', hidden)).json.meta.versionId).to.equal('1');
    });
  });
});
