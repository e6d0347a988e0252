import { badRequest, OperationOutcomeError } from '../../kernel/outcome';
import { splitUnescaped } from '../escape';
import type { TypedValue } from '../accessor';
import { timestampText } from '../date-range';
import type { IndexRow, RowSink } from '../index-tables';
import { type CompositeComponent, componentsOf, type SearchParameterDef } from '../registry';
import type { SqlParams } from '../../kernel/sql-params';
import { escapeLike, normalizeText } from '../text';
import { dateCondition, dateRangesOf, parseDateTerm, type DateTerm } from './date';
import type { ParameterTypeModule } from './module';
import { parseQuantityTerm, quantityCondition, quantityRowOf, type QuantityTerm } from './quantity';
import { token, type TokenTerm } from './token';

/**
 * Composite: a token (the code) paired with a second value from the same element — the
 * blood-pressure panel's `component-code-value-quantity=http://loinc.org|8480-6$gt140` must
 * match the systolic component, not a code from one component and a value from another. One
 * row per (code, value) pair of each element, so the pair is matched within a row.
 */
export type CompositeTerm = { code: TokenTerm; value: SecondTerm };
type SecondTerm =
  | { type: 'token'; term: TokenTerm }
  | { type: 'quantity'; term: QuantityTerm }
  | { type: 'date'; term: DateTerm }
  | { type: 'string'; value: string };

// Rows below are the columns after hash, code_hash:
// v_hash, v_code_hash, v_low, v_high, v_value, v_system, v_code, v_unit, v_cvalue, v_cunit, v_string.

function secondRows(component: CompositeComponent, element: TypedValue): IndexRow[] {
  const values = component.accessor(element);
  const rows: IndexRow[] = [];
  for (const v of values) {
    switch (component.type) {
      case 'token': {
        const sink = { token: [] } as unknown as RowSink;
        token.extract([v], '', sink);
        for (const t of sink.token) if (t.row[2] !== null) rows.push([t.row[2], t.row[3], null, null, null, null, null, null, null, null, null]);
        break;
      }
      case 'quantity': {
        const q = quantityRowOf(v);
        if (q) rows.push([null, null, null, null, q[0], q[1], q[2], q[3], q[4], q[5], null]);
        break;
      }
      case 'date':
        for (const r of dateRangesOf(v)) rows.push([null, null, timestampText(r.low), timestampText(r.high), null, null, null, null, null, null, null]);
        break;
      case 'string':
        if (typeof v.value === 'string') rows.push([null, null, null, null, null, null, null, null, null, null, normalizeText(v.value).slice(0, 255)]);
        break;
      default:
        break;
    }
  }
  return rows;
}

/** Extraction needs the components, so the registry's composite storage passes them in. */
export function extractComposite(elements: readonly TypedValue[], components: CompositeComponent[], param: string, sink: RowSink): void {
  if (components.length !== 2 || components[0].type !== 'token') return;
  for (const element of elements) {
    const codeSink = { token: [] } as unknown as RowSink;
    token.extract(components[0].accessor(element), '', codeSink);
    const codes = codeSink.token.filter((t) => t.row[2] !== null);
    if (!codes.length) continue;
    // A pair needs both halves: a code without a value can match no composite search.
    const seconds = secondRows(components[1], element);
    for (const c of codes) for (const s of seconds) sink.composite.push({ param, row: [c.row[2], c.row[3], ...s] });
  }
}


export function parseCompositeTerm(raw: string, param: SearchParameterDef): CompositeTerm {
  const components = componentsOf(param);
  const parts = splitUnescaped(raw, '$');
  const secondType = components?.[1]?.type;
  if (parts.length !== 2 || !secondType) throw badRequest(`${param.code} expects code$value, got '${raw}'`, [param.code]);
  const code = withCode(token.parse(parts[0], undefined, param), param);
  switch (secondType) {
    case 'token':
      return { code, value: { type: 'token', term: withCode(token.parse(parts[1], undefined, param), param) } };
    case 'quantity':
      return { code, value: { type: 'quantity', term: parseQuantityTerm(parts[1], param.code) } };
    case 'date':
      return { code, value: { type: 'date', term: parseDateTerm(parts[1], param.code) } };
    case 'string':
      return { code, value: { type: 'string', value: normalizeText(parts[1]) } };
    default:
      throw badRequest(`${param.code}: composite with a ${secondType} component is not supported`, [param.code]);
  }
}

/**
 * A composite row keeps a token as the hashes of system|code and of code, not the system as
 * written, so a `system|` term (any code of a system) cannot be matched on it: a 400 that says
 * so, where it used to reach the database as a column that does not exist (a 500).
 */
function withCode(term: TokenTerm, param: SearchParameterDef): TokenTerm {
  if (term.kind !== 'system') return term;
  throw new OperationOutcomeError(400, {
    code: 'not-supported',
    diagnostics: `${param.code} does not support a system-only token (${term.system}|): give system|code or a code`,
    expression: [param.code],
  });
}

function secondCondition(second: SecondTerm, i: string, q: SqlParams): string {
  switch (second.type) {
    case 'token':
      // The token module's columns are hash/code_hash/system; here they are v_hash/v_code_hash.
      return token
        .condition(second.term, i, q)
        .replaceAll(`${i}.code_hash`, `${i}.v_code_hash`)
        .replaceAll(`${i}.hash`, `${i}.v_hash`);
    case 'quantity':
      return quantityCondition(second.term, (name) => `${i}.v_${name}`, q);
    case 'date':
      return dateCondition(second.term, `${i}.v_low`, `${i}.v_high`, q);
    case 'string':
      return `${i}.v_string LIKE ${q.bind(`${escapeLike(second.value)}%`)}`;
  }
}

export const composite: ParameterTypeModule<CompositeTerm> = {
  kind: 'composite',
  modifiers: [],

  extract() {
    // Composites are extracted by extractComposite (they need their components); see index-writer.
  },

  parse(raw, _modifier, param) {
    return parseCompositeTerm(raw, param);
  },

  condition(term, i, q) {
    return `(${token.condition(term.code, i, q)} AND ${secondCondition(term.value, i, q)})`;
  },
};
