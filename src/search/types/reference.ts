import { badRequest } from '../../kernel/outcome';
import { referenceType, type TypedValue } from '../accessor';
import { identifierRowsCode, type IndexRow, type RowSink } from '../index-tables';
import { isServedBase } from '../served-bases';
import type { ParameterTypeModule } from './module';
import { tokenRow } from './token';

/**
 * Reference: `Type/id` targets of this server (relative, or absolute on its own base with that
 * base kept in `url`), and every other absolute URL, canonical or URN in `url` alone: a
 * reference to another server's `Patient/1` is not this server's Patient/1. The (param,
 * target_type, target_id) index serves plain reference search, chaining, `_has`, `_revinclude`
 * and patient compartment membership; `url` serves search by the full URL.
 *
 * A Reference's `identifier` is a token row under `{param}:identifier` (decision 035), with the
 * type the Reference names (or null) in `text` for derived parameters: `subject:identifier` and
 * Observation `patient:identifier` are token searches of those rows (./parse.ts).
 */
export type ReferenceTerm =
  /** `Type/id`, or a bare id with the types it may have (the parameter's targets, or `:Type`). */
  | { kind: 'local'; types: string[]; id: string }
  | { kind: 'url'; url: string };

const LITERAL = /^(?:(https?:\/\/.+)\/)?([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/;

/**
 * Type and id of a literal reference to a resource of this server: `Type/id[/_history/n]`, or
 * the same absolute on a base this process serves (./served-bases.ts). Undefined for an absolute
 * reference on any other base (R4 references.html: it names the resource at that base), as for
 * canonicals and URNs.
 */
export function localReference(reference: string): { type: string; id: string; absolute: boolean } | undefined {
  const m = LITERAL.exec(reference);
  if (!m || (m[1] !== undefined && !isServedBase(m[1]))) return undefined;
  return { type: m[2], id: m[3], absolute: m[1] !== undefined };
}

function rowOf(v: TypedValue): IndexRow | undefined {
  const text = v.type === 'Reference' ? (v.value as fhir4.Reference).reference : typeof v.value === 'string' ? v.value : undefined;
  if (!text || text.startsWith('#')) return undefined; // contained resources are not searchable targets
  const local = localReference(text);
  // The date copy and `drives` are set on the key row alone (src/search/extract.ts).
  if (local) return [local.type, local.id, local.absolute ? text : null, null, null, false, false];
  return [null, null, text, null, null, false, false];
}

/** `Reference.identifier` (0..1) as a token row; none for a reference without one, the common case (a vital sign's subject). */
function identifierRowOf(v: TypedValue): IndexRow | undefined {
  const identifier = v.type === 'Reference' ? (v.value as fhir4.Reference).identifier : undefined;
  if (identifier?.value === undefined) return undefined;
  return tokenRow(identifier.system, identifier.value, referenceType(v.value) ?? null);
}

/**
 * `modifier` of `parse` is a type modifier (`subject:Patient=1`); `:identifier` is parsed as a
 * token search of the identifier rows instead (./parse.ts), so never reaches it.
 */
export const reference: ParameterTypeModule<ReferenceTerm> = {
  kind: 'reference',
  modifiers: ['identifier'],
  sortColumn: { asc: 'target_id', desc: 'target_id', pgType: 'text' },

  extract(values, param, sink) {
    for (const v of values) {
      const row = rowOf(v);
      if (row) sink.reference.push({ param, row });
      const identifier = identifierRowOf(v);
      if (identifier) sink.token.push({ param: identifierRowsCode(param), row: identifier });
    }
  },

  parse(raw, typeModifier, param) {
    if (raw === '') throw badRequest(`Empty value for ${param.code}`, [param.code]);
    if (typeModifier) {
      if (!raw.includes('/')) return { kind: 'local', types: [typeModifier], id: raw };
      // R4 (as HAPI reads it): the type modifier with a reference of that very type is that
      // reference (`subject:Patient=Patient/123`); one of another type contradicts it.
      const local = localReference(raw);
      if (local?.type === typeModifier) return { kind: 'local', types: [typeModifier], id: local.id };
      const name = `${param.code}:${typeModifier}`;
      if (local) throw badRequest(`${name}=${raw}: the reference is to a ${local.type}, not a ${typeModifier}`, [name]);
      throw badRequest(`${name} takes an id or a ${typeModifier}/id reference of this server, got '${raw}'`, [name]);
    }
    // The rule the index was written by (rowOf): an absolute URL of this server is the local
    // reference it names, any other absolute URL only itself.
    const local = localReference(raw);
    if (local) return { kind: 'local', types: [local.type], id: local.id };
    if (/^[A-Za-z0-9\-.]{1,64}$/.test(raw)) return { kind: 'local', types: param.targets, id: raw };
    return { kind: 'url', url: raw };
  },

  condition(term, i, q) {
    if (term.kind === 'url') return `${i}.url = ${q.bind(term.url)}`;
    const id = `${i}.target_id = ${q.bind(term.id)}`;
    if (term.types.length === 0) return id;
    if (term.types.length === 1) return `(${id} AND ${i}.target_type = ${q.bind(term.types[0])})`;
    return `(${id} AND ${i}.target_type = ANY(${q.bind(term.types, 'text[]')}))`;
  },
};
