import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { createHash } from 'node:crypto';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AuthState } from '../../src/auth/state';
import { issueAccessToken } from '../../src/auth/tokens';
import { jose } from '../../src/auth/jose';
import { Browser, consentFlow, pkce } from './browser';
import { keyPair, postForm, register, startAuthServer } from './helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const REDIRECT = 'https://app.example/callback';

/**
 * A stand-in OpenID Connect provider: its authorization endpoint answers at once (the user is
 * "already signed in there"), its token endpoint checks client secret and PKCE and returns an
 * id_token whose claims the test sets.
 */
async function fakeProvider(clientId: string, clientSecret: string) {
  const key = await keyPair('RS384', 'idp-key');
  const codes = new Map<string, { challenge: string; redirectUri: string }>();
  const provider = { claims: {} as Record<string, unknown>, issuer: '', url: '', tokenRequests: 0, close: async () => {} };
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url!, provider.url);
    if (url.pathname === '/auth') {
      const code = `code-${codes.size}`;
      codes.set(code, { challenge: url.searchParams.get('code_challenge')!, redirectUri: url.searchParams.get('redirect_uri')! });
      const back = new URL(url.searchParams.get('redirect_uri')!);
      back.searchParams.set('code', code);
      back.searchParams.set('state', url.searchParams.get('state')!);
      res.writeHead(302, { location: back.toString() }).end();
    } else if (url.pathname === '/token') {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', async () => {
        provider.tokenRequests++;
        const form = new URLSearchParams(body);
        const grant = codes.get(form.get('code')!);
        const verified = grant && createHash('sha256').update(form.get('code_verifier') ?? '').digest('base64url') === grant.challenge;
        if (!grant || !verified || form.get('client_id') !== clientId || form.get('client_secret') !== clientSecret || form.get('redirect_uri') !== grant.redirectUri) {
          res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"invalid_grant"}');
          return;
        }
        const now = Math.floor(Date.now() / 1000);
        const idToken = await new (jose().SignJWT)({ iss: provider.issuer, aud: clientId, sub: 'kc-user-1', iat: now, exp: now + 60, ...provider.claims })
          .setProtectedHeader({ alg: 'RS384', kid: key.kid })
          .sign(key.privateKey);
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: 'idp-at', token_type: 'Bearer', id_token: idToken }));
      });
    } else if (url.pathname === '/jwks') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [key.publicJwk] }));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  provider.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  provider.issuer = `${provider.url}/realms/test`;
  provider.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return provider;
}

describe('clinician login through an external OpenID Connect provider (@hapi/bell)', () => {
  let app: Awaited<ReturnType<typeof startAuthServer>>;
  let idp: Awaited<ReturnType<typeof fakeProvider>>;
  let state: AuthState;
  let clientId: string;
  let practitioner: string;

  before(async () => {
    idp = await fakeProvider('fhir-server', 'idp-secret');
    app = await startAuthServer({
      OIDC_ISSUER: idp.issuer,
      OIDC_AUTHORIZATION_ENDPOINT: `${idp.url}/auth`,
      OIDC_TOKEN_ENDPOINT: `${idp.url}/token`,
      OIDC_JWKS_URI: `${idp.url}/jwks`,
      OIDC_CLIENT_ID: 'fhir-server',
      OIDC_CLIENT_SECRET: 'idp-secret',
      OIDC_COOKIE_PASSWORD: 'a-cookie-password-of-at-least-32-characters',
      OIDC_DISPLAY_NAME: 'Test Keycloak',
    });
    state = (app.server.plugins as any)['smart-auth'].state;
    const system = (await issueAccessToken(state, { clientId: 'setup', scopes: ['system/*.cruds'] })).accessToken;
    const res = await fetch(`${app.base}/Practitioner`, {
      method: 'POST',
      headers: { authorization: `Bearer ${system}`, 'content-type': 'application/fhir+json' },
      body: JSON.stringify({ resourceType: 'Practitioner', name: [{ family: 'Federated' }] }),
    });
    practitioner = ((await res.json()) as { id: string }).id;
    clientId = (await register(app.origin, { token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], redirect_uris: [REDIRECT], scope: 'openid fhirUser user/*.rs' })).body.client_id;
  });
  after(async () => {
    await app.stop();
    await idp.close();
  });

  /** From the app's authorize URL through the provider and back to our consent (or error) page. */
  async function federatedLogin() {
    const { verifier, challenge } = pkce();
    const browser = new Browser(app.origin);
    const authorize = new URL(`${app.origin}/auth/authorize`);
    for (const [k, v] of Object.entries({ response_type: 'code', client_id: clientId, redirect_uri: REDIRECT, scope: 'openid fhirUser user/*.rs', state: 's', aud: app.base, code_challenge: challenge, code_challenge_method: 'S256' })) {
      authorize.searchParams.set(k, v);
    }
    const login = await browser.visit(authorize.toString());
    const link = /href="(\/auth\/login\/oidc[^"]*)"/.exec(login.text)![1]!.replace(/&amp;/g, '&');
    expect(login.text).to.include('Test Keycloak');
    const toProvider = await browser.visit(link);
    expect(toProvider.redirect!.origin).to.equal(idp.url);
    expect(toProvider.redirect!.searchParams.get('code_challenge_method')).to.equal('S256');
    const atProvider = await fetch(toProvider.redirect!, { redirect: 'manual' });
    const back = await browser.visit(atProvider.headers.get('location')!);
    return { browser, back, verifier };
  }

  it('maps the provider fhirUser to a Practitioner, then the usual consent and tokens follow', async () => {
    idp.claims = { fhirUser: `Practitioner/${practitioner}` };
    const { browser, back, verifier } = await federatedLogin();
    expect(back.status, back.text).to.equal(200);
    const redirect = await consentFlow(browser, back, { username: '-', password: '-' });
    const res = await postForm(app.tokenUrl, { grant_type: 'authorization_code', code: redirect.searchParams.get('code')!, code_verifier: verifier, redirect_uri: REDIRECT, client_id: clientId });
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    expect(jose().decodeJwt(res.body.id_token).fhirUser).to.equal(`${app.base}/Practitioner/${practitioner}`);
    const me = await fetch(`${app.base}/Practitioner/${practitioner}`, { headers: { authorization: `Bearer ${res.body.access_token}` } });
    expect(me.status).to.equal(200);
  });

  it('refuses a provider account without a Practitioner fhirUser, or naming one that does not exist', async () => {
    for (const claims of [{}, { fhirUser: 'Patient/123' }, { fhirUser: 'Practitioner/does-not-exist' }]) {
      idp.claims = claims;
      const { back } = await federatedLogin();
      expect(back.status, JSON.stringify(claims)).to.equal(403);
    }
  });

  it('refuses an id_token from another issuer', async () => {
    idp.claims = { fhirUser: `Practitioner/${practitioner}`, iss: 'https://evil.example' };
    const { back } = await federatedLogin();
    expect(back.status).to.equal(401);
  });
});
