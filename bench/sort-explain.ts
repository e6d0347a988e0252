/**
 * EXPLAIN ANALYZE of page 1 and page 2 of the `_sort` shapes of ./sort-cost.ts, on a PostgreSQL
 * schema that holds its data: node dist/bench/sort-explain.js <url with search_path> [shape…]
 */
import { firstPageSql } from '../src/search/search';
import { encodeCursor } from '../src/search/cursor';
import { openDb } from '../src/store/db';

async function main(): Promise<void> {
  const [url, ...shapes] = process.argv.slice(2);
  const db = await openDb(url!, '');
  for (const shape of shapes.length ? shapes : ['_sort=code', '_sort=date', '_sort=-date', '_sort=value-quantity']) {
    const first = firstPageSql('Observation', new URLSearchParams(shape), 50);
    const { rows } = await db.query<Record<string, string | null>>(first.sql.replace(/^\/\*[^*]*\*\/\s*/, ''), first.values);
    const last = rows[49]!;
    const keys = Object.keys(last).filter((k) => /^k\d+$/.test(k)).map((k) => last[k] ?? null);
    const second = firstPageSql('Observation', new URLSearchParams(`${shape}&_cursor=${encodeCursor({ values: keys, reverse: false })}`), 50);
    for (const [name, q] of [['page 1', first], ['page 2', second]] as const) {
      const plan = await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${q.sql.replace(/^\/\*[^*]*\*\/\s*/, '')}`, q.values);
      console.log(`\n=== ${shape} ${name}\n${plan.rows.map((r) => r['QUERY PLAN']).join('\n')}`);
    }
  }
  await db.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
