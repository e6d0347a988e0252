import { createHash } from 'node:crypto';
import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { countingDb } from '../helpers/counting-db';
import { startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const LOINC = 'http://loinc.org';
const SERIAL = 'urn:test:serial';

/**
 * Readings' ids are keyed by the database (src/devices/reading-identity.ts). A database that
 * stored readings under the earlier unkeyed ids keeps matching them: a gateway's backlog or a
 * Withings re-sync after the upgrade is not stored twice, and a row written under such an id
 * since the key was made (by anyone, over REST) is not matched.
 */
describe('reading ids from before the database had a key', () => {
  let app: TestServer;
  before(async () => {
    // A Db of its own: the key (and when it was made) is read once per Db, after the clock below moves.
    app = await startTestServer({}, { db: (shared) => countingDb(shared) });
    await app.ctx.db.query(`UPDATE device_reading_key SET since = now() + interval '1 hour'`);
  });
  after(async () => {
    await app.ctx.db.query(`UPDATE device_reading_key SET since = now()`);
    await app.stop();
  });

  /** The id the doors gave before the key: SHA-256 of device, code, time and reading id. */
  const unkeyed = (serial: string, code: string, time: string) => {
    const h = createHash('sha256').update(`${SERIAL}|${serial}\n${LOINC}|${code}\n${new Date(time).toISOString()}\n`).digest('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
  };

  it('matches a reading stored under its unkeyed id before the key, and stores the others under keyed ids', async () => {
    const patient = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient' } })).json.id;
    const serial = unique('sn');
    const time = '2025-04-01T08:00:00Z';
    const legacy = unkeyed(serial, '8867-4', time);
    // What an earlier version stored for this reading (here over REST, "before" the key).
    const stored = await app.request({
      method: 'PUT', url: `/fhir/Observation/${legacy}`,
      payload: { resourceType: 'Observation', id: legacy, status: 'final', code: { coding: [{ system: LOINC, code: '8867-4' }] }, subject: { reference: `Patient/${patient}` }, effectiveDateTime: time, valueQuantity: { value: 61, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' } },
    });
    expect(stored.statusCode).to.equal(201);
    const send = (value: number, at: string) =>
      app.request({ method: 'POST', url: '/ingest/readings', payload: { device: { identifier: { system: SERIAL, value: serial }, create: true }, patient: { reference: `Patient/${patient}` }, readings: [{ code: { system: LOINC, code: '8867-4' }, value, unit: '/min', time: at }] } });
    // The gateway re-sends it: the stored one is found under its old id, not stored again
    // (another value than stored, so 409 says which id it was matched with).
    const again = await send(62, time);
    expect(again.json.entry[0].response.status).to.equal('409 Conflict');
    expect(again.json.entry[0].response.outcome.issue[0].diagnostics).to.contain(`Observation/${legacy}`);
    const found = await app.request({ method: 'GET', url: `/fhir/Observation?subject=Patient/${patient}&code=${LOINC}|8867-4` });
    expect(found.json.entry).to.have.length(1);
    // Another reading is stored under a keyed id, not the unkeyed one.
    const other = '2025-04-01T09:00:00Z';
    const fresh = await send(63, other);
    expect(fresh.json.entry[0].response.status).to.equal('201 Created');
    expect(fresh.json.entry[0].response.location).to.not.contain(unkeyed(serial, '8867-4', other));
  });
});
