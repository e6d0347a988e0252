import { DEFAULT_INPUT_LIMITS, type InputLimits } from '../../kernel/input-limits';
import { badRequest, OperationOutcomeError } from '../../kernel/outcome';
import { expandValueSet, type TerminologyLookUp, type TerminologySource, type ValueSetExpansion } from '../../terminology/valueset';
import type { TypedValue } from '../accessor';
import { codeHash, hash53, systemCodeHash } from '../hash';
import type { IndexRow, RowSink } from '../index-tables';
import type { SearchParameterDef } from '../registry';
import type { SqlParams } from '../../kernel/sql-params';
import { escapeLike, normalizeText } from '../text';
import type { ParameterTypeModule } from './module';

/**
 * Token: codes, Codings, CodeableConcepts, Identifiers, ContactPoints, booleans.
 * Row: system, code, hash(system|code), hash(code), normalised display text (for `:text`);
 * date_low/date_high/date_multi are filled by extraction (`extractIndex`).
 *
 * `identifier:of-type` rows are extra rows whose hash covers type system, type code and value
 * (prefixed so they cannot equal an ordinary `system|value` hash) with no code_hash.
 */
export type TokenTerm =
  | { kind: 'code'; code: string } // `code`: any system
  | { kind: 'systemCode'; system: string; code: string } // `system|code`, `|code`
  | { kind: 'system'; system: string } // `system|`
  | { kind: 'text'; text: string } // `:text`
  | { kind: 'ofType'; hash: number } // `:of-type`
  | ValueSetTerm; // `:in`, `:not-in` (the filter negates)

/**
 * `:in=url`: a row whose system|code is in the value set's expansion, or, for a row without a
 * system (a `code` element such as Observation.status, or a Coding without one), whose code is
 * one of the expansion's codes, as `valueSetContains` judges a bare code (decision 039).
 */
export interface ValueSetTerm {
  kind: 'valueSet';
  url: string;
  /** systemCodeHash of each coding of the expansion, and codeHash of each code (deduplicated). */
  hashes: number[];
  codeHashes: number[];
  /** The same, for judging rows in memory. */
  hashSet: ReadonlySet<number>;
  codeHashSet: ReadonlySet<number>;
}

const OF_TYPE_MARK = '\u0001';

function ofTypeHash(typeSystem: string, typeCode: string, value: string): number {
  return hash53(`${OF_TYPE_MARK}${typeSystem}|${typeCode}|${value}`);
}

/** A token row of `system|code` whose `text` column holds `text` as given. */
export function tokenRow(system: string | undefined, code: string | undefined, text: string | null): IndexRow {
  return [
    system ?? null,
    code ?? null,
    code === undefined ? null : systemCodeHash(system, code),
    code === undefined ? null : codeHash(code),
    text,
    null,
    null,
    false,
    false, // the hot path's columns (date range, drives) are set by extractIndex on driving rows
  ];
}

function push(sink: RowSink, param: string, system: string | undefined, code: string | undefined, display: string | undefined): void {
  sink.token.push({ param, row: tokenRow(system, code, display ? normalizeText(display) : null) });
}

function extractOne(v: TypedValue, param: string, sink: RowSink): void {
  const value = v.value;
  switch (v.type) {
    case 'CodeableConcept': {
      const cc = value as fhir4.CodeableConcept;
      for (const c of cc.coding ?? []) if (c.code !== undefined || c.display) push(sink, param, c.system, c.code, c.display);
      if (cc.text) push(sink, param, undefined, undefined, cc.text);
      return;
    }
    case 'Coding': {
      const c = value as fhir4.Coding;
      push(sink, param, c.system, c.code, c.display);
      return;
    }
    case 'Identifier': {
      const id = value as fhir4.Identifier;
      if (id.value === undefined) return;
      push(sink, param, id.system, id.value, id.type?.text);
      for (const t of id.type?.coding ?? []) {
        if (t.code === undefined) continue;
        sink.token.push({ param, row: [null, null, ofTypeHash(t.system ?? '', t.code, id.value), null, null, null, null, false, false] });
      }
      return;
    }
    case 'ContactPoint': {
      const cp = value as fhir4.ContactPoint;
      if (cp.value !== undefined) push(sink, param, cp.system, cp.value, undefined);
      return;
    }
    case 'boolean':
      push(sink, param, undefined, String(value), undefined);
      return;
    case 'Extension': {
      const ext = value as Record<string, unknown>;
      const key = Object.keys(ext).find((k) => k.startsWith('value'));
      if (key) extractOne({ value: ext[key], type: key === 'valueBoolean' ? 'boolean' : key.slice(5) }, param, sink);
      return;
    }
    default:
      // code, string, id, uri and the like (and untyped fallback values): the value is the code.
      if (typeof value === 'string') push(sink, param, undefined, value, undefined);
      else if (typeof value === 'boolean') push(sink, param, undefined, String(value), undefined);
  }
}

