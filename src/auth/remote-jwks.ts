import type { JWK } from 'jose';

/** Without cache headers a fetched JWKS is reused this long. */
const DEFAULT_TTL_MS = 5 * 60_000;
/** Even a long max-age is not trusted beyond a day: a client may rotate after a leak. */
const MAX_TTL_MS = 24 * 3600_000;
/** A kid missing from a still-fresh set refetches at most this often (the client may just have rotated). */
const MISS_REFETCH_MS = 10_000;
const FETCH_TIMEOUT_MS = 5_000;
const MAX_BYTES = 256 * 1024;

interface Entry {
  keys: JWK[];
  fetchedAt: number;
  expiresAt: number;
}

/**
 * Client key sets fetched from registered jwks_uri, cached as their Cache-Control / Expires
 * headers say (no-store or no-cache: fetched for every use).
 */
export class RemoteJwksCache {
  private readonly entries = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<Entry>>();

  async keys(uri: string, kid: string): Promise<JWK[]> {
    const now = Date.now();
    let entry = this.entries.get(uri);
    if (!entry || entry.expiresAt <= now) entry = await this.fetch(uri);
    else if (!entry.keys.some((k) => k.kid === kid) && now - entry.fetchedAt > MISS_REFETCH_MS) entry = await this.fetch(uri);
    return entry.keys;
  }

  private fetch(uri: string): Promise<Entry> {
    let p = this.inflight.get(uri);
    if (!p) {
      p = this.load(uri).finally(() => this.inflight.delete(uri));
      this.inflight.set(uri, p);
    }
    return p;
  }

  private async load(uri: string): Promise<Entry> {
    const res = await fetch(uri, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS), headers: { accept: 'application/json' }, redirect: 'error' });
    if (!res.ok) throw new Error(`the client's jwks_uri answered ${res.status}`);
    const text = await res.text();
    if (text.length > MAX_BYTES) throw new Error("the client's jwks_uri answered more than 256 KiB");
    const body = JSON.parse(text) as { keys?: unknown };
    if (!Array.isArray(body.keys)) throw new Error("the client's jwks_uri did not answer a JWK Set");
    const now = Date.now();
    const entry: Entry = { keys: body.keys as JWK[], fetchedAt: now, expiresAt: now + ttl(res.headers) };
    if (entry.expiresAt > now) this.entries.set(uri, entry);
    else this.entries.delete(uri);
    return entry;
  }
}

/** Freshness lifetime from Cache-Control (RFC 9111 §4.2.1) or Expires. */
export function ttl(headers: Headers): number {
  const cc = (headers.get('cache-control') ?? '').toLowerCase();
  if (/(^|,)\s*(no-store|no-cache)\b/.test(cc)) return 0;
  const maxAge = /(^|,)\s*max-age\s*=\s*"?(\d+)"?/.exec(cc);
  if (maxAge) return Math.min(Number(maxAge[2]) * 1000, MAX_TTL_MS);
  const expires = headers.get('expires');
  if (expires) {
    const at = Date.parse(expires);
    const date = Date.parse(headers.get('date') ?? '') || Date.now();
    return Number.isNaN(at) ? 0 : Math.max(0, Math.min(at - date, MAX_TTL_MS));
  }
  return DEFAULT_TTL_MS;
}
