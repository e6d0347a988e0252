import { DEFAULT_INPUT_LIMITS, type InputLimits } from './kernel/input-limits';

/** Configuration from the environment; the names are the interface of DESIGN.md. */
export interface Config {
  port: number;
  host: string;
  baseUrl: string;
  databaseUrl: string;
  dataDir: string;
  logLevel: string;
  /** Largest accepted request body in bytes; larger gets 413. */
  maxBodyBytes: number;
  /** Search page size when `_count` is absent, and the largest `_count` honoured. */
  defaultPageSize: number;
  maxPageSize: number;
  /** Longest a database statement may run (PostgreSQL statement_timeout); 0 = no limit. */
  statementTimeoutMs: number;
  /** Bounds on JSON bodies and searches (src/kernel/input-limits.ts): past them, a 4xx before any work grows. */
  inputLimits: InputLimits;
  /**
   * Strict-Transport-Security on every response: BASE_URL is https (TLS at the server or a
   * proxy), or TLS_PROXY=true says a TLS-terminating proxy fronts a plain-http BASE_URL.
   */
  hsts: boolean;
  /** Most entries accepted in one transaction or batch Bundle. */
  maxBundleEntries: number;
  /** Monitoring (README "Monitoring"): missed-measurement check period, 0 = off. */
  adherenceCheckIntervalMs: number;
  /** Subscription rest-hook deliveries: first retry delay (doubling), and attempts before giving up. */
  subscriptionRetryBaseMs: number;
  subscriptionMaxAttempts: number;
  /** Notification endpoints must be https (default: when NODE_ENV=production). */
  subscriptionRequireHttps: boolean;
  /** Notification endpoints may be loopback, private or link-local addresses (default false: SSRF). */
  subscriptionAllowPrivateNetworks: boolean;
  /** Medication schedules (README "Medication"): reminder job period (0 = off), how long before a dose it reminds, default grace, default zone. */
  medicationReminderIntervalMs: number;
  medicationReminderLeadMs: number;
  medicationGraceMs: number;
  /** IANA zone of a Patient without the timezone extension. */
  defaultTimeZone: string;
  /** `$check-adherence?now=` may lie in the future (tests only; never in production). */
  allowClockOverride: boolean;
  /** SMART authorization (src/auth); see README "Authorization". */
  auth: AuthConfig;
  /** The audit trail (src/audit). AUDIT=false turns it off: for measuring its cost only, refused in production. */
  audit: AuditConfig;
  /**
   * PSEUDONYM_KEY (at least 32 characters): the HMAC key of pseudonyms — `$anonymize`'s ids and
   * date shifts, and the erased patient's name in the erasure's audit record (decision 014).
   * Unset: `$anonymize` is refused and erasure records carry no pseudonym.
   */
  pseudonymKey?: string;
}

export interface AuditConfig {
  enabled: boolean;
  /** Reads are recorded after their response, in batches: at most this long after it (AUDIT_FLUSH_INTERVAL). */
  flushIntervalMs: number;
  /** ...or as soon as this many wait (AUDIT_FLUSH_SIZE). */
  flushSize: number;
}

/** `15m`, `30s`, `2h`, `1d`, `500ms` or plain milliseconds. */
function duration(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined || value === '') return fallback;
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(value.trim());
  if (!m) throw new Error(`${name} must be a duration like 15m, 30s, 2h or milliseconds, got "${value}"`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? 'ms']!;
}

