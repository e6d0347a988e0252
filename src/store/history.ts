import { supportedTypes } from '../kernel/resource-types';
import type { Queryable } from './db';
import { historyTableOf } from './tables';

export interface HistoryQuery {
  /** Omitted: every type (system-level history). */
  type?: string;
  id?: string;
  /** Only versions written at or after this instant (`_since`). */
  since?: string;
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
  json: string | null;
}

/**
 * Versions newest first. Paging is by the global history sequence, not OFFSET, so a page stays
 * correct while new versions are written. System level is a UNION ALL of per-type queries that
 * each stop after `count` rows of their own seq index.
 */
export async function readHistory(db: Queryable, q: HistoryQuery): Promise<HistoryRow[]> {
  const params: unknown[] = [q.count];
  const where: string[] = [];
  if (q.id !== undefined) where.push(`id = $${params.push(q.id)}`);
  if (q.since !== undefined) where.push(`last_updated >= $${params.push(q.since)}::timestamptz`);
  if (q.beforeSeq !== undefined) where.push(`seq < $${params.push(q.beforeSeq)}::bigint`);
  const filter = where.length > 0 ? `WHERE ${where.join(' AND ')}` : '';
  const branch = (type: string) =>
    `(SELECT '${type}' AS type, id, version_id, seq, last_updated, deleted, method, content::text AS json
      FROM ${historyTableOf(type)} ${filter} ORDER BY seq DESC LIMIT $1)`;
  const types = q.type ? [q.type] : supportedTypes;
  const sql = types.length === 1 ? branch(types[0]!) : `SELECT * FROM (${types.map(branch).join(' UNION ALL ')}) h ORDER BY seq DESC LIMIT $1`;
  return (await db.query<HistoryRow>(sql, params)).rows;
}
