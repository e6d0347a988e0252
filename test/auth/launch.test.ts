import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import type { AuthState } from '../../src/auth/state';
import { addUser } from '../../src/auth/users';
import { jose } from '../../src/auth/jose';
import { unique } from '../helpers/server';
import { Browser, consentFlow, readForm } from './browser';
import { backendToken, register, startAuthServer, systemCreator } from './helpers';

// SMART's own JavaScript client, through its Node entry point (server-side apps).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const smart = require('fhirclient/lib/entry/node') as (req: unknown, res: unknown, storage: unknown) => {
  authorize(options: Record<string, unknown>): Promise<unknown>;
  ready(): Promise<FhirClient>;
};

interface FhirClient {
  patient: { id: string | null; read(): Promise<fhir4.Patient> };
  state: { tokenResponse: Record<string, any> };
  request<T = any>(url: string): Promise<T>;
  getFhirUser(): string | null;
  getIdToken(): Record<string, unknown> | null;
}

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const APP = 'http://app.test';

/**
 * The app side of a launch, as a server-side app would run fhirclient: one session storage, and
 * request/response objects for the app's own pages (the app needs no real port: the browser
 * stops at the redirect to it and hands the URL over).
 */
class App {
  private readonly session = new Map<string, unknown>();
  private readonly storage = {
    get: async (k: string) => this.session.get(k),
    set: async (k: string, v: unknown) => {
      this.session.set(k, v);
      return v;
    },
    unset: async (k: string) => this.session.delete(k),
  };

  private exchange(url: string): { req: unknown; res: unknown; location: () => string } {
    const u = new URL(url, APP);
    let location = '';
    const req = { url: `${u.pathname}${u.search}`, headers: { host: u.host }, socket: {} };
    const res = {
      writeHead: (_status: number, headers: Record<string, string>) => {
        location = headers.location ?? '';
      },
      end: () => {},
    };
    return { req, res, location: () => location };
  }

  /** Runs the app's launch page; returns where it sends the browser (the authorize URL). */
  async launch(url: string, options: Record<string, unknown>): Promise<string> {
    const x = this.exchange(url);
    await smart(x.req, x.res, this.storage).authorize({ redirectUri: `${APP}/callback`, ...options });
    return x.location();
  }

  /** Runs the app's redirect page: fhirclient exchanges the code and returns its client. */
  async ready(url: URL): Promise<FhirClient> {
    const x = this.exchange(url.toString());
    return smart(x.req, x.res, this.storage).ready();
  }
}

