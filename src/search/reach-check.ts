import type { Filter, ParsedSearch } from './parse';
import type { Reach } from './reach';

/**
 * The types a search names explicitly beyond its own must be reachable, before any SQL runs:
 * a chain's one target (or the one its type modifier names), a `_has` source, an included
 * target named by the spec or the only target of its parameter, a revincluded source. A 403
 * otherwise. Wildcards (`_include=*`, implicit chain targets) skip what the caller may not see.
 */
export function checkReach(parsed: ParsedSearch, reach: Reach): void {
  for (const filter of parsed.filters) checkFilterReach(filter, reach);
  for (const spec of parsed.include) {
    if (spec.targetType) reach(spec.targetType, 'r');
    else if (spec.params.length === 1 && spec.params[0]!.targets.length === 1) reach(spec.params[0]!.targets[0]!, 'r');
    if (spec.sourceType !== parsed.resourceType) reach(spec.sourceType, 'r');
  }
  for (const spec of parsed.revinclude) if (spec.sourceType !== '*') reach(spec.sourceType, 'r');
}

/** A filter's explicit types, and those of the filters it nests (each link of a longer chain). */
function checkFilterReach(filter: Filter, reach: Reach): void {
  if (filter.kind === 'has') {
    reach(filter.sourceType, 's');
    checkFilterReach(filter.filter, reach);
  }
  if (filter.kind === 'chain') {
    if (filter.targets.length === 1) reach(filter.targets[0]!.type, 's');
    for (const target of filter.targets) checkFilterReach(target.filter, reach);
  }
}
