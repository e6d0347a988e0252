import { tableOf } from '../store/tables';
import type { SqlParams } from '../kernel/sql-params';
import { type IndexKind, indexTableOf } from './index-tables';
import type { SortKey } from './parse';
import { storedSourcesOf } from './registry';
import type { SortColumn } from './sql';
import { typeModules } from './types';

/** The rows of a search sorted by an index table's values (planSortedByRow), given the search's conditions on its resource row. */
export interface SortedByRow {
  /** The matches with a value: FROM, its conditions (none: the matches are chosen inside), columns, and the page's resources fetched after the cut. */
  valued(conditions: readonly string[]): { from: string; conditions: string[]; columns: SortColumn[]; fetch: { id: string; table: string } };
  /** The matches without a value: after all the others, by id the way of the key. None for several keys: the valued set holds every match. */
  valueless?(conditions: readonly string[]): { from: string; conditions: string[]; columns: SortColumn[] };
}

/**
 * A search sorted by one parameter of an index table that neither a patient index nor the
 * newest-first driver serves (`Observation?_sort=code`, `?_sort=value-quantity`, `?_sort=date`,
 * `Patient?_sort=name`), as one set: the parameter's rows of the matching resources, grouped by
 * resource to its sort value (the smallest ascending, the largest descending, as R4 says of a
 * repeating element), cut to the page, and only then the page's resources fetched. The matches
 * without a value come after every valued one, by id, as a second set read only when the first
 * does not fill the page (as in ./newest-first.ts; the same cursor values as the generic sort).
 *
 * Measured reason: the generic sort computed each match's value by a correlated subquery
 * (`(SELECT min(code) FROM observation_token WHERE id = r.id AND param = 'code')`, run again
 * for the cursor's comparisons on a later page) and converted every match's JSON before the
 * sort: `Observation?_sort=code` at 20k Observations took 15 s (PostgreSQL) and 61 s (PGlite),
 * its second page 40 s and 93 s, on a loaded two-core machine. The set's cost is one pass over
 * the parameter's rows of the matches (a hash join or, for a narrow filter, a probe of each
 * match's rows by id: PostgreSQL chooses, the statement being planned for its values), whatever
 * the page; see docs/decisions/037-sort-by-index-values.md.
 *
 * Not driven (the generic sort answers): several sort keys, a resource column (`_id`,
 * `_lastUpdated`, which have their own indexes), a parameter stored from several sources or of a
 * target type, and a date newest first, which ./newest-first.ts drives (and otherwise leaves to
 * the generic sort for a reason of its own).
 */
export function planSortedByRow(resourceType: string, sort: readonly SortKey[], r: string, q: SqlParams): SortedByRow | undefined {
  if (sort.length > 1) return planSortedByRows(resourceType, sort, r, q);
  if (sort.length !== 1) return undefined;
  const { param, descending } = sort[0];
  if (descending && param.type === 'date') return undefined;
  const key = groupedKey(sort[0]);
  if (!key) return undefined;
  const { column, pgType } = key;
  const table = tableOf(resourceType);
  const rows = indexTableOf(table, key.kind);
  const code = q.bind(key.code);
  return {
    valued(conditions) {
      const d = 'd';
      const v = q.alias('v');
      const m = q.alias('m');
      // The matches chosen inside the grouping: PostgreSQL does not push a join's condition into
      // a GROUP BY, so with the matches outside it would group every resource's rows.
      const matches = `SELECT ${r}.id FROM ${table} ${r} WHERE ${conditions.join(' AND ')}`;
      return {
        from: `(SELECT ${v}.id, ${descending ? 'max' : 'min'}(${v}.${column}) AS ${m} FROM ${rows} ${v} WHERE ${v}.param = ${code} AND ${v}.${column} IS NOT NULL AND ${v}.id IN (${matches}) GROUP BY ${v}.id) ${d}`,
        conditions: [],
        columns: [
          // NOT NULL (the rows above have a value): ordered as an index on it would read either way.
          { expression: `${d}.${m}`, descending, pgType, notNull: true },
          // The generic sort's tiebreak: the id, the way of the (last) key.
          { expression: `${d}.id`, descending, pgType: 'text', notNull: true },
        ],
        fetch: { id: `${d}.id`, table },
      };
    },
    valueless(conditions) {
      const x = q.alias('x');
      return {
        from: `${table} ${r}`,
        conditions: [...conditions, `NOT EXISTS (SELECT 1 FROM ${rows} ${x} WHERE ${x}.id = ${r}.id AND ${x}.param = ${code} AND ${x}.${column} IS NOT NULL)`],
        columns: [
          // The generic sort's value for them (the smallest or largest of no values), so that cursors read the same either way.
          { expression: `NULL::${pgType}`, descending, pgType },
          { expression: `${r}.id`, descending, pgType: 'text', notNull: true },
        ],
      };
    },
  };
}

