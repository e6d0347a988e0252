import type { Logger } from 'pino';
import type { AuthConfig } from '../config';
import type { Db } from '../store/db';
import type { Directory } from './directory';
import type { KeyStore } from './keys';
import type { RemoteJwksCache } from './remote-jwks';
import type { VerifiedTokens } from './token-cache';

/** What the authorization server needs, built once by the plugin (or a CLI). */
export interface AuthState {
  readonly db: Db;
  readonly keys: KeyStore;
  readonly remoteJwks: RemoteJwksCache;
  /** Access tokens this server instance verified in the last second (src/auth/token-cache.ts). */
  readonly verifiedTokens: VerifiedTokens;
  readonly config: AuthConfig;
  readonly log: Logger;
  /** Patients and Practitioners of the FHIR store (picker, launch contexts, fhirUser). */
  readonly directory: Directory;
  /** Read at each use: the FHIR base may only be known once the server listens (tests on port 0). */
  urls(): AuthUrls;
}

export interface AuthUrls {
  /** The FHIR base: the `aud` of every access token. */
  fhirBase: string;
  /** The `iss` of every token this server signs; OpenID discovery will live under it. */
  issuer: string;
  token: string;
  jwks: string;
  register: string;
  introspect: string;
  revoke: string;
  authorize: string;
  launch: string;
  smartConfiguration: string;
  openidConfiguration: string;
}

/** The /auth endpoints sit beside the FHIR base (…/fhir → …/auth). */
export function authUrls(fhirBase: string): AuthUrls {
  const origin = fhirBase.replace(/\/fhir$/, '');
  const issuer = `${origin}/auth`;
  return {
    fhirBase,
    issuer,
    token: `${issuer}/token`,
    jwks: `${issuer}/jwks`,
    register: `${issuer}/register`,
    introspect: `${issuer}/introspect`,
    revoke: `${issuer}/revoke`,
    authorize: `${issuer}/authorize`,
    launch: `${issuer}/launch`,
    smartConfiguration: `${fhirBase}/.well-known/smart-configuration`,
    openidConfiguration: `${issuer}/.well-known/openid-configuration`,
  };
}
