import { contributeToCapabilities } from '../fhir/capability';

const BULK = 'http://hl7.org/fhir/uv/bulkdata';

/**
 * The export operations in the CapabilityStatement (Bulk Data Access v2.0.0,
 * CapabilityStatement-bulk-data): system `export`, Patient `export` (patient-export) and Group
 * `export` (group-export), and the `instantiates` Inferno looks for.
 */
export function contributeExportOperations(): void {
  contributeToCapabilities('bulk.export', (statement) => {
    const rest = statement.rest?.[0];
    if (!rest) return;
    statement.instantiates = [...(statement.instantiates ?? []), `${BULK}/CapabilityStatement/bulk-data`];
    rest.operation = [...(rest.operation ?? []), { name: 'export', definition: `${BULK}/OperationDefinition/export` }];
    const definitions: Record<string, string> = { Patient: 'patient-export', Group: 'group-export' };
    for (const resource of rest.resource ?? []) {
      const definition = definitions[resource.type];
      if (definition) resource.operation = [...(resource.operation ?? []), { name: 'export', definition: `${BULK}/OperationDefinition/${definition}` }];
    }
  });
}
