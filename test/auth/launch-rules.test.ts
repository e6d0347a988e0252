import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import type { AuthState } from '../../src/auth/state';
import { issueAccessToken } from '../../src/auth/tokens';
import { addUser } from '../../src/auth/users';
import { ensureClient } from '../../src/auth/clients';
import { jose } from '../../src/auth/jose';
import { unique } from '../helpers/server';
import { actor, consent } from '../helpers/consent';
import { Browser, consentFlow, pkce, readForm } from './browser';
import { assertion, backendClient, backendToken, clientCredentials, keyPair, postForm, register, startAuthServer, systemCreator } from './helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const REDIRECT = 'https://app.example/callback';

describe('authorization code flow: every rule, black-box over HTTP', () => {
  let app: Awaited<ReturnType<typeof startAuthServer>>;
  let state: AuthState;
  let publicClient: string;
  let otherClient: string;
  let secretClient: { id: string; secret: string };
  const ids: Record<string, string> = {};
  const clinician = { username: unique('dr'), password: 'correct horse battery' };

  before(async () => {
    app = await startAuthServer();
    state = (app.server.plugins as any)['smart-auth'].state;
    const create = await systemCreator(app);
    ids.practitioner = await create({ resourceType: 'Practitioner', name: [{ family: 'Quinn' }] });
    ids.patientFamily = `Carol${unique()}`;
    ids.patient = await create({ resourceType: 'Patient', name: [{ given: ['Ann'], family: ids.patientFamily }], birthDate: '1941-03-09' });
    ids.obs = await create({
      resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] }, subject: { reference: `Patient/${ids.patient}` },
      effectiveDateTime: '2026-11-02T08:00:00Z', valueQuantity: { value: 70, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
    });
    await addUser(state.db, { ...clinician, fhirUser: `Practitioner/${ids.practitioner}` });
    const scope = 'launch launch/patient openid fhirUser offline_access online_access patient/*.rs user/*.rs';
    const pub = { token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], redirect_uris: [REDIRECT, 'http://localhost:9000/cb'], scope };
    publicClient = (await register(app.origin, pub)).body.client_id;
    otherClient = (await register(app.origin, pub)).body.client_id;
    const sec = await register(app.origin, { ...pub, token_endpoint_auth_method: 'client_secret_basic' });
    secretClient = { id: sec.body.client_id, secret: sec.body.client_secret };
  });
  after(() => app.stop());

  const authorizeUrl = (params: Record<string, string | undefined>) => {
    const url = new URL(`${app.origin}/auth/authorize`);
    for (const [k, v] of Object.entries(params)) if (v !== undefined) url.searchParams.set(k, v);
    return url.toString();
  };
  const goodParams = (clientId: string, challenge: string, extra: Record<string, string | undefined> = {}) => ({
    response_type: 'code', client_id: clientId, redirect_uri: REDIRECT, scope: 'launch/patient openid fhirUser offline_access patient/*.rs',
    state: 'st-123', aud: app.base, code_challenge: challenge, code_challenge_method: 'S256', ...extra,
  });

  /** A new browser at `server`'s login page for the public client: the browser and the page's form. */
  async function loginPageAt(server: { origin: string; base: string }) {
    const { challenge } = pkce();
    const browser = new Browser(server.origin);
    const login = readForm((await browser.visit(`${server.origin}/auth/authorize?${new URLSearchParams({ ...goodParams(publicClient, challenge), aud: server.base })}`)).text);
    return { browser, login };
  }

  /** A code for `clientId` after login, picker and consent. */
  async function code(clientId = publicClient, options: { scope?: string; deselect?: string[]; browser?: Browser } = {}) {
    const { verifier, challenge } = pkce();
    const browser = options.browser ?? new Browser(app.origin);
    const back = await consentFlow(browser, await browser.visit(authorizeUrl(goodParams(clientId, challenge, options.scope ? { scope: options.scope } : {}))), clinician, {
      patient: ids.patient,
      ...(options.deselect ? { deselect: options.deselect } : {}),
    });
    expect(back.searchParams.get('state')).to.equal('st-123');
    return { code: back.searchParams.get('code')!, verifier, challenge, browser };
  }
  const exchange = (params: Record<string, string>, headers: Record<string, string> = {}) =>
    postForm(app.tokenUrl, { grant_type: 'authorization_code', redirect_uri: REDIRECT, ...params }, headers);
  const basic = (id: string, secret: string) => ({ authorization: `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}` });

  describe('authorize: errors about the client or redirect URI are shown, never redirected', () => {
    it('unknown or missing client_id', async () => {
      const { challenge } = pkce();
      for (const client_id of [undefined, 'no-such-client']) {
        const res = await new Browser(app.origin).request(authorizeUrl({ ...goodParams('x', challenge), client_id }));
        expect(res.status).to.equal(400);
        expect(res.headers.get('location')).to.be.null();
        expect(String(res.headers.get('content-type'))).to.startWith('text/html');
      }
    });

    it('redirect URI variants: only the exact registered string', async () => {
      const { challenge } = pkce();
      const variants = [
        undefined, 'https://app.example/callback/', 'https://APP.example/callback', 'https://app.example:443/callback', 'http://app.example/callback',
        'https://app.example/callback?x=1', 'https://app.example/callback#f', 'https://app.example/callbackx', 'https://app.example/', 'https://evil.example/callback',
        'http://localhost:9001/cb', 'http://127.0.0.1:9000/cb',
      ];
      for (const redirect_uri of variants) {
        const res = await new Browser(app.origin).request(authorizeUrl({ ...goodParams(publicClient, challenge), redirect_uri }));
        expect(res.status, String(redirect_uri)).to.equal(400);
        expect(res.headers.get('location'), String(redirect_uri)).to.be.null();
      }
    });
  });

  describe('authorize: other errors redirect with error, error_description and state', () => {
    const redirected = async (params: Record<string, string | undefined>, error: string) => {
      const res = await new Browser(app.origin).request(authorizeUrl(params));
      expect(res.status).to.equal(303);
      const to = new URL(res.headers.get('location')!);
      expect(to.origin + to.pathname).to.equal(REDIRECT);
      expect(to.searchParams.get('error')).to.equal(error);
      expect(to.searchParams.get('error_description')).to.be.a.string();
      expect(to.searchParams.get('code')).to.be.null();
      return to;
    };

    it('a wrong or missing aud never yields a code', async () => {
      const { challenge } = pkce();
      for (const aud of [undefined, 'https://other.example/fhir', `${app.origin}/fhir/Patient`, app.origin]) {
        const to = await redirected(goodParams(publicClient, challenge, { aud }), 'invalid_request');
        expect(to.searchParams.get('state')).to.equal('st-123');
        expect(to.searchParams.get('error_description')).to.match(/aud/);
      }
    });

    it('PKCE: S256 is required, plain and missing challenges are refused', async () => {
      const { challenge } = pkce();
      await redirected(goodParams(publicClient, challenge, { code_challenge_method: 'plain' }), 'invalid_request');
      await redirected(goodParams(publicClient, challenge, { code_challenge_method: undefined }), 'invalid_request');
      await redirected(goodParams(publicClient, challenge, { code_challenge: undefined }), 'invalid_request');
      await redirected(goodParams(publicClient, 'short'), 'invalid_request');
    });

    it('response_type other than code, missing state or scope', async () => {
      const { challenge } = pkce();
      await redirected(goodParams(publicClient, challenge, { response_type: 'token' }), 'unsupported_response_type');
      const noState = await redirected(goodParams(publicClient, challenge, { state: undefined }), 'invalid_request');
      expect(noState.searchParams.get('state')).to.be.null();
      await redirected(goodParams(publicClient, challenge, { scope: undefined }), 'invalid_scope');
    });

    it('an unknown launch id, or one made for another client', async () => {
      const { challenge } = pkce();
      await redirected(goodParams(publicClient, challenge, { launch: 'nope' }), 'invalid_request');
    });

    it('denial at consent redirects access_denied with state', async () => {
      const { challenge } = pkce();
      const browser = new Browser(app.origin);
      const back = await consentFlow(browser, await browser.visit(authorizeUrl(goodParams(publicClient, challenge))), clinician, { patient: ids.patient, decision: 'deny' });
      expect(back.searchParams.get('error')).to.equal('access_denied');
      expect(back.searchParams.get('state')).to.equal('st-123');
      expect(back.searchParams.get('code')).to.be.null();
    });
  });

  describe('the pages', () => {
    it('work as plain forms: one form per page, CSRF token, HttpOnly SameSite session cookie, no-store, not framable', async () => {
      const { challenge } = pkce();
      const browser = new Browser(app.origin);
      const login = await browser.visit(authorizeUrl(goodParams(publicClient, challenge)));
      expect(login.status).to.equal(200);
      expect(login.headers.get('cache-control')).to.equal('no-store');
      expect(login.headers.get('x-frame-options')).to.equal('DENY');
      expect(login.text).to.not.include('<script');
      const form = readForm(login.text);
      expect(form.fields.sort()).to.equal(['csrf', 'password', 'username']);
      const cookie = browser.setCookieHeaders.find((c) => c.startsWith('smart_session='))!;
      expect(cookie).to.match(/HttpOnly/i);
      expect(cookie).to.match(/SameSite=Lax/i);
      expect(cookie).to.not.match(/Secure/i);
      // Without the CSRF token, or with another one: refused.
      const noCsrf = await browser.request(form.action, { form: { username: clinician.username, password: clinician.password } });
      expect(noCsrf.status).to.equal(403);
      const wrongCsrf = await browser.request(form.action, { form: { csrf: 'x'.repeat(43), username: clinician.username, password: clinician.password } });
      expect(wrongCsrf.status).to.equal(403);
      // Another browser (no session) cannot post into this request.
      const stranger = await new Browser(app.origin).request(form.action, { form: { ...form.hidden, username: clinician.username, password: clinician.password } });
      expect(stranger.status).to.equal(400);
      // Logging in replaces the session id (no fixation).
      const before = browser.cookies.get('smart_session');
      const picker = await browser.visit(form.action, { form: { ...form.hidden, username: clinician.username, password: clinician.password } });
      expect(browser.cookies.get('smart_session')).to.not.equal(before);
      const pick = readForm(picker.text);
      expect(pick.radios.patient).to.include(ids.patient);
      const bad = await browser.visit(pick.action, { form: { ...pick.hidden, patient: 'does-not-exist' } });
      expect(bad.status).to.equal(400);
      expect(picker.text).to.include(`Ann ${ids.patientFamily}`);
      const consent = await browser.visit(pick.action, { form: { ...pick.hidden, patient: ids.patient } });
      // The person is named as people name them: name and birth date, not a resource id.
      expect(consent.text).to.include(`<strong>Ann ${ids.patientFamily}</strong>`);
      expect(consent.text).to.include('born 1941-03-09');
      expect(consent.text).to.not.include(ids.patient);
      const c = readForm(consent.text);
      expect(c.checkboxes.scope!.sort()).to.equal(['fhirUser', 'launch/patient', 'offline_access', 'openid', 'patient/*.rs']);
      expect(c.buttons).to.equal([{ name: 'decision', value: 'allow' }, { name: 'decision', value: 'deny' }]);
    });

    it("offers and accepts only the patients the clinician may read: one whose Consent denies this clinician is neither listed nor taken", async () => {
      const create = await systemCreator(app);
      const family = `Hidden${unique()}`.replace(/[^A-Za-z0-9]/g, '');
      const hidden = await create({ resourceType: 'Patient', name: [{ given: ['Hal'], family }] });
      await create(consent(hidden, { type: 'deny', actor: [actor(`Practitioner/${ids.practitioner}`)] }));
      const { challenge } = pkce();
      const browser = new Browser(app.origin);
      const form = readForm((await browser.visit(authorizeUrl(goodParams(publicClient, challenge)))).text);
      const picker = await browser.visit(form.action, { form: { ...form.hidden, username: clinician.username, password: clinician.password } });
      const pick = readForm(picker.text);
      expect(pick.radios.patient).to.include(ids.patient);
      expect(pick.radios.patient).to.not.include(hidden);
      expect(picker.text).to.not.include(family);
      const searched = await browser.visit(`${pick.action.replace(/\/patient$/, '')}?name=${family}`);
      expect(searched.text).to.not.include(family);
      const taken = await browser.visit(pick.action, { form: { ...pick.hidden, patient: hidden } });
      expect(taken.status).to.equal(400);
      expect(taken.text).to.include('Choose one of the patients listed.');
      expect(taken.text).to.not.include(family);
    });

    it('sets Secure (and the __Host- prefix) on the session cookie behind TLS', async () => {
      const tls = await startAuthServer({ BASE_URL: 'https://fhir.example' });
      try {
        const { challenge } = pkce();
        const res = await tls.server.inject({ method: 'GET', url: `/auth/authorize?${new URLSearchParams({ ...goodParams(publicClient, challenge), aud: tls.base })}` });
        expect(res.statusCode).to.equal(303);
        const cookie = ([] as string[]).concat(res.headers['set-cookie'] as string[])[0]!;
        expect(cookie).to.startWith('__Host-smart_session=');
        expect(cookie).to.match(/; Secure/);
        expect(cookie).to.match(/HttpOnly/);
      } finally {
        await tls.stop();
      }
    });

    it('throttles failed logins per account (also with the right password afterwards) and per address', async () => {
      const strict = await startAuthServer({ LOGIN_MAX_FAILURES_PER_ACCOUNT: '3', LOGIN_MAX_FAILURES_PER_ADDRESS: '6' });
      try {
        const user = { username: unique('victim'), password: 'the right password' };
        await addUser(state.db, user);
        const attempt = async (username: string, password: string) => {
          const { browser, login } = await loginPageAt(strict);
          return browser.request(login.action, { form: { ...login.hidden, username, password } });
        };
        for (let i = 0; i < 3; i++) expect((await attempt(user.username, 'wrong guess')).status).to.equal(401);
        expect((await attempt(user.username, user.password)).status).to.equal(429);
        // The same address guessing other accounts is stopped too.
        for (let i = 0; i < 3; i++) await attempt(unique('nobody'), 'wrong guess');
        const other = unique('other');
        await addUser(state.db, { username: other, password: 'fine password' });
        expect((await attempt(other, 'fine password')).status).to.equal(429);
      } finally {
        await strict.stop();
      }
    });

    it("locks a guessing address out of the account, not the account's owner elsewhere; guesses spread over addresses meet the account's ceiling", async () => {
      const strict = await startAuthServer({ LOGIN_MAX_FAILURES_PER_ACCOUNT: '3', LOGIN_MAX_FAILURES_PER_ACCOUNT_TOTAL: '6', LOGIN_MAX_FAILURES_PER_ADDRESS: '100' });
      try {
        const user = { username: unique('owner'), password: 'the right password' };
        await addUser(state.db, user);
        // The login form of a fresh browser, posted from `address` (the socket's address is what is counted).
        const attemptFrom = async (address: string, password: string) => {
          const { browser, login } = await loginPageAt(strict);
          const target = new URL(login.action, strict.origin);
          const res = await strict.server.inject({
            method: 'POST', url: `${target.pathname}${target.search}`, remoteAddress: address,
            headers: { cookie: [...browser.cookies].map(([k, v]) => `${k}=${v}`).join('; '), 'content-type': 'application/x-www-form-urlencoded' },
            payload: new URLSearchParams({ ...login.hidden, username: user.username, password }).toString(),
          });
          return res.statusCode;
        };
        for (let i = 0; i < 3; i++) expect(await attemptFrom('10.9.0.1', 'wrong guess')).to.equal(401);
        expect(await attemptFrom('10.9.0.1', user.password)).to.equal(429);
        expect(await attemptFrom('10.9.0.2', user.password)).to.equal(303);
        // Six failures from two addresses: the seventh attempt, from a third, meets the ceiling.
        for (const address of ['10.9.0.3', '10.9.0.4']) for (let i = 0; i < 3; i++) expect(await attemptFrom(address, 'wrong guess')).to.equal(401);
        expect(await attemptFrom('10.9.0.5', user.password)).to.equal(429);
      } finally {
        await strict.stop();
      }
    });

    it('counts a login attempt before checking the password: 30 guesses at once, 5 checked, 25 refused with Retry-After', async () => {
      const strict = await startAuthServer({ LOGIN_MAX_FAILURES_PER_ACCOUNT: '5', LOGIN_MAX_FAILURES_PER_ADDRESS: '100' });
      try {
        const user = { username: unique('target'), password: 'the right password' };
        await addUser(state.db, user);
        const forms = await Promise.all(Array.from({ length: 30 }, () => loginPageAt(strict)));
        const answers = await Promise.all(forms.map(({ browser, login }) => browser.request(login.action, { form: { ...login.hidden, username: user.username, password: 'wrong guess' } })));
        const statuses = answers.map((a) => a.status).sort();
        expect(statuses.filter((x) => x === 401)).to.have.length(5);
        expect(statuses.filter((x) => x === 429)).to.have.length(25);
        expect(answers.find((a) => a.status === 429)!.headers.get('retry-after')).to.match(/^\d+$/);
      } finally {
        await strict.stop();
      }
    });
  });

  describe('token endpoint: authorization_code', () => {
    it('public client: verifier, redirect URI and client checked; no-store; the code is single-use and a replay revokes its tokens', async () => {
      const c = await code();
      const res = await exchange({ code: c.code, code_verifier: c.verifier, client_id: publicClient });
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
      expect(res.headers.get('cache-control')).to.equal('no-store');
      expect(res.headers.get('pragma')).to.equal('no-cache');
      expect(res.body).to.include({ token_type: 'Bearer', patient: ids.patient, need_patient_banner: true });
      expect(res.body.scope).to.equal('launch/patient openid fhirUser offline_access patient/*.rs');
      expect(res.body.expires_in as number).to.be.most(3600);
      const read = () => fetch(`${app.base}/Observation/${ids.obs}`, { headers: { authorization: `Bearer ${res.body.access_token}` } });
      expect((await read()).status).to.equal(200);
      const replay = await exchange({ code: c.code, code_verifier: c.verifier, client_id: publicClient });
      expect(replay.status).to.equal(400);
      expect(replay.body.error).to.equal('invalid_grant');
      expect((await read()).status).to.equal(401);
      const refreshed = await postForm(app.tokenUrl, { grant_type: 'refresh_token', refresh_token: res.body.refresh_token, client_id: publicClient });
      expect(refreshed.body.error).to.equal('invalid_grant');
    });

    it('missing verifier, wrong verifier, verifier equal to the challenge: invalid_grant', async () => {
      for (const verifier of [undefined, 'w'.repeat(43), 'challenge'] as const) {
        const c = await code();
        const params: Record<string, string> = { code: c.code, client_id: publicClient };
        if (verifier === 'challenge') params.code_verifier = c.challenge;
        else if (verifier) params.code_verifier = verifier;
        const res = await exchange(params);
        expect(res.status, String(verifier)).to.equal(400);
        expect(res.body.error).to.equal('invalid_grant');
        // Burnt: the right verifier does not revive it.
        expect((await exchange({ code: c.code, code_verifier: c.verifier, client_id: publicClient })).body.error).to.equal('invalid_grant');
      }
    });

    it("another client's code, a changed redirect URI, an unknown client, an expired code", async () => {
      const a = await code();
      const stolen = await exchange({ code: a.code, code_verifier: a.verifier, client_id: otherClient });
      expect(stolen.status).to.equal(400);
      expect(stolen.body.error).to.equal('invalid_grant');

      const b = await code();
      const moved = await exchange({ code: b.code, code_verifier: b.verifier, client_id: publicClient, redirect_uri: 'http://localhost:9000/cb' });
      expect(moved.body.error).to.equal('invalid_grant');

      const c = await code();
      const unknown = await exchange({ code: c.code, code_verifier: c.verifier, client_id: 'no-such-client' });
      expect(unknown.status).to.equal(401);
      expect(unknown.body.error).to.equal('invalid_client');

      const d = await code();
      await state.db.query("UPDATE auth_code SET expires_at = now() - interval '1 second' WHERE used_at IS NULL");
      const expired = await exchange({ code: d.code, code_verifier: d.verifier, client_id: publicClient });
      expect(expired.body.error).to.equal('invalid_grant');
      expect(expired.body.error_description).to.match(/expired/);
    });

    it('confidential client: client_secret_basic; a wrong secret is 401 with WWW-Authenticate: Basic', async () => {
      const c = await code(secretClient.id);
      const wrong = await exchange({ code: c.code, code_verifier: c.verifier }, basic(secretClient.id, 'not-the-secret'));
      expect(wrong.status).to.equal(401);
      expect(wrong.body.error).to.equal('invalid_client');
      expect(String(wrong.headers.get('www-authenticate'))).to.startWith('Basic');
      const c2 = await code(secretClient.id);
      const bare = await exchange({ code: c2.code, code_verifier: c2.verifier, client_id: secretClient.id });
      expect(bare.status).to.equal(401);
      const c3 = await code(secretClient.id);
      const ok = await exchange({ code: c3.code, code_verifier: c3.verifier }, basic(secretClient.id, secretClient.secret));
      expect(ok.status, JSON.stringify(ok.body)).to.equal(200);
    });

    it('confidential client: private_key_jwt', async () => {
      const key = await keyPair('ES384');
      const reg = await register(app.origin, {
        token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [key.publicJwk] }, grant_types: ['authorization_code'], redirect_uris: [REDIRECT], scope: 'launch/patient patient/*.rs',
      });
      const c = await code(reg.body.client_id, { scope: 'launch/patient patient/*.rs' });
      const res = await exchange({
        code: c.code, code_verifier: c.verifier,
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: await assertion(key, reg.body.client_id, app.tokenUrl),
      });
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
      expect(res.body.scope).to.equal('launch/patient patient/*.rs');
      expect(res.body.refresh_token).to.be.undefined();
      expect(res.body.id_token).to.be.undefined();
    });

    it('a deselected scope is not granted and is refused at the resource server', async () => {
      const c = await code(publicClient, { scope: 'launch/patient patient/Patient.rs patient/Observation.rs', deselect: ['patient/Observation.rs'] });
      const res = await exchange({ code: c.code, code_verifier: c.verifier, client_id: publicClient });
      expect(res.body.scope).to.equal('launch/patient patient/Patient.rs');
      const auth = { authorization: `Bearer ${res.body.access_token}` };
      expect((await fetch(`${app.base}/Patient/${ids.patient}`, { headers: auth })).status).to.equal(200);
      expect((await fetch(`${app.base}/Observation/${ids.obs}`, { headers: auth })).status).to.equal(403);
      expect((await fetch(`${app.base}/Observation?patient=${ids.patient}`, { headers: auth })).status).to.equal(403);
    });
  });

  describe('refresh tokens', () => {
    const tokens = async (scope = 'launch/patient openid fhirUser offline_access patient/*.rs') => {
      const c = await code(publicClient, { scope });
      const res = await exchange({ code: c.code, code_verifier: c.verifier, client_id: publicClient });
      expect(res.status).to.equal(200);
      return res.body as Record<string, string>;
    };
    const refresh = (params: Record<string, string>) => postForm(app.tokenUrl, { grant_type: 'refresh_token', ...params });

    it('rotate on use: the old one dies, and reusing it revokes the grant', async () => {
      const t = await tokens();
      const r1 = await refresh({ refresh_token: t.refresh_token!, client_id: publicClient });
      expect(r1.status, JSON.stringify(r1.body)).to.equal(200);
      expect(r1.headers.get('cache-control')).to.equal('no-store');
      expect(r1.body.refresh_token).to.not.equal(t.refresh_token);
      expect(r1.body.patient).to.equal(ids.patient);
      expect(r1.body.scope).to.equal(t.scope);
      const reuse = await refresh({ refresh_token: t.refresh_token!, client_id: publicClient });
      expect(reuse.body.error).to.equal('invalid_grant');
      // The reuse killed the newer refresh token and access token of the same grant.
      expect((await refresh({ refresh_token: r1.body.refresh_token, client_id: publicClient })).body.error).to.equal('invalid_grant');
      expect((await fetch(`${app.base}/Patient/${ids.patient}`, { headers: { authorization: `Bearer ${r1.body.access_token}` } })).status).to.equal(401);
    });

    it('a public client may leave client_id out (its refresh token names it); a confidential one must still authenticate', async () => {
      const t = await tokens();
      const bare = await refresh({ refresh_token: t.refresh_token! });
      expect(bare.status, JSON.stringify(bare.body)).to.equal(200);
      expect(bare.body.access_token).to.be.a.string();
      const c = await code(secretClient.id);
      const secret = await exchange({ code: c.code, code_verifier: c.verifier }, basic(secretClient.id, secretClient.secret));
      expect(secret.status, JSON.stringify(secret.body)).to.equal(200);
      const unauthenticated = await refresh({ refresh_token: secret.body.refresh_token });
      expect(unauthenticated.status).to.equal(401);
      expect(unauthenticated.body.error).to.equal('invalid_client');
      expect((await refresh({ refresh_token: 'not-a-token' })).status).to.equal(401);
    });

    it('bound to its client', async () => {
      const t = await tokens();
      const res = await refresh({ refresh_token: t.refresh_token!, client_id: otherClient });
      expect(res.status).to.equal(400);
      expect(res.body.error).to.equal('invalid_grant');
    });

    it('scope may narrow, never widen', async () => {
      const t = await tokens();
      const wider = await refresh({ refresh_token: t.refresh_token!, client_id: publicClient, scope: 'patient/*.rs user/*.rs' });
      expect(wider.status).to.equal(400);
      expect(wider.body.error).to.equal('invalid_scope');
      const narrower = await refresh({ refresh_token: t.refresh_token!, client_id: publicClient, scope: 'patient/*.rs' });
      expect(narrower.status, JSON.stringify(narrower.body)).to.equal(200);
      expect(narrower.body.scope).to.equal('patient/*.rs');
      expect(narrower.body.id_token).to.be.undefined();
      // The rotated refresh token keeps the original grant.
      const full = await refresh({ refresh_token: narrower.body.refresh_token, client_id: publicClient });
      expect(full.body.scope).to.equal(t.scope);
    });

    it("a registration narrowed since the grant narrows what a refresh issues; one that allows none of it refuses the refresh", async () => {
      const scope = 'launch/patient openid fhirUser offline_access patient/*.rs';
      const pub = { token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], redirect_uris: [REDIRECT], scope };
      const client = (await register(app.origin, pub)).body.client_id as string;
      const c = await code(client, { scope });
      const t = (await exchange({ code: c.code, code_verifier: c.verifier, client_id: client })).body as Record<string, string>;
      expect(t.scope).to.equal(scope);
      // The operator re-registers the client with Observations only (as a shipped client is on every start).
      await ensureClient(state.db, client, { ...pub, scope: 'launch/patient openid fhirUser offline_access patient/Observation.rs' });
      const narrowed = await refresh({ refresh_token: t.refresh_token!, client_id: client });
      expect(narrowed.status, JSON.stringify(narrowed.body)).to.equal(200);
      expect(narrowed.body.scope).to.equal('launch/patient openid fhirUser offline_access patient/Observation.rs');
      const auth = { authorization: `Bearer ${narrowed.body.access_token}` };
      expect((await fetch(`${app.base}/Observation/${ids.obs}`, { headers: auth })).status).to.equal(200);
      expect((await fetch(`${app.base}/Patient/${ids.patient}`, { headers: auth })).status).to.equal(403);
      // Asking for the whole grant again gets no more than the registration either.
      const asked = await refresh({ refresh_token: narrowed.body.refresh_token, client_id: client, scope });
      expect(asked.status, JSON.stringify(asked.body)).to.equal(200);
      expect(asked.body.scope).to.equal('launch/patient openid fhirUser offline_access patient/Observation.rs');
      await ensureClient(state.db, client, { ...pub, scope: 'launch/patient openid fhirUser offline_access user/Practitioner.rs' });
      const none = await refresh({ refresh_token: asked.body.refresh_token, client_id: client });
      expect(none.status).to.equal(400);
      expect(none.body.error).to.equal('invalid_scope');
    });

    it('scope may narrow within one granted scope (RFC 6749 §6): the token is that narrow, the refresh token keeps the grant', async () => {
      const t = await tokens();
      expect(t.scope).to.equal('launch/patient openid fhirUser offline_access patient/*.rs');
      const narrower = await refresh({ refresh_token: t.refresh_token!, client_id: publicClient, scope: 'patient/Observation.rs' });
      expect(narrower.status, JSON.stringify(narrower.body)).to.equal(200);
      expect(narrower.body.scope).to.equal('patient/Observation.rs');
      expect(jose().decodeJwt(narrower.body.access_token).scope).to.equal('patient/Observation.rs');
      expect(narrower.body.patient).to.equal(ids.patient);
      const auth = { authorization: `Bearer ${narrower.body.access_token}` };
      expect((await fetch(`${app.base}/Observation/${ids.obs}`, { headers: auth })).status).to.equal(200);
      expect((await fetch(`${app.base}/Observation?patient=${ids.patient}`, { headers: auth })).status).to.equal(200);
      expect((await fetch(`${app.base}/Patient/${ids.patient}`, { headers: auth })).status).to.equal(403);
      // Fewer permissions, and v1 spellings of a subset of them, are narrower too.
      let rt: string = narrower.body.refresh_token;
      for (const scope of ['patient/Observation.r', 'patient/Observation.read', 'patient/Patient.s openid', 'patient/Observation.rs?category=vital-signs']) {
        const res = await refresh({ refresh_token: rt, client_id: publicClient, scope });
        expect(res.status, `${scope}: ${JSON.stringify(res.body)}`).to.equal(200);
        expect(res.body.scope).to.equal(scope);
        rt = res.body.refresh_token;
      }
      // The rotated refresh token still holds the whole original grant.
      const full = await refresh({ refresh_token: rt, client_id: publicClient, scope: t.scope });
      expect(full.status, JSON.stringify(full.body)).to.equal(200);
      expect(full.body.scope).to.equal(t.scope);
      expect((await fetch(`${app.base}/Patient/${ids.patient}`, { headers: { authorization: `Bearer ${full.body.access_token}` } })).status).to.equal(200);
    });

    it('anything the grant does not cover stays 400 invalid_scope, and the refresh token stays usable', async () => {
      const t = await tokens('launch/patient offline_access patient/*.read patient/Observation.rs?category=vital-signs');
      expect(t.scope).to.equal('launch/patient offline_access patient/*.read patient/Observation.rs?category=vital-signs');
      for (const scope of [
        'patient/Observation.c', 'patient/Observation.rsu', 'patient/*.cruds', 'patient/Observation.write', 'patient/*.*', // more permissions
        'user/Observation.rs', 'system/Observation.r', // another context
        'openid', 'fhirUser', 'online_access', 'launch', 'profile', // identity and launch scopes not granted
        'patient/Observation.sr', 'Observation.rs', 'nonsense', // not scopes at all
      ]) {
        const res = await refresh({ refresh_token: t.refresh_token!, client_id: publicClient, scope: `patient/Patient.rs ${scope}` });
        expect(res.status, scope).to.equal(400);
        expect(res.body.error, scope).to.equal('invalid_scope');
        expect(res.body.error_description, scope).to.include(scope);
      }
      // A granted granular restriction is kept: dropping it, or trading it for another, is wider.
      const granular = await tokens('launch/patient offline_access patient/Observation.rs?category=vital-signs');
      for (const scope of ['patient/Observation.rs', 'patient/*.rs', 'patient/Observation.r?category=laboratory', 'patient/Observation.r?code=8867-4']) {
        const res = await refresh({ refresh_token: granular.refresh_token!, client_id: publicClient, scope });
        expect(res.status, scope).to.equal(400);
        expect(res.body.error, scope).to.equal('invalid_scope');
      }
      const kept = await refresh({ refresh_token: granular.refresh_token!, client_id: publicClient, scope: 'patient/Observation.s?category=vital-signs' });
      expect(kept.status, JSON.stringify(kept.body)).to.equal(200);
      expect(kept.body.scope).to.equal('patient/Observation.s?category=vital-signs');
      // The refused attempts did not spend the first grant's refresh token.
      const after = await refresh({ refresh_token: t.refresh_token!, client_id: publicClient, scope: 'patient/Observation.rs launch/patient' });
      expect(after.status, JSON.stringify(after.body)).to.equal(200);
      expect(after.body.scope).to.equal('patient/Observation.rs launch/patient');
    });

    it('revoked at /auth/revoke: the refresh token and its access tokens stop working', async () => {
      const t = await tokens();
      const notTheirs = await postForm(`${app.origin}/auth/revoke`, { token: t.refresh_token!, client_id: otherClient });
      expect(notTheirs.status).to.equal(400);
      const revoked = await postForm(`${app.origin}/auth/revoke`, { token: t.refresh_token!, client_id: publicClient });
      expect(revoked.status).to.equal(200);
      expect((await refresh({ refresh_token: t.refresh_token!, client_id: publicClient })).body.error).to.equal('invalid_grant');
      expect((await fetch(`${app.base}/Patient/${ids.patient}`, { headers: { authorization: `Bearer ${t.access_token}` } })).status).to.equal(401);
    });

    it('online_access ones end with the login session', async () => {
      const c = await code(publicClient, { scope: 'launch/patient online_access patient/*.rs' });
      const t = (await exchange({ code: c.code, code_verifier: c.verifier, client_id: publicClient })).body;
      expect(t.refresh_token).to.be.a.string();
      expect((await refresh({ refresh_token: t.refresh_token, client_id: publicClient })).status).to.equal(200);
      await state.db.query("UPDATE auth_session SET expires_at = now() - interval '1 second' WHERE username = $1", [clinician.username]);
      const after = await refresh({ refresh_token: t.refresh_token, client_id: publicClient });
      expect(after.body.error).to.equal('invalid_grant');
    });
  });

  describe('OpenID Connect', () => {
    it('id_token: RS256, kid in the published JWKS, iss, sub, aud = client id, exp, iat, fhirUser readable with the token', async () => {
      const config = (await (await fetch(`${app.origin}/auth/.well-known/openid-configuration`)).json()) as Record<string, any>;
      expect(config.issuer).to.equal(`${app.origin}/auth`);
      for (const field of ['authorization_endpoint', 'token_endpoint', 'jwks_uri', 'response_types_supported', 'subject_types_supported', 'id_token_signing_alg_values_supported']) {
        expect(config[field], field).to.exist();
      }
      expect(config.id_token_signing_alg_values_supported).to.include('RS256');
      const c = await code();
      const t = (await exchange({ code: c.code, code_verifier: c.verifier, client_id: publicClient })).body;
      const header = jose().decodeProtectedHeader(t.id_token);
      expect(header.alg).to.equal('RS256');
      const jwks = (await (await fetch(config.jwks_uri)).json()) as { keys: Array<{ kid: string }> };
      expect(jwks.keys.map((k) => k.kid)).to.include(header.kid!);
      const { payload } = await jose().jwtVerify(t.id_token, jose().createRemoteJWKSet(new URL(config.jwks_uri)), { issuer: config.issuer, audience: publicClient, algorithms: ['RS256'] });
      expect(payload.sub).to.equal(clinician.username);
      expect(payload.exp! > payload.iat!).to.be.true();
      expect(payload.fhirUser).to.equal(`${app.base}/Practitioner/${ids.practitioner}`);
      // The id_token is no access token.
      expect((await fetch(`${app.base}/Patient/${ids.patient}`, { headers: { authorization: `Bearer ${t.id_token}` } })).status).to.equal(401);

      // Introspection shows the same iss, sub and fhirUser.
      const key = await keyPair();
      const rs = await backendClient(app.origin, 'system/*.rs', [key], { can_introspect: true });
      const intro = await postForm(`${app.origin}/auth/introspect`, {
        token: t.access_token, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: await assertion(key, rs, app.tokenUrl),
      });
      expect(intro.body).to.include({ active: true, iss: payload.iss, sub: payload.sub, fhirUser: `Practitioner/${ids.practitioner}`, patient: ids.patient, client_id: publicClient });
    });

    it('discovery advertises the launch capabilities and endpoints', async () => {
      const d = (await (await fetch(`${app.base}/.well-known/smart-configuration`)).json()) as Record<string, any>;
      expect(d.authorization_endpoint).to.equal(`${app.origin}/auth/authorize`);
      expect(d.grant_types_supported).to.include(['authorization_code', 'refresh_token', 'client_credentials']);
      expect(d.response_types_supported).to.equal(['code']);
      expect(d.code_challenge_methods_supported).to.equal(['S256']);
      expect(d.capabilities).to.include([
        'launch-ehr', 'launch-standalone', 'authorize-post', 'client-public', 'client-confidential-symmetric', 'sso-openid-connect', 'context-banner', 'context-style',
        'context-ehr-patient', 'context-standalone-patient', 'permission-offline', 'permission-patient', 'permission-user',
      ]);
    });

    it('authorize by POST works like GET', async () => {
      const { verifier, challenge } = pkce();
      const browser = new Browser(app.origin);
      const first = await browser.visit(`${app.origin}/auth/authorize`, { form: goodParams(publicClient, challenge) });
      const back = await consentFlow(browser, first, clinician, { patient: ids.patient });
      const res = await exchange({ code: back.searchParams.get('code')!, code_verifier: verifier, client_id: publicClient });
      expect(res.status).to.equal(200);
    });
  });

  describe('EHR launch requests', () => {
    const launch = (token: string | undefined, body: unknown) =>
      fetch(`${app.origin}/auth/launch`, { method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body) });

    it('need a system token or a clinician token; a patient-confined token or none is refused', async () => {
      expect((await launch(undefined, { client_id: publicClient, patient: `Patient/${ids.patient}` })).status).to.equal(401);
      const confined = (await issueAccessToken(state, { clientId: publicClient, scopes: ['patient/*.rs'], patient: ids.patient, subject: 'someone' })).accessToken;
      expect((await launch(confined, { client_id: publicClient, patient: `Patient/${ids.patient}` })).status).to.equal(403);
      const clinicianToken = (await issueAccessToken(state, { clientId: publicClient, scopes: ['user/*.rs'], subject: clinician.username, fhirUser: `Practitioner/${ids.practitioner}` })).accessToken;
      const res = await launch(clinicianToken, { client_id: secretClient.id, patient: `Patient/${ids.patient}` });
      // secretClient has no initiate_login_uri.
      expect(res.status).to.equal(400);
    });

    it("gives no context of a patient whose Consent denies the signed-in clinician: access_denied, the patient never named", async () => {
      const create = await systemCreator(app);
      const family = `Launched${unique()}`.replace(/[^A-Za-z0-9]/g, '');
      const hidden = await create({ resourceType: 'Patient', name: [{ given: ['Lia'], family }], birthDate: '1938-07-01' });
      await create(consent(hidden, { type: 'deny', actor: [actor(`Practitioner/${ids.practitioner}`)] }));
      const key = await keyPair();
      const ehrClient = await backendClient(app.origin, 'system/Patient.rs', [key]);
      const ehr = (await clientCredentials(app.tokenUrl, await assertion(key, ehrClient, app.tokenUrl), 'system/Patient.rs')).body.access_token as string;
      const appClient = (await register(app.origin, {
        token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], redirect_uris: [REDIRECT], initiate_login_uri: 'https://app.example/launch', scope: 'launch openid fhirUser patient/*.rs user/*.rs',
      })).body.client_id as string;
      // The EHR (a system token) may launch for any patient; the denied clinician then signs in.
      const launched = (await (await launch(ehr, { client_id: appClient, patient: `Patient/${hidden}` })).json()) as { launch: string };
      const { challenge } = pkce();
      const browser = new Browser(app.origin);
      const form = readForm((await browser.visit(authorizeUrl(goodParams(appClient, challenge, { launch: launched.launch, scope: 'launch patient/*.rs user/*.rs' })))).text);
      const next = await browser.visit(form.action, { form: { ...form.hidden, username: clinician.username, password: clinician.password } });
      expect(next.text).to.not.include(family);
      expect(next.text).to.not.include('1938-07-01');
      expect(next.redirect?.searchParams.get('error'), next.text).to.equal('access_denied');
      expect(next.redirect!.searchParams.get('state')).to.equal('st-123');
      expect(next.redirect!.searchParams.has('code')).to.be.false();
      // The clinician's own launch request for that patient is refused as if it did not exist.
      const clinicianToken = (await issueAccessToken(state, { clientId: publicClient, scopes: ['user/*.rs'], subject: clinician.username, fhirUser: `Practitioner/${ids.practitioner}` })).accessToken;
      const own = await launch(clinicianToken, { client_id: appClient, patient: `Patient/${hidden}` });
      expect(own.status).to.equal(400);
      expect(await own.text()).to.equal(JSON.stringify({ error: 'invalid_request', error_description: `Patient/${hidden} does not exist` }));
    });

    it('refuses unknown patients and clients; a launch id is bound to its client and short-lived', async () => {
      const key = await keyPair();
      const ehrClient = await backendClient(app.origin, 'system/Patient.rs', [key]);
      const ehr = (await clientCredentials(app.tokenUrl, await assertion(key, ehrClient, app.tokenUrl), 'system/Patient.rs')).body.access_token as string;
      const appClient = (await register(app.origin, {
        token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], redirect_uris: [REDIRECT], initiate_login_uri: 'https://app.example/launch', scope: 'launch patient/*.rs',
      })).body.client_id as string;
      expect((await launch(ehr, { client_id: appClient, patient: 'Patient/nope' })).status).to.equal(400);
      expect((await launch(ehr, { client_id: 'nope', patient: `Patient/${ids.patient}` })).status).to.equal(400);
      const ok = (await (await launch(ehr, { client_id: appClient, patient: `Patient/${ids.patient}` })).json()) as { launch: string; url: string };
      expect(ok.url).to.startWith('https://app.example/launch?');
      const { challenge } = pkce();
      // Another client presenting this launch id.
      const res = await new Browser(app.origin).request(authorizeUrl(goodParams(publicClient, challenge, { launch: ok.launch, scope: 'launch patient/*.rs' })));
      expect(new URL(res.headers.get('location')!).searchParams.get('error')).to.equal('invalid_request');
      // Expired.
      await state.db.query("UPDATE auth_launch SET expires_at = now() - interval '1 second' WHERE id = $1", [ok.launch]);
      const late = await new Browser(app.origin).request(authorizeUrl(goodParams(appClient, challenge, { launch: ok.launch, scope: 'launch patient/*.rs' })));
      expect(new URL(late.headers.get('location')!).searchParams.get('error')).to.equal('invalid_request');
      const backend = await backendToken(app, 'system/Observation.rs');
      expect((await launch(backend.token, { client_id: appClient, patient: `Patient/${ids.patient}` })).status).to.equal(403);
    });
  });
});
