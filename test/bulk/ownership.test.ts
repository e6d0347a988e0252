import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { randomUUID } from 'node:crypto';
import { type SecuredServer, startSecuredServer } from '../security/helpers';
import { finish, kickOff, seedWard, type Ward } from './helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * Whose export it is: status, cancel and files answer only a token of the client, user and
 * patient context that started the job, holding every scope it ran under. A SMART app's client
 * id is shared by all its users, so the client alone is no owner. To anyone else the job does not
 * exist: the same 404, word for word, as a job never started.
 */
describe('Bulk Data export: whose export it is', () => {
  let app: SecuredServer;
  let ward: Ward;

  before(async () => {
    app = await startSecuredServer({ BULK_POLL_INTERVAL: '0' });
    ward = await seedWard(app, 2, 1);
  });
  after(() => app.stop());

  const get = (url: string, headers: Record<string, string>) => app.request({ method: 'GET', url, headers });
  const cancel = (url: string, headers: Record<string, string>) => app.request({ method: 'DELETE', url, headers });

  /** `url` answers `who` as if the job did not exist: 404, with the diagnostics an unknown job gets. */
  async function unknownTo(url: string, who: Record<string, string>, method: 'GET' | 'DELETE' = 'GET') {
    const res = await app.request({ method, url, headers: who });
    expect(res.statusCode, res.payload).to.equal(404);
    expect(res.json.resourceType).to.equal('OperationOutcome');
    const id = url.split('/')[3]!;
    const never = randomUUID();
    const unknown = await app.request({ method, url: `/fhir/bulk-status/${never}`, headers: who });
    expect(res.json.issue[0].diagnostics).to.equal(unknown.json.issue[0].diagnostics.replace(never, id));
  }

  it("another user's token of the same client, or the same user's with narrower scopes, gets 404 on status, cancel and files", async () => {
    const clinician = await app.as('user/*.rs', { clientId: 'bulk-shared-app', fhirUser: 'Practitioner/bulk-alice' });
    const colleague = await app.as('user/*.rs', { clientId: 'bulk-shared-app', fhirUser: 'Practitioner/bulk-bob' });
    const narrower = await app.as('user/Patient.rs', { clientId: 'bulk-shared-app', fhirUser: 'Practitioner/bulk-alice' });
    const status = await kickOff(app, `/fhir/Group/${ward.groupId}/$export?_type=Patient,Observation`, clinician);

    for (const who of [colleague, narrower]) {
      await unknownTo(status, who);
      await unknownTo(status, who, 'DELETE');
    }
    // Their DELETE cancelled nothing.
    expect((await get(status, clinician)).statusCode).to.equal(202);

    const { manifest } = await finish(app, status, clinician);
    const file = new URL(manifest.output.find((o: any) => o.type === 'Patient').url).pathname;
    for (const who of [colleague, narrower]) {
      await unknownTo(status, who);
      const res = await get(file, who);
      expect(res.statusCode).to.equal(404);
      expect(res.json.resourceType).to.equal('OperationOutcome');
    }
    // The owner, with this token or a later one holding at least the job's scopes.
    const later = await app.as('user/*.rs user/Flag.cruds', { clientId: 'bulk-shared-app', fhirUser: 'Practitioner/bulk-alice' });
    for (const who of [clinician, later]) {
      expect((await get(status, who)).statusCode).to.equal(200);
      expect((await get(file, who)).statusCode).to.equal(200);
    }
    expect((await cancel(status, later)).statusCode).to.equal(202);
  });

  it("a patient's token gets 404 on another patient's export of the same app; the patient's own gets it", async () => {
    const [a, b] = ward.patients as [string, string];
    const patientA = await app.as('patient/*.rs', { clientId: 'bulk-portal', patient: a });
    const patientB = await app.as('patient/*.rs', { clientId: 'bulk-portal', patient: b });
    const status = await kickOff(app, '/fhir/Patient/$export?_type=Patient,Observation', patientA);
    await unknownTo(status, patientB);
    await unknownTo(status, patientB, 'DELETE');
    const { manifest, files } = await finish(app, status, patientA);
    expect(files.Patient!.map((p) => p.id)).to.equal([a]);
    for (const entry of manifest.output) {
      const res = await get(new URL(entry.url).pathname, patientB);
      expect(res.statusCode).to.equal(404);
      expect(res.json.resourceType).to.equal('OperationOutcome');
    }
    await unknownTo(status, patientB);
    expect((await cancel(status, patientA)).statusCode).to.equal(202);
  });
});
