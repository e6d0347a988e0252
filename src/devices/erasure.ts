import type { ErasedCompartment, UnitOfWork } from '../pipeline';

/** erase hook: the identity keys (serial numbers, MAC addresses) of the erased Devices. */
export async function forgetDevices(uow: UnitOfWork, erased: ErasedCompartment): Promise<void> {
  const devices = erased.resources.get('Device');
  if (devices?.length) await uow.tx.query('DELETE FROM device_identity WHERE device_id = ANY($1::text[])', [devices]);
}
