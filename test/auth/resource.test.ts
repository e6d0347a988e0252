import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { randomUUID } from 'node:crypto';
import { jose } from '../../src/auth/jose';
import { rotateSigningKey } from '../../src/auth/keys';
import type { AuthState } from '../../src/auth/state';
import { TOKEN_CACHE_MS } from '../../src/auth/token-cache';
import { issueAccessToken } from '../../src/auth/tokens';
import { loadConfig } from '../../src/config';
import { type TestServer, startTestServer } from '../helpers/server';
import { assertion, backendToken, keyPair, postForm, startAuthServer } from './helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');

describe('access tokens at the FHIR API', () => {
  let app: Awaited<ReturnType<typeof startAuthServer>>;
  let state: AuthState;

  before(async () => {
    app = await startAuthServer();
    state = (app.server.plugins as unknown as Record<string, { state: AuthState }>)['smart-auth']!.state;
  });
  after(() => app.stop());

  const get = (path: string, token?: string) => fetch(`${app.base}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });

  /** A token signed with the server's own key, recorded, with claims and header overridden. */
  const forge = async (claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}) => {
    const key = await state.keys.signingKey();
    const now = Math.floor(Date.now() / 1000);
    const jti = randomUUID();
    const payload = { iss: state.urls().issuer, sub: 'forger', aud: app.base, iat: now, exp: now + 60, jti, client_id: 'forger', scope: 'system/*.rs', ...claims };
    await state.db.query("INSERT INTO auth_token (jti, client_id, scope, expires_at) VALUES ($1, 'forger', 'system/*.rs', now() + interval '1 hour')", [jti]);
    return new (jose().SignJWT)(payload).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'at+jwt', ...header } as never).sign(key.privateKey);
  };

  const unauthorized = async (res: Response, pattern?: RegExp) => {
    expect(res.status).to.equal(401);
    expect(res.headers.get('www-authenticate') as string).to.startWith('Bearer');
    const body = (await res.json()) as fhir4.OperationOutcome;
    expect(body.resourceType).to.equal('OperationOutcome');
    if (pattern) expect(body.issue[0]!.diagnostics).to.match(pattern);
  };

  it('serves a request with a valid token', async () => {
    const { token } = await backendToken(app, 'system/*.rs');
    expect((await get('/Patient', token)).status).to.equal(200);
    expect((await get('/Patient', await forge())).status).to.equal(200);
  });

  it('401 with WWW-Authenticate: Bearer and an OperationOutcome when the token is missing or malformed', async () => {
    const missing = await get('/Patient');
    expect(missing.headers.get('www-authenticate')).to.equal('Bearer realm="fhir"');
    await unauthorized(missing, /access token is required/);
    await unauthorized(await get('/Patient', 'not-a-jwt'), /malformed/);
    const basic = await fetch(`${app.base}/Patient`, { headers: { authorization: 'Basic YTpi' } });
    await unauthorized(basic);
  });

  it('401 for an expired token', async () => {
    const now = Math.floor(Date.now() / 1000);
    const res = await get('/Patient', await forge({ iat: now - 400, exp: now - 100 }));
    await unauthorized(res, /expired/);
    expect(res.headers.get('www-authenticate')).to.contain('error="invalid_token"');
  });

  it('401 for a token of another audience, another issuer, or without exp', async () => {
    await unauthorized(await get('/Patient', await forge({ aud: 'https://elsewhere.example/fhir' })), /audience/);
    await unauthorized(await get('/Patient', await forge({ iss: 'https://elsewhere.example/auth' })), /not issued by this server/);
    await unauthorized(await get('/Patient', await forge({ exp: undefined })), /no exp/);
  });

  it('401 for a token that is not an access token (typ) or not recorded by this server', async () => {
    await unauthorized(await get('/Patient', await forge({}, { typ: 'JWT' })), /not an access token/);
    const key = await state.keys.signingKey();
    const now = Math.floor(Date.now() / 1000);
    const unrecorded = await new (jose().SignJWT)({ iss: state.urls().issuer, sub: 'x', aud: app.base, exp: now + 60, jti: randomUUID(), client_id: 'x', scope: 'system/*.rs' })
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'at+jwt' })
      .sign(key.privateKey);
    await unauthorized(await get('/Patient', unrecorded), /unknown to this server/);
  });

  it('401 for a wrong signature, a tampered payload, an unknown kid, alg none and HS256', async () => {
    const good = await forge();
    const [h, p, s] = good.split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
    await unauthorized(await get('/Patient', `${h}.${b64({ ...claims, scope: 'system/*.cruds' })}.${s}`), /signature/);
    const stranger = await keyPair('RS384', jose().decodeProtectedHeader(good).kid);
    const wrongKey = await new (jose().SignJWT)(claims).setProtectedHeader({ alg: 'RS384', kid: stranger.kid, typ: 'at+jwt' }).sign(stranger.privateKey);
    await unauthorized(await get('/Patient', wrongKey), /signature/);
    const unknownKid = await keyPair('RS384');
    const unknown = await new (jose().SignJWT)(claims).setProtectedHeader({ alg: 'RS384', kid: unknownKid.kid, typ: 'at+jwt' }).sign(unknownKid.privateKey);
    await unauthorized(await get('/Patient', unknown), /not signed by a key of this server/);
    await unauthorized(await get('/Patient', `${b64({ alg: 'none', typ: 'at+jwt' })}.${p}.`));
    const { createHmac } = await import('node:crypto');
    const jwks = (await (await fetch(`${app.origin}/auth/jwks`)).json()) as { keys: { kid: string }[] };
    const input = `${b64({ alg: 'HS256', kid: jwks.keys[0]!.kid, typ: 'at+jwt' })}.${p}`;
    const hs = `${input}.${createHmac('sha256', JSON.stringify(jwks.keys[0])).update(input).digest('base64url')}`;
    await unauthorized(await get('/Patient', hs));
  });

  it('401 at once for a revoked token', async () => {
    const { token, clientId, key } = await backendToken(app, 'system/*.rs');
    expect((await get('/Patient', token)).status).to.equal(200);
    const res = await postForm(`${app.origin}/auth/revoke`, {
      token,
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await assertion(key, clientId, app.tokenUrl),
    });
    expect(res.status).to.equal(200);
    await unauthorized(await get('/Patient', token), /revoked/);
  });

  it('takes a token it verified in the last second without reading its record again, and no longer', async () => {
    const token = await forge();
    const { jti } = jose().decodeJwt(token) as { jti: string };
    expect((await get('/Patient', token)).status).to.equal(200);
    const verifiedAt = Date.now();
    // Revoked as another server process would: in the table, without this process hearing of it.
    await state.db.query('UPDATE auth_token SET revoked_at = now() WHERE jti = $1', [jti]);
    const kept = await get('/Patient', token);
    // Kept for the cache's second (asserted only when this machine answered well inside it).
    if (Date.now() - verifiedAt < TOKEN_CACHE_MS / 2) expect(kept.status).to.equal(200);
    await new Promise((resolve) => setTimeout(resolve, TOKEN_CACHE_MS + 50 - (Date.now() - verifiedAt)));
    await unauthorized(await get('/Patient', token), /revoked/);
  });

  it('never takes a verified token past its exp', async () => {
    const exp = Math.floor(Date.now() / 1000) + 2;
    const token = await forge({ exp });
    const answers: Array<{ sentAt: number; status: number }> = [];
    while (Date.now() < exp * 1000 + 300) {
      const sentAt = Date.now();
      answers.push({ sentAt, status: (await get('/Patient', token)).status });
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(answers[0]!.status).to.equal(200);
    expect(answers.filter((a) => a.status === 200 && a.sentAt >= exp * 1000)).to.equal([]);
    expect(answers[answers.length - 1]!.status).to.equal(401);
  });

  it('puts the access policy of the token on request.auth.credentials', async () => {
    const seen: unknown[] = [];
    app.server.route({ method: 'GET', path: '/fhir/_test_policy', handler: (request) => {
      const { policyOf } = require('../../src/access/request') as typeof import('../../src/access/request');
      const p = policyOf(request);
      seen.push({ client: p.clientId, read: p.allows('Observation', 'r'), write: p.allows('Observation', 'c') });
      return { ok: true };
    } });
    const { token, clientId } = await backendToken(app, 'system/Observation.rs');
    expect((await get('/_test_policy', token)).status).to.equal(200);
    expect(seen).to.equal([{ client: clientId, read: true, write: false }]);
  });

  it('keeps /metadata and discovery public, and publishes rest.security', async () => {
    const metadata = await get('/metadata');
    expect(metadata.status).to.equal(200);
    const security = ((await metadata.json()) as fhir4.CapabilityStatement).rest![0]!.security!;
    expect(security.service![0]!.coding![0]).to.equal({ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' });
    const uris = security.extension!.find((e) => e.url === 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris')!;
    expect(uris.extension!.find((e) => e.url === 'token')!.valueUri).to.equal(app.tokenUrl);
    expect(uris.extension!.map((e) => e.url).sort()).to.equal(['authorize', 'introspect', 'register', 'revoke', 'token']);
    // A bad token does not make a public endpoint fail.
    expect((await get('/metadata', 'garbage')).status).to.equal(200);
  });

  it('serves smart-configuration as JSON whatever the Accept, with CORS and absolute URLs', async () => {
    const res = await fetch(`${app.base}/.well-known/smart-configuration`, { headers: { accept: 'text/html', origin: 'https://app.example' } });
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-type') as string).to.startWith('application/json');
    expect(res.headers.get('access-control-allow-origin')).to.exist();
    const c = (await res.json()) as Record<string, any>;
    for (const field of ['issuer', 'jwks_uri', 'token_endpoint', 'introspection_endpoint', 'revocation_endpoint', 'registration_endpoint']) {
      expect(c[field] as string, field).to.startWith('http://127.0.0.1:');
    }
    expect(c.token_endpoint).to.equal(app.tokenUrl);
    expect(c.capabilities).to.include(['client-confidential-asymmetric', 'permission-v1', 'permission-v2']);
    expect(c.code_challenge_methods_supported).to.equal(['S256']);
    expect(c.token_endpoint_auth_methods_supported).to.equal(['private_key_jwt', 'client_secret_basic']);
    expect(c.token_endpoint_auth_signing_alg_values_supported).to.equal(['RS384', 'ES384']);
    expect(c.grant_types_supported).to.include('client_credentials');
    expect(c.scopes_supported).to.be.an.array();
  });

  it('publishes its keys with kids; rotation keeps live tokens valid and signs new ones with the new key', async () => {
    const { token: before } = await backendToken(app, 'system/*.rs');
    const oldKid = jose().decodeProtectedHeader(before).kid;
    const jwks = (await (await fetch(`${app.origin}/auth/jwks`)).json()) as { keys: { kid: string; alg: string }[] };
    expect(jwks.keys.map((k) => k.kid)).to.include(oldKid);
    // The published key verifies the token.
    await jose().jwtVerify(before, jose().createLocalJWKSet(jwks as never), { audience: app.base });

    const newKid = await rotateSigningKey(state.db);
    await state.keys.reload();
    const after = await issueAccessToken(state, { clientId: 'rotation-test', scopes: ['system/*.rs'] });
    expect(jose().decodeProtectedHeader(after.accessToken).kid).to.equal(newKid);
    expect((await get('/Patient', before)).status).to.equal(200);
    expect((await get('/Patient', after.accessToken)).status).to.equal(200);
    const published = (await (await fetch(`${app.origin}/auth/jwks`)).json()) as { keys: { kid: string }[] };
    expect(published.keys.map((k) => k.kid)).to.include([oldKid, newKid]);
  });

  it('a second server process on the same database verifies tokens of the first (keys in the database)', async () => {
    const { token } = await backendToken(app, 'system/*.rs');
    const other = await startAuthServer();
    try {
      const otherState = (other.server.plugins as unknown as Record<string, { state: AuthState }>)['smart-auth']!.state;
      expect(await otherState.keys.verificationKey(jose().decodeProtectedHeader(token).kid)).to.exist();
      // Same database, other port: other issuer and audience, so the token is refused there for that reason.
      const res = await fetch(`${other.base}/Patient`, { headers: { authorization: `Bearer ${token}` } });
      expect(res.status).to.equal(401);
      expect(((await res.json()) as fhir4.OperationOutcome).issue[0]!.diagnostics).to.match(/not issued by this server/);
    } finally {
      await other.stop();
    }
  });

  it('signs with a key from configuration (AUTH_SIGNING_KEY)', async () => {
    const { privateKey } = await jose().generateKeyPair('ES384', { extractable: true });
    const jwk = { ...(await jose().exportJWK(privateKey)), kid: 'configured-key' };
    const other = await startAuthServer({ AUTH_SIGNING_KEY: JSON.stringify(jwk) });
    try {
      const { token } = await backendToken(other, 'system/*.rs');
      expect(jose().decodeProtectedHeader(token)).to.include({ kid: 'configured-key', alg: 'ES384' });
      expect((await fetch(`${other.base}/Patient`, { headers: { authorization: `Bearer ${token}` } })).status).to.equal(200);
      const jwks = (await (await fetch(`${other.origin}/auth/jwks`)).json()) as { keys: { kid: string; d?: string }[] };
      expect(jwks.keys[0]!.kid).to.equal('configured-key');
      expect(jwks.keys.every((k) => k.d === undefined)).to.be.true();
    } finally {
      await other.stop();
    }
  });
});

describe('AUTH_DISABLED', () => {
  it('serves without a token and gives the unrestricted policy', async () => {
    const app = await startAuthServer({ AUTH_DISABLED: 'true' });
    try {
      expect((await fetch(`${app.base}/Patient`)).status).to.equal(200);
    } finally {
      await app.stop();
    }
  });

  it('is refused when NODE_ENV=production', async () => {
    expect(() => loadConfig({ AUTH_DISABLED: 'true', NODE_ENV: 'production' })).to.throw(/refused when NODE_ENV=production/);
    expect(() => loadConfig({ ACCESS_TOKEN_LIFETIME: '3600' })).to.throw(/1\.\.300/);
  });
});

describe('two server instances on one database (two nodes behind one base URL)', () => {
  let a: Awaited<ReturnType<typeof startAuthServer>>;
  let b: TestServer;

  before(async () => {
    a = await startAuthServer();
    // Not listening: requests reach it through inject, as through a load balancer to the second node.
    b = await startTestServer({ AUTH_DISABLED: 'false', BASE_URL: a.origin });
  });
  after(async () => {
    await b.stop();
    await a.stop();
  });

  it('a token revoked on one is refused on the other within TOKEN_CACHE_MS, though the other had verified it', async () => {
    const { token, clientId, key } = await backendToken(a, 'system/*.rs');
    const onB = async () => (await b.request({ method: 'GET', url: '/fhir/Patient?_count=1', headers: { authorization: `Bearer ${token}` } })).statusCode;
    expect(await onB()).to.equal(200);
    const revoked = await postForm(`${a.origin}/auth/revoke`, { token, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: await assertion(key, clientId, a.tokenUrl) });
    expect(revoked.status).to.equal(200);
    const revokedAt = Date.now();
    expect((await fetch(`${a.base}/Patient?_count=1`, { headers: { authorization: `Bearer ${token}` } })).status).to.equal(401);
    let status = await onB();
    while (status === 200 && Date.now() - revokedAt < TOKEN_CACHE_MS + 2_000) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      status = await onB();
    }
    expect(status).to.equal(401);
    // The bound, with room for a loaded machine between the revocation's commit and this clock.
    expect(Date.now() - revokedAt).to.be.below(TOKEN_CACHE_MS + 500);
  });
});
