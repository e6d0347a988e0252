import { noteClaimedActor } from '../audit';
import type { Request, ResponseObject, ResponseToolkit, Server } from '@hapi/hapi';
import { type Client, findClient } from './clients';
import { S256_CHALLENGE, issueCode } from './grants';
import { consentPage, errorPage, loginPage, type Page, type PatientLabel, pickerPage } from './pages';
import { grantScopes, parseResourceScope, type ScopeContext, splitScope } from '../access/scopes';
import { type Session, csrfMatches, currentSession, loginSession, newSession, randomToken } from './session';
import type { AuthState } from './state';
import type { PickingUser } from './directory';
import { accountBuckets, findUser, isCaregiverUser, isPatientUser, loginBudgets, verifyPassword } from './users';
import { clearBucket, forgive, take } from './throttle';
import { queryParamsOf } from '../kernel/request-target';

const MAX_FORM_BYTES = 16 * 1024;
/** One answer for a launch whose patient the signed-in user may not have: whose it is, or whether it exists, is not said. */
const LAUNCH_REFUSED = 'the launch is for a patient the signed-in user may not access';
const NO_LINK = 'the signed-in caregiver is not linked to a patient right now (RelatedPerson inactive, out of its period or unknown)';

/** How long a user has to log in, pick a patient and consent. */
const REQUEST_LIFETIME_S = 600;

/** A validated authorization request (RFC 6749 §4.1.1, SMART App Launch 2.2 §"Obtain authorization code"). */
export interface AuthorizationRequest {
  clientId: string;
  redirectUri: string;
  scopes: string[];
  state: string;
  codeChallenge: string;
  nonce?: string;
  /** EHR launch context, resolved from `launch`. */
  launch?: { id: string; patient: string; encounter?: string };
}

/** Shown to the user: the client or redirect URI cannot be trusted with a redirect (RFC 6749 §4.1.2.1). */
class ShownError extends Error {}
/** Sent back to the app's redirect URI. */
class RedirectedError extends Error {
  constructor(
    readonly error: string,
    description: string,
  ) {
    super(description);
  }
}

function page(h: ResponseToolkit, p: Page): ResponseObject {
  return h
    .response(p.html)
    .code(p.status)
    .type('text/html; charset=utf-8')
    .header('cache-control', 'no-store')
    .header('pragma', 'no-cache')
    .header('x-frame-options', 'DENY')
    .header('referrer-policy', 'no-referrer')
    // No form-action: browsers apply it to the redirect that follows a form post, which here
    // goes to the app.
    .header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'");
}

function redirectTo(h: ResponseToolkit, url: string): ResponseObject {
  return h.response().code(303).header('location', url).header('cache-control', 'no-store');
}

/** The app's redirect URI with these parameters, plus RFC 9207's iss (mix-up defence). */
function appRedirect(state: AuthState, redirectUri: string, params: Record<string, string | undefined>): string {
  const url = new URL(redirectUri);
  for (const [k, v] of Object.entries(params)) if (v !== undefined) url.searchParams.set(k, v);
  url.searchParams.set('iss', state.urls().issuer);
  return url.toString();
}

