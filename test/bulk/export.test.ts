import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { type SecuredServer, startSecuredServer } from '../security/helpers';
import { ASYNC, finish, idsOf, kickOff, observation, seedWard, type Ward } from './helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * Issue 21: what a bulk export contains — the data as of its transactionTime, within the
 * caller's grant, narrowed by _type, _since and _typeFilter — and how it refuses bad requests.
 * The worker is driven by the tests (BULK_POLL_INTERVAL=0), so every step is deterministic.
 */
describe('Bulk Data export', () => {
  let app: SecuredServer;
  let ward: Ward;
  let reader: Record<string, string>;

  before(async () => {
    app = await startSecuredServer({ BULK_POLL_INTERVAL: '0', BULK_BATCH_SIZE: '3' });
    ward = await seedWard(app, 2, 3);
    reader = await app.as('system/*.rs', { clientId: 'bulk-reader' });
  });
  after(() => app.stop());

  it('exports a Group: its members and their compartments, in batches, as of the kick-off', async () => {
    const status = await kickOff(app, `/fhir/Group/${ward.groupId}/$export?_type=Patient,Observation`, reader);
    const { manifest, files } = await finish(app, status, reader);
    expect(manifest.requiresAccessToken).to.equal(true);
    expect(manifest.request.endsWith(`/fhir/Group/${ward.groupId}/$export?_type=Patient,Observation`)).to.be.true();
    expect(manifest.output.map((o: any) => o.type)).to.equal(['Patient', 'Observation']);
    expect(manifest.error).to.equal([]);
    expect(idsOf(files.Patient)).to.equal([...ward.patients].sort());
    expect(idsOf(files.Observation)).to.equal(ward.observations.flat().sort());
  });

  it('exports a cohort\'s current members only: not inactive ones, nor those whose membership period ended', async () => {
    const cohort = await app.create({
      resourceType: 'Group', type: 'person', actual: true,
      member: [
        { entity: { reference: `Patient/${ward.patients[0]}` }, period: { start: '2026-01-01' } },
        { entity: { reference: `Patient/${ward.patients[1]}` }, inactive: true },
        { entity: { reference: `Patient/${ward.patients[1]}` }, period: { start: '2025-01-01', end: '2025-06-30' } },
      ],
    });
    const { files } = await finish(app, await kickOff(app, `/fhir/Group/${cohort}/$export?_type=Patient`, reader), reader);
    expect(idsOf(files.Patient)).to.equal([ward.patients[0]!]);
  });

  it('keeps a member whose membership ends today until the day is over (a date covers its whole day)', async () => {
    const today = new Date().toISOString().slice(0, 10);
    const cohort = await app.create({
      resourceType: 'Group', type: 'person', actual: true,
      member: [{ entity: { reference: `Patient/${ward.patients[1]}` }, period: { start: '2025-01-01', end: today } }],
    });
    const { files } = await finish(app, await kickOff(app, `/fhir/Group/${cohort}/$export?_type=Patient`, reader), reader);
    expect(idsOf(files.Patient)).to.equal([ward.patients[1]!]);
  });

  it('holds the data as it stood at transactionTime: later updates, deletions and creations do not show', async () => {
    const status = await kickOff(app, `/fhir/Group/${ward.groupId}/$export?_type=Observation`, reader);
    const [updated, deleted] = [ward.observations[0]![0]!, ward.observations[0]![1]!];
    const before = (await app.request({ method: 'GET', url: `/fhir/Observation/${updated}`, headers: app.system })).json;
    const res = await app.request({ method: 'PUT', url: `/fhir/Observation/${updated}`, headers: app.system, payload: { ...before, valueQuantity: { ...before.valueQuantity, value: 199 } } });
    expect(res.statusCode).to.equal(200);
    expect((await app.request({ method: 'DELETE', url: `/fhir/Observation/${deleted}`, headers: app.system })).statusCode).to.equal(204);
    const created = await app.create(observation(ward.system, ward.patients[0]!, '8867-4', 99));

    const { manifest, files } = await finish(app, status, reader);
    expect(idsOf(files.Observation)).to.equal(ward.observations.flat().sort());
    expect(idsOf(files.Observation)).to.not.include(created);
    const exported = files.Observation!.find((o) => o.id === updated);
    expect(exported.valueQuantity.value).to.equal(before.valueQuantity.value);
    expect(exported.meta.versionId).to.equal('1');
    expect(Date.parse(manifest.transactionTime)).to.be.below(Date.parse((await app.request({ method: 'GET', url: `/fhir/Observation/${created}`, headers: app.system })).json.meta.lastUpdated) + 1);
    // The ward as it is now, for the tests after this one.
    ward.observations[0] = [...ward.observations[0]!.filter((id) => id !== deleted), created];
  });

  it('narrows by _typeFilter (alternatives OR) and _since', async () => {
    const first = ward.patients[0]!;
    const other = await app.create(observation(ward.system, first, '59408-5', 97));
    const filter = encodeURIComponent('Observation?code=59408-5');
    const { files } = await finish(app, await kickOff(app, `/fhir/Group/${ward.groupId}/$export?_type=Observation&_typeFilter=${filter}`, reader), reader);
    expect(idsOf(files.Observation)).to.equal([other]);
    const both = `_typeFilter=${filter},${encodeURIComponent(`Observation?subject=Patient/${ward.patients[1]}`)}`;
    const either = await finish(app, await kickOff(app, `/fhir/Group/${ward.groupId}/$export?_type=Observation&${both}`, reader), reader);
    expect(idsOf(either.files.Observation)).to.equal([other, ...ward.observations[1]!].sort());

    const since = (await app.request({ method: 'GET', url: `/fhir/Observation/${other}`, headers: app.system })).json.meta.lastUpdated;
    const recent = await finish(app, await kickOff(app, `/fhir/Group/${ward.groupId}/$export?_since=${encodeURIComponent(since)}`, reader), reader);
    expect(Object.keys(recent.files)).to.equal(['Observation']);
    expect(idsOf(recent.files.Observation)).to.equal([other]);
    await app.request({ method: 'DELETE', url: `/fhir/Observation/${other}`, headers: app.system });
  });

  it('exports only what the token may read: its types, and a patient-scoped token only its patient', async () => {
    const observationsOnly = await app.as('system/Observation.rs', { clientId: 'bulk-obs-only' });
    const res = await app.request({ method: 'GET', url: `/fhir/Group/${ward.groupId}/$export?_type=Patient`, headers: { ...ASYNC, ...observationsOnly } });
    expect(res.statusCode).to.equal(403);
    expect(res.json.resourceType).to.equal('OperationOutcome');
    // Left out of a Patient-level export without _type: the types the token may not read.
    const groupless = await finish(app, await kickOff(app, `/fhir/Patient/$export?_typeFilter=${encodeURIComponent(`Observation?subject=Patient/${ward.patients[0]}`)}`, observationsOnly), observationsOnly);
    expect(groupless.manifest.output.map((o: any) => o.type)).to.equal(['Observation']);
    expect(idsOf(groupless.files.Observation)).to.equal([...ward.observations[0]!].sort());

    const patientToken = await app.as('patient/*.rs', { clientId: 'bulk-patient-app', patient: ward.patients[1]! });
    const own = await finish(app, await kickOff(app, `/fhir/Group/${ward.groupId}/$export?_type=Patient,Observation`, patientToken), patientToken);
    expect(idsOf(own.files.Patient)).to.equal([ward.patients[1]!]);
    expect(idsOf(own.files.Observation)).to.equal([...ward.observations[1]!].sort());
  });

  it('refuses bad kick-offs with an OperationOutcome: no respond-async, bad _outputFormat, _since or _type, unknown parameters unless lenient', async () => {
    const url = `/fhir/Group/${ward.groupId}/$export`;
    const refuse = async (path: string, headers: Record<string, string>, status = 400) => {
      const res = await app.request({ method: 'GET', url: path, headers: { ...reader, ...headers } });
      expect(res.statusCode, `${path} ${res.payload}`).to.equal(status);
      expect(res.json.resourceType).to.equal('OperationOutcome');
      // Accepted ones are cancelled at once: this test is about the kick-off, not the export.
      if (status === 202) expect((await app.request({ method: 'DELETE', url: new URL(String(res.headers['content-location'])).pathname, headers: reader })).statusCode).to.equal(202);
    };
    await refuse(url, {});
    await refuse(url, { prefer: 'respond-async' }, 202);
    await refuse(`${url}?_outputFormat=text/csv`, ASYNC);
    await refuse(`${url}?_since=yesterday`, ASYNC);
    await refuse(`${url}?_since=2026-01-01`, ASYNC);
    await refuse(`${url}?_type=Nonsense`, ASYNC);
    await refuse(`${url}?_type=Organization`, ASYNC);
    await refuse(`${url}?_typeFilter=${encodeURIComponent('Observation?nonsense=1')}`, ASYNC);
    await refuse(`${url}?_typeFilter=${encodeURIComponent('Observation?_sort=date')}`, ASYNC);
    await refuse(`${url}?_typeFilter=${encodeURIComponent('Observation?code=1')}&_type=Patient`, ASYNC);
    await refuse(`${url}?_elements=id`, ASYNC);
    await refuse(`${url}?_elements=id`, { ...ASYNC, prefer: 'respond-async, handling=strict' });
    await refuse(`${url}?_elements=id`, { ...ASYNC, prefer: 'respond-async, handling=lenient' }, 202);
    await refuse('/fhir/Group/not-a-group/$export', ASYNC, 404);
    await refuse(url, { ...ASYNC, accept: 'application/xml' }, 406);
    for (const payload of [{ resourceType: 'Parameters', parameter: [{ name: '_since', valueString: 'soon' }] }, { resourceType: 'Parameters', parameter: {} }, { resourceType: 'Parameters', parameter: [{ name: '_type' }] }, { resourceType: 'Patient' }, '{"resourceType":']) {
      const post = await app.request({ method: 'POST', url: '/fhir/Patient/$export', headers: { ...reader, ...ASYNC }, payload });
      expect(post.statusCode, post.payload).to.equal(400);
      expect(post.json.resourceType).to.equal('OperationOutcome');
    }
    await refuse('/fhir/bulk-status/not-a-job', {}, 404);
    await refuse(`/fhir/Group/${ward.groupId}/$export?_typeFilter=Observation`, ASYNC);
    await refuse(`/fhir/Group/${ward.groupId}/$export?_type=`, ASYNC);
    const posted = await app.request({ method: 'POST', url: '/fhir/Patient/$export', headers: { ...reader, ...ASYNC }, payload: { resourceType: 'Parameters', parameter: [{ name: '_type', valueString: 'Patient' }, { name: '_typeFilter', valueString: `Patient?identifier=${ward.system}|p0` }] } });
    expect(posted.statusCode, posted.payload).to.equal(202);
    const { files } = await finish(app, new URL(String(posted.headers['content-location'])).pathname, reader);
    expect(idsOf(files.Patient)).to.equal([ward.patients[0]!]);
  });

  it('shows status and files only to the client that started the job, and a cancelled job is gone (404)', async () => {
    const status = await kickOff(app, `/fhir/Group/${ward.groupId}/$export?_type=Patient`, reader);
    const queued = await app.request({ method: 'GET', url: status, headers: reader });
    expect(queued.statusCode).to.equal(202);
    expect(queued.headers['x-progress']).to.equal('queued');
    expect(queued.headers['retry-after']).to.exist();
    const stranger = await app.as('system/*.rs', { clientId: 'bulk-stranger' });
    expect((await app.request({ method: 'GET', url: status, headers: stranger })).statusCode).to.equal(404);
    expect((await app.request({ method: 'DELETE', url: status, headers: stranger })).statusCode).to.equal(404);
    const { manifest } = await finish(app, status, reader);
    const file = new URL(manifest.output[0].url).pathname;
    expect((await app.request({ method: 'GET', url: file, headers: stranger })).statusCode).to.equal(404);
    expect((await app.request({ method: 'GET', url: file })).statusCode).to.equal(401);
    expect((await app.request({ method: 'GET', url: `${file.replace(/Patient\.ndjson$/, 'Observation.ndjson')}`, headers: reader })).statusCode).to.equal(404);

    const cancel = await app.request({ method: 'DELETE', url: status, headers: reader });
    expect(cancel.statusCode).to.equal(202);
    const gone = await app.request({ method: 'GET', url: status, headers: reader });
    expect(gone.statusCode).to.equal(404);
    expect(gone.json.resourceType).to.equal('OperationOutcome');
    expect((await app.request({ method: 'GET', url: file, headers: reader })).statusCode).to.equal(404);
    const chunks = await app.ctx.db.query('SELECT 1 FROM bulk_export_chunk WHERE job_id = $1', [status.split('/').pop()]);
    expect(chunks.rowCount).to.equal(0);
  });

  it('caps the exports one client has queued or running (BULK_MAX_ACTIVE_JOBS, 3): more is 429 with Retry-After until one ends or is cancelled', async () => {
    const capped = await app.as('system/*.rs', { clientId: 'bulk-capped' });
    const url = '/fhir/Patient/$export?_type=Patient';
    const started = [await kickOff(app, url, capped), await kickOff(app, url, capped), await kickOff(app, url, capped)];
    const busy = await app.request({ method: 'GET', url, headers: { ...ASYNC, ...capped } });
    expect(busy.statusCode, busy.payload).to.equal(429);
    expect(busy.headers['retry-after']).to.exist();
    expect(busy.json.resourceType).to.equal('OperationOutcome');
    expect(busy.json.issue[0].diagnostics).to.contain('BULK_MAX_ACTIVE_JOBS');
    expect((await app.request({ method: 'POST', url: '/fhir/$export', headers: { ...ASYNC, ...capped } })).statusCode).to.equal(429);
    // Another client is not affected, nor another user of the same client.
    await kickOff(app, url, await app.as('system/*.rs', { clientId: 'bulk-capped-other' }));
    await kickOff(app, url, await app.as('system/*.rs', { clientId: 'bulk-capped', fhirUser: 'Practitioner/capped-other-user' }));
    // Cancelling one makes room for one.
    expect((await app.request({ method: 'DELETE', url: started[0]!, headers: capped })).statusCode).to.equal(202);
    started[0] = await kickOff(app, url, capped);
    expect((await app.request({ method: 'GET', url, headers: { ...ASYNC, ...capped } })).statusCode).to.equal(429);
    // Finished jobs do not count.
    await app.bulk.drain();
    for (const status of started) expect((await app.request({ method: 'GET', url: status, headers: capped })).statusCode).to.equal(200);
    await kickOff(app, url, capped);
    await app.bulk.drain();
  });

  it('lets no concurrent kick-offs pass the cap together', async () => {
    const racer = await app.as('system/*.rs', { clientId: 'bulk-racer' });
    const answers = await Promise.all(Array.from({ length: 8 }, () => app.request({ method: 'GET', url: '/fhir/Patient/$export?_type=Patient', headers: { ...ASYNC, ...racer } })));
    expect(answers.map((a) => a.statusCode).sort()).to.equal([202, 202, 202, 429, 429, 429, 429, 429]);
    await app.bulk.drain();
  });
});

