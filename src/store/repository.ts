import { parseStoredJson } from '../kernel/input-limits';
import { stringifyKeepingDecimals } from '../kernel/json-decimals';
import { oneOf } from '../kernel/sql-any';
import type { Queryable, Transaction } from './db';
import { WriteStatement } from './write-statement';
import { historyTableOf, tableOf } from './tables';

/** The current row of a resource, as locked or read before a write. */
export interface CurrentVersion {
  id: string;
  versionId: number;
  deleted: boolean;
  /** The stored JSON; undefined when deleted. */
  resource?: fhir4.FhirResource;
  /** When deleted and asked for (lockCurrent's `lastLive`): the version the deletion removed. */
  lastLive?: fhir4.FhirResource;
}

/** One new version to write. `resource` is undefined for a delete. */
export interface NewVersion {
  id: string;
  versionId: number;
  lastUpdated: string;
  method: 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  resource?: fhir4.FhirResource;
}

/** A stored version as JSON text, passed to clients without parsing it again. */
export interface StoredVersion {
  id: string;
  versionId: number;
  lastUpdated: string;
  deleted: boolean;
  json: string | null;
}

interface StoredRow {
  id: string;
  version_id: number;
  last_updated: string;
  deleted: boolean;
  json: string | null;
}

const toStored = (r: StoredRow): StoredVersion => ({
  id: r.id,
  versionId: r.version_id,
  lastUpdated: r.last_updated,
  deleted: r.deleted,
  json: r.json,
});

export async function readCurrent(db: Queryable, type: string, id: string): Promise<StoredVersion | undefined> {
  const { rows } = await db.query<StoredRow>(
    `SELECT id, version_id, last_updated, deleted, content::text AS json FROM ${tableOf(type)} WHERE id = $1`,
    [id],
  );
  return rows[0] && toStored(rows[0]);
}

/** Which of `ids` have a current row (live or deleted) last written before `instant`. */
export async function idsWrittenBefore(db: Queryable, type: string, ids: readonly string[], instant: Date): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const id = oneOf('id', 1, [...new Set(ids)]);
  const { rows } = await db.query<{ id: string }>(`SELECT id FROM ${tableOf(type)} WHERE ${id.sql} AND last_updated < $2`, [id.value, instant.toISOString()]);
  return new Set(rows.map((r) => r.id));
}

/** One version: the current row when it is that version, else the history table's. */
export async function readVersion(db: Queryable, type: string, id: string, versionId: number): Promise<StoredVersion | undefined> {
  const { rows } = await db.query<StoredRow>(
    `SELECT id, version_id, last_updated, deleted, content::text AS json FROM ${tableOf(type)} WHERE id = $1 AND version_id = $2
     UNION ALL
     SELECT id, version_id, last_updated, deleted, content::text AS json FROM ${historyTableOf(type)} WHERE id = $1 AND version_id = $2
     LIMIT 1`,
    [id, versionId],
  );
  return rows[0] && toStored(rows[0]);
}

/**
 * Locks the current rows of `ids` for the rest of the transaction (SELECT … FOR UPDATE), so
 * concurrent writers of one resource queue here and each sees the version the previous one
 * committed: versions stay strictly sequential, and If-Match compares against the truth.
 */
export async function lockCurrent(tx: Queryable, type: string, ids: readonly string[], { lastLive = false } = {}): Promise<Map<string, CurrentVersion>> {
  const id = oneOf('id', 1, ids);
  // As text, parsed here: the version a write replaces keeps its decimals as written (a PATCH
  // stores the elements it does not touch again; src/kernel/json-decimals.ts).
  const { rows } = await tx.query<{ id: string; version_id: number; deleted: boolean; content: string | null }>(
    `SELECT id, version_id, deleted, content::text AS content FROM ${tableOf(type)} WHERE ${id.sql} ORDER BY id FOR UPDATE`,
    [id.value],
  );
  const current = new Map<string, CurrentVersion>(
    rows.map((r) => [r.id, { id: r.id, versionId: r.version_id, deleted: r.deleted, resource: r.content === null ? undefined : (parseStoredJson(r.content) as fhir4.FhirResource) }]),
  );
  const deleted = [...current.values()].filter((c) => c.deleted);
  if (lastLive && deleted.length > 0) {
    // The deletion's version is current; the one it removed is the newest in history.
    const removed = await tx.query<{ id: string; content: string | null }>(
      `SELECT h.id, h.content::text AS content FROM ${historyTableOf(type)} h
         JOIN unnest($1::text[], $2::int[]) AS d(id, version_id) ON h.id = d.id AND h.version_id = d.version_id`,
      [deleted.map((c) => c.id), deleted.map((c) => c.versionId - 1)],
    );
    for (const r of removed.rows) if (r.content !== null) current.get(r.id)!.lastLive = parseStoredJson(r.content) as fhir4.FhirResource;
  }
  return current;
}

/**
 * A unit of work that throws this is rolled back and run again from the start
 * (`withUnitOfWork`): what it read changed under it, and a fresh attempt reads it anew.
 */
export class ReplayUnitError extends Error {}

/** Thrown when a row that should have been new already exists: a concurrent create of the same id won. */
export class ConcurrentCreateError extends ReplayUnitError {}

/** PostgreSQL's unique_violation: a concurrent transaction inserted the same id first. */
const UNIQUE_VIOLATION = '23505';

/**
 * The writes of new versions of one type, each JSON document stored once: a new resource is one row
 * of the current table; a replaced one moves its current row to the history table and takes
 * the new version in place (the rows travel once as unnest() arrays; the history INSERT reads
 * the statement's snapshot, so it copies the version being replaced). Measured on PostgreSQL
 * 15, the earlier layout that also wrote every current version into history spent half its
 * bytes and much of its time on that copy. The caller has locked the rows being replaced.
 *
 * Adds them as CTEs to `statement`, which other writers fill too (the search index rows of the
 * same versions); runVersionWrites runs it and checks these writes.
 */
