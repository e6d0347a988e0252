import { terminology } from './load';
import { BoundedMemo } from '../kernel/bounded-memo';

/**
 * Membership in the small value sets the vital-signs profiles bind with strength `required`:
 * each is expanded once from its compose (enumerated concepts, or a whole CodeSystem we ship).
 * A value set we do not hold answers `undefined`, so callers can say "not checked" rather than
 * reject what they cannot judge.
 */
const expansions = new BoundedMemo<string, Set<string> | null>(1_000);

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

function expand(url: string): Set<string> | null {
  const { valueSets, codeSystems } = terminology();
  const vs = valueSets.get(url.split('|')[0]!);
  if (!vs?.compose) return null;
  const codes = new Set<string>();
  for (const include of vs.compose.include) {
    if (include.valueSet?.length || include.filter?.length) return null;
    if (include.concept) {
      for (const c of include.concept) codes.add(key(include.system, c.code));
    } else if (include.system) {
      const cs = codeSystems.get(include.system);
      if (!cs) return null;
      for (const code of conceptCodes(cs.concept, [])) codes.add(key(include.system, code));
    }
  }
  for (const exclude of vs.compose.exclude ?? []) {
    for (const c of exclude.concept ?? []) codes.delete(key(exclude.system, c.code));
  }
  return codes;
}

export function valueSetExpansion(url: string): Set<string> | null {
  return expansions.get(url, expand);
}

/** Whether system|code is in the value set; a bare code (a `code` element) matches any system. */
export function valueSetContains(url: string, system: string | undefined, code: string): boolean | undefined {
  const codes = valueSetExpansion(url);
  if (!codes) return undefined;
  if (system !== undefined) return codes.has(key(system, code));
  for (const k of codes) if (k.endsWith(`|${code}`)) return true;
  return false;
}
