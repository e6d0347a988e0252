import { badRequest } from '../../kernel/outcome';
import type { TypedValue } from '../accessor';
import type { RowSink } from '../index-tables';
import { escapeLike, normalizeText } from '../text';
import type { ParameterTypeModule } from './module';

/**
 * String: default search is case- and accent-insensitive starts-with on the normalised value;
 * `:exact` compares the original text, `:contains` any substring of the normalised value.
 * HumanName and Address search every part of the name or address.
 */
export interface StringTerm {
  mode: 'startsWith' | 'exact' | 'contains';
  value: string;
}

/** btree entries must stay well under PostgreSQL's ~2.7 kB limit; the prefix is what search needs. */
const MAX_INDEXED = 255;

function push(sink: RowSink, param: string, text: unknown): void {
  if (typeof text !== 'string' || text === '') return;
  sink.string.push({ param, row: [normalizeText(text).slice(0, MAX_INDEXED), text.slice(0, 2000)] });
}

function pushAll(sink: RowSink, param: string, texts: unknown): void {
  if (Array.isArray(texts)) for (const t of texts) push(sink, param, t);
  else push(sink, param, texts);
}

function extractOne(v: TypedValue, param: string, sink: RowSink): void {
  switch (v.type) {
    case 'HumanName': {
      const n = v.value as fhir4.HumanName;
      push(sink, param, n.text);
      push(sink, param, n.family);
      pushAll(sink, param, n.given);
      pushAll(sink, param, n.prefix);
      pushAll(sink, param, n.suffix);
      return;
    }
    case 'Address': {
      const a = v.value as fhir4.Address;
      push(sink, param, a.text);
      pushAll(sink, param, a.line);
      for (const part of [a.city, a.district, a.state, a.postalCode, a.country]) push(sink, param, part);
      return;
    }
    case 'CodeableConcept':
      push(sink, param, (v.value as fhir4.CodeableConcept).text);
      return;
    case 'Extension': {
      const ext = v.value as Record<string, unknown>;
      const key = Object.keys(ext).find((k) => k.startsWith('value'));
      if (key) push(sink, param, ext[key]);
      return;
    }
    default:
      push(sink, param, v.value);
  }
}

export const string: ParameterTypeModule<StringTerm> = {
  kind: 'string',
  modifiers: ['exact', 'contains'],
  sortColumn: { asc: 'value', desc: 'value', pgType: 'text' },

  extract(values, param, sink) {
    for (const v of values) extractOne(v, param, sink);
  },

  parse(raw, modifier, param) {
    const value = raw.replace(/\\([\\|$,])/g, '$1');
    if (value === '') throw badRequest(`Empty value for ${param.code}`, [param.code]);
    if (modifier === 'exact') return { mode: 'exact', value };
    return { mode: modifier === 'contains' ? 'contains' : 'startsWith', value: normalizeText(value).slice(0, MAX_INDEXED) };
  },

  condition(term, i, q) {
    switch (term.mode) {
      case 'exact':
        return `${i}.exact = ${q.bind(term.value)}`;
      case 'contains':
        return `${i}.value LIKE ${q.bind(`%${escapeLike(term.value)}%`)}`;
      case 'startsWith':
        return `${i}.value LIKE ${q.bind(`${escapeLike(term.value)}%`)}`;
    }
  },
};