export function addVersionWrites(statement: WriteStatement, type: string, versions: readonly NewVersion[]): VersionWrites {
  const fresh = versions.filter((v) => v.versionId === 1);
  const replacing = versions.filter((v) => v.versionId > 1);
  const table = tableOf(type);
  // The JSON travels as text and is cast row by row where it is stored (`content::jsonb`), not
  // as a jsonb[] column: PostgreSQL's array cast spent 7.2 ms of a 100-entry bundle's 20 ms
  // statement turning the column into jsonb (auto_explain), the row casts ~1 ms (decision 022).
  const rows = (name: string, of: readonly NewVersion[]) =>
    `${name} AS (SELECT * FROM unnest(${statement.column(of.map((v) => v.id), 'text')}, ${statement.column(of.map((v) => v.versionId), 'int')}, ` +
    `${statement.column(of.map((v) => v.lastUpdated), 'timestamptz')}, ${statement.column(of.map((v) => v.resource === undefined), 'bool')}, ` +
    `${statement.column(of.map((v) => v.method), 'text')}, ${statement.column(of.map((v) => (v.resource === undefined ? null : stringifyKeepingDecimals(v.resource))), 'text')}) ` +
    'AS v(id, version_id, last_updated, deleted, method, content))';
  if (fresh.length > 0) {
    statement.with(rows('v_new', fresh));
    statement.with(`v_created AS (INSERT INTO ${table} (id, version_id, last_updated, deleted, method, content)
      SELECT id, version_id, last_updated, deleted, method, content::jsonb FROM v_new)`);
  }
  if (replacing.length > 0) {
    statement.with(rows('v_next', replacing));
    statement.with(`v_moved AS (INSERT INTO ${historyTableOf(type)} (id, version_id, seq, last_updated, deleted, method, content)
      SELECT c.id, c.version_id, c.seq, c.last_updated, c.deleted, c.method, c.content FROM ${table} c JOIN v_next v ON c.id = v.id AND c.version_id = v.version_id - 1)`);
    // Version n only ever replaces version n-1: a row that moved on is a lost race, not an overwrite.
    statement.with(`v_replaced AS (UPDATE ${table} t SET version_id = v.version_id, last_updated = v.last_updated, deleted = v.deleted, method = v.method,
      seq = nextval('history_seq'), content = v.content::jsonb
      FROM v_next v WHERE t.id = v.id AND t.version_id = v.version_id - 1 RETURNING 1)`);
    statement.answer('v_replaced', '(SELECT count(*)::int FROM v_replaced)');
  }
  return { type, fresh, replacing };
}

/** What addVersionWrites added, for runVersionWrites to check. */
export interface VersionWrites {
  type: string;
  fresh: readonly NewVersion[];
  replacing: readonly NewVersion[];
}

/**
 * Runs `statement` (with whatever other writers added to it) and checks the version writes in
 * it: a new row that already exists, or a replaced row that moved on, was a concurrent write.
 * A statement of new rows only has no answer to check: it is queued to travel with the
 * transaction's next statement or COMMIT (no round trip of its own), and a duplicate id is
 * reported there.
 */
export async function runVersionWrites(tx: Transaction, statement: WriteStatement, writes: VersionWrites): Promise<void> {
  const concurrent = (err: unknown) =>
    writes.fresh.length > 0 && (err as { code?: string }).code === UNIQUE_VIOLATION
      ? new ConcurrentCreateError(`a concurrent write created one of ${writes.type}/${writes.fresh.map((v) => v.id).join(', ')} first`)
      : err;
  if (writes.replacing.length === 0) {
    statement.runLater(tx, concurrent);
    return;
  }
  let answers: Record<string, unknown>;
  try {
    answers = await statement.run(tx);
  } catch (err) {
    throw concurrent(err);
  }
  if (answers.v_replaced !== writes.replacing.length) {
    throw new ConcurrentCreateError(`a concurrent write changed one of ${writes.type}/${writes.replacing.map((v) => v.id).join(', ')} first`);
  }
}

/** The live (not deleted) current versions of `ids`, parsed, with their version ids. */
export async function readVersioned<T extends fhir4.FhirResource>(db: Queryable, type: string, ids: readonly string[]): Promise<Map<string, { resource: T; versionId: number }>> {
  if (ids.length === 0) return new Map();
  const id = oneOf('id', 1, [...new Set(ids)]);
  const { rows } = await db.query<{ id: string; version_id: number; content: T }>(
    `SELECT id, version_id, content FROM ${tableOf(type)} WHERE ${id.sql} AND NOT deleted`,
    [id.value],
  );
  return new Map(rows.map((r) => [r.id, { resource: r.content, versionId: r.version_id }]));
}

/** The live (not deleted) current versions of `ids`, parsed: for capabilities that act on stored resources. */
export async function readResources<T extends fhir4.FhirResource>(db: Queryable, type: string, ids: readonly string[]): Promise<Map<string, T>> {
  const versioned = await readVersioned<T>(db, type, ids);
  return new Map([...versioned].map(([id, v]) => [id, v.resource]));
}

/** One live current version, parsed, with its version id; undefined when unknown or deleted. */
export async function readResource<T extends fhir4.FhirResource>(db: Queryable, type: string, id: string): Promise<{ resource: T; versionId: number } | undefined> {
  const { rows } = await db.query<{ version_id: number; content: T }>(`SELECT version_id, content FROM ${tableOf(type)} WHERE id = $1 AND NOT deleted`, [id]);
  return rows[0] && { resource: rows[0].content, versionId: rows[0].version_id };
}