function int(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) {
    throw new Error(`${name} must be a non-negative integer, got "${value}"`);
  }
  return n;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const port = int(env.PORT, 8080, 'PORT');
  const host = env.HOST || '0.0.0.0';
  const baseUrl = (env.BASE_URL || `http://localhost:${port}`).replace(/\/+$/, '');
  return {
    port,
    host,
    baseUrl,
    databaseUrl: env.DATABASE_URL ?? '',
    dataDir: env.DATA_DIR || './.data',
    logLevel: env.LOG_LEVEL || 'info',
    maxBodyBytes: int(env.MAX_BODY_BYTES, 16 * 1024 * 1024, 'MAX_BODY_BYTES'),
    defaultPageSize: int(env.DEFAULT_PAGE_SIZE, 50, 'DEFAULT_PAGE_SIZE'),
    maxPageSize: int(env.MAX_PAGE_SIZE, 1000, 'MAX_PAGE_SIZE'),
    maxBundleEntries: int(env.MAX_BUNDLE_ENTRIES, 10_000, 'MAX_BUNDLE_ENTRIES'),
    inputLimits: {
      maxJsonDepth: int(env.MAX_JSON_DEPTH, DEFAULT_INPUT_LIMITS.maxJsonDepth, 'MAX_JSON_DEPTH'),
      maxJsonElements: int(env.MAX_JSON_ELEMENTS, DEFAULT_INPUT_LIMITS.maxJsonElements, 'MAX_JSON_ELEMENTS'),
      maxStringLength: int(env.MAX_STRING_LENGTH, DEFAULT_INPUT_LIMITS.maxStringLength, 'MAX_STRING_LENGTH'),
      maxSearchParameters: int(env.MAX_SEARCH_PARAMETERS, DEFAULT_INPUT_LIMITS.maxSearchParameters, 'MAX_SEARCH_PARAMETERS'),
      maxOrValues: int(env.MAX_OR_VALUES, DEFAULT_INPUT_LIMITS.maxOrValues, 'MAX_OR_VALUES'),
    },
    hsts: baseUrl.startsWith('https:') || bool(env.TLS_PROXY, 'TLS_PROXY'),
    statementTimeoutMs: duration(env.STATEMENT_TIMEOUT, 15_000, 'STATEMENT_TIMEOUT'),
    adherenceCheckIntervalMs: duration(env.ADHERENCE_CHECK_INTERVAL, 15 * 60_000, 'ADHERENCE_CHECK_INTERVAL'),
    subscriptionRetryBaseMs: duration(env.SUBSCRIPTION_RETRY_BASE, 5_000, 'SUBSCRIPTION_RETRY_BASE'),
    subscriptionMaxAttempts: int(env.SUBSCRIPTION_MAX_ATTEMPTS, 10, 'SUBSCRIPTION_MAX_ATTEMPTS'),
    subscriptionRequireHttps: env.SUBSCRIPTION_REQUIRE_HTTPS === undefined || env.SUBSCRIPTION_REQUIRE_HTTPS === '' ? env.NODE_ENV === 'production' : bool(env.SUBSCRIPTION_REQUIRE_HTTPS, 'SUBSCRIPTION_REQUIRE_HTTPS'),
    subscriptionAllowPrivateNetworks: bool(env.SUBSCRIPTION_ALLOW_PRIVATE_NETWORKS, 'SUBSCRIPTION_ALLOW_PRIVATE_NETWORKS'),
    medicationReminderIntervalMs: duration(env.MEDICATION_REMINDER_INTERVAL, 60_000, 'MEDICATION_REMINDER_INTERVAL'),
    medicationReminderLeadMs: duration(env.MEDICATION_REMINDER_LEAD, 15 * 60_000, 'MEDICATION_REMINDER_LEAD'),
    medicationGraceMs: duration(env.MEDICATION_GRACE, 60 * 60_000, 'MEDICATION_GRACE'),
    defaultTimeZone: timeZone(env.DEFAULT_TIME_ZONE),
    allowClockOverride: clockOverride(env),
    auth: loadAuthConfig(env),
    audit: loadAuditConfig(env),
    ...(env.PSEUDONYM_KEY ? { pseudonymKey: pseudonymKey(env.PSEUDONYM_KEY) } : {}),
  };
}

function pseudonymKey(value: string): string {
  if (value.length < 32) throw new Error('PSEUDONYM_KEY must be at least 32 characters (a random secret: openssl rand -hex 32)');
  return value;
}

