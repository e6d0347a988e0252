import { createHash, randomBytes } from 'node:crypto';
import { constantTimeEqual } from './secrets';
import type { Request, ResponseToolkit, Server } from '@hapi/hapi';
import type { AuthState } from './state';

/**
 * Browser sessions of the authorization server. The cookie holds a random id; the database only
 * its sha256 (a leaked table gives no usable cookie). HttpOnly; SameSite=Lax, because the user
 * arrives at /auth/authorize by a cross-site top-level redirect from the app and must keep the
 * session (Strict would drop it there); Secure when served over TLS, and then the __Host- prefix
 * pins it to this host and path /.
 */
export interface Session {
  idHash: string;
  csrf: string;
  username?: string;
  fhirUser?: string;
  expiresAt: number;
}

export function sessionCookieName(state: AuthState): string {
  return state.config.secureCookies ? '__Host-smart_session' : 'smart_session';
}

export function registerSessionCookie(server: Server, state: AuthState): void {
  server.state(sessionCookieName(state), {
    ttl: null,
    isSecure: state.config.secureCookies,
    isHttpOnly: true,
    isSameSite: 'Lax',
    path: '/',
    encoding: 'none',
    strictHeader: true,
    ignoreErrors: true,
    clearInvalid: true,
  });
}

export const sha256 = (value: string): string => createHash('sha256').update(value).digest('base64url');
export const randomToken = (bytes = 32): string => randomBytes(bytes).toString('base64url');

interface SessionRow {
  id_hash: string;
  csrf: string;
  username: string | null;
  fhir_user: string | null;
  expires_at: string;
}

export async function currentSession(state: AuthState, request: Request): Promise<Session | undefined> {
  const value = (request.state as Record<string, unknown> | null)?.[sessionCookieName(state)];
  if (typeof value !== 'string' || value === '') return undefined;
  const { rows } = await state.db.query<SessionRow>(
    'SELECT id_hash, csrf, username, fhir_user, expires_at FROM auth_session WHERE id_hash = $1 AND expires_at > now()',
    [sha256(value)],
  );
  const r = rows[0];
  if (!r) return undefined;
  return {
    idHash: r.id_hash,
    csrf: r.csrf,
    ...(r.username ? { username: r.username } : {}),
    ...(r.fhir_user ? { fhirUser: r.fhir_user } : {}),
    expiresAt: Date.parse(r.expires_at),
  };
}

/** A fresh session (anonymous, or for a user who just logged in); sets the cookie on `h`'s response. */
export async function newSession(state: AuthState, h: ResponseToolkit, user?: { username: string; fhirUser?: string }): Promise<Session> {
  const id = randomToken();
  const csrf = randomToken();
  const idHash = sha256(id);
  const expiresAt = Date.now() + state.config.sessionLifetime * 1000;
  await state.db.query(
    'INSERT INTO auth_session (id_hash, csrf, username, fhir_user, expires_at) VALUES ($1, $2, $3, $4, to_timestamp($5))',
    [idHash, csrf, user?.username ?? null, user?.fhirUser ?? null, expiresAt / 1000],
  );
  h.state(sessionCookieName(state), id);
  return { idHash, csrf, ...(user ? { username: user.username } : {}), ...(user?.fhirUser ? { fhirUser: user.fhirUser } : {}), expiresAt };
}

/**
 * Logging in replaces the session (no fixation: an id planted before login is worthless after),
 * and moves the pending authorization requests of the old one over.
 */
export async function loginSession(state: AuthState, h: ResponseToolkit, old: Session, user: { username: string; fhirUser?: string }): Promise<Session> {
  const session = await newSession(state, h, user);
  await state.db.query('UPDATE auth_request SET session = $1 WHERE session = $2', [session.idHash, old.idHash]);
  await state.db.query('DELETE FROM auth_session WHERE id_hash = $1', [old.idHash]);
  return session;
}

export function csrfMatches(session: Session, sent: string | null): boolean {
  if (!sent) return false;
  return constantTimeEqual(session.csrf, sent);
}
