import { isUcumCode } from './ucum';
import { BoundedMemo } from '../kernel/bounded-memo';

/**
 * Unit conversion between UCUM codes through NLM's ucum-lhc. Linear units are converted with a
 * factor computed once per pair (the library costs ~14 µs per call); special units (Cel, [degF])
 * go to the library each time.
 */
interface UcumConvert {
  convertUnitTo(from: string, value: number, to: string): { status: string; toVal?: number; msg?: string[] };
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const ucumLhc = require('@lhncbc/ucum-lhc') as { UcumLhcUtils: { getInstance(): UcumConvert } };
const utils = ucumLhc.UcumLhcUtils.getInstance();

const SPECIAL = new Set(['Cel', '[degF]', '[degRe]', 'K']);
const factors = new BoundedMemo<string, number | null>(10_000);

/** `value` `from` expressed in `to`, or undefined when the units are not commensurable UCUM. */
export function convertUnit(value: number, from: string, to: string): number | undefined {
  if (from === to) return value;
  if (!isUcumCode(from) || !isUcumCode(to)) return undefined;
  if (SPECIAL.has(from) || SPECIAL.has(to)) {
    const r = utils.convertUnitTo(from, value, to);
    return r.status === 'succeeded' ? r.toVal : undefined;
  }
  const factor = factors.get(`${from}>${to}`, () => {
    const r = utils.convertUnitTo(from, 1, to);
    return r.status === 'succeeded' && r.toVal !== undefined ? r.toVal : null;
  });
  return factor === null ? undefined : value * factor;
}

/** Rounded to `decimals` places, as a JSON number without binary noise (120.0102 -> 120.0). */
export function roundTo(value: number, decimals: number): number {
  return Number(value.toFixed(decimals));
}
