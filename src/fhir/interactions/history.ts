import { type HistoryRow, readHistory } from '../../store/history';
import { readCurrent } from '../../store/repository';
import { isValidId } from '../../kernel/id';
import { forbidden, type ReadLimits, readLimits } from '../../access/enforce';
import { isUnlimited, withinLimits } from '../../search';
import type { FhirContext, InteractionResult } from '../context';
import { supportedTypes } from '../../kernel/resource-types';
import { badRequest, notFound } from '../../kernel/outcome';
import type { RestRequest } from '../rest-request';
import { requireKnown } from './read';
import { DATE_TIME_WITH_ZONE, dateFromQuery, timestampText } from '../../search/date-range';
import { parseDateTerm } from '../../search/types/date';

const HISTORY_PARAMS = new Set(['_count', '_since', '_at', '_cursor', '_format', '_pretty']);

/**
 * history at instance (`type` and `id`), type (`type`) or system level (neither): a history
 * Bundle, newest first, with `next` links by keyset cursor. Built as text so stored JSON is not
 * parsed again.
 */
export async function history(ctx: FhirContext, req: Omit<RestRequest, 'type'> & { type?: string }): Promise<InteractionResult> {
  for (const key of req.query.keys()) {
    if (!HISTORY_PARAMS.has(key)) throw badRequest(`history does not support the parameter '${key}' (supported: _count, _since, _at)`);
  }
  const count = pageSize(ctx, req.query.get('_count'));
  const sent = req.query.get('_since');
  const since = sent === null ? undefined : dateFromQuery(sent);
  if (since !== undefined && (!DATE_TIME_WITH_ZONE.test(since) || Number.isNaN(Date.parse(since)))) {
    throw badRequest(`_since must be an instant such as 2026-01-01T00:00:00Z, got '${since}'`);
  }
  const atSent = req.query.getAll('_at');
  if (atSent.length > 1) throw badRequest('_at may be given once', ['_at']);
  const at = atSent.length ? atPeriod(atSent[0]!) : undefined;
  const cursor = req.query.get('_cursor') ?? undefined;
  if (cursor !== undefined && !/^\d{1,18}$/.test(cursor)) throw badRequest(`_cursor '${cursor}' is not a cursor this server issued`);
  let versionLimits: ReadLimits | undefined;
  if (req.id !== undefined) {
    if (!req.type || !isValidId(req.id) || !(await readCurrent(ctx.db, req.type, req.id))) {
      throw notFound(`${req.type}/${req.id} is not known`);
    }
    await requireKnown(ctx, req.policy, req.type, req.id);
    versionLimits = readLimits(req.policy, req.type, 'r');
  } else {
    // History tables carry no compartment or index: across a type it is for unconfined,
    // unrestricted readers of every type it lists.
    for (const type of req.type ? [req.type] : supportedTypes) {
      const limits = readLimits(req.policy, type, 'r');
      if (!isUnlimited(limits)) {
        throw forbidden(`history of all ${type} resources is not available to a patient-scoped, parameter-restricted or Consent-restricted token; read the history of one resource`);
      }
    }
  }

  const rows = await readHistory(ctx.db, { type: req.type, id: req.id, since, ...(at ? { at: at.period } : {}), beforeSeq: cursor, count: count + 1 });
  const visible = versionLimits ? visibleVersions(req.type!, rows, versionLimits) : rows.map(() => true);
  const page = rows.slice(0, count).filter((_, i) => visible[i]);
  const path = [ctx.baseUrl, req.type, req.id, '_history'].filter(Boolean).join('/');
  const link = (extra: Record<string, string>) => {
    const q = new URLSearchParams({ _count: String(count), ...(since ? { _since: since } : {}), ...(at ? { _at: at.sent } : {}), ...extra });
    return `${path}?${q.toString()}`;
  };
  const links = [{ relation: 'self', url: link(cursor ? { _cursor: cursor } : {}) }];
  // `_count=0` asks for no entries: there is no page to go on from (and no last row to name).
  if (rows.length > count && count > 0) links.push({ relation: 'next', url: link({ _cursor: rows[count - 1]!.seq }) });

  const entries = page.map((r) => {
    const fullUrl = `${ctx.baseUrl}/${r.type}/${r.id}`;
    const request = { method: r.method === 'POST' ? 'POST' : r.method, url: r.method === 'POST' ? r.type : `${r.type}/${r.id}` };
    const response = {
      // A first version was created, by POST or by a PUT at a client's id, and was answered 201.
      // A PUT after a deletion brought the resource back, and was answered 201 too.
      status: r.deleted ? '204' : r.method === 'POST' || r.version_id === 1 || r.after_deletion ? '201' : '200',
      etag: `W/"${r.version_id}"`,
      lastModified: new Date(r.last_updated).toISOString(),
    };
    const head = JSON.stringify({ fullUrl, request, response }).slice(0, -1);
    return r.json === null ? `${head}}` : `${head},"resource":${r.json}}`;
  });
  // Bundle.total costs nothing only when the whole history fits in this first page.
  const total = rows.length <= count && !cursor ? `,"total":${page.length}` : '';
  // R4 json.html: arrays are never empty, so a page with nothing on it has no entry element.
  const entry = entries.length ? `,"entry":[${entries.join(',')}]` : '';
  const json = `{"resourceType":"Bundle","type":"history"${total},"link":${JSON.stringify(links)}${entry}}`;
  return { status: 200, body: { json } };
}

/**
 * `_at` (R4 http.html#history): the versions current at some point of the period it names. A
 * date is its whole extent (`_at=2026-03` is March); `ge`/`gt` and `le`/`lt` open the period to
 * one side (a version is current from when it was written until the next one is).
 */
function atPeriod(sent: string): { sent: string; period: { from: string; to: string } } {
  // Read as a search's date term (prefix, time zone '+' sent unencoded, calendar checks).
  const { prefix, range } = parseDateTerm(sent, '_at');
  if (!['eq', 'ge', 'gt', 'le', 'lt'].includes(prefix)) throw badRequest(`_at takes the prefixes eq, ge, gt, le or lt, not '${prefix}'`, ['_at']);
  const from = prefix === 'ge' || prefix === 'eq' ? range.low : prefix === 'gt' ? range.high + 1 : Number.NEGATIVE_INFINITY;
  const to = prefix === 'le' || prefix === 'eq' ? range.high : prefix === 'lt' ? range.low - 1 : Number.POSITIVE_INFINITY;
  return { sent: dateFromQuery(sent), period: { from: timestampText(from), to: timestampText(to) } };
}

/**
 * Which versions of one resource the caller may read: each version is judged on its own content
 * (a version from before the resource entered the caller's compartment is not the caller's),
 * and a deletion as the version it deleted (the next older one).
 */
function visibleVersions(type: string, rows: readonly HistoryRow[], limits: ReadLimits): boolean[] {
  if (isUnlimited(limits)) return rows.map(() => true);
  const own = rows.map((r) => (r.json === null ? undefined : withinLimits(type, JSON.parse(r.json) as fhir4.FhirResource, limits)));
  return own.map((v, i) => v ?? own.slice(i + 1).find((x) => x !== undefined) ?? false);
}

export function pageSize(ctx: FhirContext, value: string | null): number {
  if (value === null) return ctx.config.defaultPageSize;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw badRequest(`_count must be a non-negative integer, got '${value}'`);
  return Math.min(n, ctx.config.maxPageSize);
}
