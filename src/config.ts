import { DEFAULT_INPUT_LIMITS, type InputLimits } from './kernel/input-limits';
import { parseKey32 } from './kernel/key';

/** Configuration from the environment; the names are the interface of DESIGN.md. */
export interface Config {
  port: number;
  host: string;
  baseUrl: string;
  databaseUrl: string;
  /** DATABASE_REPLICA_URL: a streaming replica searches may run on (docs/decisions/019-scale-out.md); '' = none. */
  databaseReplicaUrl: string;
  /**
   * DATABASE_LISTEN_URL: a direct postgres:// connection for LISTEN (Db.listen), when
   * DATABASE_URL goes through PgBouncer in transaction mode, where a LISTEN hears nothing
   * (decision 019); '' = DATABASE_URL.
   */
  databaseListenUrl: string;
  dataDir: string;
  logLevel: string;
  /** Largest accepted request body in bytes; larger gets 413. */
  maxBodyBytes: number;
  /**
   * How long a client may take to send one whole request, from its first byte to the end of its
   * body (REQUEST_TIMEOUT), and its request line and headers (HEADERS_TIMEOUT, at most the first);
   * past either, the request is answered 408 and its connection closed. A stalled body held its
   * socket for Node's default 300 s. The bound is the transfer only: processing a request that
   * has arrived is not limited by it (STATEMENT_TIMEOUT bounds statements).
   */
  requestTimeoutMs: number;
  headersTimeoutMs: number;
  /** How long an idle keep-alive connection stays open for the client's next request (KEEP_ALIVE_TIMEOUT). */
  keepAliveTimeoutMs: number;
  /** Search page size when `_count` is absent, and the largest `_count` honoured. */
  defaultPageSize: number;
  maxPageSize: number;
  /** Longest a database statement may run (PostgreSQL statement_timeout); 0 = no limit. */
  statementTimeoutMs: number;
  /**
   * Repeated statements as named prepared statements (DATABASE_PREPARED_STATEMENTS, default
   * true; src/store/prepared.ts). false behind PgBouncer older than 1.21 in transaction mode.
   */
  preparedStatements: boolean;
  /** Bounds on JSON bodies and searches (src/kernel/input-limits.ts): past them, a 4xx before any work grows. */
  inputLimits: InputLimits;
  /**
   * Strict-Transport-Security on every response: BASE_URL is https (TLS at the server or a
   * proxy), or TLS_PROXY=true says a TLS-terminating proxy fronts a plain-http BASE_URL.
   */
  hsts: boolean;
  /** Most entries accepted in one transaction or batch Bundle. */
  maxBundleEntries: number;
  /**
   * Most readings (or doses) in one device-door request: a payload is one database transaction,
   * and 50,000 readings held the embedded database for a minute. More is 413 before any write.
   */
  maxIngestReadings: number;
  /** Monitoring (README "Monitoring"): missed-measurement check period, 0 = off. */
  adherenceCheckIntervalMs: number;
  /** How often Subscriptions past their `end` are turned off (SUBSCRIPTION_END_CHECK_INTERVAL), 0 = never. */
  subscriptionEndCheckIntervalMs: number;
  /** Subscription rest-hook deliveries: first retry delay (doubling), and attempts before giving up. */
  subscriptionRetryBaseMs: number;
  subscriptionMaxAttempts: number;
  /** How long a claimed notification is hidden from other nodes while one POSTs it (SUBSCRIPTION_DELIVERY_LEASE); a node that died holding it is replaced after this. */
  subscriptionLeaseMs: number;
  /** Notification endpoints must be https (default: when NODE_ENV=production). */
  subscriptionRequireHttps: boolean;
  /** Notification endpoints may be loopback, private or link-local addresses (default false: SSRF). */
  subscriptionAllowPrivateNetworks: boolean;
  /**
   * Most Subscriptions one subscriber (a client, for one user) may hold that are not `off`
   * (MAX_SUBSCRIPTIONS_PER_CLIENT, default 100; 0 = no cap): every write is matched against each
   * of them, and 500 that match everything made an Observation write cost ~600 ms. More is 422.
   */
  maxSubscriptionsPerClient: number;
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
  /** Bulk Data export (src/bulk). */
  bulk: BulkConfig;
  /** The Withings cloud connector (src/withings), when WITHINGS_CLIENT_ID is set; README "Withings". */
  withings?: WithingsConfig;
  /** Alert channels besides rest-hook (src/monitoring, docs/decisions/020): e-mail. */
  alerts: AlertConfig;
}

