import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import type { AuthState } from '../../src/auth/state';
import { issueAccessToken } from '../../src/auth/tokens';
import { addUser, removeUser } from '../../src/auth/users';
import { backendToken, codeFlowTokens, postForm, register, startAuthServer, systemCreator } from '../auth/helpers';
import { startTestServer, type TestServer, unique } from '../helpers/server';
import { finish, idsOf, kickOff, seedWard } from './helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const REDIRECT = 'http://app.test/callback';
/** A clinician app's grant: standing access (offline_access) to read Patients and Observations. */
const SCOPE = 'offline_access user/Patient.rs user/Observation.rs';
const ENDED = /^the authorization this export was started under has ended: /;

type Headers = Record<string, string>;
const bearer = (token: string): Headers => ({ authorization: `Bearer ${token}` });

/**
 * An export is a copy of the record made under the grant of its kick-off token, and lives with
 * that grant as a Subscription does (decision 032): once the grant has ended (refresh token
 * revoked, user or client removed) or no longer holds the job's scopes, a queued or running job
 * fails saying so and writes nothing more, a finished job's status answers as a failed job's and
 * its files are no longer served, even to the same user signed in again. Tokens come from the
 * server's own authorization endpoints (code flow, client_credentials) on a real port; the worker
 * is driven by the tests.
 */
