import type { FhirContext } from '../fhir/context';
import { forgetDevices } from './erasure';
import { checkDeviceWrites, recordDeviceIdentities } from './identity';
import { mapObservations } from './mapping';

export { devicesPlugin } from './plugin';
export { devicesMigrations } from './schema';

/**
 * The device capability's part of the write pipeline: who may assign devices and the uniqueness
 * of their identifiers (./identity.ts), and the one mapping stage (IEEE 11073, Withings and
 * Bluetooth codes to LOINC, units to UCUM, physiological ranges, vital-signs profiles) that every
 * Observation passes, whatever door it came through.
 */
export function registerDevices(ctx: FhirContext): void {
  ctx.stages.use('validate', 'devices.identity', checkDeviceWrites);
  ctx.stages.use('enrich', 'devices.mapping', (_uow, writes) => mapObservations(writes));
  ctx.stages.use('rules', 'devices.identity', recordDeviceIdentities);
  ctx.stages.use('erase', 'devices.identity', forgetDevices);
}
