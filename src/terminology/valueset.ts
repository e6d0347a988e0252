import { terminology } from './load';
import { BoundedMemo } from '../kernel/bounded-memo';

/**
 * The one value set expander: membership in the small value sets the vital-signs profiles bind
 * with strength `required`, and the codes a search's `:in`/`:not-in` tests
 * (src/search/types/token.ts). A compose expands from enumerated concepts, whole CodeSystems
 * (shipped, or stored with content `complete`), other value sets (`include.valueSet`, nested at
 * most MAX_VALUE_SET_DEPTH deep, cycles refused) and excludes of the same kinds; a stored
 * ValueSet whose compose cannot be expanded may bring a complete `expansion.contains`.
 *
 * The shipped terminology (terminology/) is always there; stored ValueSets and CodeSystems come
 * from a `TerminologySource` the caller fills under its own access policy (decision 039): the
 * expander itself never reads the database, so what it may see is decided before it runs.
 */
export interface ExpandedCoding {
  readonly system: string | undefined;
  readonly code: string;
}

export interface ValueSetExpansion {
  /** Each system|code once, in compose order. */
  readonly codings: readonly ExpandedCoding[];
  /** `system|code` of each coding. */
  readonly keys: ReadonlySet<string>;
}

/**
 * The stored ValueSets and CodeSystems visible to one caller, looked up on demand: the resource,
 * null when there is none the caller may read (unknown and invisible are one answer), undefined
 * when it has not been looked up yet (the expander then answers `lookUp`).
 */
export interface TerminologySource {
  /** `ref` is a canonical URL (with an optional `|version`) or a relative `ValueSet/{id}`. */
  valueSet(ref: string): fhir4.ValueSet | null | undefined;
  /** `ref` is a CodeSystem's canonical URL, with an optional `|version`. */
  codeSystem(ref: string): fhir4.CodeSystem | null | undefined;
}

/** What the expander needs looked up before it can answer. */
export interface TerminologyLookUp {
  kind: 'ValueSet' | 'CodeSystem';
  ref: string;
}

/** The answer of `expandValueSet`: the expansion, why there is none, or what to look up first. */
export type ExpandResult = { expansion: ValueSetExpansion } | { refused: string } | { lookUp: TerminologyLookUp };

/** How deep `include.valueSet` may nest (a chain longer than this is refused, as a cycle is). */
export const MAX_VALUE_SET_DEPTH = 8;

const RELATIVE_VALUE_SET = /^ValueSet\/[A-Za-z0-9\-.]{1,64}$/;

function key(system: string | undefined, code: string): string {
  return `${system ?? ''}|${code}`;
}

function conceptCodes(concepts: fhir4.CodeSystemConcept[] | undefined, into: string[]): string[] {
  for (const c of concepts ?? []) {
    into.push(c.code);
    conceptCodes(c.concept, into);
  }
  return into;
}

function containsCodings(contains: fhir4.ValueSetExpansionContains[] | undefined, into: Map<string, ExpandedCoding>): Map<string, ExpandedCoding> {
  for (const c of contains ?? []) {
    if (c.code !== undefined && !c.abstract) into.set(key(c.system, c.code), { system: c.system, code: c.code });
    containsCodings(c.contains, into);
  }
  return into;
}

/** Thrown inside one expansion to end it with an answer other than an expansion. */
class Stop {
  constructor(readonly result: Exclude<ExpandResult, { expansion: ValueSetExpansion }>) {}
}

type Codings = Map<string, ExpandedCoding>;

class Expander {
  constructor(private readonly source: TerminologySource | undefined) {}

  /** The ValueSet `ref` names: shipped first (by URL, version ignored), then stored. */
  private valueSet(ref: string): fhir4.ValueSet {
    if (!RELATIVE_VALUE_SET.test(ref)) {
      const shipped = terminology().valueSets.get(ref.split('|')[0]!);
      if (shipped) return shipped;
    }
    const stored = this.source?.valueSet(ref);
    if (stored === undefined && this.source) throw new Stop({ lookUp: { kind: 'ValueSet', ref } });
    if (!stored) throw new Stop({ refused: `the value set '${ref}' is not known to this server` });
    return stored;
  }

  /** Every code of the CodeSystem `system` (`|version` when the include names one). */
  private wholeCodeSystem(system: string, version: string | undefined): string[] {
    const shipped = terminology().codeSystems.get(system);
    if (shipped) return conceptCodes(shipped.concept, []);
    const ref = version ? `${system}|${version}` : system;
    const stored = this.source?.codeSystem(ref);
    if (stored === undefined && this.source) throw new Stop({ lookUp: { kind: 'CodeSystem', ref } });
    if (!stored) throw new Stop({ refused: `it includes the whole code system '${ref}', which this server does not hold` });
    if (stored.content !== 'complete') {
      throw new Stop({ refused: `it includes the whole code system '${ref}', whose content is '${stored.content}'; only a complete CodeSystem expands` });
    }
    return conceptCodes(stored.concept, []);
  }

