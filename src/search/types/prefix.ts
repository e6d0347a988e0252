import { badRequest } from '../../kernel/outcome';

/** The comparison prefixes of ordered types (number, date, quantity). */
export type Prefix = 'eq' | 'ne' | 'gt' | 'lt' | 'ge' | 'le' | 'sa' | 'eb' | 'ap';
const PREFIXES = new Set<Prefix>(['eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap']);

/** Splits `ge2026-01-01` into its prefix (default eq) and value. */
export function splitPrefix(raw: string, param: string): { prefix: Prefix; value: string } {
  const head = raw.slice(0, 2);
  if (/^[a-z]{2}/.test(head)) {
    if (!PREFIXES.has(head as Prefix)) {
      throw badRequest(`Invalid prefix '${head}' in ${param}=${raw}: use one of ${[...PREFIXES].join(', ')}`, [param]);
    }
    return { prefix: head as Prefix, value: raw.slice(2) };
  }
  return { prefix: 'eq', value: raw };
}

/**
 * The implicit range of a decimal written with n significant decimals (`5.4` is [5.35, 5.45)),
 * which `eq`/`ne` compare against, as the R4 search page says for number and quantity.
 */
export function decimalRange(text: string): { low: string; high: string; value: string } {
  const n = Number(text);
  const decimals = text.includes('.') ? text.split('.')[1].replace(/e.*$/i, '').length : 0;
  const half = 0.5 * 10 ** -decimals;
  return { low: String(n - half), high: String(n + half), value: String(n) };
}

export const NUMBER = /^[+-]?(\d+(\.\d+)?|\.\d+)([eE][+-]?\d+)?$/;

/**
 * The condition of a prefix on a point value column against a decimal search value
 * (number and quantity share it). `ap` is ±10 % as the R4 page suggests.
 */
export function numericCondition(
  prefix: Prefix,
  column: string,
  { low, high, value }: { low: string; high: string; value: string },
  bind: (v: string) => string,
): string {
  const n = Number(value);
  switch (prefix) {
    case 'eq':
      return `(${column} >= ${bind(low)} AND ${column} < ${bind(high)})`;
    case 'ne':
      return `(${column} < ${bind(low)} OR ${column} >= ${bind(high)})`;
    case 'gt':
    case 'sa':
      return `${column} > ${bind(value)}`;
    case 'lt':
    case 'eb':
      return `${column} < ${bind(value)}`;
    case 'ge':
      return `${column} >= ${bind(value)}`;
    case 'le':
      return `${column} <= ${bind(value)}`;
    case 'ap': {
      const margin = Math.abs(n) * 0.1;
      return `(${column} >= ${bind(String(n - margin))} AND ${column} <= ${bind(String(n + margin))})`;
    }
  }
}
