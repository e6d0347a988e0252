import { includeValuesFor, readSubsetMode, searchParametersFor } from '../search';
import { subsetResource } from '../search/summary';
import { supportedTypes } from '../kernel/resource-types';
import { badRequest } from '../kernel/outcome';
import { heldProfilesByType } from '../validation/profile';
import type { FhirContext } from './context';
import { routedOperations } from './terminology-routes';
import { systemSearchParameters } from './interactions/search-system';
import { operationDefinitionUrl } from './operation-definitions';
import { servedCapabilityEntries } from './served-definitions';

/** Extra CapabilityStatement parts contributed by other capabilities (auth adds rest.security). */
export type CapabilityContributor = (statement: fhir4.CapabilityStatement, ctx: FhirContext) => void;
/** By name: a capability registered again (every server a process starts, in tests) replaces its part. */
const contributors = new Map<string, CapabilityContributor>();
export function contributeToCapabilities(name: string, c: CapabilityContributor): void {
  contributors.set(name, c);
}

/**
 * The CapabilityStatement, generated from what is implemented: the supported types, the
 * interactions the routes serve, the search parameters the registry knows (with the _include and
 * _revinclude values their reference parameters make) and the operations
 * registered (`$validate` everywhere, monitoring's CarePlan operations, ConceptMap `$translate`).
 */
export function capabilityStatement(ctx: FhirContext, startedAt: string): fhir4.CapabilityStatement {
  const profiles = heldProfilesByType();
  const interactions: fhir4.CapabilityStatementRestResourceInteraction['code'][] = [
    'read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'history-type', 'create', 'search-type',
  ];
  const statement: fhir4.CapabilityStatement = {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: startedAt,
    publisher: 'rpm-fhir-server',
    kind: 'instance',
    software: { name: 'rpm-fhir-server', version: process.env.npm_package_version ?? '0.1.0' },
    implementation: { description: 'FHIR R4 server for remote patient monitoring', url: ctx.baseUrl },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    patchFormat: ['application/json-patch+json', 'application/fhir+json'],
    rest: [
      {
        mode: 'server',
        resource: [...supportedTypes.map((type): fhir4.CapabilityStatementRestResource => {
          const includes = includeValuesFor(type);
          return {
            type: type as fhir4.CapabilityStatementRestResource['type'],
            profile: `http://hl7.org/fhir/StructureDefinition/${type}`,
            // The profiles in profiles/ that a resource declaring them is checked against (validation/profile.ts).
            ...(profiles.has(type) ? { supportedProfile: profiles.get(type) } : {}),
            interaction: interactions.map((code) => ({ code })),
            versioning: 'versioned-update',
            readHistory: true,
            updateCreate: true,
            conditionalCreate: true,
            conditionalUpdate: true,
            conditionalDelete: 'single',
            // If-None-Match and If-Modified-Since (./interactions/read.ts; Hapi too, from Last-Modified) both answer 304, in bundles too.
            conditionalRead: 'full-support',
            referencePolicy: ['literal', 'logical'],
            searchParam: searchParametersFor(type).map((p) => ({
              name: p.name,
              type: p.type as fhir4.CapabilityStatementRestResourceSearchParam['type'],
              ...(p.definition ? { definition: p.definition } : {}),
              ...(p.documentation ? { documentation: p.documentation } : {}),
            })),
            ...(includes.include.length ? { searchInclude: includes.include } : {}),
            ...(includes.revinclude.length ? { searchRevInclude: includes.revinclude } : {}),
            operation: [
              // An HL7 canonical, or the server's own definition where it is served (operation-definitions.ts).
              ...ctx.operations.forType(type).filter((o) => o.offered !== false).map((o) => ({ name: o.name, definition: o.resource ? operationDefinitionUrl(ctx, o.resource.id!) : o.definition! })),
              ...(routedOperations[type] ?? []),
            ],
          };
        }), ...servedCapabilityEntries()],
        // POST /fhir takes batch and transaction Bundles (bundle/); GET /fhir/_history; GET /fhir?_type=… (search-system.ts).
        interaction: [{ code: 'transaction' }, { code: 'batch' }, { code: 'history-system' }, { code: 'search-system' }],
        searchParam: systemSearchParameters(),
        // GET /fhir/Patient/{id}/{type} and /Patient/{id}/* (routes.ts), by the R4 patient compartment (search/compartment.ts).
        compartment: ['http://hl7.org/fhir/CompartmentDefinition/patient'],
      },
    ],
  };
  for (const contribute of contributors.values()) contribute(statement, ctx);
  return statement;
}

/** When each context's statement was first asked for: its `date`, the same through REST and in a batch. */
const published = new WeakMap<FhirContext, string>();

/**
 * The answer to `GET /fhir/metadata` (R4 http.html#capabilities), over REST and as a batch
 * entry: `mode` full or normative (the whole statement is normative in R4) gives the
 * CapabilityStatement, `mode=terminology` the TerminologyCapabilities, any other mode is refused
 * rather than answered with something else; `_summary` and `_elements` subset it as they do a read.
 */
export function metadata(ctx: FhirContext, query: URLSearchParams): fhir4.CapabilityStatement | fhir4.TerminologyCapabilities {
  let startedAt = published.get(ctx);
  if (!startedAt) published.set(ctx, (startedAt = new Date().toISOString()));
  const mode = query.getAll('mode').at(-1) ?? 'full';
  if (mode === 'terminology') return terminologyCapabilities(ctx, startedAt);
  if (mode !== 'full' && mode !== 'normative') throw badRequest(`mode must be full, normative or terminology, got '${mode.slice(0, 20)}'`, ['mode']);
  const statement = capabilityStatement(ctx, startedAt);
  const subset = readSubsetMode(query);
  return subset ? (subsetResource(statement as unknown as Record<string, unknown>, subset) as unknown as fhir4.CapabilityStatement) : statement;
}

/**
 * R4 TerminologyCapabilities of what the terminology routes serve: `ConceptMap/$translate` over
 * the server's own maps, with or without a map named (translation.needsMap false). No
 * `$lookup`, `$validate-code` or `$expand` is served, so no code system or expansion is claimed.
 */
function terminologyCapabilities(ctx: FhirContext, startedAt: string): fhir4.TerminologyCapabilities {
  const statement = capabilityStatement(ctx, startedAt);
  return {
    resourceType: 'TerminologyCapabilities',
    status: 'active',
    date: startedAt,
    publisher: statement.publisher,
    kind: 'instance',
    software: statement.software,
    implementation: statement.implementation,
    translation: { needsMap: false },
  };
}
