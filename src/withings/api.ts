import type { Logger } from 'pino';
import type { WithingsConfig } from '../config';
import { type RequestBudget, sleep } from './budget';

/**
 * The Withings Public API as this server uses it. Every answer is HTTP 200 with an envelope
 * `{status, body, error}` (research/withings-connector.md §5); the status decides:
 * 0 success; 401 (and 100-102, 200) authentication failed: refresh once and retry; 601 too many
 * requests, wait `wait_seconds`; 522 timeout, retry with backoff; 503 on requesttoken: the code or
 * refresh token is invalid, the user must link again. Every request first takes its place in
 * the application's budget (./budget.ts).
 */
export const AUTH_FAILED = new Set([100, 101, 102, 200, 401]);

export class WithingsError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly waitSeconds?: number,
  ) {
    super(`Withings status ${status}: ${message}`);
  }

  get authFailed(): boolean {
    return AUTH_FAILED.has(this.status);
  }
}

export interface TokenSet {
  userid: string;
  accessToken: string;
  refreshToken: string;
  /** Seconds. */
  expiresIn: number;
  scope: string;
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

/** The body of a requesttoken answer; userid is an integer in the OpenAPI but was once a string: both are accepted. */
export function tokenSetOf(body: unknown): TokenSet {
  if (!isObject(body)) throw new WithingsError(-1, 'the token answer has no body');
  const { userid, access_token, refresh_token, expires_in, scope } = body;
  if ((typeof userid !== 'number' && typeof userid !== 'string') || String(userid) === '') throw new WithingsError(-1, 'the token answer has no userid');
  if (typeof access_token !== 'string' || !access_token || typeof refresh_token !== 'string' || !refresh_token) throw new WithingsError(-1, 'the token answer has no tokens');
  const expiresIn = Number(expires_in);
  if (!Number.isFinite(expiresIn) || expiresIn <= 0) throw new WithingsError(-1, 'the token answer has no expires_in');
  return { userid: String(userid), accessToken: access_token, refreshToken: refresh_token, expiresIn, scope: typeof scope === 'string' ? scope : '' };
}

/** The envelope of an answer: its body when status is 0, else the WithingsError it means. */
export function unwrap(answer: unknown): Json {
  if (!isObject(answer) || typeof answer.status !== 'number') throw new WithingsError(-1, 'not a Withings answer');
  if (answer.status === 0) return isObject(answer.body) ? answer.body : {};
  const body = isObject(answer.body) ? answer.body : {};
  const wait = typeof body.wait_seconds === 'number' && body.wait_seconds >= 0 ? body.wait_seconds : undefined;
  throw new WithingsError(answer.status, typeof answer.error === 'string' ? answer.error.slice(0, 200) : 'no error text', wait);
}

/** Times a 522 is retried within one call before the run gives up and backs off. */
const TIMEOUT_RETRIES = 2;
/** Times one call waits out a 601 (the budget sleeps through short waits) before the run is rescheduled. */
const RATE_RETRIES = 3;

export class WithingsApi {
  constructor(
    private readonly config: WithingsConfig,
    private readonly budget: RequestBudget,
    private readonly log: Logger,
  ) {}

  /** POST form to `path` (e.g. `/measure`), Bearer `accessToken` when given; the body of a status-0 answer. */
  async call(path: string, params: Record<string, string | number>, accessToken?: string, signal?: AbortSignal): Promise<Json> {
    const form = new URLSearchParams(Object.entries(params).map(([k, v]): [string, string] => [k, String(v)]));
    let limited = 0;
    for (let attempt = 0; ; attempt++) {
      await this.budget.take(signal);
      try {
        return unwrap(await this.post(path, form, accessToken, signal));
      } catch (err) {
        if (!(err instanceof WithingsError)) throw err;
        if (err.status === 601) {
          // Withings says how long; without a figure, a whole window of the budget.
          // The next take() sleeps through a short block, or reschedules the run past a long one.
          await this.budget.block(err.waitSeconds ?? Math.ceil(this.config.rateWindowMs / 1000));
          this.log.warn({ path, action: params.action, waitSeconds: err.waitSeconds }, 'Withings: too many requests (601)');
          if (++limited <= RATE_RETRIES) continue;
          throw err;
        }
        if (err.status === 522 && attempt < TIMEOUT_RETRIES) {
          const delay = this.config.retryBaseMs * 2 ** attempt * (0.5 + Math.random() / 2);
          this.log.warn({ path, action: params.action, attempt }, `Withings timed out (522); retrying in ${Math.round(delay)} ms`);
          await sleep(delay, signal);
          continue;
        }
        throw err;
      }
    }
  }

  private async post(path: string, form: URLSearchParams, accessToken: string | undefined, signal?: AbortSignal): Promise<unknown> {
    const timeout = AbortSignal.timeout(this.config.requestTimeoutMs);
    let res: Response;
    try {
      res = await fetch(`${this.config.apiUrl}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...(accessToken ? { authorization: `Bearer ${accessToken}` } : {}) },
        body: form.toString(),
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (err) {
      if (signal?.aborted) throw err;
      // No answer at all (refused, reset, our timeout): as transient as Withings' own 522.
      throw new WithingsError(522, `no answer from ${path}: ${(err as Error).message}`);
    }
    const text = await res.text();
    if (res.status !== 200) throw new WithingsError(res.status >= 500 ? 522 : -res.status, `HTTP ${res.status} from ${path}`);
    try {
      return JSON.parse(text);
    } catch {
      throw new WithingsError(-1, `the answer of ${path} is not JSON`);
    }
  }

  /** Oauth2 - Refresh a token; every refresh returns a new refresh token (rotation), which must be stored. */
  async refresh(refreshToken: string, signal?: AbortSignal): Promise<TokenSet> {
    return tokenSetOf(
      await this.call('/v2/oauth2', { action: 'requesttoken', grant_type: 'refresh_token', client_id: this.config.clientId, client_secret: this.config.clientSecret, refresh_token: refreshToken }, undefined, signal),
    );
  }
}
