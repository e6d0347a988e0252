import type { Queryable } from './db';
import { historyTableOf, tableOf } from './tables';

/** The current row of a resource, as locked or read before a write. */
export interface CurrentVersion {
  id: string;
  versionId: number;
  deleted: boolean;
  /** The stored JSON; undefined when deleted. */
  resource?: fhir4.FhirResource;
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

export async function readVersion(db: Queryable, type: string, id: string, versionId: number): Promise<StoredVersion | undefined> {
  const { rows } = await db.query<StoredRow>(
    `SELECT id, version_id, last_updated, deleted, content::text AS json FROM ${historyTableOf(type)} WHERE id = $1 AND version_id = $2`,
    [id, versionId],
  );
  return rows[0] && toStored(rows[0]);
}

/**
 * Locks the current rows of `ids` for the rest of the transaction (SELECT … FOR UPDATE), so
 * concurrent writers of one resource queue here and each sees the version the previous one
 * committed: versions stay strictly sequential, and If-Match compares against the truth.
 */
export async function lockCurrent(tx: Queryable, type: string, ids: readonly string[]): Promise<Map<string, CurrentVersion>> {
  const { rows } = await tx.query<{ id: string; version_id: number; deleted: boolean; content: fhir4.FhirResource | null }>(
    `SELECT id, version_id, deleted, content FROM ${tableOf(type)} WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE`,
    [ids],
  );
  return new Map(
    rows.map((r) => [r.id, { id: r.id, versionId: r.version_id, deleted: r.deleted, resource: r.content ?? undefined }]),
  );
}

/** Thrown when a row that should have been new already exists: a concurrent create of the same id won. */
export class ConcurrentCreateError extends Error {}

/**
 * Writes new versions of one type in two set-based statements (DESIGN.md: multi-row writes
 * are 5× faster than a statement per row): the current rows (insert, or update of the row
 * locked by `lockCurrent`) and the history rows. The caller has locked existing rows.
 */
export async function writeVersions(tx: Queryable, type: string, versions: readonly NewVersion[]): Promise<void> {
  if (versions.length === 0) return;
  const ids = versions.map((v) => v.id);
  const versionIds = versions.map((v) => v.versionId);
  const updated = versions.map((v) => v.lastUpdated);
  const deleted = versions.map((v) => v.resource === undefined);
  const methods = versions.map((v) => v.method);
  const contents = versions.map((v) => (v.resource === undefined ? null : JSON.stringify(v.resource)));
  const table = tableOf(type);

  // A version n > 1 only ever replaces version n-1; a version 1 row must not exist yet. The
  // WHERE makes a lost race visible as a missing row instead of an overwritten version.
  const current = await tx.query(
    `INSERT INTO ${table} (id, version_id, last_updated, deleted, content)
     SELECT * FROM unnest($1::text[], $2::int[], $3::timestamptz[], $4::bool[], $5::jsonb[])
     ON CONFLICT (id) DO UPDATE SET version_id = EXCLUDED.version_id, last_updated = EXCLUDED.last_updated,
       deleted = EXCLUDED.deleted, content = EXCLUDED.content
     WHERE ${table}.version_id = EXCLUDED.version_id - 1`,
    [ids, versionIds, updated, deleted, contents],
  );
  if (current.rowCount !== versions.length) {
    throw new ConcurrentCreateError(`a concurrent write created one of ${type}/${ids.join(', ')} first`);
  }
  await tx.query(
    `INSERT INTO ${historyTableOf(type)} (id, version_id, last_updated, deleted, method, content)
     SELECT * FROM unnest($1::text[], $2::int[], $3::timestamptz[], $4::bool[], $5::text[], $6::jsonb[])`,
    [ids, versionIds, updated, deleted, methods, contents],
  );
}
