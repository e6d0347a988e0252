/**
 * The search capability's public surface: the REST layer searches (`searchResources`), the
 * access policy finds ids within a caller's limits (`findMatchingIds`; conditional writes match
 * through it), the write pipeline indexes writes (`writeSearchIndex`, in ./index-writer), the
 * CapabilityStatement lists the parameters, and Subscription matching judges plain criteria in
 * memory (`criteriaMatcher`).
 */
import { supportedTypes } from '../kernel/resource-types';
import { referenceParams } from './parse';
import { parametersOf } from './registry';

export { findMatchingIds, findReachableIds, type SearchContext, searchResources, type SearchRequest, type SearchResult } from './search';
export { lastObservations } from './lastn';
export { addSearchIndexWrites, eraseSearchIndex, indexTablesOf, writeSearchIndex } from './index-writer';
export { compartmentUrlsOf, isInPatientCompartment, patientsOf } from './compartment';
export { isServedBase, serveBase } from './served-bases';
export { localReference } from './types/reference';
export { canBeInPatientCompartment } from './sql';
export { readingsOf, readingTimes } from './readings';
export { isUnlimited, type PatientExclusion, type Reach, type TypeLimits, unlimited } from './reach';
export { withinLimits } from './limits-match';
export { readSubsetMode, type SubsetMode, subsetJson } from './summary';
export { type CriteriaMatcher, criteriaMatcher } from './criteria-match';
export { shapesResult } from './parse';
export { escapeSearchValue } from './escape';
export { checkScanFilter, scanAsOf, type ScannedRow, type ScanRequest } from './scan';

/** Result parameters this server honours, listed with the filters in the CapabilityStatement. */
const RESULT_PARAMETERS: Array<{ name: string; type: string; documentation: string }> = [
  { name: '_count', type: 'number', documentation: 'Page size (default and maximum are configured)' },
  { name: '_sort', type: 'special', documentation: 'Comma-separated parameters, - for descending' },
  { name: '_total', type: 'token', documentation: 'none | estimate | accurate' },
  { name: '_summary', type: 'token', documentation: 'true | text | data | count | false' },
  { name: '_elements', type: 'special', documentation: 'Comma-separated top-level elements' },
  { name: '_include', type: 'special', documentation: 'Type:param[:target], *, :iterate one level' },
  { name: '_revinclude', type: 'special', documentation: 'Type:param[:target], *, :iterate one level' },
  { name: '_has', type: 'special', documentation: '_has:Type:reference:parameter, one level' },
];

/** Every search parameter `resourceType` supports, for the CapabilityStatement. */
export function searchParametersFor(resourceType: string): Array<{ name: string; type: string; definition?: string; documentation?: string }> {
  const filters = [...parametersOf(resourceType).values()]
    .map((p) => ({ name: p.code, type: p.type, definition: p.url, documentation: p.description }))
    .sort((a, b) => a.name.localeCompare(b.name));
  return filters.length ? [...filters, ...RESULT_PARAMETERS] : [];
}

/**
 * The `_include` and `_revinclude` values a search of `resourceType` takes (./parse.ts,
 * parseInclude), for the CapabilityStatement: `Type:parameter` for each reference parameter of
 * the type itself, and for each reference parameter of another type that names it among its
 * targets; `*` for all of them (`:iterate` and a `:target` type are taken on any of these).
 */
export function includeValuesFor(resourceType: string): { include: string[]; revinclude: string[] } {
  const include = referenceParams(resourceType).map((p) => `${resourceType}:${p.code}`).sort();
  const revinclude = referrersTo().get(resourceType) ?? [];
  return { include: include.length ? [...include, '*'] : [], revinclude: revinclude.length ? [...revinclude, '*'] : [] };
}

/** Target type → the `Type:parameter` values that may refer to it; the registry is the process's, so built once. */
let referrers: Map<string, string[]> | undefined;
function referrersTo(): Map<string, string[]> {
  if (referrers) return referrers;
  const built = new Map<string, string[]>();
  for (const source of supportedTypes) {
    for (const p of referenceParams(source)) {
      // A parameter that may refer to any type (80 of them, such as ActivityDefinition:composed-of)
      // is not listed under every type: 11,440 of the 12,460 values, 350 kB of every /metadata,
      // for links nobody follows from a Patient. They still work, and `*` names them.
      if (p.targets.length === 0 || supportedTypes.every((t) => p.targets.includes(t))) continue;
      for (const target of p.targets) {
        if (supportedTypes.includes(target)) built.set(target, [...(built.get(target) ?? []), `${source}:${p.code}`]);
      }
    }
  }
  for (const values of built.values()) values.sort();
  referrers = built;
  return built;
}
