import { checkSearchSize, DEFAULT_INPUT_LIMITS, type InputLimits } from '../kernel/input-limits';
import { badRequest, OperationOutcomeError } from '../kernel/outcome';
import { checkEscapes, splitUnescaped } from './escape';
import { isSupportedType, supportedTypes } from '../kernel/resource-types';
import { identifierParamOf, parametersOf, parameterOf, type SearchParameterDef } from './registry';
import { typeModules } from './types';
import { reference } from './types/reference';
import { parseTokenValue } from './types/token';
import { parseElements } from './summary';
import type { TerminologySource } from '../terminology/valueset';

/**
 * Parsing and validation of a search URL's parameters into a typed query. Every unknown or
 * unsupported parameter, modifier or value is refused with a 400 naming it (a parameter that
 * is silently ignored returns every patient's data), unless the client asked for
 * `Prefer: handling=lenient`: then it is ignored, reported, and left out of the self link.
 */
export interface ParamFilter {
  kind: 'param';
  param: SearchParameterDef;
  modifier?: string;
  /** `:missing=true|false`. */
  missing?: boolean;
  /** Parsed terms of one occurrence, OR'd (comma); repeated occurrences are separate filters, AND'd. */
  terms: unknown[];
  /** `:not` and `:not-in` (token): resources with no matching value, including those with no value at all. */
  negate?: boolean;
}

/** `subject:Patient.name=peter`: the reference's target, of one of `targetTypes`, matches `filters[type]`. */
export interface ChainFilter {
  kind: 'chain';
  param: SearchParameterDef;
  targets: Array<{ type: string; filter: Filter }>;
}

/** `_has:Observation:subject:code=8867-4`: some Observation whose subject is this resource matches. */
export interface HasFilter {
  kind: 'has';
  sourceType: string;
  referenceParam: SearchParameterDef;
  filter: Filter;
}

export type Filter = ParamFilter | ChainFilter | HasFilter;

export interface SortKey {
  param: SearchParameterDef;
  descending: boolean;
}

export interface IncludeSpec {
  /** The type whose references are followed (_include) or that refers (_revinclude). */
  sourceType: string;
  /** Reference parameters of sourceType; every one for `*`. */
  params: SearchParameterDef[];
  targetType?: string;
  iterate: boolean;
}

export type SummaryMode = 'true' | 'false' | 'text' | 'data' | 'count';
export type TotalMode = 'none' | 'estimate' | 'accurate';

export interface ParsedSearch {
  resourceType: string;
  filters: Filter[];
  sort: SortKey[];
  count: number;
  total?: TotalMode;
  summary?: SummaryMode;
  elements?: string[];
  include: IncludeSpec[];
  revinclude: IncludeSpec[];
  cursor?: string;
  /** The accepted parameters in request order (for the self link). */
  accepted: Array<[string, string]>;
  /** Parameters ignored under lenient handling, with the reason. */
  ignored: Array<{ name: string; reason: string }>;
}

export interface ParseOptions {
  defaultCount: number;
  maxCount: number;
  lenient?: boolean;
  /** Caps on parameters and OR values (the server's configured ones; else the defaults). */
  limits?: InputLimits;
  /**
   * The stored ValueSets and CodeSystems `:in`/`:not-in` may expand, looked up under the
   * caller's access policy (./stored-terminology.ts); without it, only the shipped ones.
   */
  terminology?: TerminologySource;
}

/** Parameters that control the result rather than filter it. */
const RESULT_PARAMS = new Set(['_count', '_sort', '_total', '_summary', '_elements', '_include', '_revinclude', '_cursor']);
/** Result parameters that take no modifier (`_include` and `_revinclude` take `:iterate`). */
const MODIFIERLESS_RESULT_PARAMS = new Set(['_count', '_sort', '_total', '_summary', '_elements', '_cursor']);
/** Handled by the REST layer (content negotiation); accepted and kept in links. */
const TRANSPORT_PARAMS = new Set(['_format', '_pretty']);

/** Whether `name` (modifier and all) shapes a search's answer, or its transport, rather than filtering what it finds. */
export function shapesResult(name: string): boolean {
  const base = name.split(':', 1)[0]!;
  return RESULT_PARAMS.has(base) || TRANSPORT_PARAMS.has(base);
}

export function supportedParameterNames(resourceType: string): string[] {
  return [...parametersOf(resourceType).keys(), '_has', ...RESULT_PARAMS].filter((n) => n !== '_cursor').sort();
}

