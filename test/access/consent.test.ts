import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import type { AuthState } from '../../src/auth/state';
import { issueAccessToken } from '../../src/auth/tokens';
import { subscriber, until } from '../helpers/hook';
import { startTestServer, type TestServer, unique } from '../helpers/server';
import { actor, consent, observation, VITAL_SIGNS } from '../helpers/consent';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * Consents in the access policy (decision record 015), over HTTP with tokens of this server:
 * a caregiver (fhirUser RelatedPerson) sees only what a Consent grants them, a clinician named
 * by a deny loses what it covers, on every read path; withdrawal holds for tokens already out.
 * The full SMART sign-in of a caregiver is test/auth/caregiver.test.ts.
 */
describe('Consent enforcement', () => {
  let app: TestServer;
  let state: AuthState;
  const ids: Record<string, string> = {};
  const as = (bearer: string) => ({ authorization: `Bearer ${bearer}` });
  let system: Record<string, string>;
  const token = async (scopes: string, extra: { patient?: string; fhirUser?: string } = {}) =>
    as((await issueAccessToken(state, { clientId: 'consent-test', scopes: scopes.split(' '), ...extra })).accessToken);
  const get = async (url: string, headers: Record<string, string>) => app.request({ method: 'GET', url, headers });
  const create = async (body: Record<string, unknown>) => {
    const res = await app.request({ method: 'POST', url: `/fhir/${String(body.resourceType)}`, payload: body, headers: system });
    if (res.statusCode !== 201) throw new Error(res.payload);
    return res.json.id as string;
  };
  const put = async (body: Record<string, unknown> & { id: string }) => {
    const res = await app.request({ method: 'PUT', url: `/fhir/${String(body.resourceType)}/${body.id}`, payload: body, headers: system });
    expect(res.statusCode, res.payload).to.equal(200);
  };
  const idsOf = (bundle: fhir4.Bundle, type?: string) =>
    (bundle.entry ?? []).filter((e) => !type || e.resource?.resourceType === type).map((e) => e.resource!.id!).sort();

  before(async () => {
    app = await startTestServer({ AUTH_DISABLED: 'false', SUBSCRIPTION_RETRY_BASE: '100ms', SUBSCRIPTION_ALLOW_PRIVATE_NETWORKS: 'true' });
    state = (app.server.plugins as any)['smart-auth'].state;
    system = await token('system/*.cruds');
    ids.alice = await create({ resourceType: 'Patient', name: [{ family: `Alice${unique()}` }] });
    ids.bob = await create({ resourceType: 'Patient', name: [{ family: `Bob${unique()}` }] });
    ids.drX = await create({ resourceType: 'Practitioner', name: [{ family: 'X' }] });
    ids.drY = await create({ resourceType: 'Practitioner', name: [{ family: 'Y' }] });
    ids.carol = await create({ resourceType: 'RelatedPerson', active: true, patient: { reference: `Patient/${ids.alice}` }, name: [{ family: 'Carol' }] });
    ids.aliceHr = await create(observation(ids.alice, '8867-4', 'vital-signs'));
    ids.aliceLab = await create(observation(ids.alice, '2339-0', 'laboratory'));
    ids.bobHr = await create(observation(ids.bob, '8867-4', 'vital-signs'));
    ids.aliceMed = await create({
      resourceType: 'MedicationRequest', status: 'active', intent: 'order', subject: { reference: `Patient/${ids.alice}` },
      medicationCodeableConcept: { text: 'metformin 500 mg' },
    });
  });
  after(() => app.stop());

  describe('writing Consents', () => {
    const refused: Array<[string, Record<string, unknown>]> = [
      ['no patient', { patient: undefined }],
      ['a patient that is not a Patient reference', { patient: { reference: 'Group/1' } }],
      ['no provision', { provision: undefined }],
      ['a nested provision without type', { provision: { type: 'deny', provision: [{ class: [VITAL_SIGNS] }] } }],
      ['a data class of an unknown system', { provision: { type: 'permit', class: [{ system: 'urn:x', code: 'y' }] } }],
      ['a resource type class that is no type', { provision: { type: 'permit', class: [{ system: 'http://hl7.org/fhir/resource-types', code: 'Nonsense' }] } }],
      ['provision.data (not enforceable)', { provision: { type: 'deny', data: [{ meaning: 'instance', reference: { reference: 'Observation/1' } }] } }],
      ['provision.code (not enforceable)', { provision: { type: 'permit', code: [{ text: 'x' }] } }],
      ['a purpose of another system', { provision: { type: 'permit', purpose: [{ system: 'urn:x', code: 'TREAT' }] } }],
      ['an actor by absolute URL', { provision: { type: 'permit', actor: [{ role: { text: 'x' }, reference: { reference: 'https://elsewhere/fhir/RelatedPerson/1' } }] } }],
      ['an actor by an identifier that names no app', { provision: { type: 'permit', actor: [{ role: { text: 'x' }, reference: { identifier: { system: 'urn:x', value: 'y' } } }] } }],
      ['a period ending before it starts', { provision: { type: 'permit', period: { start: '2026-02-01', end: '2026-01-01' } } }],
      ['nesting two levels deep', { provision: { type: 'deny', provision: [{ type: 'permit', provision: [{ type: 'deny' }] }] } }],
    ];
    for (const [what, change] of refused) {
      it(`refuses a patient-privacy Consent with ${what}: 400, nothing stored`, async () => {
        const marker = unique('c');
        const body: Record<string, unknown> = { ...consent(ids.alice, { type: 'permit' }), identifier: [{ system: 'urn:test:consent', value: marker }] };
        for (const [k, v] of Object.entries(change)) {
          if (v === undefined) delete body[k];
          else body[k] = v;
        }
        const res = await app.request({ method: 'POST', url: '/fhir/Consent', payload: body, headers: system });
        expect(res.statusCode, res.payload).to.equal(400);
        expect(res.json.resourceType).to.equal('OperationOutcome');
        const found = await get(`/fhir/Consent?identifier=urn:test:consent|${marker}`, system);
        expect(found.json.entry ?? []).to.have.length(0);
      });
    }

    it('stores Consents of other scopes without reading them as access rules', async () => {
      const res = await app.request({
        method: 'POST', url: '/fhir/Consent', headers: system,
        payload: { ...consent(ids.alice, { type: 'permit' }), scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'research' }] }, provision: undefined },
      });
      expect(res.statusCode, res.payload).to.equal(201);
    });
  });

  describe('a caregiver (fhirUser RelatedPerson)', () => {
    let caregiver: Record<string, string>;
    before(async () => {
      caregiver = await token('patient/*.cruds', { patient: ids.alice, fhirUser: `RelatedPerson/${ids.carol}` });
    });

    it('sees nothing without a Consent, not even the linked Patient', async () => {
      expect((await get('/fhir/Observation', caregiver)).statusCode).to.equal(403);
      expect((await get(`/fhir/Patient/${ids.alice}`, caregiver)).statusCode).to.equal(403);
    });

    it('granted vital signs: the linked patient and their vital signs, on every read path, and nothing else', async () => {
      const grant = await create(consent(ids.alice, { type: 'permit', actor: [actor(`RelatedPerson/${ids.carol}`)], class: [VITAL_SIGNS] }));
      try {
        expect(idsOf((await get('/fhir/Observation', caregiver)).json)).to.equal([ids.aliceHr]);
        expect(idsOf((await get(`/fhir/Observation?subject=Patient/${ids.bob}`, caregiver)).json)).to.equal([]);
        expect((await get(`/fhir/Observation/${ids.aliceHr}`, caregiver)).statusCode).to.equal(200);
        expect((await get(`/fhir/Observation/${ids.aliceLab}`, caregiver)).statusCode).to.equal(404);
        expect((await get(`/fhir/Observation/${ids.bobHr}`, caregiver)).statusCode).to.equal(404);
        expect((await get(`/fhir/Observation/${ids.aliceLab}/_history`, caregiver)).statusCode).to.equal(404);
        expect((await get(`/fhir/Observation/${ids.aliceLab}/_history/1`, caregiver)).statusCode).to.equal(404);
        expect((await get(`/fhir/Observation/${ids.aliceHr}/_history`, caregiver)).statusCode).to.equal(200);
        expect((await get('/fhir/Observation/_history', caregiver)).statusCode).to.equal(403);
        expect((await get(`/fhir/Patient/${ids.alice}`, caregiver)).statusCode).to.equal(200);
        expect((await get(`/fhir/Patient/${ids.bob}`, caregiver)).statusCode).to.equal(404);
        expect(idsOf((await get('/fhir/Patient', caregiver)).json)).to.equal([ids.alice]);
        expect((await get('/fhir/MedicationRequest', caregiver)).statusCode).to.equal(403);
        expect((await get(`/fhir/MedicationRequest/${ids.aliceMed}`, caregiver)).statusCode).to.equal(403);
        // Includes and compartment searches hold to the same classes.
        const rev = (await get(`/fhir/Patient?_id=${ids.alice}&_revinclude=Observation:subject`, caregiver)).json;
        expect(idsOf(rev, 'Observation')).to.equal([ids.aliceHr]);
        expect((await get(`/fhir/Patient?_id=${ids.alice}&_revinclude=MedicationRequest:subject`, caregiver)).statusCode).to.equal(403);
        expect(idsOf((await get(`/fhir/Patient?_id=${ids.alice}&_revinclude=*`, caregiver)).json)).to.equal([ids.alice, ids.aliceHr].sort());
        expect(idsOf((await get(`/fhir/Patient/${ids.alice}/Observation`, caregiver)).json)).to.equal([ids.aliceHr]);
        expect((await get(`/fhir/Patient/${ids.bob}/Observation`, caregiver)).statusCode).to.equal(404);
        const everything = (await get(`/fhir/Patient/${ids.alice}/$everything`, caregiver)).json as fhir4.Bundle;
        expect(idsOf(everything)).to.equal([ids.alice, ids.aliceHr].sort());
        // A chain may not test data outside the grant either.
        expect(idsOf((await get(`/fhir/Patient?_has:Observation:subject:code=2339-0`, caregiver)).json)).to.equal([]);
      } finally {
        await app.request({ method: 'DELETE', url: `/fhir/Consent/${grant}`, headers: system });
      }
    });

    it('never writes, whatever scopes the token carries: 403 before the body is looked at', async () => {
      const grant = await create(consent(ids.alice, { type: 'permit', actor: [actor(`RelatedPerson/${ids.carol}`)] }));
      try {
        const write = await app.request({ method: 'POST', url: '/fhir/Observation', payload: observation(ids.alice, '8867-4', 'vital-signs'), headers: caregiver });
        expect(write.statusCode, write.payload).to.equal(403);
        expect(write.json.resourceType).to.equal('OperationOutcome');
        const garbage = await app.request({ method: 'PUT', url: `/fhir/Observation/${ids.aliceHr}`, payload: '{"resourceType":"Observation"', headers: { ...caregiver, 'content-type': 'application/fhir+json' } });
        expect([400, 403]).to.include(garbage.statusCode);
        // A well-formed body with nothing the validator would accept: still the refusal, not a 400.
        const invalid = await app.request({ method: 'PUT', url: `/fhir/Observation/${ids.aliceHr}`, payload: { resourceType: 'Observation', id: ids.aliceHr, status: 'not-a-status' }, headers: caregiver });
        expect(invalid.statusCode, invalid.payload).to.equal(403);
        expect((await app.request({ method: 'DELETE', url: `/fhir/Observation/${ids.aliceHr}`, headers: caregiver })).statusCode).to.equal(403);
        const selfGrant = await app.request({ method: 'POST', url: '/fhir/Consent', payload: consent(ids.alice, { type: 'permit', actor: [actor(`RelatedPerson/${ids.carol}`)] }), headers: caregiver });
        expect(selfGrant.statusCode).to.equal(403);
      } finally {
        await app.request({ method: 'DELETE', url: `/fhir/Consent/${grant}`, headers: system });
      }
    });

    it('withdrawal (inactive, deleted) and the end of the link hold for the token already issued, from the next request', async () => {
      const body = consent(ids.alice, { type: 'permit', actor: [actor(`RelatedPerson/${ids.carol}`)], class: [VITAL_SIGNS] });
      const id = await create(body);
      expect((await get('/fhir/Observation', caregiver)).statusCode).to.equal(200);
      await put({ ...body, id, status: 'inactive' });
      expect((await get('/fhir/Observation', caregiver)).statusCode).to.equal(403);
      await put({ ...body, id, status: 'active' });
      expect((await get('/fhir/Observation', caregiver)).statusCode).to.equal(200);
      const link = { resourceType: 'RelatedPerson', id: ids.carol, patient: { reference: `Patient/${ids.alice}` }, name: [{ family: 'Carol' }] };
      await put({ ...link, active: false });
      expect((await get('/fhir/Observation', caregiver)).statusCode).to.equal(403);
      await put({ ...link, active: true, period: { end: '2020-01-01' } });
      expect((await get('/fhir/Observation', caregiver)).statusCode).to.equal(403);
      // Moved to another patient: the token (for Alice) reaches nothing, and Bob's data is not Carol's either.
      await put({ ...link, active: true, patient: { reference: `Patient/${ids.bob}` } });
      expect((await get('/fhir/Observation', caregiver)).statusCode).to.equal(403);
      await put({ ...link, active: true });
      expect((await get('/fhir/Observation', caregiver)).statusCode).to.equal(200);
      expect((await app.request({ method: 'DELETE', url: `/fhir/Consent/${id}`, headers: system })).statusCode).to.equal(204);
      expect((await get('/fhir/Observation', caregiver)).statusCode).to.equal(403);
    });

    it('nested exceptions, periods, purposes and denies narrow the grant', async () => {
      const carol = actor(`RelatedPerson/${ids.carol}`);
      const cases: Array<[string, fhir4.ConsentProvision, number, string[]?]> = [
        ['deny everyone, except Carol may see vital signs', { type: 'deny', provision: [{ type: 'permit', actor: [carol], class: [VITAL_SIGNS] }] }, 200, [ids.aliceHr]],
        ['permit Carol everything but laboratory results', { type: 'permit', actor: [carol], provision: [{ type: 'deny', class: [LABORATORY] }] }, 200, [ids.aliceHr]],
        ['permit Carol everything', { type: 'permit', actor: [carol] }, 200, [ids.aliceHr, ids.aliceLab].sort()],
        ['a grant that ended', { type: 'permit', actor: [carol], period: { start: '2020-01-01', end: '2021-01-01' } }, 403],
        ['a grant that has not begun', { type: 'permit', actor: [carol], period: { start: '2999-01-01' } }, 403],
        ['a grant for treatment only', { type: 'permit', actor: [carol], purpose: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'TREAT' }] }, 403],
        ['a grant to someone else', { type: 'permit', actor: [actor(`RelatedPerson/other-${ids.carol}`)] }, 403],
        ['Medication requests only', { type: 'permit', actor: [carol], class: [{ system: 'http://hl7.org/fhir/resource-types', code: 'MedicationRequest' }] }, 403],
      ];
      for (const [what, provision, status, visible] of cases) {
        const id = await create(consent(ids.alice, provision));
        try {
          const res = await get('/fhir/Observation', caregiver);
          expect(res.statusCode, what).to.equal(status);
          if (visible) expect(idsOf(res.json), what).to.equal(visible);
        } finally {
          await app.request({ method: 'DELETE', url: `/fhir/Consent/${id}`, headers: system });
        }
      }
    });

    it('the patient grants and withdraws with their own token, as easily as each other; never for another patient', async () => {
      const alice = await token('patient/Consent.cruds', { patient: ids.alice, fhirUser: `Patient/${ids.alice}` });
      const body = consent(ids.alice, { type: 'permit', actor: [actor(`RelatedPerson/${ids.carol}`)], class: [VITAL_SIGNS] });
      const granted = await app.request({ method: 'POST', url: '/fhir/Consent', payload: body, headers: alice });
      expect(granted.statusCode, granted.payload).to.equal(201);
      expect(idsOf((await get('/fhir/Observation', caregiver)).json)).to.equal([ids.aliceHr]);
      const withdrawn = await app.request({
        method: 'PATCH', url: `/fhir/Consent/${granted.json.id}`, headers: { ...alice, 'content-type': 'application/json-patch+json' },
        payload: JSON.stringify([{ op: 'replace', path: '/status', value: 'inactive' }]),
      });
      expect(withdrawn.statusCode, withdrawn.payload).to.equal(200);
      expect((await get('/fhir/Observation', caregiver)).statusCode).to.equal(403);
      const forBob = await app.request({ method: 'POST', url: '/fhir/Consent', payload: consent(ids.bob, { type: 'permit', actor: [actor(`RelatedPerson/${ids.carol}`)] }), headers: alice });
      expect(forBob.statusCode).to.equal(403);
    });

    it('a token for another patient than the link\'s reaches nothing, even with a grant', async () => {
      const grant = await create(consent(ids.alice, { type: 'permit', actor: [actor(`RelatedPerson/${ids.carol}`)] }));
      try {
        const wrong = await token('patient/*.rs', { patient: ids.bob, fhirUser: `RelatedPerson/${ids.carol}` });
        expect((await get('/fhir/Observation', wrong)).statusCode).to.equal(403);
        expect((await get(`/fhir/Patient/${ids.bob}`, wrong)).statusCode).to.equal(403);
      } finally {
        await app.request({ method: 'DELETE', url: `/fhir/Consent/${grant}`, headers: system });
      }
    });
  });

  describe('a clinician named by a deny', () => {
    let drX: Record<string, string>;
    let drY: Record<string, string>;
    before(async () => {
      drX = await token('user/*.cruds', { fhirUser: `Practitioner/${ids.drX}` });
      drY = await token('user/*.cruds', { fhirUser: `Practitioner/${ids.drY}` });
    });

    it('loses the denied class of that patient on search, read, include, history and $everything; other clinicians and patients are unaffected', async () => {
      const before = idsOf((await get(`/fhir/Observation?_id=${[ids.aliceHr, ids.aliceLab, ids.bobHr].join(',')}`, drX)).json);
      expect(before).to.equal([ids.aliceHr, ids.aliceLab, ids.bobHr].sort());
      const deny = await create(consent(ids.alice, { type: 'deny', actor: [actor(`Practitioner/${ids.drX}`)], class: [VITAL_SIGNS] }));
      try {
        const all = `/fhir/Observation?_id=${[ids.aliceHr, ids.aliceLab, ids.bobHr].join(',')}`;
        expect(idsOf((await get(all, drX)).json)).to.equal([ids.aliceLab, ids.bobHr].sort());
        expect(idsOf((await get(all, drY)).json)).to.equal([ids.aliceHr, ids.aliceLab, ids.bobHr].sort());
        expect((await get(`/fhir/Observation/${ids.aliceHr}`, drX)).statusCode).to.equal(404);
        expect((await get(`/fhir/Observation/${ids.aliceHr}/_history/1`, drX)).statusCode).to.equal(404);
        expect((await get(`/fhir/Observation/${ids.aliceHr}`, drY)).statusCode).to.equal(200);
        expect((await get(`/fhir/Patient/${ids.alice}`, drX)).statusCode).to.equal(200);
        expect((await get('/fhir/Observation/_history', drX)).statusCode).to.equal(403);
        const rev = (await get(`/fhir/Patient?_id=${ids.alice}&_revinclude=Observation:subject`, drX)).json;
        expect(idsOf(rev, 'Observation')).to.equal([ids.aliceLab]);
        const everything = (await get(`/fhir/Patient/${ids.alice}/$everything?_type=Patient,Observation`, drX)).json as fhir4.Bundle;
        expect(idsOf(everything)).to.equal([ids.alice, ids.aliceLab].sort());
        // A chain cannot ask about what is hidden either.
        expect(idsOf((await get(`/fhir/Patient?_id=${ids.alice}&_has:Observation:subject:code=8867-4`, drX)).json)).to.equal([]);
      } finally {
        await app.request({ method: 'DELETE', url: `/fhir/Consent/${deny}`, headers: system });
      }
      expect((await get(`/fhir/Observation/${ids.aliceHr}`, drX)).statusCode).to.equal(200);
    });

    it('cannot patch (404), replace or delete (403) what a deny hides, nor learn its content or version', async () => {
      const deny = await create(consent(ids.alice, { type: 'deny', actor: [actor(`Practitioner/${ids.drX}`)], class: [VITAL_SIGNS] }));
      try {
        const version = (await get(`/fhir/Observation/${ids.aliceHr}`, system)).json.meta.versionId;
        const patch = await app.request({ method: 'PATCH', url: `/fhir/Observation/${ids.aliceHr}`, payload: [{ op: 'test', path: '/status', value: 'final' }], headers: { ...drX, 'content-type': 'application/json-patch+json' } });
        expect(patch.statusCode).to.equal(404);
        expect(patch.headers.etag).to.not.exist();
        expect(patch.payload).to.not.include('8867-4');
        const replace = await app.request({ method: 'PUT', url: `/fhir/Observation/${ids.aliceHr}`, payload: { ...observation(ids.alice, '8867-4', 'vital-signs'), id: ids.aliceHr }, headers: drX });
        expect(replace.statusCode).to.equal(403);
        expect(replace.headers.etag).to.not.exist();
        expect((await app.request({ method: 'DELETE', url: `/fhir/Observation/${ids.aliceHr}`, headers: drX })).statusCode).to.equal(403);
        expect((await get(`/fhir/Observation/${ids.aliceHr}`, system)).json.meta.versionId).to.equal(version);
      } finally {
        await app.request({ method: 'DELETE', url: `/fhir/Consent/${deny}`, headers: system });
      }
    });

    it('cannot lift a deny that names it: replacing, patching or deleting that Consent is 403, in a transaction too; a colleague it does not name may', async () => {
      const deny = await create(consent(ids.alice, { type: 'deny', actor: [actor(`Practitioner/${ids.drX}`)], class: [VITAL_SIGNS] }));
      try {
        // drX may read the Consent (it denies vital signs only), so a 403 tells it nothing new.
        expect((await get(`/fhir/Consent/${deny}`, drX)).statusCode).to.equal(200);
        const elsewhere = { ...consent(ids.alice, { type: 'deny', actor: [actor(`Practitioner/${ids.drY}`)], class: [VITAL_SIGNS] }), id: deny };
        const attempts = [
          await app.request({ method: 'PUT', url: `/fhir/Consent/${deny}`, payload: elsewhere, headers: drX }),
          await app.request({ method: 'PATCH', url: `/fhir/Consent/${deny}`, payload: [{ op: 'replace', path: '/status', value: 'inactive' }], headers: { ...drX, 'content-type': 'application/json-patch+json' } }),
          await app.request({ method: 'DELETE', url: `/fhir/Consent/${deny}`, headers: drX }),
          await app.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'transaction', entry: [{ request: { method: 'DELETE', url: `Consent/${deny}` } }] }, headers: drX }),
        ];
        expect(attempts.map((r) => r.statusCode)).to.equal([403, 403, 403, 403]);
        expect((await get(`/fhir/Observation/${ids.aliceHr}`, drX)).statusCode).to.equal(404);
        expect((await get(`/fhir/Consent/${deny}`, system)).json.meta.versionId).to.equal('1');
      } finally {
        expect((await app.request({ method: 'DELETE', url: `/fhir/Consent/${deny}`, headers: drY })).statusCode).to.equal(204);
      }
    });

    it('a deny of all the patient\'s data hides the Patient too; a nested permit keeps one class open', async () => {
      const deny = await create(consent(ids.alice, { type: 'deny', actor: [actor(`Practitioner/${ids.drX}`)] }));
      try {
        expect((await get(`/fhir/Patient/${ids.alice}`, drX)).statusCode).to.equal(404);
        expect(idsOf((await get(`/fhir/Patient?_id=${ids.alice},${ids.bob}`, drX)).json)).to.equal([ids.bob]);
        expect((await get(`/fhir/MedicationRequest/${ids.aliceMed}`, drX)).statusCode).to.equal(404);
      } finally {
        await app.request({ method: 'DELETE', url: `/fhir/Consent/${deny}`, headers: system });
      }
      const except = await create(consent(ids.alice, { type: 'deny', actor: [actor(`Practitioner/${ids.drX}`)], provision: [{ type: 'permit', class: [VITAL_SIGNS] }] }));
      try {
        expect(idsOf((await get(`/fhir/Observation?subject=Patient/${ids.alice}`, drX)).json)).to.equal([ids.aliceHr]);
        expect((await get(`/fhir/MedicationRequest/${ids.aliceMed}`, drX)).statusCode).to.equal(404);
      } finally {
        await app.request({ method: 'DELETE', url: `/fhir/Consent/${except}`, headers: system });
      }
    });

    it('a deny naming an app by its client_id holds for every token of that app, users and backends alike', async () => {
      const app1 = unique('app').replace(/[^A-Za-z0-9-]/g, '');
      const appActor = { role: { text: 'app' }, reference: { identifier: { system: 'urn:ietf:params:oauth:client-id', value: app1 } } };
      const deny = await create(consent(ids.alice, { type: 'deny', actor: [appActor], class: [VITAL_SIGNS] }));
      try {
        const backend = as((await issueAccessToken(state, { clientId: app1, scopes: ['system/*.rs'] })).accessToken);
        const viaApp = as((await issueAccessToken(state, { clientId: app1, scopes: ['user/*.rs'], fhirUser: `Practitioner/${ids.drY}` })).accessToken);
        const all = `/fhir/Observation?_id=${[ids.aliceHr, ids.aliceLab, ids.bobHr].join(',')}`;
        expect(idsOf((await get(all, backend)).json)).to.equal([ids.aliceLab, ids.bobHr].sort());
        expect(idsOf((await get(all, viaApp)).json)).to.equal([ids.aliceLab, ids.bobHr].sort());
        expect(idsOf((await get(all, drY)).json)).to.equal([ids.aliceHr, ids.aliceLab, ids.bobHr].sort());
      } finally {
        await app.request({ method: 'DELETE', url: `/fhir/Consent/${deny}`, headers: system });
      }
    });

    it('Subscription notifications: the denied clinician is not notified of the denied data', async () => {
      const hook = await subscriber();
      const deny = await create(consent(ids.alice, { type: 'deny', actor: [actor(`Practitioner/${ids.drX}`)], class: [VITAL_SIGNS] }));
      try {
        const sub = await app.request({
          method: 'POST', url: '/fhir/Subscription', headers: drX,
          payload: { resourceType: 'Subscription', status: 'requested', reason: 'test', criteria: 'Observation?code=http://loinc.org|8867-4', channel: { type: 'rest-hook', endpoint: hook.url, payload: 'application/fhir+json' } },
        });
        expect(sub.statusCode, sub.payload).to.equal(201);
        const hidden = await create(observation(ids.alice, '8867-4', 'vital-signs'));
        const shown = await create(observation(ids.bob, '8867-4', 'vital-signs'));
        await until('the notification of Bob\'s reading', () => hook.received.some((r) => r.body.includes(shown)));
        expect(hook.received.some((r) => r.body.includes(hidden))).to.be.false();
        await app.request({ method: 'DELETE', url: `/fhir/Subscription/${sub.json.id}`, headers: system });
      } finally {
        await app.request({ method: 'DELETE', url: `/fhir/Consent/${deny}`, headers: system });
        await hook.close();
      }
    });

    it('a notification waiting for its retry is judged again when sent: after a deny it is not sent, nor its resource', async () => {
      // The hook fails until the Consent is in place, so both notifications wait in the queue for a retry.
      let failing = true;
      const hook = await subscriber(() => (failing ? 503 : 200));
      let deny: string | undefined;
      const sub = await app.request({
        method: 'POST', url: '/fhir/Subscription', headers: drX,
        payload: { resourceType: 'Subscription', status: 'requested', reason: 'test', criteria: `Observation?subject=Patient/${ids.alice}`, channel: { type: 'rest-hook', endpoint: hook.url, payload: 'application/fhir+json' } },
      });
      expect(sub.statusCode, sub.payload).to.equal(201);
      try {
        const vital = await create(observation(ids.alice, '8867-4', 'vital-signs'));
        const lab = await create(observation(ids.alice, '2339-0', 'laboratory'));
        await until('both first attempts, refused by the hook', () => hook.attempts >= 2);
        // Alice withdraws Dr X's access to her vital signs while the notifications wait.
        deny = await create(consent(ids.alice, { type: 'deny', actor: [actor(`Practitioner/${ids.drX}`)], class: [VITAL_SIGNS] }));
        failing = false;
        await until('the laboratory result, still Dr X\'s to read', () => hook.received.some((r) => r.body.includes(lab)));
        await new Promise((r) => setTimeout(r, 1500));
        expect(hook.received.some((r) => r.body.includes(vital)), 'the denied reading was sent').to.be.false();
        expect(hook.received).to.have.length(1);
      } finally {
        await app.request({ method: 'DELETE', url: `/fhir/Subscription/${sub.json.id}`, headers: system });
        if (deny) await app.request({ method: 'DELETE', url: `/fhir/Consent/${deny}`, headers: system });
        await hook.close();
      }
    });
  });
});

const LABORATORY = { system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' };

