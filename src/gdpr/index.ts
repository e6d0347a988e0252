import type { FhirContext } from '../fhir/context';
import { anonymizeOperation } from './anonymize-operation';
import { eraseOperation, requireErasureRight } from './erase';
import anonymizeDefinition from './operations/Patient-anonymize.json';
import eraseDefinition from './operations/Patient-erase.json';

/**
 * Data-subject rights beyond access (docs/decisions/014-erasure-and-anonymisation.md):
 * `Patient/{id}/$erase` (Art. 17) and `Patient/{id}/$anonymize`, the pseudonymised copy that is
 * its alternative. `$everything` (Art. 15, 20) is the FHIR layer's. Both are listed in the
 * CapabilityStatement with the other operations of Patient, `$anonymize` once a key is set.
 */
export function registerGdpr(ctx: FhirContext): void {
  ctx.operations.register({
    name: 'erase', types: ['Patient'], type: false, instance: true, affectsState: true,
    authorize: requireErasureRight, handler: eraseOperation, resource: eraseDefinition as fhir4.OperationDefinition,
  });
  ctx.operations.register({
    name: 'anonymize', types: ['Patient'], type: false, instance: true, affectsState: false, handler: anonymizeOperation,
    resource: anonymizeDefinition as fhir4.OperationDefinition,
    // Without PSEUDONYM_KEY it answers 501 (decision 014), so the CapabilityStatement does not offer it.
    offered: ctx.config.pseudonymKey !== undefined,
  });
}
