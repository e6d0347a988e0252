import { supportedTypes } from '../kernel/resource-types';
import type { Queryable } from './db';
import { historyTableOf, tableOf } from './tables';

export interface HistoryQuery {
  /** Omitted: every type (system-level history). */
  type?: string;
  id?: string;
  /** Only versions written at or after this instant (`_since`). */
  since?: string;
  /**
   * Only versions that were current at some point within [from, to] (`_at`, timestamptz texts,
   * infinities allowed): written at or before `to`, and not replaced before `from`.
   */
  at?: { from: string; to: string };
  /** Keyset cursor: only versions older than this sequence number (the `next` link). */
  beforeSeq?: string;
  count: number;
}

export interface HistoryRow {
  type: string;
  id: string;
  version_id: number;
  seq: string;
  last_updated: string;
  deleted: boolean;
  method: string;
  /** Whether the version before this one was a deletion (a PUT after it brought the resource back). */
  after_deletion: boolean;
  json: string | null;
}

/**
 * Versions newest first: each type's current rows (which are their latest version) and history
 * rows (the replaced ones). Paging is by the global history sequence, not OFFSET, so a page
 * stays correct while new versions are written. Each branch stops after `count` rows of its own
 * seq index; system level is a UNION ALL over every type.
 */
export async function readHistory(db: Queryable, q: HistoryQuery): Promise<HistoryRow[]> {
  const params: unknown[] = [q.count];
  const where: string[] = [];
  if (q.id !== undefined) where.push(`v.id = $${params.push(q.id)}`);
  if (q.since !== undefined) where.push(`v.last_updated >= $${params.push(q.since)}::timestamptz`);
  if (q.beforeSeq !== undefined) where.push(`v.seq < $${params.push(q.beforeSeq)}::bigint`);
  const atTo = q.at && `$${params.push(q.at.to)}::timestamptz`;
  const atFrom = q.at && `$${params.push(q.at.from)}::timestamptz`;
  // A replaced version stops being current when the next one is written: in the history table,
  // or the current row when it was the last replaced.
  const nextWritten = (current: string, history: string) =>
    `coalesce((SELECT n.last_updated FROM ${history} n WHERE n.id = v.id AND n.version_id = v.version_id + 1),
              (SELECT n.last_updated FROM ${current} n WHERE n.id = v.id AND n.version_id = v.version_id + 1))`;
  const branch = (type: string, table: string, replaced: { current: string; history: string } | undefined, history: string) => {
    const conditions = [...where];
    if (atTo) conditions.push(`v.last_updated <= ${atTo}`);
    if (atFrom && replaced) conditions.push(`${nextWritten(replaced.current, replaced.history)} > ${atFrom}`);
    const filter = conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : '';
    return `(SELECT '${type}' AS type, v.id, v.version_id, v.seq, v.last_updated, v.deleted, v.method,
        v.method = 'PUT' AND coalesce((SELECT p.deleted FROM ${history} p WHERE p.id = v.id AND p.version_id = v.version_id - 1), false) AS after_deletion,
        v.content::text AS json
      FROM ${table} v ${filter} ORDER BY v.seq DESC LIMIT $1)`;
  };
  const types = q.type ? [q.type] : supportedTypes;
  const branches = types.flatMap((type) => {
    const tables = { current: tableOf(type), history: historyTableOf(type) };
    return [branch(type, tables.current, undefined, tables.history), branch(type, tables.history, tables, tables.history)];
  });
  const sql = `SELECT * FROM (${branches.join(' UNION ALL ')}) h ORDER BY seq DESC LIMIT $1`;
  return (await db.query<HistoryRow>(sql, params)).rows;
}

/**
 * The versions of `ids` that were current at `asOf`, for resources changed since (their current
 * row is newer): the newest history version written at or before it; none for a resource created
 * later. A version that was a deletion comes back with `json` null.
 */
export async function versionsAsOf(db: Queryable, type: string, ids: readonly string[], asOf: string): Promise<Array<{ id: string; lastUpdated: string; json: string | null }>> {
  if (ids.length === 0) return [];
  const { rows } = await db.query<{ id: string; last_updated: Date | string; json: string | null }>(
    `SELECT DISTINCT ON (id) id, last_updated, CASE WHEN deleted THEN NULL ELSE content::text END AS json
       FROM ${historyTableOf(type)} WHERE id = ANY($1::text[]) AND last_updated <= $2::timestamptz
      ORDER BY id, version_id DESC`,
    [ids, asOf],
  );
  return rows.map((r) => ({ id: r.id, lastUpdated: new Date(r.last_updated).toISOString(), json: r.json }));
}