/** Splits on the first unescaped `|` (a `\|` in a value is a literal bar). */
function splitBar(raw: string): [string, string] | undefined {
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === '\\') i++;
    else if (raw[i] === '|') return [raw.slice(0, i), raw.slice(i + 1)];
  }
  return undefined;
}

function unescape(text: string): string {
  return text.replace(/\\([\\|$,])/g, '$1');
}

export function parseTokenValue(raw: string, param: string): Exclude<TokenTerm, { kind: 'text' } | { kind: 'ofType' }> {
  const parts = splitBar(raw);
  if (!parts) {
    if (raw === '') throw badRequest(`Empty value for ${param}`, [param]);
    return { kind: 'code', code: unescape(raw) };
  }
  const [system, code] = [unescape(parts[0]), unescape(parts[1])];
  if (code === '') {
    if (system === '') throw badRequest(`Empty token '|' for ${param}`, [param]);
    return { kind: 'system', system };
  }
  return { kind: 'systemCode', system, code };
}

/** The hashes of an expansion, computed once per expansion (valueset.ts keeps the expansions). */
const expansionHashes = new WeakMap<ValueSetExpansion, Omit<ValueSetTerm, 'kind' | 'url'>>();

function hashesOf(expansion: ValueSetExpansion): Omit<ValueSetTerm, 'kind' | 'url'> {
  let found = expansionHashes.get(expansion);
  if (!found) {
    const hashSet = new Set(expansion.codings.map((c) => systemCodeHash(c.system, c.code)));
    const codeHashSet = new Set(expansion.codings.map((c) => codeHash(c.code)));
    found = { hashes: [...hashSet], codeHashes: [...codeHashSet], hashSet, codeHashSet };
    expansionHashes.set(expansion, found);
  }
  return found;
}

/**
 * Thrown by `parse` when the value set of `param` needs a stored ValueSet or CodeSystem that the
 * search's TerminologySource has not looked up yet: the caller (./stored-terminology.ts) looks
 * it up under the caller's access policy and parses again. Not an OperationOutcome: lenient
 * handling must not swallow it.
 */
export class TerminologyNeeded extends Error {
  constructor(
    readonly param: string,
    readonly lookUp: TerminologyLookUp,
  ) {
    super(`${param}: ${lookUp.kind} '${lookUp.ref}' must be looked up`);
  }
}

/**
 * The term of `name=url` (`code:in`, `code:not-in`): the value set must be one this server
 * expands (src/terminology/valueset.ts: the ValueSets it ships and, when the search brings a
 * `terminology` source, those stored that the caller may read), and small enough to test as a
 * list of bound hashes.
 */
function valueSetTerm(raw: string, name: string, limits: InputLimits, terminology: TerminologySource | undefined): ValueSetTerm {
  const url = unescape(raw);
  const result = expandValueSet(url, terminology);
  if ('lookUp' in result) throw new TerminologyNeeded(name, result.lookUp);
  if ('refused' in result) {
    throw badRequest(`${name}: the value set '${url}' cannot be expanded by this server: ${result.refused}`, [name]);
  }
  const { expansion } = result;
  if (expansion.codings.length > limits.maxValueSetCodes) {
    throw new OperationOutcomeError(400, {
      code: 'too-costly',
      diagnostics: `${name}: the value set '${url}' expands to ${expansion.codings.length} codes, more than the ${limits.maxValueSetCodes} a search may test (maxValueSetCodes)`,
      expression: [name],
    });
  }
  return { kind: 'valueSet', url, ...hashesOf(expansion) };
}