describe('Bulk Data export jobs', () => {
  it('survive a restart: a job stopped after one batch is resumed by another process, every resource once', async () => {
    const env = { BULK_POLL_INTERVAL: '0', BULK_BATCH_SIZE: '2', BULK_LEASE: '1s' };
    const first = await startSecuredServer(env);
    const ward = await seedWard(first, 2, 3);
    const reader = await first.as('system/*.rs', { clientId: 'bulk-restart' });
    await first.bulk.drain();
    const status = await kickOff(first, `/fhir/Group/${ward.groupId}/$export?_type=Observation`, reader);
    await first.bulk.drain(1);
    const running = await first.request({ method: 'GET', url: status, headers: reader });
    expect(running.statusCode).to.equal(202);
    expect(running.headers['x-progress']).to.equal('0 of 1 types done, 2 resources written');
    await first.stop();

    const second = await startSecuredServer(env);
    try {
      const again = await second.as('system/*.rs', { clientId: 'bulk-restart' });
      // Until the first worker's lease runs out the job is its own; then anyone resumes it.
      await second.bulk.drain();
      expect((await second.request({ method: 'GET', url: status, headers: again })).statusCode).to.equal(202);
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      const { files } = await finish(second, status, again);
      expect(files.Observation!.map((o) => o.id).sort()).to.equal(ward.observations.flat().sort());
    } finally {
      await second.stop();
    }
  });

  it('expire: after BULK_FILE_TTL the job and its files are deleted', async () => {
    const app = await startSecuredServer({ BULK_POLL_INTERVAL: '0', BULK_FILE_TTL: '1s' });
    try {
      const ward = await seedWard(app, 1, 1);
      const reader = await app.as('system/*.rs', { clientId: 'bulk-expiry' });
      const status = await kickOff(app, `/fhir/Group/${ward.groupId}/$export`, reader);
      const { manifest } = await finish(app, status, reader);
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      expect((await app.request({ method: 'GET', url: status, headers: reader })).statusCode).to.equal(404);
      expect((await app.request({ method: 'GET', url: new URL(manifest.output[0].url).pathname, headers: reader })).statusCode).to.equal(404);
      await app.bulk.drain();
      expect((await app.ctx.db.query('SELECT 1 FROM bulk_export_job WHERE id = $1', [status.split('/').pop()])).rowCount).to.equal(0);
    } finally {
      await app.stop();
    }
  });
});
