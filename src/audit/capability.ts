import { contributeToCapabilities } from '../fhir/capability';

const SEARCH_PARAMETERS: Array<[name: string, type: fhir4.CapabilityStatementRestResourceSearchParam['type'], documentation: string]> = [
  ['patient', 'reference', 'Events about this patient (entity[patient])'],
  ['agent', 'reference', 'Who took part: Practitioner/…, or with :identifier the client (urn:ietf:params:oauth:client-id|id)'],
  ['entity', 'reference', 'Events about this resource or version'],
  ['date', 'date', 'When recorded (ge, gt, le, lt, eq, ne, sa, eb)'],
  ['type', 'token', 'audit-event-type (rest, 110114)'],
  ['subtype', 'token', 'restful-interaction code (read, search-type, create, …)'],
  ['action', 'token', 'C, R, U, D or E'],
  ['outcome', 'token', '0, 4 or 8'],
  ['_count', 'number', 'Page size; newest first, paged by the next link'],
];

/**
 * CapabilityStatement: AuditEvent, which src/audit serves read-only from its own table (not one
 * of the stored types the generic entries are built from).
 */
export function contributeAuditEvent(): void {
  contributeToCapabilities('audit.auditevent', (statement) => {
    const rest = statement.rest?.[0];
    if (!rest) return;
    rest.resource = (rest.resource ?? []).filter((r) => r.type !== 'AuditEvent');
    rest.resource.push({
      type: 'AuditEvent',
      profile: 'http://hl7.org/fhir/StructureDefinition/AuditEvent',
      documentation: 'The audit trail (IHE BALP), recorded by the server and never writable. Needs a scope that names AuditEvent; a patient/ scope sees the events about its patient.',
      interaction: [{ code: 'read' }, { code: 'search-type' }],
      searchParam: SEARCH_PARAMETERS.map(([name, type, documentation]) => ({ name, type, documentation })),
    });
  });
}
