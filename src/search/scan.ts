import { badRequest } from '../kernel/outcome';
import type { Queryable } from '../store/db';
import { tableOf } from '../store/tables';
import { parseSearch } from './parse';
import { checkReach } from './reach-check';
import { isUnlimited, limitsIfAllowed, type Reach } from './reach';
import { buildQuery } from './search';
import { patientsCompartmentCondition } from './sql';
import { SqlParams } from '../kernel/sql-params';

/**
 * One type's resources as they stood at an instant, in id order, a batch at a time: what the
 * bulk export (src/bulk) streams into its files. Keyset batches rather than a server-side
 * cursor, because PGlite has none and because a batch boundary is a place to checkpoint:
 * an export resumed after a restart continues after the last id it wrote.
 */
export interface ScanRequest {
  resourceType: string;
  /**
   * Alternatives (OR), each a set of search parameters (AND): the export's `_typeFilter` queries,
   * each already joined with the caller's granular scope. Empty: no filter.
   */
  filters: readonly URLSearchParams[];
  /** The caller's patient confinement (a patient/ scope), applied to every filter. */
  compartmentPatientId?: string;
  /** The export's reference set: resources in the compartment of these Patients, or of any Patient. */
  patients?: readonly string[] | 'any';
  /** What the caller may see of other types a filter reaches (chains, _has). */
  reach: Reach;
  /** The export's transactionTime. */
  asOf: string;
  /** `_since`: only resources last updated at or after it. */
  since?: string;
  /** Keyset: only ids after this one. */
  afterId?: string;
  limit: number;
}

/**
 * A row of the scan. `json` is the stored version when it is the one current at `asOf`; null
 * when the resource changed after `asOf` (or was deleted since): the caller reads the version
 * that was current then from history and judges it, since the search index only describes the
 * current version.
 */
export interface ScannedRow {
  id: string;
  json: string | null;
}

export async function scanAsOf(db: Queryable, request: ScanRequest): Promise<ScannedRow[]> {
  const q = new SqlParams();
  const x = 'x';
  const unchanged = [`${x}.last_updated <= ${q.bind(request.asOf, 'timestamptz')}`, `NOT ${x}.deleted`];
  if (request.since !== undefined) unchanged.push(`${x}.last_updated >= ${q.bind(request.since, 'timestamptz')}`);
  if (request.patients !== undefined) unchanged.push(patientsCompartmentCondition(request.resourceType, request.patients, x, q));
  // With no filter, the caller's own limits still apply: its compartment, and what Consents deny
  // it of this type (buildQuery takes those from the reach). Only an unlimited caller scans bare.
  const own = limitsIfAllowed(request.reach, request.resourceType, 's');
  const limited = request.compartmentPatientId !== undefined || (own !== undefined && !isUnlimited(own));
  const filters = request.filters.length > 0 ? request.filters : limited ? [new URLSearchParams()] : [];
  if (filters.length > 0) {
    const alternatives = filters.map((params) => {
      const parsed = parseSearch(request.resourceType, params, { defaultCount: 0, maxCount: Number.MAX_SAFE_INTEGER });
      checkReach(parsed, request.reach);
      const query = buildQuery({ ...parsed, sort: [] }, request.compartmentPatientId, request.reach, q);
      return `EXISTS (SELECT 1 FROM ${query.from} WHERE ${[...query.conditions, `r.id = ${x}.id`].join(' AND ')})`;
    });
    unchanged.push(`(${alternatives.join(' OR ')})`);
  }
  const after = request.afterId !== undefined ? `${x}.id > ${q.bind(request.afterId)} AND ` : '';
  const changed = `${x}.last_updated > ${q.bind(request.asOf, 'timestamptz')}`;
  const sql = `SELECT ${x}.id, CASE WHEN ${changed} THEN NULL ELSE ${x}.content::text END AS json
    FROM ${tableOf(request.resourceType)} ${x}
    WHERE ${after}((${unchanged.join(' AND ')}) OR ${changed})
    ORDER BY ${x}.id LIMIT ${q.bind(request.limit, 'int')}`;
  return (await db.query<ScannedRow>(sql, q.values)).rows;
}

const RESULT_PARAMETERS = ['_include', '_revinclude', '_sort', '_count', '_summary', '_elements', '_total', '_cursor'];

/**
 * A `_typeFilter` query checked when the export is asked for, so a bad one is a 4xx then and
 * not a failed job later: parameters the type does not have are refused, and so are result
 * parameters (Bulk Data v2.0.0: no `_include` or `_sort` in a type filter); a chain or `_has`
 * into a type the caller may not search is 403, as scanAsOf would find when the job runs.
 */
export function checkScanFilter(resourceType: string, params: URLSearchParams, reach: Reach): void {
  for (const name of params.keys()) {
    if (RESULT_PARAMETERS.includes(name.split(':')[0]!)) throw badRequest(`_typeFilter: ${name} is a result parameter and has no place in an export filter`, ['_typeFilter']);
  }
  checkReach(parseSearch(resourceType, params, { defaultCount: 0, maxCount: Number.MAX_SAFE_INTEGER }), reach);
}
