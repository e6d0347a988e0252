import { ownSearchParameters } from '../search/registry';
import type { ServedDefinitions } from './served-definitions';

/**
 * The server's own SearchParameters (`profiles/search-parameters/`, the very files the search
 * registry searches by), so that every `searchParam.definition` of the CapabilityStatement that
 * is not HL7's resolves here by `url`. Their canonicals are the product's
 * (`http://rpm.example.org/fhir/SearchParameter/…`), the same on every deployment. Served
 * read-only by ./served-definitions.ts (decision 043; SearchParameter is not a stored type: the
 * search registry is built from files, so a stored one would change no search).
 */
export const searchParameterDefinitions: ServedDefinitions = {
  type: 'SearchParameter',
  // Copies: an answer (a bundle's entry, a subset) must not reach the registry's own objects.
  definitions: () => ownSearchParameters().map((sp) => structuredClone(sp)),
  search: [
    { name: 'url', type: 'uri', definition: 'http://hl7.org/fhir/SearchParameter/conformance-url', documentation: 'The canonical, exactly', values: (d) => [(d as fhir4.SearchParameter).url] },
    { name: 'code', type: 'token', definition: 'http://hl7.org/fhir/SearchParameter/SearchParameter-code', documentation: 'The code used in the URL', values: (d) => [(d as fhir4.SearchParameter).code] },
    { name: 'base', type: 'token', definition: 'http://hl7.org/fhir/SearchParameter/SearchParameter-base', documentation: 'The resource type it applies to', values: (d) => (d as fhir4.SearchParameter).base },
  ],
  documentation: 'The search parameters this server itself defines (those the CapabilityStatement names by a canonical that is not HL7\'s), the ones its search uses. Read-only, and public like metadata; HL7\'s are named by their official canonicals.',
  readOnly: 'SearchParameters describe the searches this server implements and cannot be written, changed or deleted through the API',
};
