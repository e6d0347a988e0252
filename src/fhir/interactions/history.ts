import { readHistory } from '../../store/history';
import { readCurrent } from '../../store/repository';
import { isValidId } from '../../kernel/id';
import { forbidden, readLimits, requireReadable } from '../../access/enforce';
import type { FhirContext, InteractionResult } from '../context';
import { supportedTypes } from '../../kernel/resource-types';
import { badRequest, notFound } from '../../kernel/outcome';
import type { RestRequest } from '../rest-request';

const HISTORY_PARAMS = new Set(['_count', '_since', '_cursor', '_format', '_pretty']);

/**
 * history at instance (`type` and `id`), type (`type`) or system level (neither): a history
 * Bundle, newest first, with `next` links by keyset cursor. Built as text so stored JSON is not
 * parsed again.
 */
export async function history(ctx: FhirContext, req: Omit<RestRequest, 'type'> & { type?: string }): Promise<InteractionResult> {
  for (const key of req.query.keys()) {
    if (!HISTORY_PARAMS.has(key)) throw badRequest(`history does not support the parameter '${key}' (supported: _count, _since)`);
  }
  const count = pageSize(ctx, req.query.get('_count'));
  const since = req.query.get('_since') ?? undefined;
  if (since !== undefined && (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(since) || Number.isNaN(Date.parse(since)))) {
    throw badRequest(`_since must be an instant such as 2026-01-01T00:00:00Z, got '${since}'`);
  }
  const cursor = req.query.get('_cursor') ?? undefined;
  if (cursor !== undefined && !/^\d{1,18}$/.test(cursor)) throw badRequest(`_cursor '${cursor}' is not a cursor this server issued`);
  if (req.id !== undefined) {
    if (!req.type || !isValidId(req.id) || !(await readCurrent(ctx.db, req.type, req.id))) {
      throw notFound(`${req.type}/${req.id} is not known`);
    }
    await requireReadable(ctx.db, req.policy, req.type, req.id);
  } else {
    // History tables carry no compartment or index: across a type it is for unconfined,
    // unrestricted readers of every type it lists.
    for (const type of req.type ? [req.type] : supportedTypes) {
      const limits = readLimits(req.policy, type, 'r');
      if (limits.compartmentPatientId !== undefined || limits.constraint) {
        throw forbidden(`history of all ${type} resources is not available to a patient-scoped or parameter-restricted token; read the history of one resource`);
      }
    }
  }

  const rows = await readHistory(ctx.db, { type: req.type, id: req.id, since, beforeSeq: cursor, count: count + 1 });
  const page = rows.slice(0, count);
  const path = [ctx.baseUrl, req.type, req.id, '_history'].filter(Boolean).join('/');
  const link = (extra: Record<string, string>) => {
    const q = new URLSearchParams({ _count: String(count), ...(since ? { _since: since } : {}), ...extra });
    return `${path}?${q.toString()}`;
  };
  const links = [{ relation: 'self', url: link(cursor ? { _cursor: cursor } : {}) }];
  if (rows.length > count && page.length > 0) links.push({ relation: 'next', url: link({ _cursor: page[page.length - 1]!.seq }) });

  const entries = page.map((r) => {
    const fullUrl = `${ctx.baseUrl}/${r.type}/${r.id}`;
    const request = { method: r.method === 'POST' ? 'POST' : r.method, url: r.method === 'POST' ? r.type : `${r.type}/${r.id}` };
    const response = {
      status: r.deleted ? '204' : r.method === 'POST' ? '201' : '200',
      etag: `W/"${r.version_id}"`,
      lastModified: new Date(r.last_updated).toISOString(),
    };
    const head = JSON.stringify({ fullUrl, request, response }).slice(0, -1);
    return r.json === null ? `${head}}` : `${head},"resource":${r.json}}`;
  });
  // Bundle.total costs nothing only when the whole history fits in this first page.
  const total = rows.length <= count && !cursor ? `,"total":${page.length}` : '';
  const json = `{"resourceType":"Bundle","type":"history"${total},"link":${JSON.stringify(links)},"entry":[${entries.join(',')}]}`;
  return { status: 200, body: { json } };
}

export function pageSize(ctx: FhirContext, value: string | null): number {
  if (value === null) return ctx.config.defaultPageSize;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw badRequest(`_count must be a non-negative integer, got '${value}'`);
  return Math.min(n, ctx.config.maxPageSize);
}