describe('Bulk Data export lives with its grant', () => {
  let app: Awaited<ReturnType<typeof startAuthServer>>;
  let state: AuthState;
  let clientId: string;
  let practitioner: string;

  before(async () => {
    app = await startAuthServer({ BULK_POLL_INTERVAL: '0' });
    state = (app.server.plugins as any)['smart-auth'].state;
    const create = await systemCreator(app);
    practitioner = await create({ resourceType: 'Practitioner', name: [{ family: 'Exporter' }] });
    await seedWard({ create }, 2, 1);
    const registered = await register(app.origin, {
      client_name: 'clinician export app', token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], redirect_uris: [REDIRECT], scope: SCOPE,
    });
    expect(registered.status).to.equal(201);
    clientId = registered.body.client_id;
  });
  after(() => app?.stop());

  /** A new clinician login; `signIn(user)` signs it in (again): a new grant each time. */
  async function newUser(): Promise<{ username: string; password: string }> {
    const user = { username: unique('dr').replace(/[^A-Za-z0-9._@-]/g, ''), password: 'a long enough password' };
    await addUser(state.db, { ...user, fhirUser: `Practitioner/${practitioner}` });
    return user;
  }
  async function signIn(user: { username: string; password: string }): Promise<{ headers: Headers; refresh: string }> {
    const tokens = await codeFlowTokens(app, { clientId, redirectUri: REDIRECT }, SCOPE, user);
    return { headers: bearer(tokens.access_token), refresh: tokens.refresh_token! };
  }

  const get = (url: string, headers: Headers) => app.request({ method: 'GET', url, headers });
  const jobId = (status: string) => status.split('/').pop()!;
  const chunks = async (status: string) => (await app.ctx.db.query('SELECT 1 FROM bulk_export_chunk WHERE job_id = $1', [jobId(status)])).rowCount;
  const stored = async (status: string) =>
    (await app.ctx.db.query<{ status: string; error: string | null }>('SELECT status, error FROM bulk_export_job WHERE id = $1', [jobId(status)])).rows[0]!;

  /** Status answers as for a failed job (Bulk Data: 500 with an OperationOutcome), saying why. */
  async function failedWith(status: string, headers: Headers, reason: RegExp) {
    const res = await get(status, headers);
    expect(res.statusCode, res.payload).to.equal(500);
    expect(res.json.resourceType).to.equal('OperationOutcome');
    expect(res.json.issue[0].diagnostics).to.match(reason);
  }

  async function withdrawn(file: string, headers: Headers, reason: RegExp) {
    const res = await get(file, headers);
    expect(res.statusCode, res.payload).to.equal(404);
    expect(res.json.resourceType).to.equal('OperationOutcome');
    expect(res.json.issue[0].diagnostics).to.match(reason);
  }

  it('revoking the refresh token ends it: a queued job fails saying so and exports nothing; a completed one polls failed and its files are not served', async () => {
    const user = await newUser();
    const first = await signIn(user);
    const done = await kickOff(app, '/fhir/Patient/$export?_type=Patient', first.headers);
    const { manifest } = await finish(app, done, first.headers);
    const file = new URL(manifest.output[0].url).pathname;
    const queued = await kickOff(app, '/fhir/Patient/$export?_type=Patient,Observation', first.headers);

    const revoked = await postForm(`${app.origin}/auth/revoke`, { token: first.refresh, client_id: clientId });
    expect(revoked.status).to.equal(200);
    // The same user signs in again: the jobs' owner (client, user, scopes), under a new grant.
    const again = await signIn(user);
    const reason = /has ended: the grant was revoked or has expired/;
    await withdrawn(file, again.headers, reason);
    await failedWith(done, again.headers, reason);

    await app.bulk.drain();
    await failedWith(queued, again.headers, reason);
    expect(await stored(queued)).to.include({ status: 'failed' });
    expect((await stored(queued)).error).to.match(ENDED);
    expect(await chunks(queued)).to.equal(0);
    // Its owner may still withdraw it.
    expect((await app.request({ method: 'DELETE', url: queued, headers: again.headers })).statusCode).to.equal(202);
    // A job of the new grant runs.
    const fresh = await finish(app, await kickOff(app, '/fhir/Patient/$export?_type=Patient', again.headers), again.headers);
    expect(fresh.files.Patient!.length).to.be.above(0);
  });

  it('removing the user ends it: the queued job fails and exports nothing, the finished one is withdrawn', async () => {
    const user = await newUser();
    const grant = await signIn(user);
    const done = await kickOff(app, '/fhir/Patient/$export?_type=Patient', grant.headers);
    const { manifest } = await finish(app, done, grant.headers);
    const queued = await kickOff(app, '/fhir/Patient/$export?_type=Patient,Observation', grant.headers);

    expect(await removeUser(state, user.username)).to.be.true();
    await app.bulk.drain();
    const job = await stored(queued);
    expect(job.status).to.equal('failed');
    expect(job.error).to.match(ENDED);
    expect(job.error).to.include(`user ${user.username} no longer exists`);
    expect(await chunks(queued)).to.equal(0);
    // Even a token the operator mints for that user id afterwards gets nothing of either.
    const minted = bearer((await issueAccessToken(state, { clientId, scopes: SCOPE.split(' '), subject: user.username, fhirUser: `Practitioner/${practitioner}` })).accessToken);
    await withdrawn(new URL(manifest.output[0].url).pathname, minted, /no longer exists/);
    await failedWith(done, minted, /no longer exists/);
    await failedWith(queued, minted, /no longer exists/);
  });

  it("a user's job recorded before grants were has ended: nothing says which grant it was", async () => {
    const grant = await signIn(await newUser());
    const legacy = await kickOff(app, '/fhir/Patient/$export?_type=Patient', grant.headers);
    await app.ctx.db.query('UPDATE bulk_export_job SET grant_id = NULL, token_id = NULL WHERE id = $1', [jobId(legacy)]);
    await app.bulk.drain();
    await failedWith(legacy, grant.headers, ENDED);
    expect(await chunks(legacy)).to.equal(0);
  });

  it("a backend client's export lives by its registration: narrowed, its jobs fail and its files are withdrawn; one recorded before grants were runs by it and ends with it", async () => {
    const backend = await backendToken(app, 'system/Patient.rs system/Observation.rs');
    const headers = bearer(backend.token);
    const legacy = await kickOff(app, '/fhir/Patient/$export?_type=Patient', headers);
    await app.ctx.db.query('UPDATE bulk_export_job SET grant_id = NULL, token_id = NULL WHERE id = $1', [jobId(legacy)]);
    const done = await kickOff(app, '/fhir/Patient/$export?_type=Patient,Observation', headers);
    const { manifest } = await finish(app, done, headers);
    expect((await get(legacy, headers)).statusCode).to.equal(200);
    const queued = await kickOff(app, '/fhir/Patient/$export?_type=Patient,Observation', headers);

    // The registration no longer allows Observations; the access token itself is still live.
    await state.db.query("UPDATE auth_client SET scope = 'system/Patient.rs' WHERE client_id = $1", [backend.clientId]);
    const narrowed = /no longer grants system\/Observation\.rs$/;
    await failedWith(done, headers, narrowed);
    for (const entry of manifest.output) await withdrawn(new URL(entry.url).pathname, headers, narrowed);
    await app.bulk.drain();
    await failedWith(queued, headers, narrowed);
    expect(await chunks(queued)).to.equal(0);
    // The legacy job is judged by the registration too.
    await failedWith(legacy, headers, narrowed);
  });
});

describe('Bulk Data export without tokens (AUTH_DISABLED)', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer({ BULK_POLL_INTERVAL: '0' });
  });
  after(() => app?.stop());

  it('runs and serves an export as before: the server\'s own access has no grant to end', async () => {
    const create = async (body: Record<string, unknown>) => (await app.request({ method: 'POST', url: `/fhir/${String(body.resourceType)}`, payload: body })).json.id as string;
    const ward = await seedWard({ create }, 2, 1);
    const { files } = await finish(app, await kickOff(app, `/fhir/Group/${ward.groupId}/$export?_type=Patient,Observation`, {}), {});
    expect(idsOf(files.Patient)).to.equal([...ward.patients].sort());
    expect(idsOf(files.Observation)).to.equal(ward.observations.flat().sort());
  });
});
