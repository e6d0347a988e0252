import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A fake Withings cloud on a loopback port, behaving as the Withings Public API documents
 * (docs/decisions/016-withings-connector.md, from research/withings-connector.md §7):
 * - `GET /oauth2_user/authorize2`: checks response_type=code, client_id, a registered
 *   redirect_uri and scope, auto-approves `approveAs` and redirects with `code` (30 s, one use)
 *   and the echoed `state`;
 * - `POST /v2/oauth2` action=requesttoken: authorization_code and refresh_token grants (client
 *   secret variant); access tokens live `expiresIn` s; every refresh rotates the refresh token,
 *   the old one staying valid until the new access token is first used (or 8 h); a bad code or
 *   refresh token is status 503; an unknown action 2554;
 * - `POST|GET /measure` action=getmeas: Bearer token (or access_token parameter), else status 401;
 *   filters category, meastype(s), startdate/enddate or lastupdate (against `modified`), pages of
 *   `pageSize` with `more` (0/1) and `offset`, `updatetime` now and `timezone`;
 * - `POST /notify` subscribe (HEAD check of the callback, 293 unless 2xx), list, get, revoke;
 * - every answer HTTP 200 with the envelope {status, body, error};
 * - a sliding window of `rateLimit` requests per `rateWindowMs` per client (120/min), 601 with
 *   wait_seconds past it;
 * - test hooks: inject the next answers' statuses (401, 601, 522, 503, …), expire access tokens,
 *   revoke refresh tokens, add measure groups, send notifications.
 */
export interface MeasureGroup {
  grpid: number;
  attrib: number;
  date: number;
  created: number;
  modified: number;
  category: number;
  deviceid: string | null;
  hash_deviceid: string | null;
  model?: string;
  measures: Array<{ value: number; type: number; unit: number; algo?: number; fm?: number }>;
  comment: string | null;
}

interface Injected {
  status: number;
  waitSeconds?: number;
  /** Only answers to this action (getmeas, requesttoken, subscribe, …). */
  action?: string;
}

type Json = Record<string, unknown>;

export interface FakeWithingsOptions {
  clientId?: string;
  clientSecret?: string;
  redirectUris?: string[];
  expiresIn?: number;
  pageSize?: number;
  rateLimit?: number;
  rateWindowMs?: number;
}

const now = () => Math.floor(Date.now() / 1000);
const token = () => randomBytes(20).toString('hex');

export class FakeWithings {
  readonly clientId: string;
  readonly clientSecret: string;
  redirectUris: string[];
  expiresIn: number;
  pageSize: number;
  rateLimit: number;
  rateWindowMs: number;
  /** The user the authorize page approves as. */
  approveAs = 0;
  /** Delay before answering getmeas (a slow cloud, to stop a server mid-sync). */
  getmeasDelayMs = 0;

  readonly groups = new Map<number, MeasureGroup[]>();
  readonly codes = new Map<string, { userid: number; redirectUri: string; expires: number; used: boolean }>();
  readonly accessTokens = new Map<string, { userid: number; expires: number }>();
  /** Refresh tokens; `successor` is the access token whose first use kills this one. */
  readonly refreshTokens = new Map<string, { userid: number; successor?: string; diesAt?: number }>();
  readonly subscriptions = new Map<string, { userid: number; callbackurl: string; appli: number; comment: string }>();
  readonly injected: Injected[] = [];
  /** Every API request: path, action, the status answered. */
  readonly log: Array<{ at: number; path: string; action: string; status: number; params: Json; userid?: number }> = [];
  private readonly window: number[] = [];
  private nextGrpid = 1000;
  private server?: Server;
  url = '';