/**
 * An unknown or unsupported parameter or modifier: the error lenient handling may ignore.
 * A malformed value of a known parameter stays a 400 either way.
 */
export class UnsupportedParameterError extends OperationOutcomeError {
  constructor(diagnostics: string, name: string) {
    super(400, { code: 'not-supported', diagnostics, expression: [name] });
  }
}

function unknownParameter(resourceType: string, name: string, reason: string): OperationOutcomeError {
  return new UnsupportedParameterError(`${reason}. ${resourceType} supports: ${supportedParameterNames(resourceType).join(', ')}`, name);
}

/** Splits on unescaped commas (`\,` is a literal comma). */
export const splitOr = (value: string): string[] => splitUnescaped(value, ',');

/** Parses `name[:modifier]` = value for a parameter of `resourceType` (no chain). */
function parseParamFilter(resourceType: string, fullName: string, name: string, modifier: string | undefined, value: string, opts: ParseOptions): ParamFilter {
  const param = parameterOf(resourceType, name);
  if (!param) throw unknownParameter(resourceType, fullName, `Unknown search parameter '${name}' for ${resourceType}`);
  const module = typeModules[param.type];
  if (modifier === 'missing') {
    if (value !== 'true' && value !== 'false') throw badRequest(`${fullName} must be true or false, got '${value}'`, [fullName]);
    return { kind: 'param', param, modifier, missing: value === 'true', terms: [] };
  }
  let typeModifier: string | undefined;
  if (modifier !== undefined) {
    const isTypeModifier = param.type === 'reference' && isSupportedType(modifier) && (param.targets.length === 0 || param.targets.includes(modifier));
    // `:of-type` is the Identifier's modifier: of the token parameters, only identifiers have it
    // (and the refusal's list must not offer it to `code`).
    const allowed = (param.storage.kind === 'column' && param.type === 'token' ? ['not'] : module.modifiers).filter((m) => m !== 'of-type' || /identifier/.test(param.code));
    if (isTypeModifier) typeModifier = modifier;
    else if (!allowed.includes(modifier)) {
      const list = ['missing', ...allowed, ...(param.type === 'reference' ? param.targets.filter(isSupportedType) : [])];
      throw new UnsupportedParameterError(
        `Unsupported modifier ':${modifier}' on ${param.type} parameter '${name}' of ${resourceType}; supported: ${list.map((m) => `:${m}`).join(', ')}`,
        fullName,
      );
    }
  }
  if (value === '') throw badRequest(`Empty value for search parameter '${fullName}'`, [fullName]);
  if (modifier === 'identifier') {
    // `subject:identifier=system|value`: a token search of the Reference.identifier rows
    // (decision 035). The modifier becomes the parameter searched, so the filter is a plain one.
    return { kind: 'param', param: identifierParamOf(param), terms: splitOr(value).map((raw) => parseTokenValue(raw, fullName)) };
  }
  const limits = opts.limits ?? DEFAULT_INPUT_LIMITS;
  const terms = splitOr(value).map((raw) =>
    param.type === 'reference' ? reference.parse(raw, typeModifier, param) : module.parse(raw, modifier === 'not' ? undefined : modifier, param, limits, opts.terminology),
  );
  // `:not-in` is `:not` of `:in`: resources with no value in the set, including those with no
  // value at all (decision 039).
  return { kind: 'param', param, modifier, terms, negate: modifier === 'not' || modifier === 'not-in' };
}

/**
 * How many references a chain may follow (`subject:Patient.organization.partof.name` follows
 * three). Each is a nested subquery on the target's reference rows, held to what the caller may
 * search of that type; deeper chains are a 400 rather than a query without bound.
 */
const MAX_CHAIN_DEPTH = 3;