function loadAuditConfig(env: NodeJS.ProcessEnv): AuditConfig {
  const enabled = env.AUDIT === undefined || env.AUDIT === '' || bool(env.AUDIT, 'AUDIT');
  if (!enabled && env.NODE_ENV === 'production') throw new Error('AUDIT=false is for measurements only and is refused when NODE_ENV=production');
  return {
    enabled,
    flushIntervalMs: duration(env.AUDIT_FLUSH_INTERVAL, 250, 'AUDIT_FLUSH_INTERVAL'),
    flushSize: Math.max(1, int(env.AUDIT_FLUSH_SIZE, 200, 'AUDIT_FLUSH_SIZE')),
  };
}

export interface AuthConfig {
  /** AUTH_DISABLED=true: no token required (local experiments only; refused in production). */
  disabled: boolean;
  /** Initial access token guarding RFC 7591 registration; registration is off when unset. */
  registrationToken?: string;
  /** A private signing key (PKCS#8 PEM or private JWK JSON) used instead of database-kept keys. */
  signingKey?: string;
  /** Lifetime of access tokens in seconds; at most 300 (SMART Backend Services). */
  accessTokenLifetime: number;
  /** Refresh tokens of `offline_access` grants live this long (seconds); `online_access` ones as long as the login session. */
  refreshTokenLifetime: number;
  /** Login session of the authorization server (seconds); also the life of online_access refresh tokens. */
  sessionLifetime: number;
  /** Failed logins tolerated per account and per client address within `loginFailureWindowMs` before logins are refused (429). */
  loginMaxFailuresPerAccount: number;
  loginMaxFailuresPerAddress: number;
  loginFailureWindowMs: number;
  /** Token requests accepted per client address per minute (all of them); past it, 429. */
  tokenRequestsPerAddress: number;
  /** Token requests per client and address that may fail to authenticate within `tokenFailureWindowMs`. */
  tokenFailuresPerClient: number;
  tokenFailureWindowMs: number;
  /** Session cookie with Secure: BASE_URL is https (TLS at the server or a proxy), or COOKIE_SECURE=true. */
  secureCookies: boolean;
  /** External OpenID Connect login for clinicians (@hapi/bell), when OIDC_ISSUER is set. */
  oidc?: OidcConfig;
}

/** An external OpenID Connect provider (e.g. Keycloak) whose users log in as Practitioners. */
export interface OidcConfig {
  issuer: string;
  authorizationEndpoint: string;
  tokenEndpoint: string;
  jwksUri: string;
  clientId: string;
  clientSecret: string;
  /** Encrypts bell's state cookie; at least 32 characters. */
  cookiePassword: string;
  /** The id_token claim that holds the user's FHIR Practitioner (default `fhirUser`). */
  fhirUserClaim: string;
  /** Shown on the login page. */
  displayName: string;
}

