import { keptNumbers, noteNumber, parseKeepingDecimals, startsNumber } from './json-decimals';
import { OperationOutcomeError } from './outcome';

/**
 * Bounds on what one request may make the server do, checked where input enters (the JSON body
 * parser, the search parser, the resource validator) so that no later stage's work grows with
 * hostile input: recursion depth, element and string sizes, search terms. Configurable
 * (src/config.ts; the per-resource element bound is src/validation's); the defaults fit every real monitoring payload with room to spare.
 */
export interface InputLimits {
  /** Deepest nesting of objects/arrays in a JSON body (validation and indexing recurse). */
  maxJsonDepth: number;
  /** Most values (objects, arrays, strings, numbers…) in one JSON body. */
  maxJsonElements: number;
  /** Longest JSON string, in characters (FHIR R4 datatypes.html#string: at most 1 MB). */
  maxStringLength: number;
  /** Most search parameters in one search (query, form body, conditional URL). */
  maxSearchParameters: number;
  /** Most comma-separated (OR) values in one search parameter. */
  maxOrValues: number;
  /**
   * Most terms in one search, all parameters together: each value of each parameter counts 1,
   * each value of a `_has` or chained parameter counts SEARCH_JOIN_WEIGHT (see checkSearchSize).
   */
  maxSearchTerms: number;
  /**
   * Most codes a value set named by a token's `:in` or `:not-in` may expand to: each code is a
   * bound hash the query tests (src/search/types/token.ts).
   */
  maxValueSetCodes: number;
}

export const DEFAULT_INPUT_LIMITS: Readonly<InputLimits> = {
  maxJsonDepth: 64,
  maxJsonElements: 2_000_000,
  maxStringLength: 1_048_576,
  maxSearchParameters: 50,
  maxOrValues: 100,
  maxSearchTerms: 200,
  maxValueSetCodes: 1_000,
};

/**
 * What one value of a `_has` or chained parameter counts against `maxSearchTerms`. Each is a
 * subquery over another type's index (a join), not a condition on one index row: measured on
 * 2k Patients / 19k Observations, 49 `_has:Observation:subject:value-quantity` × 100 values took
 * 10.8 s against 2.85 s for as many `name` values, and `name:contains` 3.65 s. One weight for
 * every join keeps the rule simple to state and to predict; 10 lets 20 `_has`/chain values
 * through (tens of milliseconds), while a plain parameter keeps its 100 OR values.
 */
export const SEARCH_JOIN_WEIGHT = 10;

/** Whether a search parameter's name is `_has:…` or a chain (`subject.name`, `subject:Patient.name`). */
function joinsAnotherType(name: string): boolean {
  return name.startsWith('_has:') || name.includes('.');
}

const tooCostly = (status: number, diagnostics: string, expression?: string[]) =>
  new OperationOutcomeError(status, { code: 'too-costly', diagnostics, ...(expression ? { expression } : {}) });

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;

const LETTER_U = 0x75;

/** The UTF-16 unit of the four hex digits at `at` (a `\uXXXX` escape), or undefined if they are not four hex digits. */
function escapedUnit(text: string, at: number): number | undefined {
  let unit = 0;
  for (let k = at; k < at + 4; k++) {
    const d = text.charCodeAt(k);
    const v = d >= 0x30 && d <= 0x39 ? d - 0x30 : d >= 0x41 && d <= 0x46 ? d - 0x37 : d >= 0x61 && d <= 0x66 ? d - 0x57 : -1;
    if (v < 0) return undefined;
    unit = unit * 16 + v;
  }
  return unit;
}

/**
 * Parses a JSON text after one linear scan that refuses, before any work grows with them,
 * nesting deeper than `maxJsonDepth` (V8 parses 100,000 levels, but every recursive walk after
 * it overflows the stack), more than `maxJsonElements` values, strings longer than
 * `maxStringLength`, the escape `\u0000` (PostgreSQL text and jsonb cannot hold NUL, and
 * an id or search value with one can never be read back), and an escaped lone surrogate
 * (`\ud800` without its pair: JSON.parse accepts it, PostgreSQL's jsonb refuses it, so the write
 * failed with a 500). Malformed JSON is left to JSON.parse to name. Decimals keep the text they
 * were written with (src/kernel/json-decimals.ts).
 */
export function parseJsonWithin(text: string, limits: InputLimits): unknown {
  let depth = 0;
  let elements = 1;
  // The next backslash at or after the scan, found once and reused: inside a string the scan
  // jumps to its closing quote or to that backslash (indexOf), not a character at a time.
  // Measured reason: the character loop cost as much as JSON.parse itself (~210 µs for a
  // 100-entry transaction of 69 kB).
  let backslash = -1;
  const numbers = keptNumbers();
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const start = i + 1;
      let at = start;
      for (;;) {
        const quote = text.indexOf('"', at);
        const end = quote === -1 ? text.length : quote;
        if (backslash < at) {
          backslash = text.indexOf('\\', at);
          if (backslash === -1) backslash = text.length;
        }
        if (backslash < end) {
          at = afterEscape(text, backslash);
          continue;
        }
        if (end - start > limits.maxStringLength) throw tooCostly(413, `a string in the body is longer than ${limits.maxStringLength} characters`);
        i = end; // the closing quote, or the end of an unterminated string (JSON.parse names it)
        break;
      }
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > limits.maxJsonDepth) throw tooCostly(400, `the body nests deeper than ${limits.maxJsonDepth} levels`);
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
    } else if (c === COMMA) {
      if (++elements > limits.maxJsonElements) throw tooCostly(413, `the body holds more than ${limits.maxJsonElements} values`);
    } else if (startsNumber(c)) {
      // Decimals keep the text they were written with (src/kernel/json-decimals.ts).
      i = noteNumber(text, i, numbers) - 1;
    }
  }
  return parseKeepingDecimals(text, numbers);
}

