import { createHash, createHmac, randomBytes } from 'node:crypto';
import Bell from '@hapi/bell';
import type { Lifecycle, Request, ResponseToolkit, Server } from '@hapi/hapi';
import { readVisible, requireWritable } from '../access/enforce';
import type { AccessPolicy } from '../access/policy';
import { policyOf } from '../access/request';
import type { WithingsConfig } from '../config';
import type { FhirContext } from '../fhir/context';
import { parseJsonBody } from '../fhir/negotiation';
import { escapeHtml, htmlPage } from '../kernel/html';
import { badRequest, notFound, OperationOutcomeError } from '../kernel/outcome';
import { storeLink } from './accounts';
import { type TokenSet, tokenSetOf, unwrap } from './api';
import type { TokenCipher } from './cipher';

/**
 * Linking a Patient to a Withings account (OAuth 2.0 authorization code, research §1):
 * 1. `POST /withings/links {patient}` by a clinician or the patient (Bearer token; the caller must
 *    be allowed to file the patient's Observations) answers a one-time `authorizeUrl` (10 min);
 * 2. the browser opens it: `GET /withings/connect?ticket=…`, where @hapi/bell (a custom provider)
 *    sends it to Withings' authorize page with its own state cookie, and on the way back trades
 *    the code (valid 30 s) for tokens at `/v2/oauth2` (action=requesttoken);
 * 3. the tokens are stored encrypted, and the account's first sync is due at once.
 * The browser step carries no Bearer token, hence the ticket, of which only a hash is stored.
 */
export const CONNECT_PATH = '/withings/connect';
const TICKET_MS = 10 * 60_000;
const PATIENT_ID = /^[A-Za-z0-9\-.]{1,64}$/;

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** 404 unless the caller sees the patient; 403 unless it may file the patient's readings (what a link does). */
export async function requireLinkRight(ctx: FhirContext, policy: AccessPolicy, patientId: string): Promise<void> {
  if (!PATIENT_ID.test(patientId) || !(await readVisible(ctx.db, policy, 'Patient', patientId))) throw notFound(`Patient/${patientId.slice(0, 64)} is not known`);
  requireWritable(policy, 'Observation', 'c', { resourceType: 'Observation', status: 'final', code: {}, subject: { reference: `Patient/${patientId}` } }, undefined);
}

function patientOf(body: unknown): string {
  const p = (body as { patient?: unknown } | null)?.patient;
  const ref = typeof p === 'string' ? p : typeof (p as { reference?: unknown } | undefined)?.reference === 'string' ? (p as { reference: string }).reference : undefined;
  const id = ref && /^Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(ref)?.[1];
  if (!id) throw badRequest('patient must be a reference {"reference": "Patient/<id>"}', ['patient']);
  return id;
}

