import { badRequest } from '../../kernel/outcome';
import { escapeLike } from '../text';
import type { ParameterTypeModule } from './module';

/** URI: exact match; `:below` finds URIs under a path, `:above` the URIs a given one is under. */
export interface UriTerm {
  mode: 'exact' | 'below' | 'above';
  value: string;
}

export const uri: ParameterTypeModule<UriTerm> = {
  kind: 'uri',
  modifiers: ['below', 'above'],
  sortColumn: { asc: 'value', desc: 'value', pgType: 'text' },

  extract(values, param, sink) {
    for (const v of values) if (typeof v.value === 'string') sink.uri.push({ param, row: [v.value] });
  },

  parse(raw, modifier, param) {
    if (raw === '') throw badRequest(`Empty value for ${param.code}`, [param.code]);
    return { mode: modifier === 'below' ? 'below' : modifier === 'above' ? 'above' : 'exact', value: raw };
  },

  condition(term, i, q) {
    switch (term.mode) {
      case 'exact':
        return `${i}.value = ${q.bind(term.value)}`;
      case 'below':
        return `${i}.value LIKE ${q.bind(`${escapeLike(term.value)}%`)}`;
      case 'above':
        return `${q.bind(term.value)} LIKE replace(replace(replace(${i}.value, '\\', '\\\\'), '%', '\\%'), '_', '\\_') || '%'`;
    }
  },
};
