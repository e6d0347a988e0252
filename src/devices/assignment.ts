import { findVisibleIds, readVisible } from '../access/enforce';
import type { AccessPolicy } from '../access/policy';
import { parseRelativeReference } from '../kernel/id';
import { conflict } from '../kernel/outcome';
import { executeWrites, type PipelineContext } from '../pipeline';
import { parseDateRange } from '../search/date-range';
import { readResources } from '../store/repository';
import { DEVICE_USER_EXTENSION, UNKNOWN_DEVICE_USER } from './reading';

/**
 * Which patient used a device when: the DeviceUseStatement whose timingPeriod covers the
 * reading's time, else Device.patient. Loaded once per device per payload, then resolved per
 * reading in memory (gateways upload backlogs spanning a change of hands). Every lookup is made
 * with the caller's rights: a gateway finds the Devices and assignments its token may read, and
 * a patient's app only its own.
 *
 * A device shared at home (a couple's cuff or scale) numbers its users; a DeviceUseStatement
 * with the DEVICE_USER_EXTENSION says which user the patient is. Once the assignments covering a
 * time name users, a reading goes to the one naming its user, else to a covering assignment that
 * names none; a reading of another user, of the unknown user (255) or of none is refused, never
 * filed under whoever else uses the device.
 */
export interface KnownDevice {
  id: string;
  device: fhir4.Device;
  assignments: Array<{ start?: number; end?: number; patient: string; user?: number }>;
}

export async function findDevice(ctx: PipelineContext, identifier: fhir4.Identifier, create: boolean, policy: AccessPolicy): Promise<KnownDevice | undefined> {
  const search = new URLSearchParams({ identifier: `${identifier.system ?? ''}|${identifier.value ?? ''}` });
  const found = await findVisibleIds(ctx.db, policy, 'Device', search, 2);
  // Device identifiers are unique (src/devices/identity.ts); two matches are data from before that rule.
  if (found.length > 1) throw conflict(`device ${identifier.system ?? ''}|${identifier.value ?? ''} names more than one Device; resolve the duplicate first`);
  let id: string | undefined = found[0];
  if (!id && create) {
    const [outcome] = await executeWrites(ctx, [
      { kind: 'create', type: 'Device', ifNoneExist: search, resource: { resourceType: 'Device', identifier: [identifier], status: 'active' } },
    ], { policy });
    id = outcome!.id;
  }
  if (!id) return undefined;
  const device = (await readVisible<fhir4.Device>(ctx.db, policy, 'Device', id))?.resource;
  if (!device) return undefined;
  const statementIds = await findVisibleIds(ctx.db, policy, 'DeviceUseStatement', new URLSearchParams({ device: `Device/${id}` }));
  const assignments: KnownDevice['assignments'] = [];
  for (const dus of (await readResources<fhir4.DeviceUseStatement>(ctx.db, 'DeviceUseStatement', statementIds)).values()) {
    if (dus.status === 'entered-in-error' || parseRelativeReference(dus.subject?.reference)?.type !== 'Patient') continue;
    const period = dus.timingPeriod;
    if (!period) continue;
    // A date or dateTime stands for its whole precision (R4 datatypes.html#Period: the end
    // includes any matching date/time): an end of 2026-10-31 covers all of that day, a start of
    // 2026-10 begins on its first. The search's ranges (low, high) say what each text covers.
    assignments.push({
      start: period.start ? parseDateRange(period.start)?.low : undefined,
      end: period.end ? parseDateRange(period.end)?.high : undefined,
      patient: dus.subject!.reference!,
      user: assignedUser(dus),
    });
  }
  // The latest start first: when periods overlap, the newer assignment wins; equal starts by id, so the choice is deterministic.
  assignments.sort((a, b) => (b.start ?? -Infinity) - (a.start ?? -Infinity) || a.patient.localeCompare(b.patient));
  return { id, device, assignments };
}

/** The patient who took a reading at `time` (by the device's user index `user`, if it sent one), or why there is none. */
export function patientAt(known: KnownDevice, time: string, user?: number): { patient: string } | { refused: string } {
  const t = Date.parse(time);
  const covering = known.assignments.filter((a) => (a.start === undefined || a.start <= t) && (a.end === undefined || t <= a.end));
  const named = covering.filter((a) => a.user !== undefined);
  if (named.length > 0) {
    const chosen = (user === undefined || user === UNKNOWN_DEVICE_USER ? undefined : named.find((a) => a.user === user)) ?? covering.find((a) => a.user === undefined);
    if (chosen) return { patient: chosen.patient };
    const users = [...new Set(named.map((a) => a.user))].sort((a, b) => a! - b!).join(', ');
    const whose = user === undefined ? 'names no user' : user === UNKNOWN_DEVICE_USER ? 'is of the unknown user (255)' : `is of user ${user}`;
    return { refused: `Device/${known.id} is shared: at ${time} its DeviceUseStatements assign users ${users}, and the reading ${whose}` };
  }
  if (covering.length > 0) return { patient: covering[0]!.patient };
  const ref = known.device.patient?.reference;
  if (parseRelativeReference(ref)?.type === 'Patient') return { patient: ref! };
  return { refused: `Device/${known.id} was assigned to nobody at ${time} (no DeviceUseStatement covers it, no Device.patient)` };
}

/** The user index a DeviceUseStatement assigns its patient (DEVICE_USER_EXTENSION), if any. */
function assignedUser(dus: fhir4.DeviceUseStatement): number | undefined {
  const value = dus.extension?.find((e) => e.url === DEVICE_USER_EXTENSION)?.valueInteger;
  return Number.isInteger(value) ? value : undefined;
}