export async function registerLinking(server: Server, ctx: FhirContext, config: WithingsConfig, cipher: TokenCipher, linked: (accountId: string) => Promise<void>): Promise<void> {
  // Registered once even when the OpenID Connect login (src/auth) registered it already.
  await server.register({ plugin: Bell, once: true });
  server.auth.strategy('withings', 'bell', {
    provider: {
      name: 'withings',
      protocol: 'oauth2',
      useParamsAuth: true,
      auth: config.authorizeUrl,
      token: `${config.apiUrl}/v2/oauth2`,
      scope: config.scope,
      scopeSeparator: ',',
      // Withings wraps the token answer in its envelope {status, body}: unwrapped here.
      profile(credentials: { profile?: TokenSet }, params: unknown) {
        credentials.profile = tokenSetOf(unwrap(params));
      },
    },
    tokenParams: { action: 'requesttoken' },
    password: createHmac('sha256', config.tokenKey).update('withings-bell-cookie').digest('base64'),
    clientId: config.clientId,
    clientSecret: config.clientSecret,
    cookie: 'bell-withings',
    isSecure: ctx.config.baseUrl.startsWith('https:'),
    // Withings sends the browser back cross-site: a Strict cookie would not come along.
    isSameSite: 'Lax',
    location: () => `${ctx.config.baseUrl}${CONNECT_PATH}`,
  } as never);

  server.route({
    method: 'POST',
    path: '/withings/links',
    options: { payload: { parse: false, output: 'data', maxBytes: 4096 } },
    handler: async (request, h) => {
      const policy = policyOf(request);
      const patientId = patientOf(parseJsonBody(request.payload, ctx.config.inputLimits));
      await requireLinkRight(ctx, policy, patientId);
      const ticket = randomBytes(32).toString('base64url');
      const expiresAt = new Date(Date.now() + TICKET_MS);
      await ctx.db.query('DELETE FROM withings_link_ticket WHERE expires_at < now()');
      await ctx.db.query('INSERT INTO withings_link_ticket (ticket_hash, patient_id, requested_by, expires_at) VALUES ($1, $2, $3, $4)', [
        sha256(ticket), patientId, policy.fhirUser ?? policy.subject ?? policy.clientId, expiresAt,
      ]);
      return h.response({ authorizeUrl: `${ctx.config.baseUrl}${CONNECT_PATH}?ticket=${ticket}`, expiresAt: expiresAt.toISOString() }).code(201).type('application/json');
    },
  });

  const page = (h: ResponseToolkit, status: number, title: string, text: string) =>
    h.response(htmlPage(title, `<h1>${escapeHtml(title)}</h1><p>${escapeHtml(text)}</p>`)).code(status).type('text/html; charset=utf-8');

  // Before bell sends the browser away: only a live ticket starts a link.
  const checkTicket: Lifecycle.Method = async (request: Request, h: ResponseToolkit) => {
    if (request.query.code !== undefined || request.query.error !== undefined) return h.continue;
    const ticket = request.query.ticket;
    const { rows } = typeof ticket === 'string' ? await ctx.db.query('SELECT 1 FROM withings_link_ticket WHERE ticket_hash = $1 AND expires_at > now()', [sha256(ticket)]) : { rows: [] };
    if (rows.length === 0) return page(h, 400, 'Link expired', 'This link is unknown or has expired. Ask for a new one.').takeover();
    return h.continue;
  };

  server.route({
    method: 'GET',
    path: CONNECT_PATH,
    options: { auth: { strategy: 'withings', mode: 'try' }, ext: { onPreAuth: { method: checkTicket } } },
    handler: async (request, h) => {
      if (!request.auth.isAuthenticated) {
        ctx.log.warn({ err: request.auth.error }, 'Withings link failed');
        return page(h, 400, 'Link failed', 'Withings did not grant access, or the answer could not be used. Start again.');
      }
      const credentials = request.auth.credentials as unknown as { profile: TokenSet; query?: Record<string, string> };
      const ticket = credentials.query?.ticket;
      const { rows } = ticket
        ? await ctx.db.query<{ patient_id: string; requested_by: string | null }>('DELETE FROM withings_link_ticket WHERE ticket_hash = $1 AND expires_at > now() RETURNING patient_id, requested_by', [sha256(ticket)])
        : { rows: [] };
      if (!rows[0]) return page(h, 400, 'Link expired', 'This link is unknown or has expired. Ask for a new one.');
      try {
        const { id } = await storeLink(ctx.db, cipher, { patientId: rows[0].patient_id, tokens: credentials.profile, linkedBy: rows[0].requested_by ?? undefined });
        ctx.log.info({ account: id, patient: rows[0].patient_id }, 'Withings account linked');
        await linked(id);
      } catch (err) {
        if (err instanceof OperationOutcomeError && err.status === 409) return page(h, 409, 'Already linked', err.message);
        throw err;
      }
      return page(h, 200, 'Withings account linked', 'Readings from this Withings account now reach the care team.');
    },
  });
}
