import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { connect } from 'node:net';
import WebSocket from 'ws';
import { until } from '../helpers/hook';
import { examplePlanFor } from '../helpers/monitoring-plan';
import { unique } from '../helpers/server';
import { smtpSink } from '../helpers/smtp';
import { type SecuredServer, startSecuredServer } from '../security/helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const LOINC = 'http://loinc.org';
const DOMAIN = 'clinic.example.org';

/** A blood-pressure panel; the example plan's systolic limits are 90–140 (critical 80–180). */
const bloodPressure = (patient: string, systolic: number) => ({
  resourceType: 'Observation', status: 'final', code: { coding: [{ system: LOINC, code: '85354-9' }] }, subject: { reference: `Patient/${patient}` },
  effectiveDateTime: new Date().toISOString(),
  component: [
    { code: { coding: [{ system: LOINC, code: '8480-6' }] }, valueQuantity: { value: systolic, unit: 'mm[Hg]', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } },
    { code: { coding: [{ system: LOINC, code: '8462-4' }] }, valueQuantity: { value: 88, unit: 'mm[Hg]', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } },
  ],
});

/** The body's sentences, without the lines of ids and times (which may hold any digits). */
const prose = (raw: string) => raw.slice(raw.indexOf('\r\n\r\n')).split(/\r?\n/).filter((l) => !/^(Open it|Since:|Subscription\/)/.test(l)).join('\n');

