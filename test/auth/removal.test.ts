import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { removeClient } from '../../src/auth/clients';
import type { AuthState } from '../../src/auth/state';
import { addUser, removeUser } from '../../src/auth/users';
import { unique } from '../helpers/server';
import { codeFlowTokens, postForm, register, startAuthServer, systemCreator } from './helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const REDIRECT = 'http://app.test/callback';
const SCOPE = 'offline_access user/Patient.rs';

/**
 * Removing a user or a client ends what they were granted: their refresh tokens (offline_access
 * ones live 30 days) are refused at the token endpoint and their access tokens at the FHIR API
 * at once, not after their lifetime. Over HTTP, on a real port.
 */
describe('removing users and clients', () => {
  let app: Awaited<ReturnType<typeof startAuthServer>>;
  let state: AuthState;
  let practitioner: string;
  let patient: string;

  before(async () => {
    app = await startAuthServer();
    state = (app.server.plugins as any)['smart-auth'].state;
    const create = await systemCreator(app);
    practitioner = await create({ resourceType: 'Practitioner', name: [{ family: 'Removed' }] });
    patient = await create({ resourceType: 'Patient', name: [{ family: unique('pat') }] });
  });
  after(() => app?.stop());

  /** A public app with offline_access, and a clinician signed in through it. */
  async function signedIn(): Promise<{ clientId: string; username: string; access: string; refresh: string }> {
    const registered = await register(app.origin, {
      client_name: 'offline app', token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], redirect_uris: [REDIRECT], scope: SCOPE,
    });
    expect(registered.status).to.equal(201);
    const clientId = registered.body.client_id as string;
    const user = { username: unique('dr').replace(/[^A-Za-z0-9._@-]/g, ''), password: 'a long enough password' };
    await addUser(state.db, { ...user, fhirUser: `Practitioner/${practitioner}` });
    const tokens = await codeFlowTokens(app, { clientId, redirectUri: REDIRECT }, SCOPE, user);
    expect(tokens.refresh_token).to.be.a.string();
    return { clientId, username: user.username, access: tokens.access_token, refresh: tokens.refresh_token! };
  }

  const refresh = (clientId: string, token: string) => postForm(app.tokenUrl, { grant_type: 'refresh_token', refresh_token: token, client_id: clientId });
  const read = async (access: string) => (await fetch(`${app.base}/Patient/${patient}`, { headers: { authorization: `Bearer ${access}` } })).status;

  it("user remove revokes the user's offline_access refresh tokens and access tokens", async () => {
    const grant = await signedIn();
    // Rotated once: the live refresh token is the successor, as in an app that has run a while.
    const rotated = await refresh(grant.clientId, grant.refresh);
    expect(rotated.status).to.equal(200);
    expect(await read(rotated.body.access_token)).to.equal(200);
    expect(await removeUser(state, grant.username)).to.be.true();
    const after = await refresh(grant.clientId, rotated.body.refresh_token);
    expect(after.status).to.equal(400);
    expect(after.body.error).to.equal('invalid_grant');
    expect(await read(rotated.body.access_token)).to.equal(401);
    expect(await read(grant.access)).to.equal(401);
  });

  it('refuses to refresh a grant whose user no longer exists, even with its tokens unrevoked', async () => {
    const grant = await signedIn();
    // As a removal before this release left it: the login gone, its tokens not revoked.
    await state.db.query('DELETE FROM auth_user WHERE username = $1', [grant.username]);
    const after = await refresh(grant.clientId, grant.refresh);
    expect(after.status).to.equal(400);
    expect(after.body).to.equal({ error: 'invalid_grant', error_description: `user ${grant.username} no longer exists` });
  });

  it("client remove revokes the client's refresh and access tokens at once", async () => {
    const grant = await signedIn();
    expect(await read(grant.access)).to.equal(200);
    expect(await removeClient(state, grant.clientId)).to.be.true();
    expect(await read(grant.access)).to.equal(401);
    const { rows } = await state.db.query<{ live: number }>("SELECT count(*)::int AS live FROM auth_token WHERE client_id = $1 AND revoked_at IS NULL", [grant.clientId]);
    expect(rows[0]!.live).to.equal(0);
    expect((await refresh(grant.clientId, grant.refresh)).status).to.equal(401);
  });
});
