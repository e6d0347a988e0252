import { existsSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The search index rows a create writes, computed before the clock starts, for the raw-SQL side
 * of write workloads: the server writes them in the create's transaction (src/search), so a
 * baseline without them would flatter the raw side.
 *
 * src/search is being built beside the bench; it is loaded at run time and checked for the
 * shape used here (`extractIndex`, `INDEX_COLUMNS`, `indexTableOf`), so the bench still runs —
 * with a baseline of current + history rows, and saying so — if that surface moves.
 */
interface ExtractApi {
  extractIndex(resourceType: string, resource: fhir4.FhirResource): { patient: string | null; rows: Record<string, Array<{ param: string; row: unknown[] }>> };
}
interface TablesApi {
  INDEX_COLUMNS: Record<string, ReadonlyArray<readonly [string, string]>>;
  indexTableOf(resourceTable: string, kind: string): string;
}

function load(): (ExtractApi & TablesApi) | undefined {
  const dir = join(__dirname, '..', 'src', 'search');
  const extractFile = join(dir, 'extract.js');
  const tablesFile = join(dir, 'index-tables.js');
  if (!existsSync(extractFile) || !existsSync(tablesFile)) return undefined;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const extract = require(extractFile) as Partial<ExtractApi>;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const tables = require(tablesFile) as Partial<TablesApi>;
    if (typeof extract.extractIndex !== 'function' || typeof tables.indexTableOf !== 'function' || typeof tables.INDEX_COLUMNS !== 'object') return undefined;
    return { extractIndex: extract.extractIndex, INDEX_COLUMNS: tables.INDEX_COLUMNS!, indexTableOf: tables.indexTableOf };
  } catch {
    return undefined;
  }
}

const api = load();

/** What the raw side writes besides current + history, to print beside its figures. */
export const indexBaseline = api
  ? 'search index rows from src/search extractIndex() (computed before timing), one multi-row INSERT statement'
  : 'no search index rows: src/search exports no extractIndex()/INDEX_COLUMNS to compute them with';

export interface IndexStatement {
  sql: string;
  params: unknown[];
  rows: number;
}

/**
 * One statement inserting every index row of one new resource: a data-modifying CTE per index
 * table, plain multi-row VALUES (a create has no old rows to delete). Undefined when the
 * extraction is unavailable or yields nothing.
 */
export function indexInsert(resourceType: string, table: string, id: string, resource: fhir4.FhirResource): IndexStatement | undefined {
  if (!api) return undefined;
  const { patient, rows } = api.extractIndex(resourceType, resource);
  const params: unknown[] = [id, patient];
  const ctes: string[] = [];
  let count = 0;
  for (const [kind, kindRows] of Object.entries(rows)) {
    if (!kindRows.length) continue;
    const columns = api.INDEX_COLUMNS[kind];
    if (!columns) return undefined;
    const values = kindRows.map(({ param, row }) => {
      params.push(param);
      const cells = [`$1::text`, `$${params.length}::text`, `$2::text`];
      columns.forEach(([, pgType], c) => {
        params.push(row[c] ?? null);
        cells.push(`$${params.length}::${pgType}`);
      });
      return `(${cells.join(', ')})`;
    });
    count += kindRows.length;
    const names = ['id', 'param', 'patient', ...columns.map(([name]) => name)];
    ctes.push(`i_${kind} AS (INSERT INTO ${api.indexTableOf(table, kind)} (${names.join(', ')}) VALUES ${values.join(', ')})`);
  }
  return ctes.length ? { sql: `WITH ${ctes.join(', ')} SELECT 1`, params, rows: count } : undefined;
}