function loadAuthConfig(env: NodeJS.ProcessEnv): AuthConfig {
  const disabled = bool(env.AUTH_DISABLED, 'AUTH_DISABLED');
  if (disabled && env.NODE_ENV === 'production') {
    throw new Error('AUTH_DISABLED=true is refused when NODE_ENV=production: medical data must not be served without tokens');
  }
  const accessTokenLifetime = int(env.ACCESS_TOKEN_LIFETIME, 300, 'ACCESS_TOKEN_LIFETIME');
  if (accessTokenLifetime < 1 || accessTokenLifetime > 300) {
    throw new Error(`ACCESS_TOKEN_LIFETIME must be 1..300 seconds, got ${accessTokenLifetime}`);
  }
  const baseUrl = env.BASE_URL ?? '';
  return {
    disabled,
    registrationToken: env.REGISTRATION_TOKEN || undefined,
    signingKey: env.AUTH_SIGNING_KEY || undefined,
    accessTokenLifetime,
    refreshTokenLifetime: duration(env.REFRESH_TOKEN_LIFETIME, 30 * 86_400_000, 'REFRESH_TOKEN_LIFETIME') / 1000,
    sessionLifetime: duration(env.AUTH_SESSION_LIFETIME, 8 * 3_600_000, 'AUTH_SESSION_LIFETIME') / 1000,
    loginMaxFailuresPerAccount: int(env.LOGIN_MAX_FAILURES_PER_ACCOUNT, 5, 'LOGIN_MAX_FAILURES_PER_ACCOUNT'),
    loginMaxFailuresPerAddress: int(env.LOGIN_MAX_FAILURES_PER_ADDRESS, 20, 'LOGIN_MAX_FAILURES_PER_ADDRESS'),
    loginFailureWindowMs: duration(env.LOGIN_FAILURE_WINDOW, 15 * 60_000, 'LOGIN_FAILURE_WINDOW'),
    tokenRequestsPerAddress: int(env.TOKEN_REQUESTS_PER_ADDRESS, 300, 'TOKEN_REQUESTS_PER_ADDRESS'),
    tokenFailuresPerClient: int(env.TOKEN_FAILURES_PER_CLIENT, 10, 'TOKEN_FAILURES_PER_CLIENT'),
    tokenFailureWindowMs: duration(env.TOKEN_FAILURE_WINDOW, 5 * 60_000, 'TOKEN_FAILURE_WINDOW'),
    secureCookies: baseUrl.startsWith('https:') || bool(env.COOKIE_SECURE, 'COOKIE_SECURE'),
    ...(env.OIDC_ISSUER ? { oidc: loadOidcConfig(env) } : {}),
  };
}

function loadOidcConfig(env: NodeJS.ProcessEnv): OidcConfig {
  const issuer = env.OIDC_ISSUER!.replace(/\/+$/, '');
  const required = (name: string): string => {
    const value = env[name];
    if (!value) throw new Error(`${name} is required when OIDC_ISSUER is set`);
    return value;
  };
  const cookiePassword = required('OIDC_COOKIE_PASSWORD');
  if (cookiePassword.length < 32) throw new Error('OIDC_COOKIE_PASSWORD must be at least 32 characters');
  return {
    issuer,
    // Keycloak's paths under the realm URL as defaults; any provider can name its own.
    authorizationEndpoint: env.OIDC_AUTHORIZATION_ENDPOINT || `${issuer}/protocol/openid-connect/auth`,
    tokenEndpoint: env.OIDC_TOKEN_ENDPOINT || `${issuer}/protocol/openid-connect/token`,
    jwksUri: env.OIDC_JWKS_URI || `${issuer}/protocol/openid-connect/certs`,
    clientId: required('OIDC_CLIENT_ID'),
    clientSecret: required('OIDC_CLIENT_SECRET'),
    cookiePassword,
    fhirUserClaim: env.OIDC_FHIR_USER_CLAIM || 'fhirUser',
    displayName: env.OIDC_DISPLAY_NAME || 'your organisation',
  };
}

function timeZone(value: string | undefined): string {
  const zone = value || 'UTC';
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
  } catch {
    throw new Error(`DEFAULT_TIME_ZONE must be an IANA time zone such as Europe/Berlin, got "${zone}"`);
  }
  return zone;
}

function clockOverride(env: NodeJS.ProcessEnv): boolean {
  const allowed = bool(env.ALLOW_CLOCK_OVERRIDE, 'ALLOW_CLOCK_OVERRIDE');
  if (allowed && env.NODE_ENV === 'production') throw new Error('ALLOW_CLOCK_OVERRIDE=true is refused when NODE_ENV=production: it is for tests');
  return allowed;
}

function bool(value: string | undefined, name: string): boolean {
  if (value === undefined || value === '' || value === 'false' || value === '0') return false;
  if (value === 'true' || value === '1') return true;
  throw new Error(`${name} must be true or false, got "${value}"`);
}
