import { randomUUID } from 'node:crypto';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CryptoKey, JWK } from 'jose';
import { jose } from '../../src/auth/jose';
import type { AuthState } from '../../src/auth/state';
import { issueAccessToken } from '../../src/auth/tokens';
import { type TestServer, startTestServer } from '../helpers/server';
import { Browser, consentFlow, pkce } from './browser';

export const REGISTRATION_TOKEN = 'test-registration-token';

/**
 * A server with auth on, listening on a real port, registration enabled. The suites make
 * hundreds of token requests (many refused on purpose) from one address: the throttles are
 * opened wide here and tested on their own.
 */
export async function startAuthServer(env: Record<string, string> = {}): Promise<TestServer & { base: string; origin: string; tokenUrl: string }> {
  const app = await startTestServer({ AUTH_DISABLED: 'false', REGISTRATION_TOKEN, TOKEN_FAILURES_PER_CLIENT: '100000', TOKEN_REQUESTS_PER_ADDRESS: '100000', ...env }, { listen: true });
  const base = app.ctx.baseUrl;
  const origin = base.replace(/\/fhir$/, '');
  return Object.assign(app, { base, origin, tokenUrl: `${origin}/auth/token` });
}

export interface KeyPair {
  alg: 'RS384' | 'ES384';
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export async function keyPair(alg: 'RS384' | 'ES384' = 'RS384', kid: string = randomUUID()): Promise<KeyPair> {
  const { privateKey, publicKey } = await jose().generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await jose().exportJWK(publicKey)), kid, alg };
  return { alg, kid, privateKey, publicJwk };
}

/** A client assertion; `claims` and `header` override the correct defaults. */
export async function assertion(
  key: KeyPair,
  clientId: string,
  tokenUrl: string,
  { claims = {}, header = {} }: { claims?: Record<string, unknown>; header?: Record<string, unknown> } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new (jose().SignJWT)({ iss: clientId, sub: clientId, aud: tokenUrl, exp: now + 240, jti: randomUUID(), ...claims })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...header } as never)
    .sign(key.privateKey);
}

export async function register(origin: string, metadata: Record<string, unknown>, token = REGISTRATION_TOKEN): Promise<{ status: number; body: any }> {
  const res = await fetch(`${origin}/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(metadata),
  });
  return { status: res.status, body: await res.json() };
}

/** Registers a private_key_jwt backend client with an inline JWKS. */
export async function backendClient(origin: string, scope: string, keys: KeyPair[], extra: Record<string, unknown> = {}): Promise<string> {
  const { status, body } = await register(origin, {
    client_name: 'test backend',
    token_endpoint_auth_method: 'private_key_jwt',
    grant_types: ['client_credentials'],
    jwks: { keys: keys.map((k) => k.publicJwk) },
    scope,
    ...extra,
  });
  if (status !== 201) throw new Error(`registration failed: ${JSON.stringify(body)}`);
  return body.client_id as string;
}

export async function postForm(url: string, params: Record<string, string>, headers: Record<string, string> = {}): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(params).toString(),
  });
  const text = await res.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = text;
  }
  return { status: res.status, body, headers: res.headers };
}

export function clientCredentials(tokenUrl: string, clientAssertion: string, scope: string) {
  return postForm(tokenUrl, {
    grant_type: 'client_credentials',
    scope,
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: clientAssertion,
  });
}

/** A token for a fresh backend client with these scopes. */
export async function backendToken(app: { origin: string; tokenUrl: string }, scope: string): Promise<{ token: string; clientId: string; key: KeyPair }> {
  const key = await keyPair();
  const clientId = await backendClient(app.origin, scope, [key]);
  const res = await clientCredentials(app.tokenUrl, await assertion(key, clientId, app.tokenUrl), scope);
  if (res.status !== 200) throw new Error(`token failed: ${JSON.stringify(res.body)}`);
  return { token: res.body.access_token as string, clientId, key };
}

/** A JWKS URL server on 127.0.0.1 whose answer and cache headers the test controls; counts fetches. */
export async function jwksServer(): Promise<{ url: string; keys: JWK[]; headers: Record<string, string>; fetches: number; close(): Promise<void> }> {
  const state = { keys: [] as JWK[], headers: {} as Record<string, string>, fetches: 0 };
  const server: Server = createServer((_req, res) => {
    state.fetches++;
    res.writeHead(200, { 'content-type': 'application/json', ...state.headers });
    res.end(JSON.stringify({ keys: state.keys }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
  return Object.assign(state, {
    url,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
}

/**
 * Test setup data written over HTTP with a system token issued by the server's own key:
 * `create(resource)` answers the new id.
 */
export async function systemCreator(app: { base: string; server: TestServer['server'] }): Promise<(body: Record<string, unknown>) => Promise<string>> {
  const state = (app.server.plugins as unknown as Record<string, { state: AuthState }>)['smart-auth']!.state;
  const headers = { authorization: `Bearer ${(await issueAccessToken(state, { clientId: 'setup', scopes: ['system/*.cruds'] })).accessToken}`, 'content-type': 'application/fhir+json' };
  return async (body) => {
    const res = await fetch(`${app.base}/${String(body.resourceType)}`, { method: 'POST', headers, body: JSON.stringify(body) });
    if (res.status !== 201) throw new Error(await res.text());
    return ((await res.json()) as { id: string }).id;
  };
}

/**
 * A user's token response from the authorization code flow with PKCE, through the login and
 * consent pages as a browser would go, for the public client `clientId` at `redirectUri`.
 * `appPath`: where the app lives when it is on the server's own origin (the dashboard's /app).
 */
export async function codeFlowTokens(
  app: { origin: string; base: string; tokenUrl: string },
  client: { clientId: string; redirectUri: string; appPath?: string },
  scope: string,
  user: { username: string; password: string },
): Promise<{ access_token: string; refresh_token?: string; scope: string }> {
  const { verifier, challenge } = pkce();
  const authorize = new URL(`${app.origin}/auth/authorize`);
  for (const [k, v] of Object.entries({
    response_type: 'code', client_id: client.clientId, redirect_uri: client.redirectUri, scope, state: 's', aud: app.base, code_challenge: challenge, code_challenge_method: 'S256',
  })) authorize.searchParams.set(k, v);
  const browser = new Browser(app.origin, client.appPath);
  const back = await consentFlow(browser, await browser.visit(authorize.toString()), user);
  const code = back.searchParams.get('code');
  if (!code) throw new Error(`no code: ${back.toString()}`);
  const res = await postForm(app.tokenUrl, { grant_type: 'authorization_code', code, redirect_uri: client.redirectUri, client_id: client.clientId, code_verifier: verifier });
  if (res.status !== 200) throw new Error(`token failed: ${JSON.stringify(res.body)}`);
  return res.body;
}
