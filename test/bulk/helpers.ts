import { expect } from '@hapi/code';
import type { SecuredServer } from '../security/helpers';
import { type TestServer, unique } from '../helpers/server';

/** What the export helpers drive: requests (inject) and the worker; any test server, tokens or not. */
export type BulkApp = Pick<TestServer, 'request' | 'bulk'>;

/** A ward: a Group of Patients, each with Observations, all tagged with an identifier system of their own. */
export interface Ward {
  system: string;
  groupId: string;
  patients: string[];
  /** Observation ids per patient. */
  observations: string[][];
}

export const observation = (system: string, patient: string, code: string, value: number) => ({
  resourceType: 'Observation', status: 'final', identifier: [{ system, value: unique('obs') }],
  code: { coding: [{ system: 'http://loinc.org', code }] }, subject: { reference: `Patient/${patient}` },
  effectiveDateTime: '2026-11-02T08:00:00Z', valueQuantity: { value, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
});

/** `patients` Patients with `perPatient` heart-rate Observations each, and a Group of them. */
export async function seedWard(app: Pick<SecuredServer, 'create'>, patients: number, perPatient: number): Promise<Ward> {
  const system = `urn:test:bulk:${unique('ward')}`;
  const ward: Ward = { system, groupId: '', patients: [], observations: [] };
  for (let p = 0; p < patients; p++) {
    const id = await app.create({ resourceType: 'Patient', identifier: [{ system, value: `p${p}` }], name: [{ family: `Ward${p}` }] });
    ward.patients.push(id);
    const ids: string[] = [];
    for (let o = 0; o < perPatient; o++) ids.push(await app.create(observation(system, id, '8867-4', 60 + o)));
    ward.observations.push(ids);
  }
  ward.groupId = await app.create({
    resourceType: 'Group', type: 'person', actual: true, identifier: [{ system, value: 'ward' }],
    member: ward.patients.map((id) => ({ entity: { reference: `Patient/${id}` } })),
  });
  return ward;
}

export const ASYNC = { prefer: 'respond-async', accept: 'application/fhir+json' };

/** Kicks an export off over inject; the status path. */
export async function kickOff(app: BulkApp, url: string, headers: Record<string, string>): Promise<string> {
  const res = await app.request({ method: 'GET', url, headers: { ...ASYNC, ...headers } });
  expect(res.statusCode, res.payload).to.equal(202);
  return new URL(String(res.headers['content-location'])).pathname;
}

/** The complete manifest of a job (the worker is driven by the test), and each file's resources. */
export async function finish(app: BulkApp, status: string, headers: Record<string, string>): Promise<{ manifest: any; files: Record<string, any[]> }> {
  await app.bulk.drain();
  const res = await app.request({ method: 'GET', url: status, headers });
  expect(res.statusCode, res.payload).to.equal(200);
  const files: Record<string, any[]> = {};
  for (const entry of [...res.json.output, ...res.json.error]) {
    const file = await app.request({ method: 'GET', url: new URL(entry.url).pathname, headers });
    expect(file.statusCode, file.payload).to.equal(200);
    files[entry.type] = file.payload.split('\n').filter(Boolean).map((line) => JSON.parse(line));
    expect(files[entry.type]!.length).to.equal(entry.count);
  }
  return { manifest: res.json, files };
}

export const idsOf = (resources: any[] | undefined) => (resources ?? []).map((r) => r.id as string).sort();
