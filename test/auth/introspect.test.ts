import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { assertion, backendClient, backendToken, clientCredentials, keyPair, postForm, register, startAuthServer } from './helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

describe('introspection (RFC 7662) and revocation (RFC 7009)', () => {
  let app: Awaited<ReturnType<typeof startAuthServer>>;
  before(async () => {
    app = await startAuthServer();
  });
  after(() => app.stop());

  const asClient = async (key: Awaited<ReturnType<typeof keyPair>>, clientId: string) => ({
    client_assertion_type: ASSERTION_TYPE,
    client_assertion: await assertion(key, clientId, app.tokenUrl),
  });

  it('a client introspects its own active token with a private_key_jwt assertion', async () => {
    const { token, clientId, key } = await backendToken(app, 'system/Observation.rs');
    const res = await postForm(`${app.origin}/auth/introspect`, { token, ...(await asClient(key, clientId)) });
    expect(res.status).to.equal(200);
    expect(res.headers.get('cache-control')).to.equal('no-store');
    expect(res.body).to.include({ active: true, scope: 'system/Observation.rs', client_id: clientId, sub: clientId, token_type: 'Bearer' });
    expect(res.body.exp).to.be.a.number();
  });

  it('answers exactly {"active": false} for garbage, revoked and other clients\' tokens', async () => {
    const a = await backendToken(app, 'system/*.rs');
    const b = await backendToken(app, 'system/*.rs');
    const garbage = await postForm(`${app.origin}/auth/introspect`, { token: 'garbage', ...(await asClient(a.key, a.clientId)) });
    expect(garbage.body).to.equal({ active: false });
    const others = await postForm(`${app.origin}/auth/introspect`, { token: b.token, ...(await asClient(a.key, a.clientId)) });
    expect(others.body).to.equal({ active: false });
    await postForm(`${app.origin}/auth/revoke`, { token: a.token, ...(await asClient(a.key, a.clientId)) });
    const revoked = await postForm(`${app.origin}/auth/introspect`, { token: a.token, ...(await asClient(a.key, a.clientId)) });
    expect(revoked.body).to.equal({ active: false });
  });

  it('refuses unauthenticated callers with 401 invalid_client', async () => {
    const { token } = await backendToken(app, 'system/*.rs');
    const res = await postForm(`${app.origin}/auth/introspect`, { token });
    expect(res.status).to.equal(401);
    expect(res.body.error).to.equal('invalid_client');
  });

  it('a client allowed to introspect sees any token, also with its Bearer token; others cannot use Bearer', async () => {
    const key = await keyPair();
    const rs = await backendClient(app.origin, 'system/*.rs', [key], { can_introspect: true });
    const rsToken = (await clientCredentials(app.tokenUrl, await assertion(key, rs, app.tokenUrl), 'system/*.rs')).body.access_token as string;
    const subject = await backendToken(app, 'system/Patient.rs');
    const byBearer = await postForm(`${app.origin}/auth/introspect`, { token: subject.token }, { authorization: `Bearer ${rsToken}` });
    expect(byBearer.status).to.equal(200);
    expect(byBearer.body).to.include({ active: true, client_id: subject.clientId, scope: 'system/Patient.rs' });
    const byAssertion = await postForm(`${app.origin}/auth/introspect`, { token: subject.token, ...(await asClient(key, rs)) });
    expect(byAssertion.body.active).to.be.true();
    const notAllowed = await postForm(`${app.origin}/auth/introspect`, { token: subject.token }, { authorization: `Bearer ${subject.token}` });
    expect(notAllowed.status).to.equal(401);
  });

  it('a client revokes only its own tokens, effective at once', async () => {
    const a = await backendToken(app, 'system/*.rs');
    const b = await backendToken(app, 'system/*.rs');
    const foreign = await postForm(`${app.origin}/auth/revoke`, { token: b.token, ...(await asClient(a.key, a.clientId)) });
    expect(foreign.status).to.equal(400);
    expect(foreign.body.error).to.equal('unauthorized_client');
    expect((await fetch(`${app.base}/Patient`, { headers: { authorization: `Bearer ${b.token}` } })).status).to.equal(200);

    const own = await postForm(`${app.origin}/auth/revoke`, { token: b.token, token_type_hint: 'access_token', ...(await asClient(b.key, b.clientId)) });
    expect(own.status).to.equal(200);
    expect((await fetch(`${app.base}/Patient`, { headers: { authorization: `Bearer ${b.token}` } })).status).to.equal(401);
    // Revoking again, or an unknown token, is fine (RFC 7009 §2.2).
    expect((await postForm(`${app.origin}/auth/revoke`, { token: b.token, ...(await asClient(b.key, b.clientId)) })).status).to.equal(200);
    expect((await postForm(`${app.origin}/auth/revoke`, { token: 'nonsense', ...(await asClient(b.key, b.clientId)) })).status).to.equal(200);
  });

  it('revocation needs client authentication', async () => {
    const a = await backendToken(app, 'system/*.rs');
    const res = await postForm(`${app.origin}/auth/revoke`, { token: a.token });
    expect(res.status).to.equal(401);
    expect(res.body.error).to.equal('invalid_client');
  });
});

