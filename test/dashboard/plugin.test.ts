import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { findClient } from '../../src/auth/clients';
import { ensureClient } from '../../src/auth';
import { DASHBOARD_CLIENT_ID, DASHBOARD_SCOPE } from '../../src/dashboard';
import { type TestServer, startTestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

describe('dashboard plugin: serving the built app and its SMART registration', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer({ AUTH_DISABLED: 'false', BASE_URL: 'https://ward.example.org' });
  });
  after(() => app.stop());

  it('registers the dashboard as a public client with its redirect and launch URL under BASE_URL', async () => {
    const client = await findClient(app.ctx.db, DASHBOARD_CLIENT_ID);
    expect(client).to.exist();
    expect(client!.authMethod).to.equal('none');
    expect(client!.redirectUris).to.equal(['https://ward.example.org/app']);
    expect(client!.initiateLoginUri).to.equal('https://ward.example.org/app');
    expect(client!.scope.join(' ')).to.equal(DASHBOARD_SCOPE);
    expect(client!.secretHash).to.not.exist();
  });

  it('brings the registration up to date when BASE_URL moves, keeping one client', async () => {
    const other = await startTestServer({ AUTH_DISABLED: 'false', BASE_URL: 'https://moved.example.org' });
    try {
      expect((await findClient(app.ctx.db, DASHBOARD_CLIENT_ID))!.redirectUris).to.equal(['https://moved.example.org/app']);
      const { rows } = await app.ctx.db.query<{ n: number }>('SELECT count(*)::int AS n FROM auth_client WHERE client_id = $1', [DASHBOARD_CLIENT_ID]);
      expect(rows[0]!.n).to.equal(1);
    } finally {
      await other.stop();
    }
  });

  it('refuses to ship a client with a secret, and refuses metadata the registration would refuse', async () => {
    const id = unique('shipped');
    await expect(ensureClient(app.ctx.db, id, { token_endpoint_auth_method: 'client_secret_basic', redirect_uris: ['https://a.example/cb'], scope: 'openid' })).to.reject(/cannot hold a secret/);
    await expect(ensureClient(app.ctx.db, id, { token_endpoint_auth_method: 'none', redirect_uris: ['not a url'], scope: 'openid' })).to.reject(/redirect_uris/);
    expect(await findClient(app.ctx.db, id)).to.not.exist();
  });

  it('serves the app page without a token, with a content security policy and no caching', async () => {
    const res = await app.request({ method: 'GET', url: '/app' });
    expect(res.statusCode).to.equal(200);
    expect(res.headers['content-type']).to.contain('text/html');
    expect(res.headers['content-security-policy']).to.contain("script-src 'self'");
    expect(res.headers['cache-control']).to.equal('no-cache');
    const script = /src="\/app\/assets\/([^"]+\.js)"/.exec(res.payload);
    expect(script).to.exist();
    const asset = await app.request({ method: 'GET', url: `/app/assets/${script![1]}` });
    expect(asset.statusCode).to.equal(200);
    expect(asset.headers['content-type']).to.contain('javascript');
    expect(asset.headers['cache-control']).to.contain('immutable');
  });

  it('tells the app its client id and FHIR base', async () => {
    const res = await app.request({ method: 'GET', url: '/app/config.json' });
    expect(res.statusCode).to.equal(200);
    expect(res.json).to.equal({ clientId: DASHBOARD_CLIENT_ID, fhirBase: 'https://ward.example.org/fhir', scope: DASHBOARD_SCOPE });
  });

  it('answers 404 for missing assets and never serves files outside the built app', async () => {
    for (const url of ['/app/assets/missing.js', '/app/assets/..%2F..%2F..%2Fpackage.json', '/app/assets/%2e%2e%2fconfig.json', '/app/../package.json', '/app/src/main.tsx']) {
      const res = await app.request({ method: 'GET', url });
      expect([400, 403, 404], url).to.include(res.statusCode);
      expect(res.payload, url).to.not.contain('rpm-fhir-server');
    }
  });

  it('serves FHIR data only with a token: the app page is public, the API is not', async () => {
    const res = await app.request({ method: 'GET', url: '/fhir/Flag?status=active' });
    expect(res.statusCode).to.equal(401);
  });
});
