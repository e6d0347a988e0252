import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { createHmac } from 'node:crypto';
import { jose } from '../../src/auth/jose';
import {
  type KeyPair, assertion, backendClient, clientCredentials, jwksServer, keyPair, postForm, register, startAuthServer,
} from './helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');

describe('token endpoint: SMART Backend Services', () => {
  let app: Awaited<ReturnType<typeof startAuthServer>>;
  let rsa: KeyPair;
  let ec: KeyPair;
  let clientId: string;

  before(async () => {
    app = await startAuthServer();
    rsa = await keyPair('RS384');
    ec = await keyPair('ES384');
    clientId = await backendClient(app.origin, 'system/*.rs system/Observation.cruds', [rsa, ec]);
  });
  after(() => app.stop());

  const refused = async (a: string, pattern: RegExp, scope = 'system/Patient.rs') => {
    const res = await clientCredentials(app.tokenUrl, a, scope);
    expect(res.status, JSON.stringify(res.body)).to.equal(401);
    expect(res.body.error).to.equal('invalid_client');
    expect(res.body.error_description).to.match(pattern);
    expect(res.headers.get('cache-control')).to.equal('no-store');
  };

  it('issues a 300 s JWT access token for an RS384 assertion, without refresh token, no-store', async () => {
    const res = await clientCredentials(app.tokenUrl, await assertion(rsa, clientId, app.tokenUrl), 'system/Patient.rs');
    expect(res.status).to.equal(200);
    expect(res.headers.get('cache-control')).to.equal('no-store');
    expect(res.headers.get('pragma')).to.equal('no-cache');
    expect(res.body.token_type).to.equal('Bearer');
    expect(res.body.expires_in as number).to.be.most(300);
    expect(res.body.scope).to.equal('system/Patient.rs');
    expect(res.body.refresh_token).to.be.undefined();
    const claims = jose().decodeJwt(res.body.access_token);
    expect(claims.aud).to.equal(app.base);
    expect(claims.client_id).to.equal(clientId);
    expect(claims.exp! - claims.iat!).to.be.most(300);
    expect(jose().decodeProtectedHeader(res.body.access_token).kid).to.be.a.string();
  });

  it('accepts ES384 assertions', async () => {
    const res = await clientCredentials(app.tokenUrl, await assertion(ec, clientId, app.tokenUrl), 'system/Observation.cruds');
    expect(res.status).to.equal(200);
    expect(res.body.scope).to.equal('system/Observation.cruds');
  });

  it('grants the requested scope cut to the pre-authorised set', async () => {
    const res = await clientCredentials(app.tokenUrl, await assertion(rsa, clientId, app.tokenUrl), 'system/Patient.cruds system/Observation.read system/Flag.c');
    expect(res.status).to.equal(200);
    expect(res.body.scope.split(' ').sort()).to.equal(['system/Observation.read', 'system/Patient.rs']);
  });

  it('refuses a scope wholly beyond the pre-authorised set: 400 invalid_scope', async () => {
    const res = await clientCredentials(app.tokenUrl, await assertion(rsa, clientId, app.tokenUrl), 'system/Patient.cud patient/*.rs');
    expect(res.status).to.equal(400);
    expect(res.body.error).to.equal('invalid_scope');
  });

  it('refuses a replayed jti', async () => {
    const a = await assertion(rsa, clientId, app.tokenUrl);
    expect((await clientCredentials(app.tokenUrl, a, 'system/Patient.rs')).status).to.equal(200);
    await refused(a, /replay/);
    // A fresh assertion with the same jti is a replay too.
    const jti = jose().decodeJwt(a).jti;
    await refused(await assertion(rsa, clientId, app.tokenUrl, { claims: { jti } }), /replay/);
  });

  it('remembers jti in the database: a second server process refuses the replay', async () => {
    const a = await assertion(rsa, clientId, app.tokenUrl);
    expect((await clientCredentials(app.tokenUrl, a, 'system/Patient.rs')).status).to.equal(200);
    const other = await startAuthServer();
    try {
      const res = await clientCredentials(other.tokenUrl, await assertion(rsa, clientId, other.tokenUrl, { claims: { jti: jose().decodeJwt(a).jti } }), 'system/Patient.rs');
      expect(res.body.error_description).to.match(/replay/);
    } finally {
      await other.stop();
    }
  });

  it('refuses aud other than the token URL', async () => {
    await refused(await assertion(rsa, clientId, app.tokenUrl, { claims: { aud: app.base } }), /aud must be the token endpoint/);
  });

  it('refuses exp more than 5 minutes ahead, exp in the past and a missing exp', async () => {
    const now = Math.floor(Date.now() / 1000);
    await refused(await assertion(rsa, clientId, app.tokenUrl, { claims: { exp: now + 600 } }), /more than 5 minutes/);
    await refused(await assertion(rsa, clientId, app.tokenUrl, { claims: { exp: now - 60 } }), /expired/);
    await refused(await assertion(rsa, clientId, app.tokenUrl, { claims: { exp: undefined } }), /exp/);
  });

  it('refuses iss ≠ sub, and a client_id parameter that is not the iss', async () => {
    await refused(await assertion(rsa, clientId, app.tokenUrl, { claims: { sub: 'someone-else' } }), /iss and sub/);
    const res = await postForm(app.tokenUrl, {
      grant_type: 'client_credentials', scope: 'system/Patient.rs', client_id: 'other',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await assertion(rsa, clientId, app.tokenUrl),
    });
    expect(res.status).to.equal(401);
    expect(res.body.error).to.equal('invalid_client');
  });

  it('refuses an unknown client', async () => {
    await refused(await assertion(rsa, 'no-such-client', app.tokenUrl), /unknown client/);
  });

  it('refuses alg none', async () => {
    const now = Math.floor(Date.now() / 1000);
    const unsigned = `${b64({ alg: 'none', kid: rsa.kid })}.${b64({ iss: clientId, sub: clientId, aud: app.tokenUrl, exp: now + 60, jti: 'x1' })}.`;
    await refused(unsigned, /alg none is not accepted/);
  });

  it('refuses HS256, even keyed with the client\'s public key', async () => {
    const now = Math.floor(Date.now() / 1000);
    const signingInput = `${b64({ alg: 'HS256', kid: rsa.kid })}.${b64({ iss: clientId, sub: clientId, aud: app.tokenUrl, exp: now + 60, jti: 'x2' })}`;
    const mac = createHmac('sha256', JSON.stringify(rsa.publicJwk)).update(signingInput).digest('base64url');
    await refused(`${signingInput}.${mac}`, /alg HS256 is not accepted/);
  });

  it('refuses a signature by a key that is not the registered one (same kid)', async () => {
    const impostor = await keyPair('RS384', rsa.kid);
    await refused(await assertion(impostor, clientId, app.tokenUrl), /signature does not verify/);
  });

  it('refuses an unknown kid', async () => {
    const stranger = await keyPair('RS384');
    await refused(await assertion(stranger, clientId, app.tokenUrl), /no RS384 key with kid/);
  });

  it('refuses a tampered assertion', async () => {
    const [h, p, s] = (await assertion(rsa, clientId, app.tokenUrl)).split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
    await refused(`${h}.${b64({ ...claims, exp: claims.exp + 10 })}.${s}`, /signature does not verify/);
  });

  it('refuses a missing or wrong client_assertion_type and a missing client authentication', async () => {
    const a = await assertion(rsa, clientId, app.tokenUrl);
    const wrongType = await postForm(app.tokenUrl, { grant_type: 'client_credentials', scope: 'system/Patient.rs', client_assertion_type: 'jwt', client_assertion: a });
    expect(wrongType.status).to.equal(401);
    expect(wrongType.body.error).to.equal('invalid_client');
    const none = await postForm(app.tokenUrl, { grant_type: 'client_credentials', scope: 'system/Patient.rs' });
    expect(none.status).to.equal(401);
    expect(none.body.error).to.equal('invalid_client');
  });

  it('refuses a client id with a NUL or escapes that are no UTF-8 (Basic, assertion iss) as invalid_client, and audits it: not a 500 and a stalled trail', async () => {
    const form = { grant_type: 'client_credentials', scope: 'system/Patient.rs' };
    const basic = (user: string) => ({ authorization: `Basic ${Buffer.from(`${user}:secret`).toString('base64')}` });
    const now = Math.floor(Date.now() / 1000);
    const nulIss = `${b64({ alg: 'RS384', kid: rsa.kid })}.${b64({ iss: 'ev\u0000il', sub: 'ev\u0000il', aud: app.tokenUrl, exp: now + 60, jti: 'x3' })}.c2ln`;
    for (const res of [
      await postForm(app.tokenUrl, form, basic('ev\u0000il')),
      await postForm(app.tokenUrl, form, basic('%E0%A4%A')),
      await postForm(app.tokenUrl, { ...form, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: nulIss }),
    ]) {
      expect(res.status, JSON.stringify(res.body)).to.equal(401);
      expect(res.body.error).to.equal('invalid_client');
    }
    await app.audit.flush();
    const { rows } = await app.ctx.db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_event WHERE agent_client LIKE '%|ev' || chr(65533) || 'il'");
    expect(rows[0]!.n).to.equal(2);
  });

  it('answers an unknown grant_type with exactly 400 unsupported_grant_type', async () => {
    const res = await postForm(app.tokenUrl, { grant_type: 'password', username: 'a', password: 'b' });
    expect(res.status).to.equal(400);
    expect(res.body.error).to.equal('unsupported_grant_type');
    expect(res.headers.get('cache-control')).to.equal('no-store');
  });

  it('refuses a body that is not form-encoded', async () => {
    const res = await fetch(app.tokenUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"grant_type":"client_credentials"}' });
    expect(res.status).to.equal(400);
    expect(((await res.json()) as { error: string }).error).to.equal('invalid_request');
  });

  describe('with a registered jwks_uri', () => {
    let jwks: Awaited<ReturnType<typeof jwksServer>>;
    let uriClient: string;
    let key: KeyPair;

    before(async () => {
      jwks = await jwksServer();
      key = await keyPair('ES384');
      jwks.keys.push(key.publicJwk);
      const { body } = await register(app.origin, {
        token_endpoint_auth_method: 'private_key_jwt', grant_types: ['client_credentials'], jwks_uri: jwks.url, scope: 'system/*.rs',
      });
      uriClient = body.client_id;
    });
    after(() => jwks.close());

    it('verifies with keys fetched from it, honouring max-age', async () => {
      jwks.headers = { 'cache-control': 'max-age=600' };
      const before = jwks.fetches;
      for (let i = 0; i < 3; i++) {
        const res = await clientCredentials(app.tokenUrl, await assertion(key, uriClient, app.tokenUrl), 'system/Patient.rs');
        expect(res.status, JSON.stringify(res.body)).to.equal(200);
      }
      expect(jwks.fetches - before).to.equal(1);
    });

    it('refetches for every use when the JWKS says no-store', async () => {
      const other = await startAuthServer();
      try {
        jwks.headers = { 'cache-control': 'no-store' };
        const before = jwks.fetches;
        for (let i = 0; i < 2; i++) {
          const res = await clientCredentials(other.tokenUrl, await assertion(key, uriClient, other.tokenUrl), 'system/Patient.rs');
          expect(res.status).to.equal(200);
        }
        expect(jwks.fetches - before).to.equal(2);
      } finally {
        await other.stop();
      }
    });

    it('accepts jku equal to the registered jwks_uri and refuses any other jku', async () => {
      const ok = await clientCredentials(app.tokenUrl, await assertion(key, uriClient, app.tokenUrl, { header: { jku: jwks.url } }), 'system/Patient.rs');
      expect(ok.status).to.equal(200);
      const evil = await jwksServer();
      try {
        const attacker = await keyPair('ES384', key.kid);
        evil.keys.push(attacker.publicJwk);
        await refused(await assertion(attacker, uriClient, app.tokenUrl, { header: { jku: evil.url } }), /jku is not the jwks_uri registered/);
        expect(evil.fetches).to.equal(0);
        // jku on a client registered with an inline JWKS is refused too.
        await refused(await assertion(rsa, clientId, app.tokenUrl, { header: { jku: jwks.url } }), /jku/);
      } finally {
        await evil.close();
      }
    });
  });

  it('rate-limits the token endpoint: failed client authentications per client and address, and all requests per address (429, Retry-After)', async () => {
    const strict = await startAuthServer({ TOKEN_FAILURES_PER_CLIENT: '3', TOKEN_REQUESTS_PER_ADDRESS: '8' });
    // The other suites' requests from this address, in this test database, are not this test's.
    await strict.ctx.db.query(`DELETE FROM auth_throttle WHERE bucket LIKE 'token-addr:%'`);
    try {
      const key = await keyPair('ES384');
      const id = await backendClient(strict.origin, 'system/Patient.rs', [key]);
      const stranger = await keyPair('ES384');
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) statuses.push((await clientCredentials(strict.tokenUrl, await assertion(stranger, id, strict.tokenUrl), 'system/Patient.rs')).status);
      expect(statuses).to.equal([401, 401, 401, 429]);
      // A forged key cannot lock the real client out from elsewhere, but from here it is spent too:
      const blocked = await clientCredentials(strict.tokenUrl, await assertion(key, id, strict.tokenUrl), 'system/Patient.rs');
      expect(blocked.status).to.equal(429);
      expect(blocked.headers.get('retry-after')).to.match(/^\d+$/);
      // Past the address's budget every request waits, whoever it names.
      const other = await backendClient(strict.origin, 'system/Patient.rs', [key]);
      const last: number[] = [];
      for (let i = 0; i < 4; i++) last.push((await clientCredentials(strict.tokenUrl, await assertion(key, other, strict.tokenUrl), 'system/Patient.rs')).status);
      expect(last).to.include(429);
      expect(last.slice(0, last.indexOf(429)).every((x) => x === 200)).to.be.true();
    } finally {
      await strict.stop();
    }
  });

  it('counts failed client authentications at introspection and revocation in the same budget (RFC 6749 §2.3.1)', async () => {
    const strict = await startAuthServer({ TOKEN_FAILURES_PER_CLIENT: '3' });
    try {
      const { body } = await register(strict.origin, { token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'system/Patient.rs' });
      const basic = (secret: string) => ({ authorization: `Basic ${Buffer.from(`${encodeURIComponent(body.client_id)}:${encodeURIComponent(secret)}`).toString('base64')}` });
      const introspect = (secret: string) => postForm(`${strict.origin}/auth/introspect`, { token: 'not-a-token' }, basic(secret));
      const revoke = (secret: string) => postForm(`${strict.origin}/auth/revoke`, { token: 'not-a-token' }, basic(secret));
      // Authentications that pass are forgiven: more of them than the budget are all answered.
      for (let i = 0; i < 4; i++) expect((await introspect(body.client_secret)).status).to.equal(200);
      for (let i = 0; i < 4; i++) expect((await revoke(body.client_secret)).status).to.equal(200);
      // Guesses count wherever they are made, and then no endpoint checks the secret any more.
      expect([(await introspect('guess-1')).status, (await revoke('guess-2')).status, (await introspect('guess-3')).status]).to.equal([401, 401, 401]);
      const blocked = [await revoke('guess-4'), await introspect(body.client_secret), await revoke(body.client_secret)];
      expect(blocked.map((r) => r.status)).to.equal([429, 429, 429]);
      expect(blocked[0]!.headers.get('retry-after')).to.match(/^\d+$/);
      expect(blocked[0]!.headers.get('cache-control')).to.equal('no-store');
      expect(blocked[0]!.body.error).to.equal('invalid_request');
      const token = await postForm(strict.tokenUrl, { grant_type: 'client_credentials', scope: 'system/Patient.rs' }, basic(body.client_secret));
      expect(token.status).to.equal(429);
    } finally {
      await strict.stop();
    }
  });
});
