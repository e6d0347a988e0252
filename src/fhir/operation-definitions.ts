import type { FhirContext } from './context';
import type { ServedDefinitions } from './served-definitions';

/** The canonical of one of the server's own OperationDefinitions: where it is read (R4 resource.html#canonical). */
export function operationDefinitionUrl(ctx: FhirContext, id: string): string {
  return `${ctx.baseUrl}/OperationDefinition/${id}`;
}

/**
 * The server's own OperationDefinitions, the ones its capabilities register with their
 * operations (JSON files beside the code that implements them), so that every
 * `operation.definition` of the CapabilityStatement resolves here or is an HL7 canonical. Served
 * read-only by ./served-definitions.ts (decision 041; OperationDefinition is not a stored type),
 * searched by R4 OperationDefinition `url` and `code`.
 */
export const operationDefinitions: ServedDefinitions = {
  type: 'OperationDefinition',
  // Each definition with the canonical it has on this server (the base is configuration).
  definitions: (ctx) => ctx.operations.ownDefinitions().map((d) => ({ ...d, url: operationDefinitionUrl(ctx, d.id!) })),
  search: [
    { name: 'url', type: 'uri', definition: 'http://hl7.org/fhir/SearchParameter/conformance-url', documentation: 'The canonical, exactly', values: (d) => [(d as fhir4.OperationDefinition).url ?? ''] },
    { name: 'code', type: 'token', definition: 'http://hl7.org/fhir/SearchParameter/OperationDefinition-code', documentation: 'The operation\'s name, without the $', values: (d) => [(d as fhir4.OperationDefinition).code] },
  ],
  documentation: 'The definitions of the operations this server itself defines (those the CapabilityStatement names by a canonical of this server). Read-only, and public like metadata.',
  readOnly: 'OperationDefinitions describe the operations this server implements and cannot be written, changed or deleted through the API',
};