export interface BulkConfig {
  /** How long a finished export's files stay downloadable (BULK_FILE_TTL, default 1 h). */
  fileTtlMs: number;
  /** How often this process looks for export jobs (BULK_POLL_INTERVAL); 0: it runs none (another node does). */
  pollIntervalMs: number;
  /** Resources per batch: one query, one chunk of a file, one checkpoint (BULK_BATCH_SIZE). */
  batchSize: number;
  /** A running job whose worker has not checkpointed for this long is resumed by another (BULK_LEASE). */
  leaseMs: number;
  /** Most exports one owner (client, user and patient context) may have queued or running (BULK_MAX_ACTIVE_JOBS); more is 429. */
  maxActiveJobs: number;
}

/** The Withings cloud connector (src/withings, docs/decisions/016-withings-connector.md). */
export interface WithingsConfig {
  clientId: string;
  clientSecret: string;
  /** Data API base (WITHINGS_API_URL, default https://wbsapi.withings.net) and the authorize page (WITHINGS_AUTHORIZE_URL). */
  apiUrl: string;
  authorizeUrl: string;
  /** AES-256-GCM key for tokens at rest (WITHINGS_TOKEN_KEY: 32 bytes, base64 or hex). */
  tokenKey: Buffer;
  /** Public base Withings calls back on (WITHINGS_CALLBACK_BASE, default BASE_URL): `<base>/withings/notify`. */
  callbackBase: string;
  /** Scopes asked for at linking (comma-separated in Withings' form). */
  scope: string[];
  /** Notify categories (appli) subscribed per account (WITHINGS_NOTIFY_APPLI, default 1,4: weight, blood pressure). */
  notifyAppli: number[];
  /** How often the worker looks for due accounts, and the fallback poll of each account (no notification needed). */
  workerIntervalMs: number;
  pollIntervalMs: number;
  /** First sync of a new link reaches this far back. */
  backfillMs: number;
  /** Requests to Withings per window for the whole application, every node together (120/min documented). */
  rateLimit: number;
  rateWindowMs: number;
  /** How long a node owns an account's sync before another may take it over (renewed per page). */
  leaseMs: number;
  /** 522 and failed runs back off from this, doubling, up to retryMaxMs. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** Accounts synced at once by one node. */
  concurrency: number;
  /** Refresh an access token this long before it expires. */
  refreshMarginMs: number;
  /** Longest wait for one Withings answer. */
  requestTimeoutMs: number;
}