/** Issue 22: a limit breach reaches the physician by e-mail and on an open dashboard's socket, under the recipient's grant. */
describe('alert channels: email and websocket', () => {
  let app: SecuredServer;
  let smtp: Awaited<ReturnType<typeof smtpSink>>;
  const family = unique('Alertson');
  const mrn = unique('MRN');
  let alice: string;
  let bob: string;

  before(async () => {
    smtp = await smtpSink();
    app = await startSecuredServer({ SMTP_URL: smtp.url, ALERT_EMAIL_DOMAINS: DOMAIN, ALERT_EMAIL_FROM: `rpm@${DOMAIN}`, SUBSCRIPTION_RETRY_BASE: '100ms' }, { listen: true });
    alice = await app.create({ resourceType: 'Patient', name: [{ family, given: ['Alice'] }], identifier: [{ system: 'urn:example:mrn', value: mrn }] });
    bob = await app.create({ resourceType: 'Patient', name: [{ family: 'Other', given: ['Bob'] }] });
    const start = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
    for (const p of [alice, bob]) await app.create(examplePlanFor(p, start) as never);
  });
  after(async () => {
    await app?.stop();
    await smtp?.close();
  });

  const emailSubscription = (endpoint: string, extra: Record<string, unknown> = {}) => ({
    resourceType: 'Subscription', status: 'requested', reason: 'alerts by e-mail', criteria: 'Flag?status=active',
    channel: { type: 'email', endpoint, ...extra },
  });
  /** A clinician's app launched for Alice: it may see Alice's Flags and nobody else's. */
  const aliceClinician = () => app.as('user/Subscription.cruds patient/Flag.rs', { patient: alice, fhirUser: 'Practitioner/dr-mail' });

  it('accepts a mailto: in an allowed domain only, one plain address, no headers, text/plain or no payload', async () => {
    const headers = await aliceClinician();
    for (const [endpoint, extra, expression] of [
      [`mailto:dr@elsewhere.example.com`, {}, 'Subscription.channel.endpoint'],
      [`mailto:dr@${DOMAIN}?cc=someone@elsewhere.example.com`, {}, 'Subscription.channel.endpoint'],
      [`mailto:dr@${DOMAIN},other@${DOMAIN}`, {}, 'Subscription.channel.endpoint'],
      [`https://${DOMAIN}/hook`, {}, 'Subscription.channel.endpoint'],
      [`mailto:dr@${DOMAIN}`, { header: ['X-A: b'] }, 'Subscription.channel.header'],
      [`mailto:dr@${DOMAIN}`, { payload: 'application/fhir+json' }, 'Subscription.channel.payload'],
    ] as const) {
      const res = await app.request({ method: 'POST', url: '/fhir/Subscription', headers, payload: emailSubscription(endpoint, extra) });
      expect(res.statusCode, endpoint).to.equal(422);
      expect(res.json.issue[0].expression).to.equal([expression]);
    }
    const unknown = await app.request({ method: 'POST', url: '/fhir/Subscription', headers, payload: { ...emailSubscription(`mailto:dr@${DOMAIN}`), channel: { type: 'sms', endpoint: 'tel:+15551234' } } });
    expect(unknown.statusCode).to.equal(422);
  });

  it('mails a breach within seconds to the subscriber whose grant covers the patient, with a link and no patient details', async () => {
    const headers = await aliceClinician();
    const to = `${unique('dr')}@${DOMAIN}`;
    const sub = await app.request({ method: 'POST', url: '/fhir/Subscription', headers, payload: emailSubscription(`mailto:${to}`) });
    expect(sub.statusCode, sub.payload).to.equal(201);
    expect(sub.json.status).to.equal('active');
    try {
      // Bob's breach is outside the subscriber's grant: no mail for it.
      await app.create(bloodPressure(bob, 199));
      const sent = Date.now();
      await app.create(bloodPressure(alice, 150));
      const mail = await until('the alert e-mail', () => smtp.mails.find((m) => m.to.includes(to)), 5000);
      expect(mail.at - sent).to.be.below(5000);
      const flags = (await app.request({ method: 'GET', url: `/fhir/Flag?patient=${alice}&status=active`, headers: app.system })).json;
      const flagId = flags.entry[0].resource.id as string;
      expect(mail.text).to.contain('Subject: Monitoring alert\r\n');
      expect(mail.text).to.contain(`/app#/flag/${flagId}`);
      for (const phi of [family, mrn, alice, 'Alice', 'Systolic', 'above']) expect(mail.text, phi).to.not.contain(phi);
      expect(prose(mail.text)).to.not.contain('150');
      await new Promise((r) => setTimeout(r, 300));
      expect(smtp.mails.filter((m) => m.to.includes(to))).to.have.length(1);
    } finally {
      await app.request({ method: 'DELETE', url: `/fhir/Subscription/${sub.json.id}`, headers: app.system });
    }
  });

  it('with ALERT_EMAIL_PHI=minimal and a text/plain payload, says what kind of alert, still without name, identifier or value', async () => {
    const alerts = app.ctx.config.alerts as { emailPhi: string };
    alerts.emailPhi = 'minimal';
    const headers = await aliceClinician();
    const to = `${unique('dr')}@${DOMAIN}`;
    const sub = await app.request({ method: 'POST', url: '/fhir/Subscription', headers, payload: emailSubscription(`mailto:${to}`, { payload: 'text/plain' }) });
    expect(sub.statusCode, sub.payload).to.equal(201);
    try {
      await app.create(bloodPressure(alice, 85));
      const mail = await until('the alert e-mail', () => smtp.mails.find((m) => m.to.includes(to)), 5000);
      expect(mail.text).to.contain('Subject: Monitoring alert: Measurement below limit');
      expect(mail.text).to.contain('/app#/flag/');
      for (const phi of [family, mrn, alice]) expect(mail.text, phi).to.not.contain(phi);
      expect(prose(mail.text)).to.contain('Alert: Measurement below limit: Systolic blood pressure');
      expect(prose(mail.text)).to.not.contain('85');
    } finally {
      alerts.emailPhi = 'none';
      await app.request({ method: 'DELETE', url: `/fhir/Subscription/${sub.json.id}`, headers: app.system });
    }
  });

  it('retries an e-mail the SMTP server deferred, marks the Subscription in error meanwhile, and delivers it once', async () => {
    const headers = await aliceClinician();
    const to = `${unique('dr')}@${DOMAIN}`;
    smtp.refuse(to);
    const sub = await app.request({ method: 'POST', url: '/fhir/Subscription', headers, payload: emailSubscription(`mailto:${to}`) });
    expect(sub.statusCode, sub.payload).to.equal(201);
    try {
      await app.create(bloodPressure(alice, 151));
      await until('two deferrals', () => smtp.refused.filter((r) => r === to).length >= 2);
      const failing = (await app.request({ method: 'GET', url: `/fhir/Subscription/${sub.json.id}`, headers: app.system })).json;
      expect(failing.status).to.equal('error');
      expect(failing.error).to.contain('451');
      smtp.refuse(undefined);
      await until('the e-mail after the retries', () => smtp.mails.find((m) => m.to.includes(to)));
      await until('the Subscription active again', async () => (await app.request({ method: 'GET', url: `/fhir/Subscription/${sub.json.id}`, headers: app.system })).json.status === 'active');
      expect(smtp.mails.filter((m) => m.to.includes(to))).to.have.length(1);
    } finally {
      smtp.refuse(undefined);
      await app.request({ method: 'DELETE', url: `/fhir/Subscription/${sub.json.id}`, headers: app.system });
    }
  });

  it('pings a bound dashboard socket on a breach of a patient in its grant; binding needs a one-time token of the Subscription\'s owner', async () => {
    const headers = await aliceClinician();
    const sub = await app.request({
      method: 'POST', url: '/fhir/Subscription', headers,
      payload: { resourceType: 'Subscription', status: 'requested', reason: 'dashboard', criteria: 'Flag?status=active', channel: { type: 'websocket' }, end: new Date(Date.now() + 3600_000).toISOString() },
    });
    expect(sub.statusCode, sub.payload).to.equal(201);
    const id = sub.json.id as string;
    const someoneElse = await app.as('user/Subscription.cruds patient/Flag.rs', { patient: alice, fhirUser: 'Practitioner/dr-other' });
    // Another user's Subscription is an unknown id to them (decision 032).
    expect((await app.request({ method: 'GET', url: `/fhir/Subscription/${id}/$get-ws-binding-token`, headers: someoneElse })).statusCode).to.equal(404);
    const binding = await app.request({ method: 'GET', url: `/fhir/Subscription/${id}/$get-ws-binding-token`, headers });
    expect(binding.statusCode, binding.payload).to.equal(200);
    const param = (name: string) => binding.json.parameter.find((p: any) => p.name === name);
    const token = param('token').valueString as string;
    const url = param('websocket-url').valueUrl as string;
    expect(url).to.equal(`${app.ctx.baseUrl.replace(/\/fhir$/, '').replace('http', 'ws')}/websocket`);
    const metadata = (await app.request({ method: 'GET', url: '/fhir/metadata' })).json;
    expect(metadata.rest[0].extension).to.contain({ url: 'http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket', valueUri: url });

    const ws = new WebSocket(url);
    const messages: string[] = [];
    ws.on('message', (m) => messages.push(String(m)));
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    try {
      ws.send(`bind ${id}`);
      await until('the refusal of a bare bind', () => messages.find((m) => m.startsWith('error bind needs')));
      ws.send(`bind-with-token ${token}`);
      await until('bound', () => messages.includes(`bound ${id}`));
      ws.send(`bind-with-token ${token}`);
      await until('the refusal of a used token', () => messages.find((m) => m.startsWith('error the binding token')));

      await app.create(bloodPressure(bob, 201));
      await app.create(bloodPressure(alice, 203));
      await until('the ping', () => messages.includes(`ping ${id}`), 5000);
      await new Promise((r) => setTimeout(r, 300));
      // One ping, for Alice's Flag; Bob's is outside the grant.
      expect(messages.filter((m) => m.startsWith('ping'))).to.equal([`ping ${id}`]);
    } finally {
      ws.close();
      await app.request({ method: 'DELETE', url: `/fhir/Subscription/${id}`, headers: app.system });
    }
  });

  it('ends a websocket binding when the access token that asked for it expires, and closes the socket it leaves unbound', async () => {
    // A token with two seconds to live (exp is whole seconds: one to two seconds from now).
    const headers = await app.as('user/Subscription.cruds patient/Flag.rs', { patient: alice, fhirUser: 'Practitioner/dr-mail', lifetime: 2 });
    const sub = await app.request({
      method: 'POST', url: '/fhir/Subscription', headers,
      payload: { resourceType: 'Subscription', status: 'requested', reason: 'dashboard', criteria: 'Flag?status=active', channel: { type: 'websocket' }, end: new Date(Date.now() + 3600_000).toISOString() },
    });
    expect(sub.statusCode, sub.payload).to.equal(201);
    const id = sub.json.id as string;
    const binding = await app.request({ method: 'GET', url: `/fhir/Subscription/${id}/$get-ws-binding-token`, headers });
    expect(binding.statusCode, binding.payload).to.equal(200);
    const token = binding.json.parameter.find((p: any) => p.name === 'token').valueString as string;
    const ws = new WebSocket(`${app.ctx.baseUrl.replace(/\/fhir$/, '').replace('http', 'ws')}/websocket`);
    const messages: string[] = [];
    ws.on('message', (m) => messages.push(String(m)));
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    try {
      ws.send(`bind-with-token ${token}`);
      await until('bound', () => messages.includes(`bound ${id}`));
      await until('unbound at the token\'s expiry', () => messages.find((m) => m.startsWith(`unbound ${id}`)), 5000);
      expect(await closed).to.equal(1008);
    } finally {
      ws.close();
      await app.request({ method: 'DELETE', url: `/fhir/Subscription/${id}`, headers: app.system });
    }
  });

  it('serves a websocket upgrade anywhere else as the plain request it also is (here: 401, no token)', async () => {
    const ws = new WebSocket(`${app.ctx.baseUrl.replace(/\/fhir$/, '').replace('http', 'ws')}/fhir/Patient`);
    const status = await new Promise<number>((resolve) => {
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.once('error', () => resolve(-1));
    });
    expect(status).to.equal(401);
  });

  it('closes a socket that breaks the protocol (an oversized message, an unmasked frame) and goes on serving', async () => {
    const origin = app.ctx.baseUrl.replace(/\/fhir$/, '');
    // An oversized message, before any token: the upgrade needs none.
    const big = new WebSocket(`${origin.replace('http', 'ws')}/websocket`);
    await new Promise((resolve) => big.once('open', resolve));
    const closed = new Promise<number>((resolve) => big.once('close', (code) => resolve(code)));
    big.send('x'.repeat(64 * 1024));
    expect(await closed).to.equal(1009);
    // An unmasked frame from a client, by hand: ws (the library) always masks.
    const { port, hostname } = new URL(origin);
    const raw = connect(Number(port), hostname);
    await new Promise((resolve) => raw.once('connect', resolve));
    raw.write(`GET /websocket HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    await new Promise((resolve) => raw.once('data', resolve));
    raw.write(Buffer.from([0x81, 0x02, 0x68, 0x69]));
    await new Promise((resolve) => raw.once('close', resolve));
    expect((await fetch(`${origin}/fhir/metadata`)).status).to.equal(200);
  });

  it('the binding-token operation is for websocket Subscriptions only', async () => {
    const headers = await aliceClinician();
    const sub = await app.request({ method: 'POST', url: '/fhir/Subscription', headers, payload: emailSubscription(`mailto:x@${DOMAIN}`) });
    try {
      const res = await app.request({ method: 'GET', url: `/fhir/Subscription/${sub.json.id}/$get-ws-binding-token`, headers });
      expect(res.statusCode).to.equal(422);
    } finally {
      await app.request({ method: 'DELETE', url: `/fhir/Subscription/${sub.json.id}`, headers: app.system });
    }
  });
});