const STORED: Readonly<InputLimits> = { ...DEFAULT_INPUT_LIMITS, maxJsonDepth: Infinity, maxJsonElements: Infinity, maxStringLength: Infinity };

/**
 * JSON this server stored (a version's text), parsed as a body is, decimals kept
 * (src/kernel/json-decimals.ts), but with no bound: it met the bounds when it was written.
 */
export function parseStoredJson(text: string): unknown {
  return parseJsonWithin(text, STORED);
}

/**
 * The index after the escape at `at` (a backslash in a string), refusing `\u0000` and an escaped
 * lone surrogate.
 */
function afterEscape(text: string, at: number): number {
  const unit = text.charCodeAt(at + 1) === LETTER_U ? escapedUnit(text, at + 2) : undefined;
  if (unit === undefined) return at + 2;
  if (unit === 0) throw new OperationOutcomeError(400, { code: 'invalid', diagnostics: 'the body contains a NUL character (\\u0000), which no FHIR value may hold' });
  if (unit < 0xd800 || unit > 0xdfff) return at + 6;
  const low = unit <= 0xdbff && text.charCodeAt(at + 6) === BACKSLASH && text.charCodeAt(at + 7) === LETTER_U ? escapedUnit(text, at + 8) : undefined;
  if (low === undefined || low < 0xdc00 || low > 0xdfff) throw new OperationOutcomeError(400, { code: 'invalid', diagnostics: `the body contains a lone surrogate (\\u${unit.toString(16)}), which is no character: no FHIR string may hold one` });
  return at + 12; // past the pair
}

/**
 * Counts the values in a parsed resource, without recursion, stopping past `max`: validation,
 * index extraction and profile checks all walk every element, so a resource's size in elements
 * bounds the CPU one write may take (a 7 MB Patient of 180,000 names took 18 s).
 */
export function exceedsElements(resource: unknown, max: number): boolean {
  return countElements(resource, max) > max;
}

/**
 * How many values `value` holds (itself included), counted without recursion and stopping as
 * soon as the count passes `max` (then any number above `max` is returned): a patch counts what
 * each operation placed, so that the document's size is known after every operation without
 * walking it all each time.
 */
export function countElements(value: unknown, max: number): number {
  const stack: unknown[] = [value];
  let count = 0;
  while (stack.length) {
    const node = stack.pop();
    if (++count > max) return count;
    if (node === null || typeof node !== 'object') continue;
    // Each value stacked is counted when popped: stop as soon as they would pass `max`, without
    // listing a node's values first (Object.values of a 1.3M-key object took 3.3 s to refuse).
    if (Array.isArray(node)) {
      for (const item of node) if (stack.push(item) + count > max) return max + 1;
    } else {
      for (const key in node) if (stack.push((node as Record<string, unknown>)[key]) + count > max) return max + 1;
    }
  }
  return count;
}

/**
 * `ids` in slices a search's `_id` takes (MAX_OR_VALUES by default): for the server's own
 * searches over a list of ids it holds (written resources, raised Flags), which the limits of
 * a search bound like any other.
 */
export function* idSlices<T>(ids: readonly T[], size = DEFAULT_INPUT_LIMITS.maxOrValues): Generator<T[]> {
  for (let at = 0; at < ids.length; at += size) yield ids.slice(at, at + size);
}

/**
 * Refuses a search that asks for more work than the limits allow: too many parameters, too many
 * OR values in one, or too many terms in all. The per-parameter caps alone let 50 × 100 = 5,000
 * terms through (seconds of CPU per request); the total caps what the one SQL query must test.
 */
export function checkSearchSize(params: Iterable<[string, string]>, limits: InputLimits, splitOr: (value: string) => string[]): void {
  let n = 0;
  let terms = 0;
  for (const [name, value] of params) {
    if (++n > limits.maxSearchParameters) throw tooCostly(400, `a search may carry at most ${limits.maxSearchParameters} parameters`);
    if (name.includes('\u0000') || value.includes('\u0000')) throw new OperationOutcomeError(400, { code: 'invalid', diagnostics: `search parameter '${name.replace(/\u0000/g, '\\0')}' contains a NUL character`, expression: [name.replace(/\u0000/g, '')] });
    // Counting commas first keeps the split itself from being the cost.
    if (value.length > limits.maxOrValues && count(value, ',') >= limits.maxOrValues && splitOr(value).length > limits.maxOrValues) {
      throw tooCostly(400, `search parameter '${name}' has more than ${limits.maxOrValues} values`, [name]);
    }
    terms += (value.includes(',') ? splitOr(value).length : 1) * (joinsAnotherType(name) ? SEARCH_JOIN_WEIGHT : 1);
    if (terms > limits.maxSearchTerms) {
      throw tooCostly(
        400,
        `a search may carry at most ${limits.maxSearchTerms} terms in all (maxSearchTerms: each value of each parameter counts 1, of a _has or chained parameter ${SEARCH_JOIN_WEIGHT}); '${name}' passes it`,
        [name],
      );
    }
  }
}

function count(text: string, char: string): number {
  let n = 0;
  for (let i = text.indexOf(char); i >= 0; i = text.indexOf(char, i + 1)) n++;
  return n;
}