export interface AlertConfig {
  /** SMTP server for `email` Subscriptions (SMTP_URL, smtp://user:pass@host:587 or smtps://…); unset: email channels are refused. */
  smtpUrl?: string;
  /** Sender of alert e-mails (ALERT_EMAIL_FROM). */
  emailFrom: string;
  /** Recipient domains an `email` Subscription may name (ALERT_EMAIL_DOMAINS, comma-separated); empty: none. */
  emailDomains: string[];
  /**
   * What an alert e-mail may say about the resource (ALERT_EMAIL_PHI): `none` (default) only that
   * there is an alert and a link to it; `minimal` also the Flag's code text and time, never a
   * name, an identifier or a value the code text does not carry.
   */
  emailPhi: 'none' | 'minimal';
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
    databaseReplicaUrl: replicaUrl(env),
    databaseListenUrl: besidePostgres(env, 'DATABASE_LISTEN_URL'),
    dataDir: env.DATA_DIR || './.data',
    logLevel: env.LOG_LEVEL || 'info',
    maxBodyBytes: int(env.MAX_BODY_BYTES, 16 * 1024 * 1024, 'MAX_BODY_BYTES'),
    ...requestTimeouts(env),
    defaultPageSize: int(env.DEFAULT_PAGE_SIZE, 50, 'DEFAULT_PAGE_SIZE'),
    maxPageSize: int(env.MAX_PAGE_SIZE, 1000, 'MAX_PAGE_SIZE'),
    maxBundleEntries: int(env.MAX_BUNDLE_ENTRIES, 10_000, 'MAX_BUNDLE_ENTRIES'),
    maxIngestReadings: int(env.MAX_INGEST_READINGS, 1000, 'MAX_INGEST_READINGS'),
    inputLimits: {
      maxJsonDepth: int(env.MAX_JSON_DEPTH, DEFAULT_INPUT_LIMITS.maxJsonDepth, 'MAX_JSON_DEPTH'),
      maxJsonElements: int(env.MAX_JSON_ELEMENTS, DEFAULT_INPUT_LIMITS.maxJsonElements, 'MAX_JSON_ELEMENTS'),
      maxStringLength: int(env.MAX_STRING_LENGTH, DEFAULT_INPUT_LIMITS.maxStringLength, 'MAX_STRING_LENGTH'),
      maxSearchParameters: int(env.MAX_SEARCH_PARAMETERS, DEFAULT_INPUT_LIMITS.maxSearchParameters, 'MAX_SEARCH_PARAMETERS'),
      maxOrValues: int(env.MAX_OR_VALUES, DEFAULT_INPUT_LIMITS.maxOrValues, 'MAX_OR_VALUES'),
      maxSearchTerms: int(env.MAX_SEARCH_TERMS, DEFAULT_INPUT_LIMITS.maxSearchTerms, 'MAX_SEARCH_TERMS'),
      maxValueSetCodes: int(env.MAX_VALUE_SET_CODES, DEFAULT_INPUT_LIMITS.maxValueSetCodes, 'MAX_VALUE_SET_CODES'),
    },
    hsts: baseUrl.startsWith('https:') || bool(env.TLS_PROXY, 'TLS_PROXY'),
    statementTimeoutMs: duration(env.STATEMENT_TIMEOUT, 15_000, 'STATEMENT_TIMEOUT'),
    preparedStatements: env.DATABASE_PREPARED_STATEMENTS === undefined || env.DATABASE_PREPARED_STATEMENTS === '' || bool(env.DATABASE_PREPARED_STATEMENTS, 'DATABASE_PREPARED_STATEMENTS'),
    adherenceCheckIntervalMs: duration(env.ADHERENCE_CHECK_INTERVAL, 15 * 60_000, 'ADHERENCE_CHECK_INTERVAL'),
    subscriptionEndCheckIntervalMs: duration(env.SUBSCRIPTION_END_CHECK_INTERVAL, 60_000, 'SUBSCRIPTION_END_CHECK_INTERVAL'),
    subscriptionRetryBaseMs: duration(env.SUBSCRIPTION_RETRY_BASE, 5_000, 'SUBSCRIPTION_RETRY_BASE'),
    subscriptionMaxAttempts: int(env.SUBSCRIPTION_MAX_ATTEMPTS, 10, 'SUBSCRIPTION_MAX_ATTEMPTS'),
    subscriptionLeaseMs: Math.max(1000, duration(env.SUBSCRIPTION_DELIVERY_LEASE, 120_000, 'SUBSCRIPTION_DELIVERY_LEASE')),
    subscriptionRequireHttps: env.SUBSCRIPTION_REQUIRE_HTTPS === undefined || env.SUBSCRIPTION_REQUIRE_HTTPS === '' ? env.NODE_ENV === 'production' : bool(env.SUBSCRIPTION_REQUIRE_HTTPS, 'SUBSCRIPTION_REQUIRE_HTTPS'),
    subscriptionAllowPrivateNetworks: bool(env.SUBSCRIPTION_ALLOW_PRIVATE_NETWORKS, 'SUBSCRIPTION_ALLOW_PRIVATE_NETWORKS'),
    maxSubscriptionsPerClient: int(env.MAX_SUBSCRIPTIONS_PER_CLIENT, 100, 'MAX_SUBSCRIPTIONS_PER_CLIENT'),
    medicationReminderIntervalMs: duration(env.MEDICATION_REMINDER_INTERVAL, 60_000, 'MEDICATION_REMINDER_INTERVAL'),
    medicationReminderLeadMs: duration(env.MEDICATION_REMINDER_LEAD, 15 * 60_000, 'MEDICATION_REMINDER_LEAD'),
    medicationGraceMs: duration(env.MEDICATION_GRACE, 60 * 60_000, 'MEDICATION_GRACE'),
    defaultTimeZone: timeZone(env.DEFAULT_TIME_ZONE),
    allowClockOverride: clockOverride(env),
    auth: loadAuthConfig(env),
    audit: loadAuditConfig(env),
    ...(env.PSEUDONYM_KEY ? { pseudonymKey: pseudonymKey(env.PSEUDONYM_KEY) } : {}),
    bulk: {
      fileTtlMs: duration(env.BULK_FILE_TTL, 3_600_000, 'BULK_FILE_TTL'),
      pollIntervalMs: duration(env.BULK_POLL_INTERVAL, 1_000, 'BULK_POLL_INTERVAL'),
      batchSize: Math.max(1, int(env.BULK_BATCH_SIZE, 2_000, 'BULK_BATCH_SIZE')),
      leaseMs: Math.max(1_000, duration(env.BULK_LEASE, 60_000, 'BULK_LEASE')),
      maxActiveJobs: Math.max(1, int(env.BULK_MAX_ACTIVE_JOBS, 3, 'BULK_MAX_ACTIVE_JOBS')),
    },
    ...(env.WITHINGS_CLIENT_ID ? { withings: loadWithingsConfig(env, baseUrl) } : {}),
    alerts: loadAlertConfig(env),
  };
}

