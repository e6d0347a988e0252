/**
 * The search capability's public surface: the REST layer searches (`searchResources`), the
 * access policy finds ids within a caller's limits (`findMatchingIds`; conditional writes match
 * through it), the write pipeline indexes writes (`writeSearchIndex`, in ./index-writer), the
 * CapabilityStatement lists the parameters, and Subscription matching judges plain criteria in
 * memory (`criteriaMatcher`).
 */
import { parametersOf } from './registry';

export { findMatchingIds, type SearchContext, searchResources, type SearchRequest, type SearchResult } from './search';
export { lastObservations } from './lastn';
export { addSearchIndexWrites, eraseSearchIndex, indexTablesOf, writeSearchIndex } from './index-writer';
export { isInPatientCompartment, patientsOf } from './compartment';
export { canBeInPatientCompartment } from './sql';
export { readingsOf, readingTimes } from './readings';
export { isUnlimited, type PatientExclusion, type Reach, type TypeLimits, unlimited } from './reach';
export { withinLimits } from './limits-match';
export { readSubsetMode, type SubsetMode, subsetJson } from './summary';
export { type CriteriaMatcher, criteriaMatcher } from './criteria-match';
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