function parseParams(request: Request): URLSearchParams {
  if (request.method === 'get') return queryParamsOf(request);
  const type = String(request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') throw new ShownError('the authorization request must be a form post (application/x-www-form-urlencoded) or a GET');
  return new URLSearchParams(String(request.payload ?? ''));
}

/**
 * Validates an authorization request. Client and redirect URI first: until both are known good,
 * errors are shown, never redirected (an open redirector otherwise). Then everything else is
 * redirected with `error`; a wrong `aud` never reaches a code.
 */
async function validateRequest(state: AuthState, params: URLSearchParams): Promise<{ client: Client; req: AuthorizationRequest }> {
  for (const name of ['client_id', 'redirect_uri']) {
    if (params.getAll(name).length > 1) throw new ShownError(`${name} is repeated`);
  }
  const clientId = params.get('client_id');
  if (!clientId) throw new ShownError('client_id is missing');
  const client = await findClient(state.db, clientId);
  if (!client) throw new ShownError('unknown client_id');
  const redirectUri = params.get('redirect_uri');
  if (!redirectUri) throw new ShownError('redirect_uri is missing');
  // Exact string match (RFC 9700 §2.1): no prefix, case, port, path or query variations.
  if (!client.redirectUris.includes(redirectUri)) throw new ShownError('redirect_uri is not registered for this client');

  const oauthState = params.get('state') ?? undefined;
  const fail = (error: string, description: string) => new RedirectedError(error, description);
  for (const [name] of params) {
    if (params.getAll(name).length > 1) throw fail('invalid_request', `${name} is repeated`);
  }
  if (params.get('response_type') !== 'code') throw fail('unsupported_response_type', 'response_type must be code');
  if (!client.grantTypes.includes('authorization_code')) throw fail('unauthorized_client', 'this client is not registered for authorization_code');
  if (!oauthState) throw fail('invalid_request', 'state is required');
  const aud = params.get('aud');
  if (!aud) throw fail('invalid_request', `aud is required: the FHIR base ${state.urls().fhirBase}`);
  if (aud.replace(/\/+$/, '') !== state.urls().fhirBase) throw fail('invalid_request', `aud must be this server's FHIR base ${state.urls().fhirBase}`);
  const challenge = params.get('code_challenge');
  const method = params.get('code_challenge_method');
  if (!challenge) throw fail('invalid_request', 'code_challenge is required (PKCE with S256)');
  if (method !== 'S256') throw fail('invalid_request', 'code_challenge_method must be S256 (plain is refused)');
  if (!S256_CHALLENGE.test(challenge)) throw fail('invalid_request', 'code_challenge must be the base64url SHA-256 of the verifier (43 characters)');
  const scopes = splitScope(params.get('scope') ?? undefined);
  if (scopes.length === 0) throw fail('invalid_scope', 'scope is required');

  let launch: AuthorizationRequest['launch'];
  const launchId = params.get('launch');
  if (launchId) {
    const { rows } = await state.db.query<{ patient: string; encounter: string | null }>(
      'SELECT patient, encounter FROM auth_launch WHERE id = $1 AND client_id = $2 AND expires_at > now() AND used_at IS NULL',
      [launchId, client.clientId],
    );
    if (!rows[0]) throw fail('invalid_request', 'launch is unknown, expired, used or for another client');
    launch = { id: launchId, patient: rows[0].patient, ...(rows[0].encounter ? { encounter: rows[0].encounter } : {}) };
  }
  const nonce = params.get('nonce') ?? undefined;
  return {
    client,
    req: { clientId: client.clientId, redirectUri, scopes, state: oauthState, codeChallenge: challenge, ...(nonce ? { nonce } : {}), ...(launch ? { launch } : {}) },
  };
}

interface PendingRequest {
  id: string;
  req: AuthorizationRequest;
  patient?: string;
}

async function pendingRequest(state: AuthState, id: string, session: Session | undefined): Promise<PendingRequest | undefined> {
  if (!session) return undefined;
  const { rows } = await state.db.query<{ params: AuthorizationRequest; patient: string | null }>(
    'SELECT params, patient FROM auth_request WHERE id = $1 AND session = $2 AND expires_at > now()',
    [id, session.idHash],
  );
  const r = rows[0];
  return r ? { id, req: r.params, ...(r.patient ? { patient: r.patient } : {}) } : undefined;
}

/** The patient context of this request for this user, and where it came from. */
async function patientContext(state: AuthState, session: Session, pending: PendingRequest): Promise<{ patient?: string; mismatch?: boolean; noLink?: boolean; needsPicker: boolean }> {
  const fixed = isPatientUser(session.fhirUser)
    ? session.fhirUser!.slice('Patient/'.length)
    : isCaregiverUser(session.fhirUser)
      ? await state.directory.linkedPatient(session.fhirUser!.slice('RelatedPerson/'.length))
      : undefined;
  // A caregiver whose link does not hold (unknown, inactive, out of its period) has no patient.
  if (isCaregiverUser(session.fhirUser) && fixed === undefined) return { noLink: true, needsPicker: false };
  if (fixed !== undefined) {
    // A patient or caregiver user is never given another patient's context, even by an EHR launch.
    if (pending.req.launch && pending.req.launch.patient !== fixed) return { mismatch: true, needsPicker: false };
    return { patient: fixed, needsPicker: false };
  }
  // An EHR launch hands over a patient chosen by someone else (the EHR, another clinician): the
  // signed-in user must be one who could have picked it, or a Consent that denies them would be
  // bypassed by the launch (the consent page names the patient, the token carries it).
  if (pending.req.launch) {
    if (!(await state.directory.mayPick(pickingUser(session, pending), pending.req.launch.patient))) return { mismatch: true, needsPicker: false };
    return { patient: pending.req.launch.patient, needsPicker: false };
  }
  if (pending.patient) return { patient: pending.patient, needsPicker: false };
  return { needsPicker: pending.req.scopes.includes('launch/patient') };
}

/**
 * What the consent screen offers: the requested scopes cut to the client's pre-authorised set,
 * patient/ scopes only with a patient context, user/ scopes only for clinicians (a patient's or
 * caregiver's "user" access is one patient's compartment, which only patient/ scopes express), fhirUser only
 * for a user who has a FHIR identity, launch only for an EHR launch.
 */
function offeredScopes(client: Client, req: AuthorizationRequest, session: Session, patient: string | undefined): string[] {
  const contexts: ScopeContext[] = isPatientUser(session.fhirUser) || isCaregiverUser(session.fhirUser) ? ['patient'] : ['patient', 'user'];
  const granted = grantScopes(req.scopes, client.scope, { contexts, otherScopes: true });
  return granted.filter((s) => {
    const parsed = parseResourceScope(s);
    if (parsed) return parsed.context !== 'patient' || patient !== undefined;
    if (s === 'fhirUser') return session.fhirUser !== undefined;
    if (s === 'launch') return req.launch !== undefined;
    if (s === 'launch/patient') return patient !== undefined;
    if (s === 'launch/encounter') return req.launch?.encounter !== undefined;
    return true;
  });
}

function describeScope(scope: string): string {
  const parsed = parseResourceScope(scope);
  if (parsed) {
    const verbs = [...parsed.actions].map((a) => ({ c: 'create', r: 'read', u: 'update', d: 'delete', s: 'search' })[a]).join(', ');
    const what = parsed.type === '*' ? 'all record types' : parsed.type;
    const whose = { patient: "of this patient", user: 'that you can access', system: 'on the whole server' }[parsed.context];
    return `${verbs}: ${what} ${whose}${parsed.query ? ' (limited)' : ''}`;
  }
  return (
    {
      openid: 'Know who you are (OpenID Connect)',
      fhirUser: 'Know your FHIR identity',
      profile: 'Know your user name',
      launch: 'Receive the context of the EHR launch',
      'launch/patient': 'Know which patient is chosen',
      'launch/encounter': 'Know which encounter is open',
      offline_access: 'Keep access after you close the app (until you revoke it)',
      online_access: 'Keep access while you stay signed in',
    }[scope] ?? scope
  );
}

async function patientChoices(state: AuthState, request: Request, who: PickingUser): Promise<Array<{ id: string; label: PatientLabel }>> {
  const name = queryParamsOf(request).get('name') ?? undefined;
  return state.directory.listPatients(who, name);
}

/** The signed-in user of `session` choosing for the app of `pending`. */
function pickingUser(session: Session, pending: PendingRequest): PickingUser {
  return { clientId: pending.req.clientId, username: session.username!, ...(session.fhirUser ? { fhirUser: session.fhirUser } : {}) };
}

export function registerAuthorizeRoutes(server: Server, state: AuthState): void {
  const form = { parse: false, output: 'data', maxBytes: MAX_FORM_BYTES } as const;
  const interactionUrl = (id: string, step = '') => `/auth/interaction/${encodeURIComponent(id)}${step}`;

  const authorize = async (request: Request, h: ResponseToolkit) => {
    let validated: { client: Client; req: AuthorizationRequest };
    let params: URLSearchParams;
    try {
      params = parseParams(request);
      validated = await validateRequest(state, params);
    } catch (err) {
      if (err instanceof ShownError) return page(h, errorPage(400, err.message));
      if (err instanceof RedirectedError) {
        const p = parseParams(request);
        return redirectTo(h, appRedirect(state, p.get('redirect_uri')!, { error: err.error, error_description: err.message, state: p.get('state') ?? undefined }));
      }
      throw err;
    }
    const session = (await currentSession(state, request)) ?? (await newSession(state, h));
    const id = randomToken(18);
    await state.db.query(
      'INSERT INTO auth_request (id, session, params, expires_at) VALUES ($1, $2, $3, now() + make_interval(secs => $4))',
      [id, session.idHash, JSON.stringify(validated.req), REQUEST_LIFETIME_S],
    );
    return redirectTo(h, interactionUrl(id));
  };
  server.route({ method: 'GET', path: '/auth/authorize', options: { auth: false }, handler: authorize });
  server.route({ method: 'POST', path: '/auth/authorize', options: { auth: false, payload: form }, handler: authorize });

  /** The next step of a pending request: login, patient picker or consent. */
  server.route({
    method: 'GET',
    path: '/auth/interaction/{id}',
    options: { auth: false },
    handler: async (request, h) => {
      const session = await currentSession(state, request);
      const pending = await pendingRequest(state, String(request.params.id), session);
      if (!session || !pending) return page(h, errorPage(400, 'This sign-in has expired or belongs to another browser. Start again from the app.'));
      const client = await findClient(state.db, pending.req.clientId);
      if (!client) return page(h, errorPage(400, 'unknown client_id'));
      const name = client.clientName ?? client.clientId;
      if (!session.username) {
        const oidc = state.config.oidc ? { oidcUrl: `/auth/login/oidc?request=${encodeURIComponent(pending.id)}`, oidcName: state.config.oidc.displayName } : {};
        return page(h, loginPage(interactionUrl(pending.id, '/login'), session.csrf, name, oidc));
      }
      const ctx = await patientContext(state, session, pending);
      if (ctx.noLink) return finishWithError(h, pending, 'access_denied', NO_LINK);
      if (ctx.mismatch) return finishWithError(h, pending, 'access_denied', LAUNCH_REFUSED);
      if (ctx.needsPicker) return page(h, pickerPage(interactionUrl(pending.id, '/patient'), session.csrf, await patientChoices(state, request, pickingUser(session, pending))));
      const offered = offeredScopes(client, pending.req, session, ctx.patient);
      if (offered.length === 0) return finishWithError(h, pending, 'invalid_scope', 'none of the requested scopes can be granted to this client for this user');
      return page(
        h,
        consentPage(interactionUrl(pending.id, '/consent'), session.csrf, name, offered.map((s) => ({ scope: s, label: describeScope(s) })), {
          user: session.username,
          ...(ctx.patient ? { patient: (await state.directory.describePatient(ctx.patient)) ?? { name: `Patient/${ctx.patient}` } } : {}),
        }),
      );
    },
  });

  const finishWithError = async (h: ResponseToolkit, pending: PendingRequest, error: string, description: string) => {
    await state.db.query('DELETE FROM auth_request WHERE id = $1', [pending.id]);
    return redirectTo(h, appRedirect(state, pending.req.redirectUri, { error, error_description: description, state: pending.req.state }));
  };

  /** A form post of a step: session, pending request and CSRF token must all hold. */
  const step = async (request: Request, h: ResponseToolkit): Promise<{ session: Session; pending: PendingRequest; form: URLSearchParams } | ResponseObject> => {
    const session = await currentSession(state, request);
    const pending = await pendingRequest(state, String(request.params.id), session);
    if (!session || !pending) return page(h, errorPage(400, 'This sign-in has expired or belongs to another browser. Start again from the app.'));
    const type = String(request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    const body = type === 'application/x-www-form-urlencoded' ? new URLSearchParams(String(request.payload ?? '')) : new URLSearchParams();
    if (!csrfMatches(session, body.get('csrf'))) return page(h, errorPage(403, 'The form has expired or did not come from this site. Go back and try again.'));
    return { session, pending, form: body };
  };

  type Step = { session: Session; pending: PendingRequest; form: URLSearchParams };
  /**
   * A POST of one interaction page (login, patient, consent): the pending request and the
   * session must match (step), and every page after login needs a signed-in user.
   */
  const interactionStep = (name: string, { afterLogin }: { afterLogin: boolean }, handler: (request: Request, h: ResponseToolkit, s: Step) => Promise<ResponseObject>) =>
    server.route({
      method: 'POST',
      path: `/auth/interaction/{id}/${name}`,
      options: { auth: false, payload: form },
      handler: async (request, h) => {
        const s = await step(request, h);
        if (!('session' in s)) return s;
        if (afterLogin && !s.session.username) return redirectTo(h, interactionUrl(s.pending.id));
        return handler(request, h, s);
      },
    });

  interactionStep('login', { afterLogin: false }, async (request, h, { session, pending, form: body }) => {
    const client = await findClient(state.db, pending.req.clientId);
    const name = client?.clientName ?? pending.req.clientId;
    const again = (error: string, status: number) => page(h, loginPage(interactionUrl(pending.id, '/login'), session.csrf, name, { error, status }));
    const username = body.get('username') ?? '';
    const password = body.get('password') ?? '';
    noteClaimedActor(request, { claimedClient: pending.req.clientId, ...(username ? { claimedUser: username } : {}) });
    if (!username || !password) return again('Enter your username and password.', 400);
    const address = request.info.remoteAddress;
    // Counted before the password is hashed: thirty guesses at once get five hashes, not thirty.
    const attempt = await take(state.db, loginBudgets(state.config, username, address));
    if (!attempt.allowed) {
      state.log.warn({ username, address }, 'login refused: too many failed attempts');
      return again('Too many failed sign-ins. Wait a few minutes and try again.', 429).header('retry-after', String(attempt.retryAfterSeconds));
    }
    const user = await findUser(state.db, username);
    if (!(await verifyPassword(password, user?.passwordHash)) || !user) {
      state.log.info({ username, address }, 'login failed');
      return again('Wrong username or password.', 401);
    }
    await forgive(state.db, attempt.attempt);
    for (const bucket of accountBuckets(user.username, address)) await clearBucket(state.db, bucket);
    await loginSession(state, h, session, { username: user.username, ...(user.fhirUser ? { fhirUser: user.fhirUser } : {}) });
    state.log.info({ username }, 'user logged in');
    return redirectTo(h, interactionUrl(pending.id));
  });

  interactionStep('patient', { afterLogin: true }, async (request, h, { session, pending, form: body }) => {
    if (isPatientUser(session.fhirUser) || isCaregiverUser(session.fhirUser) || pending.req.launch) return redirectTo(h, interactionUrl(pending.id));
    const patient = body.get('patient') ?? '';
    const who = pickingUser(session, pending);
    if (!/^[A-Za-z0-9\-.]{1,64}$/.test(patient) || !(await state.directory.mayPick(who, patient))) {
      return page(h, pickerPage(interactionUrl(pending.id, '/patient'), session.csrf, await patientChoices(state, request, who), 'Choose one of the patients listed.'));
    }
    await state.db.query('UPDATE auth_request SET patient = $1 WHERE id = $2', [patient, pending.id]);
    return redirectTo(h, interactionUrl(pending.id));
  });

  interactionStep('consent', { afterLogin: true }, async (request, h, { session, pending, form: body }) => {
    const client = await findClient(state.db, pending.req.clientId);
    if (!client) return page(h, errorPage(400, 'unknown client_id'));
    const decision = body.get('decision');
    if (decision === 'deny') return finishWithError(h, pending, 'access_denied', 'the user denied access');
    if (decision !== 'allow') return page(h, errorPage(400, 'decision must be allow or deny'));
    const ctx = await patientContext(state, session, pending);
    if (ctx.noLink) return finishWithError(h, pending, 'access_denied', NO_LINK);
    if (ctx.mismatch) return finishWithError(h, pending, 'access_denied', LAUNCH_REFUSED);
    if (ctx.needsPicker) return redirectTo(h, interactionUrl(pending.id));
    // Only what was offered can be kept: a posted scope that was not on the screen is ignored.
    const offered = offeredScopes(client, pending.req, session, ctx.patient);
    const kept = body.getAll('scope').filter((x, i, all) => offered.includes(x) && all.indexOf(x) === i);
    if (kept.length === 0) return finishWithError(h, pending, 'access_denied', 'the user allowed none of the requested scopes');
    // One use per authorization request; an EHR launch once per grant.
    const { rowCount } = await state.db.query('DELETE FROM auth_request WHERE id = $1', [pending.id]);
    if (rowCount === 0) return page(h, errorPage(400, 'This sign-in was already completed.'));
    if (pending.req.launch) {
      const used = await state.db.query('UPDATE auth_launch SET used_at = now() WHERE id = $1 AND used_at IS NULL AND expires_at > now()', [pending.req.launch.id]);
      if (used.rowCount === 0) {
        return redirectTo(h, appRedirect(state, pending.req.redirectUri, { error: 'invalid_request', error_description: 'the launch has expired or was used', state: pending.req.state }));
      }
    }
    const code = await issueCode(state, {
      clientId: client.clientId,
      redirectUri: pending.req.redirectUri,
      codeChallenge: pending.req.codeChallenge,
      scopes: kept,
      username: session.username!, // interactionStep({ afterLogin: true }) let only signed-in sessions through
      ...(session.fhirUser ? { fhirUser: session.fhirUser } : {}),
      ...(ctx.patient ? { patient: ctx.patient } : {}),
      ...(pending.req.launch?.encounter ? { encounter: pending.req.launch.encounter.replace(/^Encounter\//, '') } : {}),
      // The EHR shows its own banner; a standalone app must show which patient it is on.
      needPatientBanner: !pending.req.launch,
      ...(pending.req.nonce ? { nonce: pending.req.nonce } : {}),
      session: session.idHash,
    });
    state.log.info({ clientId: client.clientId, username: session.username, patient: ctx.patient, scope: kept.join(' ') }, 'authorization granted');
    return redirectTo(h, appRedirect(state, pending.req.redirectUri, { code, state: pending.req.state }));
  });
}
