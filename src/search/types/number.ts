import { badRequest } from '../../kernel/outcome';
import type { ParameterTypeModule } from './module';
import { decimalRange, NUMBER, numericCondition, type Prefix, splitPrefix } from './prefix';

/** Number: decimal and integer values, prefixes with the implicit precision of the search value. */
export interface NumberTerm {
  prefix: Prefix;
  number: string;
}

export const number: ParameterTypeModule<NumberTerm> = {
  kind: 'number',
  modifiers: [],
  sortColumn: { asc: 'value', desc: 'value', pgType: 'numeric' },

  extract(values, param, sink) {
    for (const v of values) {
      if (typeof v.value === 'number') sink.number.push({ param, row: [v.value] });
    }
  },

  parse(raw, _modifier, param) {
    const { prefix, value } = splitPrefix(raw, param.code);
    if (!NUMBER.test(value)) throw badRequest(`Invalid number '${value}' in ${param.code}`, [param.code]);
    return { prefix, number: value };
  },

  condition(term, i, q) {
    return numericCondition(term.prefix, `${i}.value`, decimalRange(term.number), (v) => q.bind(v, 'numeric'));
  },
};