/**
 * REQUEST_TIMEOUT 60 s: the largest body (MAX_BODY_BYTES, 16 MB) still arrives over a 2.5 Mbit/s
 * uplink. HEADERS_TIMEOUT 20 s: a request line and headers are one packet for any live client.
 * KEEP_ALIVE_TIMEOUT is Node's 5 s; behind a proxy that reuses upstream connections it must exceed
 * the proxy's idle timeout, or the proxy sends a request on a connection this server just closed.
 */
function requestTimeouts(env: NodeJS.ProcessEnv): Pick<Config, 'requestTimeoutMs' | 'headersTimeoutMs' | 'keepAliveTimeoutMs'> {
  const requestTimeoutMs = duration(env.REQUEST_TIMEOUT, 60_000, 'REQUEST_TIMEOUT');
  const headersTimeoutMs = duration(env.HEADERS_TIMEOUT, Math.min(20_000, requestTimeoutMs), 'HEADERS_TIMEOUT');
  // 0 would be Node's "no limit": a client that stops sending would hold its socket for ever.
  if (requestTimeoutMs < 1 || headersTimeoutMs < 1) throw new Error('REQUEST_TIMEOUT and HEADERS_TIMEOUT must be positive durations');
  if (headersTimeoutMs > requestTimeoutMs) throw new Error(`HEADERS_TIMEOUT (${headersTimeoutMs} ms) must not exceed REQUEST_TIMEOUT (${requestTimeoutMs} ms): the headers are part of the request`);
  return { requestTimeoutMs, headersTimeoutMs, keepAliveTimeoutMs: duration(env.KEEP_ALIVE_TIMEOUT, 5_000, 'KEEP_ALIVE_TIMEOUT') };
}

