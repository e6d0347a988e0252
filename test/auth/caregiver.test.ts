import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import type { AuthState } from '../../src/auth/state';
import { issueAccessToken } from '../../src/auth/tokens';
import { addUser } from '../../src/auth/users';
import { actor, consent, observation, VITAL_SIGNS } from '../helpers/consent';
import { unique } from '../helpers/server';
import { Browser, consentFlow, pkce } from './browser';
import { postForm, register, startAuthServer, systemCreator } from './helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const REDIRECT = 'https://caregiver-app.example/callback';

/**
 * A caregiver signs in through the real SMART flow (authorize, login page, consent page, code,
 * token with PKCE) and reads over a real port: exactly the linked patient's granted data,
 * read-only, until the grant is withdrawn, which the token already issued feels at once.
 */
describe('a caregiver (fhirUser RelatedPerson) through the SMART flow', () => {
  let app: Awaited<ReturnType<typeof startAuthServer>>;
  let state: AuthState;
  let clientId: string;
  let create: (body: Record<string, unknown>) => Promise<string>;
  let systemHeaders: Record<string, string>;
  const ids: Record<string, string> = {};
  const carol = { username: unique('carol'), password: 'caregiver password 1' };
  const drifter = { username: unique('drift'), password: 'caregiver password 2' };

  before(async () => {
    app = await startAuthServer();
    state = (app.server.plugins as any)['smart-auth'].state;
    create = await systemCreator(app);
    ids.alice = await create({ resourceType: 'Patient', name: [{ family: `Alice${unique()}` }] });
    ids.bob = await create({ resourceType: 'Patient', name: [{ family: `Bob${unique()}` }] });
    ids.carol = await create({ resourceType: 'RelatedPerson', active: true, patient: { reference: `Patient/${ids.alice}` }, name: [{ family: 'Carol' }] });
    ids.drifter = await create({ resourceType: 'RelatedPerson', active: false, patient: { reference: `Patient/${ids.alice}` }, name: [{ family: 'Former' }] });
    ids.aliceHr = await create(observation(ids.alice, '8867-4', 'vital-signs'));
    ids.aliceLab = await create(observation(ids.alice, '2339-0', 'laboratory'));
    ids.bobHr = await create(observation(ids.bob, '8867-4', 'vital-signs'));
    ids.aliceMed = await create({
      resourceType: 'MedicationRequest', status: 'active', intent: 'order', subject: { reference: `Patient/${ids.alice}` }, medicationCodeableConcept: { text: 'metformin' },
    });
    await addUser(state.db, { ...carol, fhirUser: `RelatedPerson/${ids.carol}` });
    await addUser(state.db, { ...drifter, fhirUser: `RelatedPerson/${ids.drifter}` });
    const registered = await register(app.origin, {
      client_name: 'Family app', token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], redirect_uris: [REDIRECT],
      scope: 'launch/patient openid fhirUser offline_access patient/*.cruds user/*.cruds',
    });
    expect(registered.status).to.equal(201);
    clientId = registered.body.client_id;
    systemHeaders = { authorization: `Bearer ${(await issueAccessToken(state, { clientId: 'setup', scopes: ['system/*.cruds'] })).accessToken}`, 'content-type': 'application/fhir+json' };
  });
  after(() => app.stop());

  const fhir = async (path: string, token: string, init: { method?: string; body?: unknown } = {}) => {
    const res = await fetch(`${app.base}/${path}`, {
      method: init.method ?? 'GET',
      headers: { authorization: `Bearer ${token}`, ...(init.body ? { 'content-type': 'application/fhir+json' } : {}) },
      ...(init.body ? { body: JSON.stringify(init.body) } : {}),
    });
    return { status: res.status, body: (await res.json()) as any };
  };
  const idsOf = (bundle: fhir4.Bundle) => (bundle.entry ?? []).map((e) => e.resource!.id!).sort();

  /** Authorize, sign in, consent, exchange the code: the token response, or the error redirect. */
  async function signIn(user: { username: string; password: string }, scope: string): Promise<{ token?: Record<string, any>; offered: string[]; redirect: URL }> {
    const { verifier, challenge } = pkce();
    const url = new URL(`${app.origin}/auth/authorize`);
    const params = { response_type: 'code', client_id: clientId, redirect_uri: REDIRECT, scope, state: 's1', aud: app.base, code_challenge: challenge, code_challenge_method: 'S256' };
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
    const browser = new Browser(app.origin);
    let offered: string[] = [];
    const redirect = await consentFlow(browser, await browser.visit(url.toString()), user, { onConsent: (s) => (offered = s) });
    const code = redirect.searchParams.get('code');
    if (!code) return { offered, redirect };
    const res = await postForm(app.tokenUrl, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier, client_id: clientId });
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    return { token: res.body, offered, redirect };
  }

  it('signs in with the linked patient as context, patient/ scopes only; sees that patient\'s vital signs and nothing else; never writes; loses access at once on withdrawal', async () => {
    const grant = consent(ids.alice, { type: 'permit', actor: [actor(`RelatedPerson/${ids.carol}`)], class: [VITAL_SIGNS], period: { end: '2999-12-31' } });
    const grantId = await create(grant);
    const { token, offered } = await signIn(carol, 'launch/patient openid fhirUser offline_access patient/*.cruds user/*.cruds');
    // No patient picker: the context is the link's. No user/ scopes: one patient's compartment is all a caregiver may reach.
    expect(offered.sort()).to.equal(['fhirUser', 'launch/patient', 'offline_access', 'openid', 'patient/*.cruds']);
    expect(token!.patient).to.equal(ids.alice);
    const access = token!.access_token as string;

    expect(idsOf((await fhir('Observation', access)).body)).to.equal([ids.aliceHr]);
    expect(idsOf((await fhir(`Observation?patient=${ids.bob}`, access)).body)).to.equal([]);
    expect((await fhir(`Observation/${ids.bobHr}`, access)).status).to.equal(404);
    expect((await fhir(`Observation/${ids.aliceLab}`, access)).status).to.equal(404);
    expect((await fhir(`Patient/${ids.alice}`, access)).status).to.equal(200);
    expect((await fhir(`Patient/${ids.bob}`, access)).status).to.equal(404);
    const meds = await fhir('MedicationRequest', access);
    expect(meds.status).to.equal(403);
    expect(meds.body.resourceType).to.equal('OperationOutcome');
    const write = await fhir('Observation', access, { method: 'POST', body: observation(ids.alice, '8867-4', 'vital-signs') });
    expect(write.status).to.equal(403);
    expect(write.body.resourceType).to.equal('OperationOutcome');
    expect((await fhir(`Observation/${ids.aliceHr}`, access, { method: 'DELETE' })).status).to.equal(403);

    // Withdrawn by the clinician: the same token, at once.
    const withdraw = await fetch(`${app.base}/Consent/${grantId}`, { method: 'PUT', headers: systemHeaders, body: JSON.stringify({ ...grant, id: grantId, status: 'inactive' }) });
    expect(withdraw.status).to.equal(200);
    expect((await fhir('Observation', access)).status).to.equal(403);
    expect((await fhir(`Observation/${ids.aliceHr}`, access)).status).to.equal(403);
    expect((await fhir(`Patient/${ids.alice}`, access)).status).to.equal(403);
    // A refreshed token is no wider.
    const refreshed = await postForm(app.tokenUrl, { grant_type: 'refresh_token', refresh_token: token!.refresh_token, client_id: clientId });
    expect(refreshed.status).to.equal(200);
    expect((await fhir('Observation', refreshed.body.access_token)).status).to.equal(403);
  });

  it('a caregiver whose link is inactive is refused at sign-in (access_denied), with no code', async () => {
    const { token, redirect } = await signIn(drifter, 'launch/patient openid fhirUser patient/*.rs');
    expect(token).to.be.undefined();
    expect(redirect.searchParams.get('error')).to.equal('access_denied');
    expect(redirect.searchParams.get('code')).to.be.null();
  });

  it('a caregiver user needs a RelatedPerson identity of the right form', async () => {
    await expect(addUser(state.db, { username: unique('bad'), password: 'long enough pw', fhirUser: 'RelatedPerson/' })).to.reject(/fhir-user/);
  });
});