export const token: ParameterTypeModule<TokenTerm> = {
  kind: 'token',
  modifiers: ['not', 'text', 'of-type', 'in', 'not-in'],
  sortColumn: { asc: 'code', desc: 'code', pgType: 'text' },

  extract(values, param, sink) {
    for (const v of values) extractOne(v, param, sink);
  },

  parse(raw, modifier, param: SearchParameterDef, limits = DEFAULT_INPUT_LIMITS, terminology?: TerminologySource) {
    if (modifier === 'in' || modifier === 'not-in') return valueSetTerm(raw, `${param.code}:${modifier}`, limits, terminology);
    if (modifier === 'text') return { kind: 'text', text: normalizeText(unescape(raw)) };
    if (modifier === 'of-type') {
      // type-system|type-code|value (R4: identifier only)
      const m = raw.match(/^((?:[^|\\]|\\.)*)\|((?:[^|\\]|\\.)*)\|(.+)$/);
      if (!m || !m[2]) throw badRequest(`${param.code}:of-type needs type-system|type-code|value, got '${raw}'`, [param.code]);
      return { kind: 'ofType', hash: ofTypeHash(unescape(m[1]), unescape(m[2]), unescape(m[3])) };
    }
    return parseTokenValue(raw, param.code);
  },

  condition(term, i, q) {
    switch (term.kind) {
      case 'code':
        return `${i}.code_hash = ${q.bind(codeHash(term.code), 'int8')}`;
      case 'systemCode':
        // code_hash first: it leads the indexes; hash then pins the system.
        return `(${i}.code_hash = ${q.bind(codeHash(term.code), 'int8')} AND ${i}.hash = ${q.bind(systemCodeHash(term.system || undefined, term.code), 'int8')})`;
      case 'system':
        return `${i}.system = ${q.bind(term.system)}`;
      case 'text': {
        // String-search semantics on the display: starts-with of the text or of any word in it.
        const prefix = escapeLike(term.text);
        return `(${i}.text LIKE ${q.bind(`${prefix}%`)} OR ${i}.text LIKE ${q.bind(`% ${prefix}%`)})`;
      }
      case 'ofType':
        return `${i}.hash = ${q.bind(term.hash, 'int8')}`;
      case 'valueSet':
        // The codes' hashes as one bound array each: the (param, code_hash, hash) index is probed
        // once per code (as for an IN list), and the statement's text is the same whatever the
        // value set. A row with a system must be one of the set's system|code pairs.
        return `(${i}.code_hash = ANY(${q.bind(term.codeHashes, 'int8[]')}) AND (${i}.hash = ANY(${q.bind(term.hashes, 'int8[]')}) OR ${i}.system IS NULL))`;
    }
  },
};

/**
 * The token modifiers whose terms `tokenRowMatches` always decides in memory (none, `:not`,
 * `:in`, `:not-in`; the negating ones negate the whole filter): never `:text`, whose word
 * matching only the database does. The in-memory matchers (criteria-match.ts, limits-match.ts)
 * judge exactly these.
 */
export const IN_MEMORY_TOKEN_MODIFIERS: ReadonlySet<string | undefined> = new Set([undefined, 'not', 'in', 'not-in']);

/**
 * Whether token index row `row` (the columns of INDEX_COLUMNS.token) satisfies `term`, as
 * `token.condition` asks the database; undefined for `:text`, whose word matching only the
 * database does. For matching a version in memory (src/search/limits-match.ts,
 * src/search/criteria-match.ts).
 */
export function tokenRowMatches(term: TokenTerm, row: IndexRow): boolean | undefined {
  const [system, , hash, code_hash] = row;
  switch (term.kind) {
    case 'code':
      return code_hash === codeHash(term.code);
    case 'systemCode':
      return code_hash === codeHash(term.code) && hash === systemCodeHash(term.system || undefined, term.code);
    case 'system':
      return system === term.system;
    case 'ofType':
      return hash === term.hash;
    case 'valueSet':
      return typeof code_hash === 'number' && term.codeHashSet.has(code_hash) && ((typeof hash === 'number' && term.hashSet.has(hash)) || system === null);
    case 'text':
      return undefined;
  }
}
