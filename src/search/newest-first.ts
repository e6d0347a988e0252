import { tableOf } from '../store/tables';
import type { SqlParams } from '../kernel/sql-params';
import { indexTableOf } from './index-tables';
import type { Filter, ParamFilter, SortKey } from './parse';
import { type DateTerm, dateIndexBound } from './types/date';
import { FROM_A_POINT } from './default-order';
import { storedSourcesOf } from './registry';
import { type Driver, paramFilterCondition, termsOnRow } from './sql';

/**
 * A search sorted newest first by a date parameter that no patient index drives
 * (`Observation?category=vital-signs&_sort=-date`, `Observation?_sort=-date`): driven by the
 * date table's `(param, high, low)` index read backwards, each resource at its latest range's
 * end (the sort value R4 gives a repeating element sorted descending: its largest), its other
 * filters checked per row. PostgreSQL is left to choose: for a filter most resources meet it
 * reads about a page of index rows; for a narrow one (an identifier, a rare code) it starts
 * from that filter's index and sorts the few it finds, as before.
 *
 * Measured reason: the generic sort computed every matching resource's latest date through a
 * subquery and sorted them all: 1.0–1.2 s at 100k Observations, 12.9 s at 1M.
 *
 * The resources without a date come last, by id (`tail`): they have no row in the date table,
 * so they are a second set, read only when the dated rows do not fill the page.
 *
 * Not driven:
 * - oldest first: its value is each resource's earliest range start, and the index is ordered by
 *   the ends;
 * - a date filter with an upper bound (`date=le2026-01-01`, `_lastUpdated=lt…`, a day): the
 *   newest rows fail it, and PostgreSQL, taking the filter for independent of the order, would
 *   read back to the bound (92,713 index rows, 1.0 s at 100k, for `date=le` eleven months back).
 *   That filter's own index finds its matches, which are sorted, as before;
 * - a compartment search (`compartmentId`): one patient's resources, which the patient's key rows
 *   drive when they can (planDriver); reading every patient's newest first for them only added
 *   planning (+1.5 ms measured).
 */
export function planNewestFirst(resourceType: string, filters: readonly Filter[], sort: readonly SortKey[], compartmentId: string | undefined, r: string, q: SqlParams): Driver | undefined {
  if (compartmentId !== undefined) return undefined;
  // `_lastUpdated` is a column of the resource table, read backwards through its own index.
  if (sort.length !== 1 || !sort[0].descending || sort[0].param.type !== 'date' || sort[0].param.storage.kind === 'column') return undefined;
  if (filters.some(boundsDatesAbove)) return undefined;
  const sources = storedSourcesOf(sort[0].param);
  if (sources.length !== 1 || sources[0].targetType) return undefined;
  const dates = indexTableOf(tableOf(resourceType), 'date');
  const d = 'd';
  const param = q.bind(sources[0].code);
  const later = q.alias('x');
  const any = q.alias('x');
  const onSorted = filters.filter((f): f is ParamFilter => f.kind === 'param' && f.param.code === sort[0].param.code && f.terms.length > 0 && !f.negate && f.modifier === undefined && f.missing === undefined);
  // A filter on the sorted parameter from a point on bounds the driving row too, whose end is
  // the resource's latest: the scan stops there, and PostgreSQL knows how far it reads.
  const bounds = onSorted.flatMap((f) => {
    const term = f.terms[0] as DateTerm;
    return f.terms.length === 1 && FROM_A_POINT.has(term.prefix) ? [dateIndexBound(term, `${d}.low`, `${d}.high`, q)!] : [];
  });
  // A resource meets a filter on the sorted parameter when one of its ranges does: most often
  // the driving row itself, which is tried first; its other ranges are probed only when that
  // fails. Inside a CASE the probe stays a probe: as a plain EXISTS PostgreSQL made it a join
  // over every range meeting the filter, and sorted what that found (`code=…&date=ge<a week
  // back>&_sort=-date` at 100k: 43-47 ms, against 3.5-4.1 ms read as a walk that stops at a page).
  const onRow = onSorted.map((f) => `(CASE WHEN ${termsOnRow(f, d, q)} THEN true ELSE ${paramFilterCondition(resourceType, f, r, q)} END)`);
  return {
    from: `${dates} ${d} JOIN ${tableOf(resourceType)} ${r} ON ${r}.id = ${d}.id`,
    conditions: [
      `${d}.param = ${param}`,
      `${d}.high IS NOT NULL`,
      ...bounds,
      // One row per resource: its latest (of equal ends, the last stored), the one whose end is the sort value.
      // Its parameter is compared as `(…) IS TRUE`, which PostgreSQL neither derives `= 'date'` from
      // nor reads through an index: without statistics (PGlite never gathers them; nor does a
      // PostgreSQL with autovacuum off) a later page's probe per row was a bitmap of the id index
      // ANDed with every `date` row of the range index (19,360 of them, 1.6 ms a probe): page 2 of
      // `Observation?_sort=-date` took 25 s at 20k on PostgreSQL and 80 s on PGlite. Now a probe
      // reads the resource's own rows by id.
      `NOT EXISTS (SELECT 1 FROM ${dates} ${later} WHERE ${later}.id = ${d}.id AND (${later}.param = ${d}.param) IS TRUE AND (${later}.high > ${d}.high OR (${later}.high = ${d}.high AND ${later}.ctid > ${d}.ctid)))`,
      ...onRow,
    ],
    consumed: new Set(onSorted),
    // NOT NULL (by the condition above): ordered DESC NULLS FIRST, as the ascending index reads backwards.
    sort: [{ expression: `${d}.high`, descending: true, pgType: 'timestamptz', notNull: true }],
    tiebreak: { expression: `${d}.id`, descending: true, pgType: 'text' },
    planOnce: false,
    // A resource without a date meets no filter on the sorted parameter: no second set then.
    tail: onSorted.length ? undefined : {
      from: `${tableOf(resourceType)} ${r}`,
      conditions: [`NOT EXISTS (SELECT 1 FROM ${dates} ${any} WHERE ${any}.id = ${r}.id AND ${any}.param = ${param} AND ${any}.high IS NOT NULL)`],
      // The generic sort's value for them (the largest of no dates), so that cursors read the same either way.
      sort: [{ expression: 'NULL::timestamptz', descending: true, pgType: 'timestamptz' }],
      tiebreak: { expression: `${r}.id`, descending: true, pgType: 'text' },
    },
  };
}

/** A date filter that leaves out every value after some point: a term neither from a point on nor `ne`. */
function boundsDatesAbove(f: Filter): boolean {
  if (f.kind !== 'param' || f.param.type !== 'date' || f.missing !== undefined || f.negate) return false;
  return (f.terms as DateTerm[]).some((t) => !FROM_A_POINT.has(t.prefix) && t.prefix !== 'ne');
}
