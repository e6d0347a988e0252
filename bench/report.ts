import type { ResultRow } from './harness';
import type { TableSize } from './rawdb';

/** Plain-text tables for the terminal and for pasting into issue notes. */
export function table(header: string[], rows: string[][], rightAligned: (i: number) => boolean = () => true): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (rightAligned(i) ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

const fixed = (x: number | undefined, digits: number) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(digits));

/**
 * One line per measured phase. On the server line of each group: server ÷ raw for throughput
 * (how much of the engine's rate the server keeps) and for the median latency (how many times
 * longer a client waits).
 */
export function resultsTable(rows: ResultRow[]): string {
  const raw = new Map(rows.filter((r) => r.target === 'raw SQL').map((r) => [r.group, r]));
  const body = rows.map((r) => {
    const base = r.target === 'server' ? raw.get(r.group) : undefined;
    return [
      r.group,
      r.target,
      String(r.stats.count) + (r.stats.truncated ? '*' : ''),
      fixed(r.stats.perSecond, 0),
      fixed(r.stats.p50, 2),
      fixed(r.stats.p95, 2),
      fixed(r.stats.p99, 2),
      String(r.stats.errors),
      base ? fixed(r.stats.perSecond / base.stats.perSecond, 3) : '',
      base ? fixed(r.stats.p50 / base.stats.p50, 1) + '×' : '',
      fixed(r.cpu.server, 2),
      fixed(r.cpu.postgres, 2),
      fixed(r.cpu.bench, 2),
      fixed(r.rssMb, 0),
    ];
  });
  const header = ['workload', 'target', 'n', 'req/s', 'p50 ms', 'p95 ms', 'p99 ms', 'errors', 'srv/raw req/s', 'srv/raw p50', 'cpu ms/req: server', 'postgres', 'bench', 'server RSS MB'];
  return table(header, body, (i) => i >= 2);
}

export function sizesTable(before: TableSize[], after: TableSize[]): string {
  const prior = new Map(before.map((t) => [t.table, t]));
  const touched = after.filter((t) => t.rows > 0 || (prior.get(t.table)?.rows ?? 0) > 0);
  const body = touched.map((t) => {
    const b = prior.get(t.table);
    return [t.table, String(b?.rows ?? 0), String(t.rows), mb(b?.bytes ?? 0), mb(t.bytes)];
  });
  const total = (xs: TableSize[]) => xs.reduce((s, t) => s + t.bytes, 0);
  body.push(['(all tables)', '', '', mb(total(before)), mb(total(after))]);
  return table(['table', 'rows before', 'rows after', 'size before', 'size after'], body, (i) => i > 0);
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(2)} MB`;
}