describe('client registration (RFC 7591) and client_secret_basic', () => {
  let app: Awaited<ReturnType<typeof startAuthServer>>;
  before(async () => {
    app = await startAuthServer();
  });
  after(() => app.stop());

  it('needs the initial access token', async () => {
    const meta = { token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'system/*.rs' };
    expect((await register(app.origin, meta, 'wrong')).status).to.equal(401);
    const res = await fetch(`${app.origin}/auth/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(meta) });
    expect(res.status).to.equal(401);
  });

  it('is off without REGISTRATION_TOKEN, and discovery then has no registration_endpoint', async () => {
    const off = await startAuthServer({ REGISTRATION_TOKEN: '' });
    try {
      expect((await register(off.origin, { scope: 'system/*.rs' })).status).to.equal(404);
      const c = (await (await fetch(`${off.base}/.well-known/smart-configuration`)).json()) as Record<string, unknown>;
      expect(c.registration_endpoint).to.be.undefined();
    } finally {
      await off.stop();
    }
  });

  it('refuses invalid metadata with invalid_client_metadata', async () => {
    const bad = [
      { token_endpoint_auth_method: 'private_key_jwt', grant_types: ['client_credentials'], scope: 'system/*.rs' },
      { token_endpoint_auth_method: 'client_secret_post', grant_types: ['client_credentials'], scope: 'system/*.rs' },
      { token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'] },
      { token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'system/*.rs admin/all' },
      { token_endpoint_auth_method: 'private_key_jwt', grant_types: ['client_credentials'], scope: 'system/*.rs', jwks: { keys: [{ kty: 'RSA', kid: 'k', n: 'x', e: 'AQAB', d: 'secret' }] } },
      { token_endpoint_auth_method: 'none', grant_types: ['client_credentials'], scope: 'system/*.rs' },
    ];
    for (const meta of bad) {
      const res = await register(app.origin, meta);
      expect(res.status, JSON.stringify(meta)).to.equal(400);
      expect(res.body.error).to.equal('invalid_client_metadata');
    }
    const noRedirect = await register(app.origin, { token_endpoint_auth_method: 'none', scope: 'patient/*.rs' });
    expect(noRedirect.body.error).to.equal('invalid_redirect_uri');
  });

  it('registers a symmetric client that gets tokens with HTTP Basic; a wrong secret is 401 with WWW-Authenticate: Basic', async () => {
    const { status, body } = await register(app.origin, { client_name: 'gateway', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'system/Observation.cru' });
    expect(status).to.equal(201);
    expect(body.client_secret).to.be.a.string();
    expect(body).to.include({ client_name: 'gateway', token_endpoint_auth_method: 'client_secret_basic', scope: 'system/Observation.cru' });
    const basic = (secret: string) => `Basic ${Buffer.from(`${encodeURIComponent(body.client_id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
    const ok = await postForm(app.tokenUrl, { grant_type: 'client_credentials', scope: 'system/Observation.c' }, { authorization: basic(body.client_secret) });
    expect(ok.status).to.equal(200);
    expect(ok.body.scope).to.equal('system/Observation.c');
    const wrong = await postForm(app.tokenUrl, { grant_type: 'client_credentials', scope: 'system/Observation.c' }, { authorization: basic('nope') });
    expect(wrong.status).to.equal(401);
    expect(wrong.body.error).to.equal('invalid_client');
    expect(wrong.headers.get('www-authenticate') as string).to.startWith('Basic');
  });

  it('refuses client_credentials to a client not registered for it', async () => {
    const key = await keyPair();
    const { body } = await register(app.origin, { token_endpoint_auth_method: 'private_key_jwt', redirect_uris: ['https://app.example/cb'], jwks: { keys: [key.publicJwk] }, scope: 'system/*.rs' });
    const res = await clientCredentials(app.tokenUrl, await assertion(key, body.client_id, app.tokenUrl), 'system/*.rs');
    expect(res.status).to.equal(400);
    expect(res.body.error).to.equal('unauthorized_client');
  });
});