describe('launches with the fhirclient library (SMART App Launch 2.2)', () => {
  let app: Awaited<ReturnType<typeof startAuthServer>>;
  let state: AuthState;
  let clientId: string;
  const ids: Record<string, string> = {};
  const clinician = { username: unique('dr'), password: 'correct horse battery' };
  const patientUser = { username: unique('pat'), password: 'another fine password' };

  before(async () => {
    app = await startAuthServer();
    state = (app.server.plugins as any)['smart-auth'].state;
    const create = await systemCreator(app);
    ids.practitioner = await create({ resourceType: 'Practitioner', name: [{ family: 'House', given: ['Gregory'] }] });
    ids.alice = await create({ resourceType: 'Patient', name: [{ family: `Alice${unique()}` }], birthDate: '1941-03-02' });
    ids.bob = await create({ resourceType: 'Patient', name: [{ family: `Bob${unique()}` }] });
    for (const [patient, value] of [[ids.alice, 72], [ids.alice, 75], [ids.bob, 90]] as const) {
      await create({
        resourceType: 'Observation', status: 'final',
        category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
        code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] }, subject: { reference: `Patient/${patient}` },
        effectiveDateTime: '2026-11-02T08:00:00Z', valueQuantity: { value, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
      });
    }
    await addUser(state.db, { ...clinician, fhirUser: `Practitioner/${ids.practitioner}` });
    await addUser(state.db, { ...patientUser, fhirUser: `Patient/${ids.alice}` });
    const registered = await register(app.origin, {
      client_name: 'Vitals viewer',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      redirect_uris: [`${APP}/callback`],
      initiate_login_uri: `${APP}/launch`,
      scope: 'launch launch/patient openid fhirUser profile offline_access online_access patient/*.rs user/*.rs',
    });
    expect(registered.status).to.equal(201);
    clientId = registered.body.client_id;
  });
  after(() => app.stop());

  it('standalone launch by a clinician: PKCE, login, patient picker and consent over HTTP, then the context Patient and its Observations', async () => {
    const smartApp = new App();
    const authorizeUrl = await smartApp.launch(`/launch?iss=${encodeURIComponent(app.base)}`, {
      clientId,
      scope: 'launch/patient openid fhirUser offline_access patient/*.rs',
      pkceMode: 'required',
    });
    const url = new URL(authorizeUrl);
    expect(url.origin + url.pathname).to.equal(`${app.origin}/auth/authorize`);
    expect(url.searchParams.get('code_challenge_method')).to.equal('S256');
    expect(url.searchParams.get('aud')).to.equal(app.base);

    const browser = new Browser(app.origin);
    const back = await consentFlow(browser, await browser.visit(authorizeUrl), clinician, { patient: ids.alice });
    expect(back.origin + back.pathname).to.equal(`${APP}/callback`);
    expect(back.searchParams.get('code')).to.be.a.string();
    expect(back.searchParams.get('iss')).to.equal(`${app.origin}/auth`);

    const client = await smartApp.ready(back);
    const token = client.state.tokenResponse;
    expect(token.token_type).to.equal('Bearer');
    expect(token.patient).to.equal(ids.alice);
    expect(token.need_patient_banner).to.equal(true);
    expect(token.expires_in as number).to.be.most(3600);
    expect(token.scope.split(' ').sort()).to.equal(['fhirUser', 'launch/patient', 'offline_access', 'openid', 'patient/*.rs']);
    expect(token.refresh_token).to.be.a.string();
    expect(token.id_token).to.be.a.string();
    expect(client.getFhirUser()).to.equal(`Practitioner/${ids.practitioner}`);

    const patient = await client.patient.read();
    expect(patient.id).to.equal(ids.alice);
    const bundle = await client.request<fhir4.Bundle>(`Observation?patient=${client.patient.id}`);
    expect(bundle.entry!.length).to.equal(2);
    expect(bundle.entry!.every((e) => (e.resource as fhir4.Observation).subject!.reference === `Patient/${ids.alice}`)).to.be.true();
    // The patient/ token stays in Alice's compartment.
    const other = await fetch(`${app.base}/Patient/${ids.bob}`, { headers: { authorization: `Bearer ${token.access_token}` } });
    expect([403, 404]).to.include(other.status);
    const style = await fetch(token.smart_style_url);
    expect(style.status).to.equal(200);
    expect(((await style.json()) as Record<string, string>).color_background).to.be.a.string();
  });

  it('EHR launch: an EHR system token asks for a launch, fhirclient follows the launch URL and gets that context', async () => {
    const ehr = await backendToken(app, 'system/Patient.rs');
    const launchRes = await fetch(`${app.origin}/auth/launch`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ehr.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ client_id: clientId, patient: `Patient/${ids.bob}`, encounter: 'Encounter/enc-1' }),
    });
    expect(launchRes.status).to.equal(200);
    const launch = (await launchRes.json()) as { launch: string; url: string };
    const launchUrl = new URL(launch.url);
    expect(launchUrl.origin + launchUrl.pathname).to.equal(`${APP}/launch`);
    expect(launchUrl.searchParams.get('iss')).to.equal(app.base);
    expect(launchUrl.searchParams.get('launch')).to.equal(launch.launch);

    const smartApp = new App();
    const authorizeUrl = await smartApp.launch(launch.url, { clientId, scope: 'launch openid fhirUser patient/*.rs', pkceMode: 'required' });
    expect(new URL(authorizeUrl).searchParams.get('launch')).to.equal(launch.launch);
    const browser = new Browser(app.origin);
    let offered: string[] = [];
    const back = await consentFlow(browser, await browser.visit(authorizeUrl), clinician, { onConsent: (s) => (offered = s) });
    expect(offered.sort()).to.equal(['fhirUser', 'launch', 'openid', 'patient/*.rs']);
    const client = await smartApp.ready(back);
    expect(client.state.tokenResponse.patient).to.equal(ids.bob);
    expect(client.state.tokenResponse.encounter).to.equal('enc-1');
    expect(client.state.tokenResponse.need_patient_banner).to.equal(false);
    expect(client.state.tokenResponse.refresh_token).to.be.undefined();
    expect((await client.patient.read()).id).to.equal(ids.bob);
    const bundle = await client.request<fhir4.Bundle>(`Observation?patient=${ids.bob}`);
    expect(bundle.entry!.length).to.equal(1);

    // The launch id was spent on that grant.
    const again = await new App().launch(launch.url, { clientId, scope: 'launch patient/*.rs', pkceMode: 'required' });
    const b2 = new Browser(app.origin);
    const refused = await consentFlow(b2, await b2.visit(again), clinician).catch((e: Error) => e);
    expect(refused).to.be.an.instanceof(URL);
    expect((refused as URL).searchParams.get('error')).to.equal('invalid_request');
  });

  it('audits a refused login and the accepted one (BALP Login, DCM 110122) with the user each claimed', async () => {
    const smartApp = new App();
    const authorizeUrl = await smartApp.launch(`/launch?iss=${encodeURIComponent(app.base)}`, { clientId, scope: 'launch/patient openid fhirUser patient/*.rs', pkceMode: 'required' });
    const browser = new Browser(app.origin);
    const login = readForm((await browser.visit(authorizeUrl)).text);
    expect(login.fields).to.include('password');
    // Earlier tests signed this user in too: only this test's logins count.
    const since = new Date().toISOString();
    const wrong = await browser.visit(login.action, { form: { ...login.hidden, username: clinician.username, password: 'not the password' } });
    expect(wrong.status).to.be.within(400, 499);
    const right = await browser.visit(login.action, { form: { ...login.hidden, username: clinician.username, password: clinician.password } });
    expect(right.status).to.be.below(400);

    const { token } = await backendToken(app, 'system/AuditEvent.rs');
    const logins = async () => {
      const res = await app.request({ method: 'GET', url: `/fhir/AuditEvent?type=110114&subtype=110122&date=ge${since}&_count=100`, headers: { authorization: `Bearer ${token}` } });
      expect(res.statusCode, res.payload).to.equal(200);
      const who = (e: fhir4.AuditEvent) => e.agent.find((a) => a.requestor)?.who?.identifier?.value;
      return ((res.json as fhir4.Bundle).entry ?? []).map((e) => e.resource as fhir4.AuditEvent).filter((e) => who(e) === clinician.username);
    };
    let found = await logins();
    // Written by the read recorder, at most its flush interval after the response.
    for (let i = 0; i < 40 && found.length < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      found = await logins();
    }
    const refused = found.find((e) => e.outcome === '4');
    expect(refused, JSON.stringify(found)).to.exist();
    expect(refused!.outcomeDesc).to.equal(`login refused (${wrong.status})`);
    expect(refused!.subtype).to.equal([{ system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110122', display: 'Login' }]);
    expect(refused!.action).to.equal('E');
    const accepted = found.find((e) => e.outcome === '0');
    expect(accepted, JSON.stringify(found)).to.exist();
    expect(accepted!.outcomeDesc).to.not.exist();
    // The user is the requestor; the client it came through carries the network address.
    expect(accepted!.agent.find((a) => a.who?.identifier?.value === clientId)!.network?.address).to.equal('127.0.0.1');
  });

  it('a patient user gets their own Patient as context, without a picker', async () => {
    const smartApp = new App();
    const authorizeUrl = await smartApp.launch(`/launch?iss=${encodeURIComponent(app.base)}`, {
      clientId,
      scope: 'launch/patient openid fhirUser patient/*.rs user/*.rs',
      pkceMode: 'required',
    });
    const browser = new Browser(app.origin);
    let offered: string[] = [];
    const back = await consentFlow(browser, await browser.visit(authorizeUrl), patientUser, { onConsent: (s) => (offered = s) });
    // user/ scopes are not offered to a patient: their access is their compartment.
    expect(offered.sort()).to.equal(['fhirUser', 'launch/patient', 'openid', 'patient/*.rs']);
    const client = await smartApp.ready(back);
    expect(client.patient.id).to.equal(ids.alice);
    expect(client.getFhirUser()).to.equal(`Patient/${ids.alice}`);
    const bundle = await client.request<fhir4.Bundle>('Observation');
    expect(bundle.entry!.length).to.equal(2);
    const claims = jose().decodeJwt(client.state.tokenResponse.id_token);
    expect(claims.fhirUser).to.equal(`${app.base}/Patient/${ids.alice}`);
  });
});
