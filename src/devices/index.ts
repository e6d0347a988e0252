import type { FhirContext } from '../fhir/context';
import { mapObservations } from './mapping';

export { devicesPlugin } from './plugin';

/**
 * The device capability's part of the write pipeline: the one mapping stage (IEEE 11073, Withings
 * and Bluetooth codes to LOINC, units to UCUM, physiological ranges, vital-signs profiles) that
 * every Observation passes, whatever door it came through.
 */
export function registerDevices(ctx: FhirContext): void {
  ctx.stages.use('enrich', 'devices.mapping', (_uow, writes) => mapObservations(writes));
}