/** One filter parameter (`name[:modifier][.chained]`, or `_has:…`). */
function parseFilter(resourceType: string, fullName: string, value: string, opts: ParseOptions, depth: number): Filter {
  if (fullName.startsWith('_has:') || fullName === '_has') {
    if (depth > 0) throw badRequest(`'${fullName}': _has is supported one level deep`, [fullName]);
    const [, sourceType, refName, ...rest] = fullName.split(':');
    const inner = rest.join(':');
    if (!sourceType || !refName || !inner) throw badRequest(`'${fullName}' must be _has:Type:reference:parameter`, [fullName]);
    if (!isSupportedType(sourceType)) throw new UnsupportedParameterError(`_has: '${sourceType}' is not a supported resource type`, fullName);
    const referenceParam = parameterOf(sourceType, refName);
    if (!referenceParam || referenceParam.type !== 'reference') throw new UnsupportedParameterError(`_has: '${refName}' is not a reference parameter of ${sourceType}`, fullName);
    if (referenceParam.targets.length && !referenceParam.targets.includes(resourceType)) {
      throw badRequest(`_has: ${sourceType}.${refName} cannot refer to ${resourceType}`, [fullName]);
    }
    if (inner.startsWith('_has:')) throw badRequest(`'${fullName}': _has is supported one level deep`, [fullName]);
    return { kind: 'has', sourceType, referenceParam, filter: parseFilter(sourceType, inner, value, opts, depth + 1) };
  }
  const dot = fullName.indexOf('.');
  const head = dot < 0 ? fullName : fullName.slice(0, dot);
  const [name, modifier, extra] = head.split(':');
  if (extra !== undefined) throw badRequest(`'${fullName}': one modifier per parameter`, [fullName]);
  if (dot < 0) return parseParamFilter(resourceType, fullName, name, modifier, value, opts);

  const chained = fullName.slice(dot + 1);
  const param = parameterOf(resourceType, name);
  if (!param) throw unknownParameter(resourceType, fullName, `Unknown search parameter '${name}' for ${resourceType}`);
  if (param.type !== 'reference') throw badRequest(`'${fullName}': only reference parameters can be chained; ${name} is ${param.type}`, [fullName]);
  // Counted on the whole name where it starts, so that the refusal names the parameter sent.
  if (depth >= MAX_CHAIN_DEPTH || fullName.split('.').length - 1 > MAX_CHAIN_DEPTH) {
    throw badRequest(`'${fullName}': a chain follows at most ${MAX_CHAIN_DEPTH} references`, [fullName]);
  }
  const candidates = modifier ? [modifier] : param.targets.length ? param.targets : supportedTypes;
  if (modifier && !isSupportedType(modifier)) throw badRequest(`'${fullName}': '${modifier}' is not a supported resource type`, [fullName]);
  // The next parameter's name: before its own modifier or the next link of a longer chain.
  const chainedName = chained.split(/[.:]/)[0]!;
  const targets = candidates
    .filter((t) => isSupportedType(t) && (chainedName.startsWith('_has') || parameterOf(t, chainedName)))
    .map((type) => ({ type, filter: parseFilter(type, chained, value, opts, depth + 1) }));
  if (!targets.length) {
    throw new UnsupportedParameterError(`'${fullName}': no target type of ${resourceType}.${name} (${candidates.join(', ')}) has a search parameter '${chainedName}'`, fullName);
  }
  return { kind: 'chain', param, targets };
}

function parseSort(resourceType: string, value: string): SortKey[] {
  return value.split(',').map((raw) => {
    const descending = raw.startsWith('-');
    const name = descending ? raw.slice(1) : raw;
    const param = parameterOf(resourceType, name);
    if (!param || param.type === 'composite') {
      throw unknownParameter(resourceType, '_sort', `Cannot sort ${resourceType} by '${name}'`);
    }
    return { param, descending };
  });
}

function parseInclude(resourceType: string, name: string, value: string, reverse: boolean): IncludeSpec {
  const iterate = name.endsWith(':iterate') || name.endsWith(':recurse');
  if (value === '*') {
    return reverse
      ? { sourceType: '*', params: [], iterate }
      : { sourceType: resourceType, params: referenceParams(resourceType), iterate };
  }
  const [sourceType, paramName, targetType, extra] = value.split(':');
  if (!sourceType || !paramName || extra !== undefined) throw badRequest(`${name}=${value}: expected Type:parameter[:targetType]`, [name]);
  if (!isSupportedType(sourceType)) throw badRequest(`${name}=${value}: '${sourceType}' is not a supported resource type`, [name]);
  if (!reverse && !iterate && sourceType !== resourceType) throw badRequest(`${name}=${value}: _include must start with the searched type ${resourceType} (or use :iterate)`, [name]);
  if (targetType !== undefined && !isSupportedType(targetType)) throw badRequest(`${name}=${value}: '${targetType}' is not a supported resource type`, [name]);
  if (paramName === '*') return { sourceType, params: referenceParams(sourceType), targetType, iterate };
  const param = parameterOf(sourceType, paramName);
  if (!param || param.type !== 'reference') throw badRequest(`${name}=${value}: '${paramName}' is not a reference parameter of ${sourceType}`, [name]);
  return { sourceType, params: [param], targetType, iterate };
}

