import { forbidden, isClinicalActor } from '../access/enforce';
import { conflict } from '../kernel/outcome';
import { type CommittedWrite, eachWrite, type PendingWrite, type UnitOfWork } from '../pipeline';

/**
 * Who may say which device is whose, and that one identifier names one device. A device door
 * files a reading under the patient its Device is assigned to, so both are security rules:
 *
 * - Assigning a device to a patient (any write of a DeviceUseStatement, or a Device whose
 *   `patient` changes) is a clinical act: refused (403) to patient-facing tokens.
 * - A Device identifier (system|value, as MACs and serials are sent) and a manufacturer's serial
 *   number name one live Device: a second claimant gets 409.
 */

/** The identity keys of a Device: each identifier, and its serial number within its manufacturer. */
function identityKeys(device: fhir4.Device | undefined): string[] {
  if (!device) return [];
  const keys = (device.identifier ?? []).filter((i) => i.system && i.value).map((i) => `id|${i.system}|${i.value}`);
  if (device.serialNumber) keys.push(`serial|${device.manufacturer ?? ''}|${device.serialNumber}`);
  return [...new Set(keys)];
}

function describeKey(key: string): string {
  const [kind, a, b] = key.split('|');
  return kind === 'serial' ? `serial number ${b}${a ? ` of ${a}` : ''}` : `identifier ${a}|${b}`;
}

const patientOf = (d: fhir4.Device | undefined) => d?.patient?.reference;

/** validate stage: assignment rights, and identifiers no other Device holds. */
export async function checkDeviceWrites(uow: UnitOfWork, writes: readonly PendingWrite[]): Promise<void> {
  await eachWrite(writes, async (w) => {
    if (w.type === 'DeviceUseStatement') {
      const action = !w.resource ? 'd' : w.previous ? 'u' : 'c';
      if (!isClinicalActor(w.policy, w.type, action)) {
        throw forbidden('assigning a device to a patient (DeviceUseStatement) is for clinicians and systems, not for patient-facing tokens');
      }
      return;
    }
    if (w.type !== 'Device' || !w.resource) return;
    const device = w.resource as fhir4.Device;
    if (patientOf(device) !== patientOf(w.previous as fhir4.Device | undefined) && !isClinicalActor(w.policy, 'Device', w.previous ? 'u' : 'c')) {
      throw forbidden('assigning a device to a patient (Device.patient) is for clinicians and systems, not for patient-facing tokens');
    }
    const keys = identityKeys(device);
    if (keys.length === 0) return;
    // Two units claiming one identifier queue here, so only one of them can take it.
    await uow.tx.query('SELECT count(pg_advisory_xact_lock(hashtext(k))) FROM (SELECT unnest($1::text[]) AS k ORDER BY 1) s', [[...keys].sort()]);
    const { rows } = await uow.tx.query<{ key: string; device_id: string }>('SELECT key, device_id FROM device_identity WHERE key = ANY($1::text[]) AND device_id <> $2', [keys, w.id]);
    if (rows.length > 0) throw conflict(`the ${describeKey(rows[0]!.key)} already names Device/${rows[0]!.device_id}; one identifier names one device`);
  });
  // Two Devices of one unit claiming one identifier.
  const claimed = new Map<string, string>();
  for (const w of writes) {
    if (w.type !== 'Device') continue;
    for (const key of identityKeys(w.resource as fhir4.Device | undefined)) {
      const other = claimed.get(key);
      if (other !== undefined && other !== w.id) w.reject(conflict(`the ${describeKey(key)} is claimed by two Devices of one request`));
      claimed.set(key, w.id);
    }
  }
}

/** rules stage: the identity table follows the Devices written. */
export async function recordDeviceIdentities(uow: UnitOfWork, committed: readonly CommittedWrite[]): Promise<void> {
  const devices = committed.filter((w) => w.type === 'Device');
  if (devices.length === 0) return;
  const rows = devices.flatMap((w) => identityKeys(w.resource as fhir4.Device | undefined).map((key) => ({ key, id: w.id })));
  // Keys a Device no longer holds go; the ones it holds are (re)claimed. The validate stage made
  // sure, under the keys' locks, that no other Device holds them.
  await uow.tx.query(
    `WITH gone AS (DELETE FROM device_identity WHERE device_id = ANY($1::text[]) AND NOT (key = ANY($2::text[])))
     INSERT INTO device_identity (key, device_id) SELECT * FROM unnest($2::text[], $3::text[])
     ON CONFLICT (key) DO UPDATE SET device_id = EXCLUDED.device_id`,
    [devices.map((w) => w.id), rows.map((r) => r.key), rows.map((r) => r.id)],
  );
}
