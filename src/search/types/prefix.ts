import { badRequest } from '../../kernel/outcome';
import { decimalText } from '../../kernel/decimal-text';

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
 *
 * Computed on the digits as written (BigInt), never in binary floating point: 0.1 + 0.05 is
 * 0.15000000000000002 there, and 36.6 − 0.05 is 36.550000000000004, which moved the ends of the
 * range off the values a client expects at them. An exponent moves the decimal point first and
 * the precision is that of the expansion (`1e-1` is 0.1, [0.05, 0.15); `1.5e-1` is 0.15), as
 * HAPI FHIR reads it. search.html's own example gives 1e2 the range [95, 105) while calling it
 * "1 significant figure" (which would be [50, 150)); a positive exponent keeps the precision of
 * a whole number here, [99.5, 100.5), the reading that agrees with the plain form `100`.
 */
export function decimalRange(text: string): { low: string; high: string; value: string } {
  const { digits, scale } = decimalDigits(text);
  // value = digits × 10^-scale; the half unit of its last digit is 5 × 10^-(scale + 1).
  const tenfold = digits * 10n;
  return { low: decimalText(tenfold - 5n, -(scale + 1)), high: decimalText(tenfold + 5n, -(scale + 1)), value: decimalText(digits, -scale) };
}

/** A decimal (NUMBER) as integer digits and a non-negative scale: `-5.40` is -540 × 10^-2, `1e2` is 100 × 10^0. */
function decimalDigits(text: string): { digits: bigint; scale: number } {
  const match = /^([+-]?)(\d*)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (!match) throw new Error(`not a decimal: ${text}`);
  const [, sign, whole, fraction = '', exponent = '0'] = match;
  let digits = BigInt(`${whole}${fraction}` || '0');
  let scale = fraction.length - Number(exponent);
  if (scale < 0) {
    digits *= 10n ** BigInt(-scale);
    scale = 0;
  }
  return { digits: sign === '-' ? -digits : digits, scale };
}

/** A search's decimal; the exponent at most 3 digits, so that its expansion (decimalRange) stays small. */
export const NUMBER = /^[+-]?(\d+(\.\d+)?|\.\d+)([eE][+-]?\d{1,3})?$/;

/**
 * The condition of a prefix on a point value column against a decimal search value
 * (number and quantity share it). gt/lt/ge/le compare the value itself (search.html#number:
 * "lt100: less than exactly 100"); `ap` is ±10 % as the R4 page suggests.
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
      return `${column} > ${bind(value)}`;
    case 'lt':
      return `${column} < ${bind(value)}`;
    // sa/eb: the value lies wholly above/below the search value's range, which it may not
    // overlap (search.html#prefix): sa0.1 is 0.15 and more, not 0.149 as gt0.1 is.
    case 'sa':
      return `${column} >= ${bind(high)}`;
    case 'eb':
      return `${column} < ${bind(low)}`;
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