/** A key of an index table that one grouping of its rows can compute: one stored source, no target type. */
function groupedKey(key: SortKey): { code: string; column: string; pgType: string; kind: IndexKind } | undefined {
  const { param, descending } = key;
  if (param.storage.kind === 'column') return undefined;
  const module = typeModules[param.type];
  if (!module.sortColumn) return undefined;
  const sources = storedSourcesOf(param);
  if (sources.length !== 1 || sources[0].targetType) return undefined;
  return { code: sources[0].code, column: descending ? module.sortColumn.desc : module.sortColumn.asc, pgType: module.sortColumn.pgType, kind: module.kind };
}

/**
 * Several keys (`_sort=code,-date`, `_sort=value-quantity,_id`), at least one of an index table:
 * the matches, each index key's value joined to them from one grouping of its rows (as for one
 * key, over the matches only), the page cut by the keys and the id, its resources fetched after.
 * A match without a value of a key has NULL there, which sorts last. Before, every key was a
 * correlated subquery per match, as for one key (decision 037). Only when the first key is of an
 * index table: a resource column first is read in its own index's order.
 */
function planSortedByRows(resourceType: string, sort: readonly SortKey[], r: string, q: SqlParams): SortedByRow | undefined {
  const grouped = sort.map((k) => (k.param.storage.kind === 'column' ? undefined : groupedKey(k)));
  // Every key is either a resource column or one grouping; a key that is neither leaves the sort to the generic plan.
  if (sort.some((k, n) => k.param.storage.kind !== 'column' && !grouped[n])) return undefined;
  // A resource column first (`_sort=-_lastUpdated,code`) is read in its index's order, the later keys computed for about a page.
  if (!grouped[0]) return undefined;
  const table = tableOf(resourceType);
  const codes = grouped.map((g) => g && q.bind(g.code));
  return {
    valued(conditions) {
      const matches = `SELECT ${r}.id, ${r}.last_updated FROM ${table} ${r} WHERE ${conditions.join(' AND ')}`;
      const m = q.alias('m');
      const joins: string[] = [];
      const columns: SortColumn[] = sort.map((key, n) => {
        const g = grouped[n];
        if (!g) {
          const column = (key.param.storage as { column: string }).column;
          return { expression: `${m}.${column}`, descending: key.descending, pgType: column === 'id' ? 'text' : 'timestamptz', notNull: true };
        }
        const k = q.alias('k');
        const v = q.alias('v');
        const rows = indexTableOf(table, g.kind);
        joins.push(
          `LEFT JOIN (SELECT ${v}.id, ${key.descending ? 'max' : 'min'}(${v}.${g.column}) AS value FROM ${rows} ${v} WHERE ${v}.param = ${codes[n]} AND ${v}.${g.column} IS NOT NULL AND ${v}.id IN (SELECT ${r}.id FROM ${table} ${r} WHERE ${conditions.join(' AND ')}) GROUP BY ${v}.id) ${k} ON ${k}.id = ${m}.id`,
        );
        return { expression: `${k}.value`, descending: key.descending, pgType: g.pgType };
      });
      return {
        from: `(${matches}) ${m} ${joins.join(' ')}`,
        conditions: [],
        // The generic sort's tiebreak: the id, the way of the last key.
        columns: [...columns, { expression: `${m}.id`, descending: sort.at(-1)!.descending, pgType: 'text', notNull: true }],
        fetch: { id: `${m}.id`, table },
      };
    },
  };
}
