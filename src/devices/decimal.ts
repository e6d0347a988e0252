import { decimalText } from '../kernel/decimal-text';

/**
 * Exact decimal scaling for device values: Withings' `value × 10^unit` and IEEE 11073's
 * `mantissa × 10^exponent` are computed on the digits, never by a floating multiply (65750 with
 * unit −3 is 65.75, not 65.74999…). The result is the decimal text and the JSON number it
 * denotes: JSON.parse of the text, i.e. the nearest double, which serialises back to the same
 * digits (trailing zeros aside).
 */
export interface ExactDecimal {
  text: string;
  value: number;
}

/**
 * The largest decimal exponent a device value may carry, either way. Scaling writes out the
 * zeros, so an unbounded exponent (`1e600000000`, a Withings unit of 6e8) costs memory and time
 * in proportion to it before anything can refuse the value; no vital sign needs more than a few
 * places (Withings units are −3..0, an IEEE 11073 SFLOAT's exponent −8..7).
 */
export const MAX_DECIMAL_EXPONENT = 30;

export function scaleDecimal(mantissa: bigint | number, exponent: number): ExactDecimal {
  const text = decimalText(BigInt(mantissa), exponent);
  return { text, value: Number(text) };
}

/** Decimal text × 10^shift by moving the point (m → cm is shift 2). */
export function shiftDecimal(d: ExactDecimal, shift: number): ExactDecimal {
  const negative = d.text.startsWith('-');
  const [int, frac = ''] = (negative ? d.text.slice(1) : d.text).split('.');
  const mantissa = BigInt(`${negative ? '-' : ''}${int}${frac}`);
  return scaleDecimal(mantissa, shift - frac.length);
}

/**
 * Parses a JSON number or decimal string into an exact decimal; undefined when it is not one, or
 * when its exponent is beyond ±MAX_DECIMAL_EXPONENT (checked before any digit is written out).
 */
export function parseDecimal(raw: unknown): ExactDecimal | undefined {
  const text = typeof raw === 'number' ? (Number.isFinite(raw) ? String(raw) : '') : typeof raw === 'string' ? raw.trim() : '';
  if (!/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(text)) return undefined;
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([-+]?\d+))?$/.exec(text)!;
  const frac = m[3] ?? '';
  const exponent = Number(m[4] ?? 0);
  if (Math.abs(exponent) > MAX_DECIMAL_EXPONENT) return undefined;
  return scaleDecimal(BigInt(`${m[1]}${m[2]}${frac}`), exponent - frac.length);
}
