/**
 * UCUM canonical form of quantities, so that searches compare like with like whatever unit a
 * device sent (`ge80|http://unitsofmeasure.org|kg` must match 180 `[lb_av]`), as HAPI's
 * QUANTITY_NRML does.
 *
 * ucum-lhc costs about 14 µs per conversion, too much at 10,000 Observations/s, so the factor of
 * each unit is computed once and cached: for every non-special unit the conversion is linear
 * (canonical = value × factor). Special units (Cel, [degF], pH, …) are not linear and go to the
 * library each time; they are rare in monitoring data and still cached per unit string for the
 * "is it valid" answer.
 */
import { BoundedMemo } from '../kernel/bounded-memo';

export const UCUM_SYSTEM = 'http://unitsofmeasure.org';

export interface CanonicalQuantity {
  value: number;
  /** The canonical unit as base units with exponents, e.g. `g` or `g.m-1.s-2`; `1` when dimensionless. */
  unit: string;
}

interface UnitInfo {
  unit: string;
  /** Multiplier to the canonical unit; undefined for special (non-linear) units. */
  factor: number | undefined;
}

interface ConversionResult {
  status: string;
  magnitude?: number;
  unitToExp?: Record<string, number>;
  fromUnitIsSpecial?: boolean;
}

interface UcumUtils {
  convertToBaseUnits(unit: string, value: number): ConversionResult;
}

// ucum-lhc ships no type declarations; this is the one function used.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const ucumLhc = require('@lhncbc/ucum-lhc') as { UcumLhcUtils: { getInstance(): UcumUtils } };
const utils = ucumLhc.UcumLhcUtils.getInstance();
/** null = not a valid UCUM code (remembered too: devices repeat the same bad unit). */
const units = new BoundedMemo<string, UnitInfo | null>(10_000);

function canonicalUnitName(unitToExp: Record<string, number>): string {
  const parts = Object.keys(unitToExp)
    .sort()
    .map((u) => (unitToExp[u] === 1 ? u : `${u}${unitToExp[u]}`));
  return parts.length ? parts.join('.') : '1';
}

function unitInfo(code: string): UnitInfo | null {
  return units.get(code, () => {
    const r = utils.convertToBaseUnits(code, 1);
    if (r.status !== 'succeeded' || r.magnitude === undefined || !r.unitToExp) return null;
    return { unit: canonicalUnitName(r.unitToExp), factor: r.fromUnitIsSpecial ? undefined : r.magnitude };
  });
}

/** The canonical value and unit of `value` `code`, or undefined when `code` is not valid UCUM. */
export function toCanonical(value: number, code: string): CanonicalQuantity | undefined {
  const info = unitInfo(code);
  if (!info) return undefined;
  if (info.factor !== undefined) {
    // Rounded to 12 significant digits so that 80 kg and its lb equivalent compare equal after
    // the binary floating point of the factor.
    return { value: Number((value * info.factor).toPrecision(12)), unit: info.unit };
  }
  const r = utils.convertToBaseUnits(code, value);
  if (r.status !== 'succeeded' || r.magnitude === undefined) return undefined;
  return { value: Number(r.magnitude.toPrecision(12)), unit: info.unit };
}

export function isUcumCode(code: string): boolean {
  return unitInfo(code) !== null;
}