export function referenceParams(type: string): SearchParameterDef[] {
  return [...parametersOf(type).values()].filter((p) => p.type === 'reference');
}

function parseCount(value: string, opts: ParseOptions): number {
  if (!/^\d+$/.test(value)) throw badRequest(`_count must be a non-negative integer, got '${value}'`, ['_count']);
  return Math.min(Number(value), opts.maxCount);
}

function oneOf<T extends string>(name: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) throw badRequest(`${name} must be one of ${allowed.join(', ')}, got '${value}'`, [name]);
  return value as T;
}

function repeatedParameter(name: string, first: string, again: string): OperationOutcomeError {
  const list = name === '_sort' || name === '_elements' ? `; to give several, use one comma list: ${name}=${first.slice(0, 40)},${again.slice(0, 40)}` : '';
  return new UnsupportedParameterError(`${name} is given more than once; give it once${list}`, name);
}

export function parseSearch(resourceType: string, params: URLSearchParams, opts: ParseOptions): ParsedSearch {
  // Every search (REST, bundle entries, conditional URLs, _has, Subscription criteria) is parsed
  // here, so the caps that keep one request from building a 70,000-term query live here too.
  checkSearchSize(params, opts.limits ?? DEFAULT_INPUT_LIMITS, splitOr);
  const out: ParsedSearch = { resourceType, filters: [], sort: [], count: opts.defaultCount, include: [], revinclude: [], accepted: [], ignored: [] };
  /** The first value of each single-valued result parameter seen. */
  const singles = new Map<string, string>();
  for (const [name, value] of params) {
    try {
      if (TRANSPORT_PARAMS.has(name)) {
        out.accepted.push([name, value]);
        continue;
      }
      const base = name.split(':')[0];
      if (name !== base && MODIFIERLESS_RESULT_PARAMS.has(base)) {
        // A modifier ignored here changed the answer without a word: `_sort:desc=date` (DSTU2's
        // form) was served oldest first. Unknown, so a 400 unless handling is lenient.
        const hint = base === '_sort' ? ` (R4 sorts descending with a '-': _sort=-${value.slice(0, 40)})` : '';
        throw new UnsupportedParameterError(`Unsupported modifier on ${name}: ${base} takes none${hint}`, name);
      }
      if (MODIFIERLESS_RESULT_PARAMS.has(base)) {
        // R4 gives these one value (a comma list for _sort and _elements) and says nothing of
        // repetition: the last one won silently (`_sort=date&_sort=code` sorted by code alone).
        // Refused as unsupported, so lenient handling keeps the first and reports the others.
        if (singles.has(base)) throw repeatedParameter(base, singles.get(base)!, value);
        singles.set(base, value);
      }
      let kept = value;
      switch (base) {
        case '_count':
          out.count = parseCount(value, opts);
          // The links say the page size served (search.html: self holds the parameters used), so
          // a `_count` over the cap reads as the cap.
          kept = String(out.count);
          break;
        case '_sort':
          out.sort = parseSort(resourceType, value);
          break;
        case '_total':
          out.total = oneOf(name, value, ['none', 'estimate', 'accurate'] as const);
          break;
        case '_summary':
          out.summary = oneOf(name, value, ['true', 'false', 'text', 'data', 'count'] as const);
          break;
        case '_elements':
          out.elements = parseElements(value);
          break;
        case '_include':
        case '_revinclude':
          if (name !== base && !/^_(rev)?include:(iterate|recurse)$/.test(name)) throw badRequest(`Unsupported modifier on ${name}`, [name]);
          for (const v of splitOr(value)) (base === '_include' ? out.include : out.revinclude).push(parseInclude(resourceType, name, v, base === '_revinclude'));
          break;
        case '_cursor':
          out.cursor = value;
          break;
        default:
          // Checked here, on the whole value, so that the refusal names the parameter as sent
          // (`subject:Patient.name`, not the `name` a chain ends in).
          checkEscapes(value, name);
          out.filters.push(parseFilter(resourceType, name, value, opts, 0));
      }
      out.accepted.push([name, kept]);
    } catch (err) {
      // Lenient handling ignores parameters and modifiers the server does not know; a malformed
      // value of a known parameter is still the client's mistake to see.
      if (!opts.lenient || !(err instanceof UnsupportedParameterError)) throw err;
      out.ignored.push({ name, reason: err.issues.map((i) => i.diagnostics).join('; ') });
    }
  }
  return out;
}