  /** The codings one include (or exclude) selects: its system part intersected with each of its value sets. */
  private selected(part: fhir4.ValueSetComposeInclude, path: readonly string[]): Codings {
    const filter = part.filter?.[0];
    if (filter) throw new Stop({ refused: `its compose has a filter (${filter.property} ${filter.op} ${filter.value}), which this server does not expand` });
    let codings: Codings | undefined;
    if (part.concept) {
      codings = new Map(part.concept.map((c) => [key(part.system, c.code), { system: part.system, code: c.code }]));
    } else if (part.system) {
      codings = new Map(this.wholeCodeSystem(part.system, part.version).map((code) => [key(part.system, code), { system: part.system, code }]));
    }
    // R4 ValueSet.compose.include.valueSet: the codes must be in every value set named (and in
    // the system part, when there is one).
    for (const ref of part.valueSet ?? []) {
      const other = this.codings(ref, path);
      codings = codings ? new Map([...codings].filter(([k]) => other.has(k))) : other;
    }
    return codings ?? new Map();
  }

  /** The codings of the value set `ref`, reached through `path` (the value sets including it). */
  codings(ref: string, path: readonly string[]): Codings {
    const name = ref.split('|')[0]!;
    if (this.source && isShipped(ref)) {
      // Nested in a stored one: the shipped set as every caller gets it (./expandValueSet).
      const result = shippedResult(ref);
      if ('expansion' in result) return new Map(result.expansion.codings.map((c) => [key(c.system, c.code), c]));
      throw new Stop(result);
    }
    if (path.includes(name)) throw new Stop({ refused: `its include.valueSet refers back to itself (${[...path, name].join(' → ')})` });
    if (path.length > MAX_VALUE_SET_DEPTH) throw new Stop({ refused: `its include.valueSet nests more than ${MAX_VALUE_SET_DEPTH} value sets deep` });
    const vs = this.valueSet(ref);
    const here = [...path, name];
    // A stored set named by `ValueSet/{id}` may be reached again by its url: both names are one set.
    if (vs.url && vs.url !== name && path.includes(vs.url)) throw new Stop({ refused: `its include.valueSet refers back to itself (${[...here, vs.url].join(' → ')})` });
    if (vs.url && vs.url !== name) here.push(vs.url);
    try {
      if (!vs.compose) throw new Stop({ refused: `the value set '${ref}' has neither a compose nor an expansion` });
      const codings: Codings = new Map();
      for (const include of vs.compose.include) for (const [k, c] of this.selected(include, here)) codings.set(k, c);
      for (const exclude of vs.compose.exclude ?? []) for (const k of this.selected(exclude, here).keys()) codings.delete(k);
      return codings;
    } catch (stop) {
      // R4 ValueSet.expansion: a complete expansion (no total beyond what it lists, no paging)
      // answers for a compose this server cannot expand. Never for a look-up still to be done,
      // nor for a cycle, which is the client's mistake whatever the expansion says.
      if (!(stop instanceof Stop) || 'lookUp' in stop.result || stop.result.refused.includes('refers back')) throw stop;
      const expansion = vs.expansion;
      if (!expansion?.contains?.length || expansion.offset || (expansion.total !== undefined && expansion.total > countContains(expansion.contains))) throw stop;
      return containsCodings(expansion.contains, new Map());
    }
  }
}

function countContains(contains: fhir4.ValueSetExpansionContains[] | undefined): number {
  return (contains ?? []).reduce((n, c) => n + 1 + countContains(c.contains), 0);
}

function run(ref: string, source: TerminologySource | undefined): ExpandResult {
  try {
    const codings = new Expander(source).codings(ref, []);
    return { expansion: { codings: [...codings.values()], keys: new Set(codings.keys()) } };
  } catch (stop) {
    if (stop instanceof Stop) return stop.result;
    throw stop;
  }
}

function isShipped(ref: string): boolean {
  return !RELATIVE_VALUE_SET.test(ref) && terminology().valueSets.has(ref.split('|')[0]!);
}

const shipped = new BoundedMemo<string, ExpandResult>(1_000);

/** A shipped value set's answer, from the shipped terminology alone, computed once. */
function shippedResult(ref: string): ExpandResult {
  return shipped.get(ref, (r) => run(r, undefined));
}

/**
 * Expands the value set `ref` (a canonical URL, `|version` suffix and all, or `ValueSet/{id}`)
 * from the shipped terminology and, when `source` is given, the stored resources it holds. A
 * shipped value set (by URL) expands from the shipped terminology alone, nested or not: a
 * stored CodeSystem with the URL of one it includes (LOINC) does not change it, so it is the
 * same for every caller, and expanded once.
 */
export function expandValueSet(ref: string, source?: TerminologySource): ExpandResult {
  return source && !isShipped(ref) ? run(ref, source) : shippedResult(ref);
}

/** The expansion of the shipped value set `url` (a `|version` suffix is ignored), or null when this server cannot expand it. */
export function valueSetExpansion(url: string): ValueSetExpansion | null {
  const result = shippedResult(url);
  return 'expansion' in result ? result.expansion : null;
}

/** Whether system|code is in the value set; a bare code (a `code` element) matches any system. */
export function valueSetContains(url: string, system: string | undefined, code: string): boolean | undefined {
  const expansion = valueSetExpansion(url);
  if (!expansion) return undefined;
  if (system !== undefined) return expansion.keys.has(key(system, code));
  return expansion.codings.some((c) => c.code === code);
}
