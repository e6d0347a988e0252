import { type AccessPolicy, unrestricted } from '../auth/policy';
import { executeWrites } from '../fhir/write';
import type { FhirContext } from '../fhir/context';
import { findMatchingIds } from '../search';
import type { Queryable } from '../store/db';
import { readCurrent } from '../store/repository';

/**
 * Which patient used a device when: the DeviceUseStatement whose timingPeriod covers the
 * reading's time, else Device.patient. Loaded once per device per payload, then resolved per
 * reading in memory (gateways upload backlogs spanning a change of hands).
 */
export interface KnownDevice {
  id: string;
  device: fhir4.Device;
  assignments: Array<{ start?: number; end?: number; patient: string }>;
}

async function readResource<T>(db: Queryable, type: string, id: string): Promise<T | undefined> {
  const stored = await readCurrent(db, type, id);
  return stored && !stored.deleted && stored.json ? (JSON.parse(stored.json) as T) : undefined;
}

export async function findDevice(ctx: FhirContext, identifier: fhir4.Identifier, create: boolean, policy: AccessPolicy = unrestricted): Promise<KnownDevice | undefined> {
  const search = new URLSearchParams({ identifier: `${identifier.system ?? ''}|${identifier.value ?? ''}` });
  let id: string | undefined = (await findMatchingIds(ctx.db, 'Device', search, 1))[0];
  if (!id && create) {
    const [outcome] = await executeWrites(ctx, [
      { kind: 'create', type: 'Device', ifNoneExist: search, resource: { resourceType: 'Device', identifier: [identifier], status: 'active' } },
    ], policy);
    id = outcome!.id;
  }
  if (!id) return undefined;
  const device = await readResource<fhir4.Device>(ctx.db, 'Device', id);
  if (!device) return undefined;
  const statementIds = await findMatchingIds(ctx.db, 'DeviceUseStatement', new URLSearchParams({ device: `Device/${id}` }));
  const assignments: KnownDevice['assignments'] = [];
  for (const sid of statementIds) {
    const dus = await readResource<fhir4.DeviceUseStatement>(ctx.db, 'DeviceUseStatement', sid);
    if (!dus || dus.status === 'entered-in-error' || !dus.subject?.reference?.startsWith('Patient/')) continue;
    const period = dus.timingPeriod;
    if (!period) continue;
    assignments.push({
      start: period.start ? Date.parse(period.start) : undefined,
      end: period.end ? Date.parse(period.end) : undefined,
      patient: dus.subject.reference,
    });
  }
  // The latest start first: when periods overlap, the newer assignment wins.
  assignments.sort((a, b) => (b.start ?? -Infinity) - (a.start ?? -Infinity));
  return { id, device, assignments };
}

export function patientAt(known: KnownDevice, time: string): string | undefined {
  const t = Date.parse(time);
  const covering = known.assignments.find((a) => (a.start === undefined || a.start <= t) && (a.end === undefined || t <= a.end));
  if (covering) return covering.patient;
  const ref = known.device.patient?.reference;
  return ref?.startsWith('Patient/') ? ref : undefined;
}
