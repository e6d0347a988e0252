import { randomUUID } from 'node:crypto';
import { jose } from '../src/auth/jose';
import { benchAuthorization } from './harness';

/**
 * `BENCH_AUTH=on`: the server keeps auth on and every bench request carries an access token
 * obtained the way an integrator gets one (SMART Backend Services: a registered client with
 * its own key, a signed assertion at the token endpoint). Tokens live at most 300 s, so a new
 * one is fetched every 200 s. The verification cost per request shows in the figures beside an
 * auth-off run.
 */
export const REGISTRATION_TOKEN = `bench-${randomUUID()}`;

export function benchAuthOn(): boolean {
  return process.env.BENCH_AUTH === 'on';
}

export async function startBenchAuth(fhirBase: string): Promise<() => void> {
  const origin = fhirBase.replace(/\/fhir$/, '');
  const tokenUrl = `${origin}/auth/token`;
  const { privateKey, publicKey } = await jose().generateKeyPair('ES384', { extractable: true });
  const kid = randomUUID();
  const registered = await fetch(`${origin}/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${REGISTRATION_TOKEN}` },
    body: JSON.stringify({
      client_name: 'npm run bench',
      token_endpoint_auth_method: 'private_key_jwt',
      grant_types: ['client_credentials'],
      jwks: { keys: [{ ...(await jose().exportJWK(publicKey)), kid, alg: 'ES384' }] },
      scope: 'system/*.cruds',
    }),
  });
  if (registered.status !== 201) throw new Error(`bench client registration failed: ${registered.status} ${await registered.text()}`);
  const clientId = ((await registered.json()) as { client_id: string }).client_id;

  const fetchToken = async () => {
    const now = Math.floor(Date.now() / 1000);
    const assertion = await new (jose().SignJWT)({ iss: clientId, sub: clientId, aud: tokenUrl, exp: now + 240, jti: randomUUID() })
      .setProtectedHeader({ alg: 'ES384', kid, typ: 'JWT' })
      .sign(privateKey);
    const res = await fetch(tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        scope: 'system/*.cruds',
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: assertion,
      }).toString(),
    });
    if (res.status !== 200) throw new Error(`bench token request failed: ${res.status} ${await res.text()}`);
    benchAuthorization.header = `Bearer ${((await res.json()) as { access_token: string }).access_token}`;
  };
  await fetchToken();
  const timer = setInterval(() => void fetchToken().catch((err: unknown) => console.error('bench token renewal failed', err)), 200_000);
  timer.unref();
  return () => clearInterval(timer);
}
