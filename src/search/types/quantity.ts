import { badRequest } from '../../kernel/outcome';
import { toCanonical, UCUM_SYSTEM } from '../../terminology/ucum';
import type { TypedValue } from '../accessor';
import type { IndexRow, RowSink } from '../index-tables';
import type { SqlParams } from '../../kernel/sql-params';
import type { ParameterTypeModule } from './module';
import { decimalRange, NUMBER, numericCondition, type Prefix, splitPrefix } from './prefix';

/**
 * Quantity: the value as sent (value, system, code, unit) and, when the unit is UCUM, its
 * canonical form (value in base units, canonical unit), HAPI's QUANTITY_NRML. A search in a
 * UCUM unit compares canonical values, so `ge80|http://unitsofmeasure.org|kg` finds 180 [lb_av].
 */
export interface QuantityTerm {
  prefix: Prefix;
  number: string;
  system?: string;
  code?: string;
  /** Set when system|code is UCUM: the search value, its precision range and unit in canonical form. */
  canonical?: { low: string; value: string; high: string; unit: string };
}

const QUANTITY_TYPES = new Set(['Quantity', 'Age', 'Duration', 'Count', 'Distance', 'SimpleQuantity', 'MoneyQuantity']);

/** The row columns of one Quantity (shared with composites). */
export function quantityRow(q: fhir4.Quantity): IndexRow | undefined {
  if (typeof q.value !== 'number') return undefined;
  const canonical = q.system === UCUM_SYSTEM && q.code ? toCanonical(q.value, q.code) : undefined;
  return [q.value, q.system ?? null, q.code ?? null, q.unit ?? null, canonical?.value ?? null, canonical?.unit ?? null];
}

export function quantityRowOf(v: TypedValue): IndexRow | undefined {
  if (QUANTITY_TYPES.has(v.type)) return quantityRow(v.value as fhir4.Quantity);
  if (v.type === 'Money') {
    const m = v.value as fhir4.Money;
    return typeof m.value === 'number' ? [m.value, 'urn:iso:std:iso:4217', m.currency ?? null, m.currency ?? null, null, null] : undefined;
  }
  return undefined; // SampledData and Range carry no single searchable quantity
}

export function parseQuantityTerm(raw: string, param: string): QuantityTerm {
  const { prefix, value } = splitPrefix(raw, param);
  const parts = value.split('|');
  if (parts.length !== 1 && parts.length !== 3) {
    throw badRequest(`Invalid quantity '${raw}' in ${param}: expected [prefix]number[|system|code]`, [param]);
  }
  const [number, system, code] = parts;
  if (!NUMBER.test(number)) throw badRequest(`Invalid number '${number}' in ${param}=${raw}`, [param]);
  const term: QuantityTerm = { prefix, number, system: system || undefined, code: code || undefined };
  if (term.system === UCUM_SYSTEM && term.code) {
    const range = decimalRange(number);
    const [low, mid, high] = [range.low, range.value, range.high].map((n) => toCanonical(Number(n), term.code as string));
    if (!low || !mid || !high) throw badRequest(`'${term.code}' in ${param}=${raw} is not a valid UCUM unit`, [param]);
    // The written precision carries over: eq 80 kg is [79.5, 80.5) kg, scaled to grams.
    term.canonical = { low: String(low.value), value: String(mid.value), high: String(high.value), unit: mid.unit };
  }
  return term;
}

/** Condition on value columns named by `col` (`value`, `system`, … or composite `v_value`, …). */
export function quantityCondition(term: QuantityTerm, col: (name: string) => string, q: SqlParams): string {
  const bind = (v: string) => q.bind(v, 'numeric');
  if (term.canonical) {
    return `(${col('cunit')} = ${q.bind(term.canonical.unit)} AND ${numericCondition(term.prefix, col('cvalue'), term.canonical, bind)})`;
  }
  const parts = [numericCondition(term.prefix, col('value'), decimalRange(term.number), bind)];
  if (term.system) parts.push(`${col('system')} = ${q.bind(term.system)}`);
  // `value||unit` matches the code or the human unit, as the spec allows.
  if (term.code) parts.push(term.system ? `${col('code')} = ${q.bind(term.code)}` : `(${col('code')} = ${q.bind(term.code)} OR ${col('unit')} = ${q.bind(term.code)})`);
  return parts.length === 1 ? parts[0] : `(${parts.join(' AND ')})`;
}

export const quantity: ParameterTypeModule<QuantityTerm> = {
  kind: 'quantity',
  modifiers: [],
  sortColumn: { asc: 'value', desc: 'value', pgType: 'numeric' },

  extract(values, param, sink) {
    for (const v of values) {
      const row = quantityRowOf(v);
      if (row) sink.quantity.push({ param, row });
    }
  },

  parse(raw, _modifier, param) {
    return parseQuantityTerm(raw, param.code);
  },

  condition(term, i, q) {
    return quantityCondition(term, (name) => `${i}.${name}`, q);
  },
};
