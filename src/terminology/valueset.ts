import { terminology } from './load';
import { BoundedMemo } from '../kernel/bounded-memo';

/**
 * Membership in the small value sets the vital-signs profiles bind with strength `required`,
 * and the codes a search's `:in`/`:not-in` tests (src/search/types/token.ts): each is expanded
 * once from its compose (enumerated concepts, or a whole CodeSystem we ship). A value set we do
 * not hold, or cannot expand (a filter, another value set), answers `null`/`undefined`, so
 * callers can say "not checked" rather than reject what they cannot judge.
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

const expansions = new BoundedMemo<string, ValueSetExpansion | null>(1_000);

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

function expand(url: string): ValueSetExpansion | null {
  const { valueSets, codeSystems } = terminology();
  const vs = valueSets.get(url.split('|')[0]!);
  if (!vs?.compose) return null;
  const codings = new Map<string, ExpandedCoding>();
  const add = (system: string | undefined, code: string) => codings.set(key(system, code), { system, code });
  for (const include of vs.compose.include) {
    if (include.valueSet?.length || include.filter?.length) return null;
    if (include.concept) {
      for (const c of include.concept) add(include.system, c.code);
    } else if (include.system) {
      const cs = codeSystems.get(include.system);
      if (!cs) return null;
      for (const code of conceptCodes(cs.concept, [])) add(include.system, code);
    }
  }
  for (const exclude of vs.compose.exclude ?? []) {
    for (const c of exclude.concept ?? []) codings.delete(key(exclude.system, c.code));
  }
  return { codings: [...codings.values()], keys: new Set(codings.keys()) };
}

/** The expansion of the value set `url` (a `|version` suffix is ignored), or null when this server cannot expand it. */
export function valueSetExpansion(url: string): ValueSetExpansion | null {
  return expansions.get(url, expand);
}

/** Whether system|code is in the value set; a bare code (a `code` element) matches any system. */
export function valueSetContains(url: string, system: string | undefined, code: string): boolean | undefined {
  const expansion = valueSetExpansion(url);
  if (!expansion) return undefined;
  if (system !== undefined) return expansion.keys.has(key(system, code));
  return expansion.codings.some((c) => c.code === code);
}
