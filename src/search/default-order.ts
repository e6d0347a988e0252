import type { Filter, SortKey } from './parse';
import type { DateTerm } from './types/date';
import type { Prefix } from './types/prefix';

/** The prefixes whose matches are every value from some point on (gt, ge, sa: starts after). */
export const FROM_A_POINT: ReadonlySet<Prefix> = new Set<Prefix>(['gt', 'ge', 'sa']);

/**
 * The order of a page the client did not sort, when no patient index drives it: the order of
 * the index its date filter reads from a point on. FHIR leaves an unsorted search's order to the
 * server; answered by id, PostgreSQL walked the primary key from the oldest id and filtered, so a
 * filter for recent data (`_lastUpdated=gt<last poll>`, `code=…&date=ge<a week back>`) read
 * almost every older row first: ids are time-ordered (decision 025) and so are a deployment's
 * readings, which PostgreSQL, taking the filter for independent of the id, does not expect.
 *
 * - `_lastUpdated` from a point: oldest change first, its `(last_updated, id)` index read forwards
 *   from the bound: the order a client polling for changes pages them in.
 * - another date parameter from a point (`date`, `birthdate`, `authoredon`, …): newest first,
 *   driven by the date index read backwards down to the bound (./newest-first.ts), when that
 *   driver takes the parameter; oldest first by a date has no index that gives it (each
 *   resource's earliest start, where the index is ordered by ends).
 *
 * Nothing for a compartment search (its patient's key rows drive it, sorted by date already), a
 * negated or modified filter, or a filter with a term bounded above.
 */
export function impliedSort(filters: readonly Filter[], compartmentId: string | undefined): SortKey[] {
  if (compartmentId !== undefined) return [];
  for (const f of filters) {
    if (f.kind !== 'param' || f.param.type !== 'date' || f.negate || f.modifier !== undefined || f.missing !== undefined || f.terms.length === 0) continue;
    if (!(f.terms as DateTerm[]).every((t) => FROM_A_POINT.has(t.prefix))) continue;
    return [{ param: f.param, descending: f.param.storage.kind !== 'column' }];
  }
  return [];
}
