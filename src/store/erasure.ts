import { escapeLike } from '../kernel/sql-like';
import type { Queryable } from './db';
import { historyTableOf, tableOf } from './tables';

/** A stored version found by its content. */
export interface FoundVersion {
  type: string;
  id: string;
  versionId: number;
  resource: fhir4.FhirResource;
}

/**
 * The versions of `types` whose stored JSON contains any of `texts`, in one statement: the
 * replaced versions (history rows), or with `current` the current ones. For erasure only (GDPR
 * Art. 17): a resource deleted, or moved to another patient, since it was in a compartment has no
 * index rows left that name it, and a Binary has no index of its securityContext, so they are
 * found by their content. It scans the tables (rare and by an administrator; history holds the
 * replaced versions only, so it is the small part of the data).
 */
export async function versionsContaining(db: Queryable, types: readonly string[], texts: readonly string[], { current = false } = {}): Promise<FoundVersion[]> {
  if (types.length === 0 || texts.length === 0) return [];
  const likes = texts.map((text) => `%${escapeLike(text)}%`);
  const table = current ? tableOf : historyTableOf;
  const branches = types.map((type) => `SELECT '${type}' AS type, id, version_id, content FROM ${table(type)} WHERE content IS NOT NULL AND content::text LIKE ANY($1::text[])`);
  const { rows } = await db.query<{ type: string; id: string; version_id: number; content: fhir4.FhirResource }>(branches.join(' UNION ALL '), [likes]);
  return rows.map((r) => ({ type: r.type, id: r.id, versionId: r.version_id, resource: r.content }));
}

/** Removes every version of `ids` (the current row and the history rows): nothing of them stays readable. */
export async function eraseResources(tx: Queryable, type: string, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  await tx.query(
    `WITH h AS (DELETE FROM ${historyTableOf(type)} WHERE id = ANY($1::text[])) DELETE FROM ${tableOf(type)} WHERE id = ANY($1::text[])`,
    [ids],
  );
}

/** Removes single replaced versions (history rows), leaving the resource's other versions. */
export async function eraseVersions(tx: Queryable, type: string, versions: ReadonlyArray<{ id: string; versionId: number }>): Promise<void> {
  if (versions.length === 0) return;
  await tx.query(
    `DELETE FROM ${historyTableOf(type)} h USING unnest($1::text[], $2::int[]) AS v(id, version_id) WHERE h.id = v.id AND h.version_id = v.version_id`,
    [versions.map((v) => v.id), versions.map((v) => v.versionId)],
  );
}