function loadWithingsConfig(env: NodeJS.ProcessEnv, baseUrl: string): WithingsConfig {
  const secret = env.WITHINGS_CLIENT_SECRET;
  if (!secret) throw new Error('WITHINGS_CLIENT_SECRET is required when WITHINGS_CLIENT_ID is set');
  const tokenKey = parseKey32(env.WITHINGS_TOKEN_KEY ?? '', 'WITHINGS_TOKEN_KEY', 'Withings tokens are encrypted at rest');
  const list = (value: string | undefined, fallback: string) => (value || fallback).split(',').map((v) => v.trim()).filter(Boolean);
  const appli = list(env.WITHINGS_NOTIFY_APPLI, '1,4').map((v) => int(v, 0, 'WITHINGS_NOTIFY_APPLI'));
  return {
    clientId: env.WITHINGS_CLIENT_ID!,
    clientSecret: secret,
    apiUrl: (env.WITHINGS_API_URL || 'https://wbsapi.withings.net').replace(/\/+$/, ''),
    authorizeUrl: env.WITHINGS_AUTHORIZE_URL || 'https://account.withings.com/oauth2_user/authorize2',
    tokenKey,
    callbackBase: (env.WITHINGS_CALLBACK_BASE || baseUrl).replace(/\/+$/, ''),
    scope: list(env.WITHINGS_SCOPE, 'user.info,user.metrics,user.activity'),
    notifyAppli: appli,
    workerIntervalMs: duration(env.WITHINGS_WORKER_INTERVAL, 5_000, 'WITHINGS_WORKER_INTERVAL'),
    pollIntervalMs: duration(env.WITHINGS_POLL_INTERVAL, 3_600_000, 'WITHINGS_POLL_INTERVAL'),
    backfillMs: duration(env.WITHINGS_BACKFILL, 14 * 86_400_000, 'WITHINGS_BACKFILL'),
    rateLimit: Math.max(1, int(env.WITHINGS_RATE_LIMIT, 120, 'WITHINGS_RATE_LIMIT')),
    rateWindowMs: duration(env.WITHINGS_RATE_WINDOW, 60_000, 'WITHINGS_RATE_WINDOW'),
    leaseMs: duration(env.WITHINGS_LEASE, 5 * 60_000, 'WITHINGS_LEASE'),
    retryBaseMs: duration(env.WITHINGS_RETRY_BASE, 2_000, 'WITHINGS_RETRY_BASE'),
    retryMaxMs: duration(env.WITHINGS_RETRY_MAX, 3_600_000, 'WITHINGS_RETRY_MAX'),
    concurrency: Math.max(1, int(env.WITHINGS_CONCURRENCY, 2, 'WITHINGS_CONCURRENCY')),
    refreshMarginMs: duration(env.WITHINGS_REFRESH_MARGIN, 5 * 60_000, 'WITHINGS_REFRESH_MARGIN'),
    requestTimeoutMs: duration(env.WITHINGS_REQUEST_TIMEOUT, 10_000, 'WITHINGS_REQUEST_TIMEOUT'),
  };
}

function loadAlertConfig(env: NodeJS.ProcessEnv): AlertConfig {
  const emailPhi = env.ALERT_EMAIL_PHI || 'none';
  if (emailPhi !== 'none' && emailPhi !== 'minimal') throw new Error(`ALERT_EMAIL_PHI must be none or minimal, got "${emailPhi}"`);
  if (env.SMTP_URL && !/^smtps?:\/\//.test(env.SMTP_URL)) throw new Error('SMTP_URL must be smtp://… or smtps://…');
  return {
    ...(env.SMTP_URL ? { smtpUrl: env.SMTP_URL } : {}),
    emailFrom: env.ALERT_EMAIL_FROM || 'rpm-alerts@localhost',
    emailDomains: (env.ALERT_EMAIL_DOMAINS ?? '').split(',').map((d) => d.trim().toLowerCase()).filter(Boolean),
    emailPhi,
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
  /** Failed logins tolerated within `loginFailureWindowMs` before logins are refused (429): per account from one address, per account in all, per address. */
  loginMaxFailuresPerAccount: number;
  loginMaxFailuresPerAccountTotal: number;
  loginMaxFailuresPerAddress: number;
  loginFailureWindowMs: number;
  /** Token requests accepted per client address per minute (all of them); past it, 429. */
  tokenRequestsPerAddress: number;
  /** Requests per client and address that may fail to authenticate within `tokenFailureWindowMs`, at the token, introspection and revocation endpoints together. */
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
    loginMaxFailuresPerAccountTotal: int(env.LOGIN_MAX_FAILURES_PER_ACCOUNT_TOTAL, 100, 'LOGIN_MAX_FAILURES_PER_ACCOUNT_TOTAL'),
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

/** A replica only beside a PostgreSQL primary: the embedded database has none. */
function replicaUrl(env: NodeJS.ProcessEnv): string {
  return besidePostgres(env, 'DATABASE_REPLICA_URL');
}

/** A second PostgreSQL URL (`name`), which only makes sense beside a postgres:// DATABASE_URL; '' when unset. */
function besidePostgres(env: NodeJS.ProcessEnv, name: string): string {
  const url = env[name] ?? '';
  if (url === '') return '';
  const postgres = (u: string) => u.startsWith('postgres://') || u.startsWith('postgresql://');
  if (!postgres(url) || !postgres(env.DATABASE_URL ?? '')) throw new Error(`${name} must be a postgres:// URL, beside a postgres:// DATABASE_URL`);
  return url;
}
