import { badRequest } from '../../kernel/outcome';
import type { TypedValue } from '../accessor';
import type { IndexRow, RowSink } from '../index-tables';
import type { ParameterTypeModule } from './module';

/**
 * Reference: `Type/id` targets (relative, or absolute with the base kept in `url`), and other
 * absolute URLs or canonicals in `url`. The (param, target_type, target_id) index serves plain
 * reference search, chaining, `_has`, `_revinclude` and patient compartment membership.
 */
export type ReferenceTerm =
  /** `Type/id`, or a bare id with the types it may have (the parameter's targets, or `:Type`). */
  | { kind: 'local'; types: string[]; id: string }
  | { kind: 'url'; url: string };

const LOCAL = /^(?:(https?:\/\/.+)\/)?([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/;

/** Type and id of a literal reference, `Type/id` or `http://base/Type/id[/_history/n]`. */
export function parseLiteralReference(reference: string): { type: string; id: string; absolute: boolean } | undefined {
  const m = LOCAL.exec(reference);
  return m ? { type: m[2], id: m[3], absolute: m[1] !== undefined } : undefined;
}

function rowOf(v: TypedValue): IndexRow | undefined {
  const text = v.type === 'Reference' ? (v.value as fhir4.Reference).reference : typeof v.value === 'string' ? v.value : undefined;
  if (!text || text.startsWith('#')) return undefined; // contained resources are not searchable targets
  const local = parseLiteralReference(text);
  // The date copy and `drives` are set on the key row alone (src/search/extract.ts).
  if (local) return [local.type, local.id, local.absolute ? text : null, null, null, false, false];
  return [null, null, text, null, null, false, false];
}

export const reference: ParameterTypeModule<ReferenceTerm> & {
  parseWithBase(raw: string, typeModifier: string | undefined, targets: string[], param: string, baseUrl: string | undefined): ReferenceTerm;
} = {
  kind: 'reference',
  modifiers: [],
  sortColumn: { asc: 'target_id', desc: 'target_id', pgType: 'text' },

  extract(values, param, sink) {
    for (const v of values) {
      const row = rowOf(v);
      if (row) sink.reference.push({ param, row });
    }
  },

  parse(raw, modifier, param) {
    return this.parseWithBase(raw, modifier, param.targets, param.code, undefined);
  },

  parseWithBase(raw, typeModifier, targets, param, baseUrl) {
    if (raw === '') throw badRequest(`Empty value for ${param}`, [param]);
    let text = raw;
    // An absolute URL of this server is the local reference it names.
    if (baseUrl && text.startsWith(`${baseUrl}/`)) text = text.slice(baseUrl.length + 1);
    if (typeModifier) {
      if (text.includes('/')) throw badRequest(`${param}:${typeModifier} takes a plain id, got '${raw}'`, [param]);
      return { kind: 'local', types: [typeModifier], id: text };
    }
    const local = parseLiteralReference(text);
    if (local && !local.absolute) return { kind: 'local', types: [local.type], id: local.id };
    if (/^[A-Za-z0-9\-.]{1,64}$/.test(text)) return { kind: 'local', types: targets, id: text };
    return { kind: 'url', url: text };
  },

  condition(term, i, q) {
    if (term.kind === 'url') return `${i}.url = ${q.bind(term.url)}`;
    const id = `${i}.target_id = ${q.bind(term.id)}`;
    if (term.types.length === 0) return id;
    if (term.types.length === 1) return `(${id} AND ${i}.target_type = ${q.bind(term.types[0])})`;
    return `(${id} AND ${i}.target_type = ANY(${q.bind(term.types, 'text[]')}))`;
  },
};
