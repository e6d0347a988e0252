import type { ParsedSearch } from './parse';
import type { Reach } from './reach';

/**
 * The types a search names explicitly beyond its own must be reachable, before any SQL runs:
 * a chain's one target (or the one its type modifier names), a `_has` source, an included
 * target named by the spec or the only target of its parameter, a revincluded source. A 403
 * otherwise. Wildcards (`_include=*`, implicit chain targets) skip what the caller may not see.
 */
export function checkReach(parsed: ParsedSearch, reach: Reach): void {
  for (const filter of parsed.filters) {
    if (filter.kind === 'has') reach(filter.sourceType, 's');
    if (filter.kind === 'chain' && filter.targets.length === 1) reach(filter.targets[0]!.type, 's');
  }
  for (const spec of parsed.include) {
    if (spec.targetType) reach(spec.targetType, 'r');
    else if (spec.params.length === 1 && spec.params[0]!.targets.length === 1) reach(spec.params[0]!.targets[0]!, 'r');
    if (spec.sourceType !== parsed.resourceType) reach(spec.sourceType, 'r');
  }
  for (const spec of parsed.revinclude) if (spec.sourceType !== '*') reach(spec.sourceType, 'r');
}
