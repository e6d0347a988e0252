import type { FhirContext } from '../fhir/context';
import { validateDeclaredProfiles, validateWithProfiles } from '../validation/profile-hook';
import { enrichMdcObservations } from './mdc';

export { devicesPlugin } from './plugin';

/**
 * The device capability's part of the write pipeline: IEEE 11073 enrichment of MDC-only
 * Observations, then profile validation of every resource declaring a profile (after all
 * enrichers registered so far, so the stored form is what is checked), and $validate that
 * reports profile conformance.
 */
export function registerDeviceHooks(ctx: FhirContext): void {
  ctx.writeHooks.enrich.push(enrichMdcObservations, validateDeclaredProfiles);
  ctx.operations.register({
    name: 'validate',
    types: '*',
    type: true,
    instance: true,
    affectsState: false,
    handler: validateWithProfiles,
    definition: 'http://hl7.org/fhir/OperationDefinition/Resource-validate',
  });
}