  constructor(options: FakeWithingsOptions = {}) {
    this.clientId = options.clientId ?? 'fake-client';
    this.clientSecret = options.clientSecret ?? 'fake-secret';
    this.redirectUris = options.redirectUris ?? [];
    this.expiresIn = options.expiresIn ?? 10_800;
    this.pageSize = options.pageSize ?? 100;
    this.rateLimit = options.rateLimit ?? 120;
    this.rateWindowMs = options.rateWindowMs ?? 60_000;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        res.statusCode = 500;
        res.end(String(err));
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  // ---- test hooks --------------------------------------------------------------------------------

  /** A measure group of `userid`, created and modified now. */
  addGroup(userid: number, measures: MeasureGroup['measures'], date = now() - 60, deviceid: string | null = 'bpm-connect-fake'): MeasureGroup {
    const group: MeasureGroup = { grpid: this.nextGrpid++, attrib: 0, date, created: now(), modified: now(), category: 1, deviceid, hash_deviceid: deviceid, measures, comment: null };
    const list = this.groups.get(userid) ?? [];
    list.push(group);
    this.groups.set(userid, list);
    return group;
  }

  bloodPressure(userid: number, systolic: number, diastolic: number, pulse?: number, date?: number): MeasureGroup {
    return this.addGroup(userid, [
      { value: systolic, type: 10, unit: 0, algo: 0, fm: 3 },
      { value: diastolic, type: 9, unit: 0, algo: 0, fm: 3 },
      ...(pulse !== undefined ? [{ value: pulse, type: 11, unit: 0, algo: 0, fm: 3 }] : []),
    ], date);
  }

  /** The next matching answers are these statuses instead (once each, in order). */
  inject(...answers: Injected[]): void {
    this.injected.push(...answers);
  }

  expireAccessTokens(userid: number): void {
    for (const t of this.accessTokens.values()) if (t.userid === userid) t.expires = 0;
  }

  revokeRefreshTokens(userid: number): void {
    for (const [k, t] of this.refreshTokens) if (t.userid === userid) this.refreshTokens.delete(k);
  }

  /**
   * What Withings does when a user's device uploads: a form POST of userid, appli, startdate,
   * enddate to each subscribed callback of that appli, with a 2 s timeout. Answers each status.
   */
  async notify(userid: number, appli: number, startdate: number, enddate: number): Promise<number[]> {
    const statuses: number[] = [];
    for (const sub of this.subscriptions.values()) {
      if (sub.userid !== userid || sub.appli !== appli) continue;
      const res = await fetch(sub.callbackurl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ userid: String(userid), appli: String(appli), startdate: String(startdate), enddate: String(enddate) }).toString(),
        signal: AbortSignal.timeout(2000),
      });
      await res.arrayBuffer();
      statuses.push(res.status);
    }
    return statuses;
  }

  /** Requests answered with this status (0 = success), optionally of one action. */
  count(status: number, action?: string): number {
    return this.log.filter((l) => l.status === status && (action === undefined || l.action === action)).length;
  }

  // ---- the API -----------------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    if (req.method === 'GET' && url.pathname === '/oauth2_user/authorize2') return this.authorize(url, res);
    const params = new URLSearchParams(url.search);
    if (req.method === 'POST') {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      for (const [k, v] of new URLSearchParams(Buffer.concat(chunks).toString('utf8'))) params.set(k, v);
    } else if (req.method !== 'GET') {
      res.statusCode = 405;
      return void res.end();
    }
    const action = params.get('action') ?? '';
    const userid = this.accessTokens.get(req.headers.authorization?.slice(7) ?? params.get('access_token') ?? '')?.userid;
    const answer = await this.answer(url.pathname, action, params, req.headers.authorization);
    this.log.push({ at: Date.now(), path: url.pathname, action, status: answer.status as number, params: Object.fromEntries(params), ...(userid !== undefined ? { userid } : {}) });
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(answer));
  }

  private authorize(url: URL, res: ServerResponse): void {
    const q = url.searchParams;
    const redirect = q.get('redirect_uri') ?? '';
    const bad = (why: string) => {
      res.statusCode = 400;
      res.end(why);
    };
    if (q.get('response_type') !== 'code') return bad('response_type must be code');
    if (q.get('client_id') !== this.clientId) return bad('unknown client_id');
    if (!this.redirectUris.includes(redirect)) return bad('redirect_uri is not a registered callback');
    if (!q.get('scope') || !q.get('state')) return bad('scope and state are required');
    const code = token();
    this.codes.set(code, { userid: this.approveAs, redirectUri: redirect, expires: Date.now() + 30_000, used: false });
    res.statusCode = 302;
    res.setHeader('location', `${redirect}?${new URLSearchParams({ code, state: q.get('state')! })}`);
    res.end();
  }

  private limited(): number | undefined {
    const t = Date.now();
    while (this.window.length && this.window[0]! <= t - this.rateWindowMs) this.window.shift();
    if (this.window.length >= this.rateLimit) return Math.max(1, Math.ceil((this.window[0]! + this.rateWindowMs - t) / 1000));
    this.window.push(t);
    return undefined;
  }

  private async answer(path: string, action: string, params: URLSearchParams, authorization: string | undefined): Promise<Json> {
    const wait = this.limited();
    if (wait !== undefined) return { status: 601, body: { wait_seconds: wait }, error: 'Too many requests' };
    const i = this.injected.findIndex((x) => x.action === undefined || x.action === action);
    if (i >= 0) {
      const [x] = this.injected.splice(i, 1);
      return x!.status === 601
        ? { status: 601, body: { wait_seconds: x!.waitSeconds ?? 1 }, error: 'Too many requests' }
        : { status: x!.status, body: {}, error: `injected ${x!.status}` };
    }
    if (path === '/v2/oauth2') return action === 'requesttoken' ? this.requestToken(params) : { status: 2554, body: {}, error: 'Not implemented' };
    const userid = this.bearer(params, authorization);
    if (userid === undefined) return { status: 401, body: {}, error: 'XRequestID: Not provided invalid_token: The access token provided is invalid' };
    if (path === '/measure' && action === 'getmeas') {
      if (this.getmeasDelayMs) await new Promise((r) => setTimeout(r, this.getmeasDelayMs));
      return this.getmeas(userid, params);
    }
    if (path === '/notify') return this.notifyAction(userid, action, params);
    return { status: 2554, body: {}, error: 'Not implemented' };
  }

  private requestToken(p: URLSearchParams): Json {
    const invalid = (what: string) => ({ status: 503, body: {}, error: `Invalid Params: invalid ${what}` });
    if (p.get('client_id') !== this.clientId || p.get('client_secret') !== this.clientSecret) return invalid('client_id or client_secret');
    let userid: number;
    if (p.get('grant_type') === 'authorization_code') {
      const code = this.codes.get(p.get('code') ?? '');
      if (!code || code.used || code.expires < Date.now() || code.redirectUri !== p.get('redirect_uri')) return invalid('code');
      code.used = true;
      userid = code.userid;
    } else if (p.get('grant_type') === 'refresh_token') {
      const rt = p.get('refresh_token') ?? '';
      const known = this.refreshTokens.get(rt);
      if (!known || (known.diesAt !== undefined && known.diesAt < Date.now())) return invalid('refresh_token');
      userid = known.userid;
    } else {
      return invalid('grant_type');
    }
    const access = token();
    const refresh = token();
    this.accessTokens.set(access, { userid, expires: Date.now() + this.expiresIn * 1000 });
    // Rotation: the refresh token just used lives on until the new access token is used, or 8 h.
    const used = this.refreshTokens.get(p.get('refresh_token') ?? '');
    if (used) Object.assign(used, { successor: access, diesAt: Math.min(used.diesAt ?? Infinity, Date.now() + 8 * 3600_000) });
    this.refreshTokens.set(refresh, { userid });
    return { status: 0, body: { userid, access_token: access, refresh_token: refresh, expires_in: this.expiresIn, scope: 'user.info,user.metrics,user.activity', csrf_token: token(), token_type: 'Bearer' } };
  }

  private bearer(params: URLSearchParams, authorization: string | undefined): number | undefined {
    const value = authorization?.startsWith('Bearer ') ? authorization.slice(7) : params.get('access_token') ?? '';
    const known = this.accessTokens.get(value);
    if (!known || known.expires < Date.now()) return undefined;
    for (const [k, rt] of this.refreshTokens) if (rt.successor === value) this.refreshTokens.delete(k);
    return known.userid;
  }

  private getmeas(userid: number, p: URLSearchParams): Json {
    const num = (name: string) => (p.has(name) ? Number(p.get(name)) : undefined);
    const types = (p.get('meastypes') ?? p.get('meastype') ?? '').split(',').filter(Boolean).map(Number);
    const category = num('category');
    const lastupdate = num('lastupdate');
    const start = num('startdate');
    const end = num('enddate');
    let groups = (this.groups.get(userid) ?? []).filter((g) => (category === undefined || g.category === category));
    if (lastupdate !== undefined) groups = groups.filter((g) => g.modified > lastupdate);
    else {
      if (start !== undefined) groups = groups.filter((g) => g.date >= start);
      if (end !== undefined) groups = groups.filter((g) => g.date <= end);
    }
    groups = groups
      .map((g) => ({ ...g, measures: types.length ? g.measures.filter((m) => types.includes(m.type)) : g.measures }))
      .filter((g) => g.measures.length > 0);
    const offset = num('offset') ?? 0;
    const page = groups.slice(offset, offset + this.pageSize);
    const more = offset + this.pageSize < groups.length;
    return { status: 0, body: { updatetime: now(), timezone: 'Europe/Paris', measuregrps: page, ...(more ? { more: 1, offset: offset + this.pageSize } : {}) } };
  }

  private async notifyAction(userid: number, action: string, p: URLSearchParams): Promise<Json> {
    const callbackurl = p.get('callbackurl') ?? '';
    const appli = Number(p.get('appli') ?? 1);
    const key = `${userid}|${callbackurl}|${appli}`;
    switch (action) {
      case 'subscribe': {
        if (!callbackurl || !p.has('appli')) return { status: 503, body: {}, error: 'Invalid Params' };
        // Withings checks the URL with a HEAD before it accepts it.
        const ok = await fetch(callbackurl, { method: 'HEAD', signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false);
        if (!ok) return { status: 293, body: {}, error: 'The callback URL is either unknown or invalid' };
        this.subscriptions.set(key, { userid, callbackurl, appli, comment: p.get('comment') ?? '' });
        return { status: 0, body: {} };
      }
      case 'get': {
        const sub = this.subscriptions.get(key);
        return sub ? { status: 0, body: { appli: sub.appli, callbackurl: sub.callbackurl, comment: sub.comment } } : { status: 2554, body: {}, error: 'Not found' };
      }
      case 'list':
        return { status: 0, body: { profiles: [...this.subscriptions.values()].filter((s) => s.userid === userid).map((s) => ({ appli: s.appli, callbackurl: s.callbackurl, comment: s.comment, expires: 2147483647 })) } };
      case 'revoke':
        this.subscriptions.delete(key);
        return { status: 0, body: {} };
      default:
        return { status: 2554, body: {}, error: 'Not implemented' };
    }
  }
}
