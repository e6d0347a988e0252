import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { findClient, removeClient } from '../../src/auth/clients';
import type { AuthState } from '../../src/auth/state';
import { addUser, removeUser } from '../../src/auth/users';
import { issueAccessToken } from '../../src/auth/tokens';
import { backendToken, codeFlowTokens, postForm, register, startAuthServer, systemCreator } from '../auth/helpers';
import { subscriber, until } from '../helpers/hook';
import { unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const DASHBOARD = 'clinician-dashboard';
/** What the probe's clinician was granted through the shipped dashboard client. */
const SCOPE = 'online_access user/Flag.rus user/Subscription.cr user/Observation.rs';
/** Long enough for a notification that was going to come to have come (deliveries poll every second). */
const QUIET_MS = 1500;

type AuthServer = Awaited<ReturnType<typeof startAuthServer>>;

/**
 * Decision 032: a Subscription acts under the grant that set it only while that grant lives. A
 * clinician signs in through the shipped dashboard client, subscribes to a patient's
 * Observations with a rest-hook, and the grant ends (revocation, user removal, the login session's
 * end, client removal): the next Observation is not sent, queued ones are not delivered, and the
 * Subscription is turned off with the reason. All over HTTP, on a real port.
 */
describe('Subscriptions live with their grant', () => {
  let app: AuthServer;
  let state: AuthState;
  let system: (body: Record<string, unknown>) => Promise<string>;
  let practitioner: string;
  let patient: string;
  let reader: string;

  before(async () => {
    // The turn-off job runs often here so that its effect can be awaited.
    app = await startAuthServer({ SUBSCRIPTION_ALLOW_PRIVATE_NETWORKS: 'true', SUBSCRIPTION_RETRY_BASE: '100ms', SUBSCRIPTION_END_CHECK_INTERVAL: '200ms' });
    state = (app.server.plugins as any)['smart-auth'].state;
    system = await systemCreator(app);
    practitioner = await system({ resourceType: 'Practitioner', name: [{ family: 'Probe' }] });
    patient = await system({ resourceType: 'Patient', name: [{ family: unique('pat') }] });
    reader = (await issueAccessToken(state, { clientId: 'setup', scopes: ['system/Subscription.rs'] })).accessToken;
  });
  after(() => app?.stop());

  /** A fresh clinician login, signed in through the dashboard client (or `clientId`, a public one): its tokens. */
  async function signIn(clientId = DASHBOARD): Promise<{ username: string; access: string; refresh: string }> {
    const user = { username: unique('dr').replace(/[^A-Za-z0-9._@-]/g, ''), password: 'a long enough password' };
    await addUser(state.db, { ...user, fhirUser: `Practitioner/${practitioner}` });
    // The dashboard lives on the server's own origin, at /app.
    const client = { clientId, redirectUri: (await findClient(state.db, clientId))!.redirectUris[0]!, appPath: '/app' };
    const tokens = await codeFlowTokens(app, client, SCOPE, user);
    expect(tokens.scope.split(' ').sort()).to.equal(SCOPE.split(' ').sort());
    return { username: user.username, access: tokens.access_token, refresh: tokens.refresh_token! };
  }

  const subscribe = async (access: string, endpoint: string) => {
    const res = await fetch(`${app.base}/Subscription`, {
      method: 'POST',
      headers: { authorization: `Bearer ${access}`, 'content-type': 'application/fhir+json' },
      body: JSON.stringify({
        resourceType: 'Subscription', status: 'requested', reason: 'probe', criteria: `Observation?patient=Patient/${patient}`,
        channel: { type: 'rest-hook', endpoint, payload: 'application/fhir+json' },
      }),
    });
    const body = (await res.json()) as fhir4.Subscription;
    expect(res.status, JSON.stringify(body)).to.equal(201);
    expect(body.status).to.equal('active');
    return body.id!;
  };

  const reading = (value: number) => system({
    resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] }, subject: { reference: `Patient/${patient}` },
    effectiveDateTime: new Date().toISOString(), valueQuantity: { value, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
  });

  const fhirStatus = async (access: string) => (await fetch(`${app.base}/Observation?patient=Patient/${patient}`, { headers: { authorization: `Bearer ${access}` } })).status;

  const storedSubscription = async (id: string) =>
    (await app.request({ method: 'GET', url: `/fhir/Subscription/${id}`, headers: { authorization: `Bearer ${reader}` } })).json as fhir4.Subscription;

  /**
   * A notification reaches the hook while the grant lives; after `end`, the next reading is not
   * sent, and the Subscription is turned off saying why.
   */
  async function silencedBy(end: (grant: { username: string; access: string; refresh: string }) => Promise<void>, reason: RegExp, clientId = DASHBOARD) {
    const hook = await subscriber();
    try {
      const grant = await signIn(clientId);
      const id = await subscribe(grant.access, hook.url);
      const before = await reading(70);
      await until('the notification while the grant lives', () => hook.received.some((r) => r.body.includes(before)));
      await end(grant);
      const after = await reading(71);
      await new Promise((r) => setTimeout(r, QUIET_MS));
      expect(hook.received.some((r) => r.body.includes(after)), 'notified after the grant ended').to.be.false();
      const off = await until('the Subscription turned off', async () => {
        const sub = await storedSubscription(id);
        return sub.status === 'off' ? sub : undefined;
      });
      expect(off.error).to.match(reason);
      return grant;
    } finally {
      await hook.close();
    }
  }

  it('revoking the refresh token (POST /auth/revoke) ends the grant: no notification after, and the Subscription is off', async () => {
    await silencedBy(async ({ access, refresh }) => {
      const revoked = await postForm(`${app.origin}/auth/revoke`, { token: refresh, client_id: DASHBOARD });
      expect(revoked.status).to.equal(200);
      expect(await fhirStatus(access)).to.equal(401);
    }, /grant it was set under has ended: the grant was revoked/);
  });

  it('removing the user ends the grant: tokens refused, no notification after, the Subscription off', async () => {
    await silencedBy(async ({ username, access, refresh }) => {
      expect(await removeUser(state, username)).to.be.true();
      expect(await fhirStatus(access)).to.equal(401);
      const refreshed = await postForm(`${app.origin}/auth/token`, { grant_type: 'refresh_token', refresh_token: refresh, client_id: DASHBOARD });
      expect(refreshed.status).to.equal(400);
    }, /grant it was set under has ended/);
  });

  it('the end of the online_access login session ends the grant', async () => {
    await silencedBy(async ({ username }) => {
      // As when the session expires (AUTH_SESSION_LIFETIME).
      await state.db.query('UPDATE auth_session SET expires_at = now() WHERE username = $1', [username]);
    }, /login session of this online_access grant has ended/);
  });

  it('a websocket Subscription whose grant ended gives no binding token, so a client signed in again sets a new one', async () => {
    const grant = await signIn();
    const bindingToken = async (access: string, id: string) =>
      fetch(`${app.base}/Subscription/${id}/$get-ws-binding-token`, { headers: { authorization: `Bearer ${access}` } });
    const created = await fetch(`${app.base}/Subscription`, {
      method: 'POST',
      headers: { authorization: `Bearer ${grant.access}`, 'content-type': 'application/fhir+json' },
      body: JSON.stringify({ resourceType: 'Subscription', status: 'requested', reason: 'live alerts', criteria: 'Flag?status=active', channel: { type: 'websocket' } }),
    });
    expect(created.status).to.equal(201);
    const id = ((await created.json()) as fhir4.Subscription).id!;
    expect((await bindingToken(grant.access, id)).status).to.equal(200);
    // The login session ends; the same user signs in again (the dashboard keeps the id for the tab).
    await state.db.query('UPDATE auth_session SET expires_at = now() WHERE username = $1', [grant.username]);
    const again = await codeFlowTokens(app, { clientId: DASHBOARD, redirectUri: (await findClient(state.db, DASHBOARD))!.redirectUris[0]!, appPath: '/app' }, SCOPE,
      { username: grant.username, password: 'a long enough password' });
    const refused = await bindingToken(again.access_token, id);
    expect(refused.status).to.equal(422);
    expect(((await refused.json()) as fhir4.OperationOutcome).issue[0]!.diagnostics).to.match(/grant that has ended|is off/);
  });

  it("removing the client ends its users' grants", async () => {
    const registered = await register(app.origin, {
      client_name: 'another clinician app', token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'],
      redirect_uris: ['http://app.test/callback'], scope: SCOPE,
    });
    expect(registered.status).to.equal(201);
    await silencedBy(async ({ access }) => {
      expect(await removeClient(state, registered.body.client_id)).to.be.true();
      expect(await fhirStatus(access)).to.equal(401);
    }, /grant it was set under has ended: client .* is no longer registered/, registered.body.client_id);
  });

  it('a notification queued before the grant ended is not delivered after, on a node that did not end it', async () => {
    let up = false;
    const hook = await subscriber(() => (up ? 200 : 503));
    const other = await startAuthServer({ SUBSCRIPTION_ALLOW_PRIVATE_NETWORKS: 'true', SUBSCRIPTION_RETRY_BASE: '100ms' });
    try {
      const grant = await signIn();
      await subscribe(grant.access, hook.url);
      await reading(72);
      await until('a failed attempt (queued for retry)', () => hook.attempts >= 1);
      // Revoked at the other node: the grant lives in the shared database, not in a node.
      expect((await postForm(`${other.origin}/auth/revoke`, { token: grant.refresh, client_id: DASHBOARD })).status).to.equal(200);
      const attempts = hook.attempts;
      up = true;
      await new Promise((r) => setTimeout(r, QUIET_MS));
      expect(hook.received).to.equal([]);
      expect(hook.attempts).to.equal(attempts);
    } finally {
      await other.stop();
      await hook.close();
    }
  });

  it('a backend client lives by its registration: narrowed scopes narrow what it hears, removal silences it', async () => {
    const hook = await subscriber();
    try {
      const backend = await backendToken(app, 'system/Subscription.cr system/Observation.rs system/Flag.rs');
      const sub = await fetch(`${app.base}/Subscription`, {
        method: 'POST',
        headers: { authorization: `Bearer ${backend.token}`, 'content-type': 'application/fhir+json' },
        body: JSON.stringify({
          resourceType: 'Subscription', status: 'requested', reason: 'probe', criteria: `Observation?patient=Patient/${patient}`,
          channel: { type: 'rest-hook', endpoint: hook.url, payload: 'application/fhir+json' },
        }),
      });
      expect(sub.status).to.equal(201);
      const first = await reading(73);
      await until('the backend notification', () => hook.received.some((r) => r.body.includes(first)));
      // The registration no longer allows Observations (as a new release's shipped registration may narrow it).
      await state.db.query("UPDATE auth_client SET scope = 'system/Subscription.cr system/Flag.rs' WHERE client_id = $1", [backend.clientId]);
      const narrowed = await reading(74);
      await new Promise((r) => setTimeout(r, QUIET_MS));
      expect(hook.received.some((r) => r.body.includes(narrowed)), 'notified beyond the registration').to.be.false();
      await state.db.query("UPDATE auth_client SET scope = 'system/Subscription.cr system/Observation.rs system/Flag.rs' WHERE client_id = $1", [backend.clientId]);
      const restored = await reading(75);
      await until('the notification under the registration as it is again', () => hook.received.some((r) => r.body.includes(restored)));
      expect(await removeClient(state, backend.clientId)).to.be.true();
      expect(await fhirStatus(backend.token)).to.equal(401);
      const removed = await reading(76);
      await new Promise((r) => setTimeout(r, QUIET_MS));
      expect(hook.received.some((r) => r.body.includes(removed)), 'notified after the client was removed').to.be.false();
    } finally {
      await hook.close();
    }
  });
});
