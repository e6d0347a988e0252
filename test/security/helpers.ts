import type { AuthState } from '../../src/auth/state';
import { issueAccessToken } from '../../src/auth/tokens';
import { startTestServer, type TestServer } from '../helpers/server';

/**
 * A server with auth on and tokens minted by its own authorization server (recorded, signed,
 * verified as any client's would be), for suites that attack the access policy.
 */
export interface SecuredServer extends TestServer {
  /** Authorization headers of a token with `scopes`, optionally bound to a patient and a user. */
  as(scopes: string, context?: { patient?: string; fhirUser?: string; clientId?: string; lifetime?: number }): Promise<Record<string, string>>;
  /** Creates a resource with a system token; its id. */
  create(body: Record<string, unknown>): Promise<string>;
  system: Record<string, string>;
}

export async function startSecuredServer(env: Record<string, string> = {}, options: { listen?: boolean } = {}): Promise<SecuredServer> {
  const app = await startTestServer({ AUTH_DISABLED: 'false', ...env }, options);
  const state = (app.server.plugins as unknown as Record<string, { state: AuthState }>)['smart-auth']!.state;
  const as = async (scopes: string, context: { patient?: string; fhirUser?: string; clientId?: string; lifetime?: number } = {}) => {
    const { accessToken } = await issueAccessToken(state, {
      clientId: context.clientId ?? 'security-suite',
      scopes: scopes.split(' '),
      ...(context.patient ? { patient: context.patient } : {}),
      ...(context.fhirUser ? { fhirUser: context.fhirUser, subject: context.fhirUser.toLowerCase().replace('/', '-') } : {}),
      ...(context.lifetime !== undefined ? { lifetime: context.lifetime } : {}),
    });
    return { authorization: `Bearer ${accessToken}` };
  };
  const system = await as('system/*.cruds');
  const create = async (body: Record<string, unknown>) => {
    const res = await app.request({ method: 'POST', url: `/fhir/${String(body.resourceType)}`, payload: body, headers: system });
    if (res.statusCode !== 201) throw new Error(`${res.statusCode} ${res.payload}`);
    return res.json.id as string;
  };
  return Object.assign(app, { as, create, system });
}
