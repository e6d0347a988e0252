/**
 * `mantissa × 10^exponent` as decimal text, computed on the digits, never by a floating multiply
 * (65750 × 10^-3 is 65.750, not 65.74999…; 0.1 + 0.05 is 0.15, not 0.15000000000000002). The
 * device doors scale readings with it (src/devices/decimal.ts) and search the ranges of its
 * decimals (src/search/types/prefix.ts). Trailing zeros are kept: they are the precision.
 */
export function decimalText(mantissa: bigint, exponent: number): string {
  const negative = mantissa < 0n;
  let digits = (negative ? -mantissa : mantissa).toString();
  let text: string;
  if (exponent >= 0) {
    text = digits === '0' ? '0' : digits + '0'.repeat(exponent);
  } else {
    const places = -exponent;
    if (digits.length <= places) digits = '0'.repeat(places - digits.length + 1) + digits;
    text = `${digits.slice(0, digits.length - places)}.${digits.slice(digits.length - places)}`;
  }
  return negative ? `-${text}` : text;
}
