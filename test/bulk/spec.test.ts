import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { type SecuredServer, startSecuredServer } from '../security/helpers';
import { actor, consent, observation as categorised, VITAL_SIGNS } from '../helpers/consent';
import { ASYNC, finish, idsOf, kickOff, observation, seedWard, type Ward } from './helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * Bulk Data Access v2.0.0 (export.md, "Privacy and Security Considerations": only data the
 * client is authorized to see) probed over HTTP: what an export holds is what the same token's
 * search would show (scopes v1 and v2, granular scopes, Consent denies), what a level holds is
 * its reference set, and every kick-off and download leaves an AuditEvent.
 */
describe('Bulk Data export: against the IG, over HTTP', () => {
  let app: SecuredServer;
  let ward: Ward;

  before(async () => {
    app = await startSecuredServer({ BULK_POLL_INTERVAL: '0' });
    ward = await seedWard(app, 2, 2);
  });
  after(() => app.stop());

  /** What a search of `path` shows `who`: every id, all pages. */
  async function searched(path: string, who: Record<string, string>): Promise<string[]> {
    const res = await app.request({ method: 'GET', url: `${path}${path.includes('?') ? '&' : '?'}_count=1000&_elements=id`, headers: who });
    expect(res.statusCode, res.payload).to.equal(200);
    expect(res.json.link?.find((l: any) => l.relation === 'next')).to.not.exist();
    return idsOf((res.json.entry ?? []).map((e: any) => e.resource));
  }

  it('holds what the same token\'s search shows when a Consent denies its client a patient\'s vital signs', async () => {
    const clientId = 'bulk-consent-denied';
    const [alice, bob] = ward.patients as [string, string];
    const vitals = await app.create(categorised(alice, '8867-4', 'vital-signs'));
    const labs = await app.create(categorised(alice, '2345-7', 'laboratory'));
    const deny = await app.create(consent(alice, { type: 'deny', actor: [{ ...actor('Practitioner/unused'), reference: { identifier: { system: 'urn:ietf:params:oauth:client-id', value: clientId } } }], class: [VITAL_SIGNS] }));
    try {
      const token = await app.as('system/*.rs', { clientId });
      const shown = await searched(`/fhir/Observation?subject=Patient/${alice}`, token);
      expect(shown).to.include(labs);
      expect(shown).to.not.include(vitals);
      const { files } = await finish(app, await kickOff(app, `/fhir/Group/${ward.groupId}/$export?_type=Observation`, token), token);
      const ofAlice = idsOf(files.Observation!.filter((o) => o.subject.reference === `Patient/${alice}`));
      expect(ofAlice).to.include(labs);
      expect(ofAlice).to.not.include(vitals);
      expect(ofAlice).to.equal(shown);
      // The deny covers one patient's vital signs: another's are exported whole.
      expect(idsOf(files.Observation!.filter((o) => o.subject.reference === `Patient/${bob}`))).to.equal([...ward.observations[1]!].sort());
    } finally {
      await app.request({ method: 'DELETE', url: `/fhir/Consent/${deny}`, headers: app.system });
      for (const id of [vitals, labs]) await app.request({ method: 'DELETE', url: `/fhir/Observation/${id}`, headers: app.system });
    }
  });

  it('holds what the same token\'s search shows when a Consent denies its user a patient\'s data', async () => {
    const [alice] = ward.patients as [string];
    const doctor = await app.create({ resourceType: 'Practitioner', name: [{ family: 'Bulkdenied' }] });
    const deny = await app.create(consent(alice, { type: 'deny', actor: [actor(`Practitioner/${doctor}`)] }));
    try {
      const token = await app.as('user/*.rs', { clientId: 'bulk-consent-user', fhirUser: `Practitioner/${doctor}` });
      expect(await searched(`/fhir/Observation?subject=Patient/${alice}`, token)).to.equal([]);
      // The ward's Group names Alice, so the deny hides it too (404, as its read): export by Patient.
      const { files } = await finish(app, await kickOff(app, '/fhir/Patient/$export?_type=Patient,Observation', token), token);
      expect(idsOf(files.Patient)).to.not.include(alice);
      expect(idsOf(files.Patient)).to.include(ward.patients[1]!);
      expect(files.Observation!.filter((o) => o.subject.reference === `Patient/${alice}`)).to.equal([]);
      expect(idsOf(files.Observation)).to.include(ward.observations[1]!);
    } finally {
      await app.request({ method: 'DELETE', url: `/fhir/Consent/${deny}`, headers: app.system });
    }
  });

  it('gives a caregiver only what the patient\'s Consent permits them, as their search does', async () => {
    const [alice] = ward.patients as [string];
    const vitals = await app.create(categorised(alice, '8867-4', 'vital-signs'));
    const labs = await app.create(categorised(alice, '2345-7', 'laboratory'));
    const carer = await app.create({ resourceType: 'RelatedPerson', active: true, patient: { reference: `Patient/${alice}` }, name: [{ family: 'Bulkcarer' }] });
    const permit = await app.create(consent(alice, { type: 'permit', actor: [actor(`RelatedPerson/${carer}`)], class: [VITAL_SIGNS] }));
    try {
      const token = await app.as('patient/*.rs', { clientId: 'bulk-caregiver-app', patient: alice, fhirUser: `RelatedPerson/${carer}` });
      const shown = await searched('/fhir/Observation', token);
      expect(shown).to.equal([vitals]);
      const { files } = await finish(app, await kickOff(app, '/fhir/Patient/$export?_type=Observation', token), token);
      expect(idsOf(files.Observation)).to.equal(shown);
      expect(idsOf(files.Observation)).to.not.include(labs);

      // The permit withdrawn between kick-off and run: the export completes, with none of it.
      const status = await kickOff(app, '/fhir/Patient/$export?_type=Observation', token);
      expect((await app.request({ method: 'DELETE', url: `/fhir/Consent/${permit}`, headers: app.system })).statusCode).to.equal(204);
      const withdrawn = await finish(app, status, token);
      expect(withdrawn.manifest.output).to.equal([]);
      expect(withdrawn.manifest.error).to.equal([]);
    } finally {
      await app.request({ method: 'DELETE', url: `/fhir/Consent/${permit}`, headers: app.system });
      for (const id of [vitals, labs]) await app.request({ method: 'DELETE', url: `/fhir/Observation/${id}`, headers: app.system });
    }
  });

  it('keeps to granular scopes and v1 scopes: system/Observation.rs?category=… gets that category only, system/*.read reads all', async () => {
    const [alice] = ward.patients as [string];
    const vitals = await app.create(categorised(alice, '8867-4', 'vital-signs'));
    const labs = await app.create(categorised(alice, '2345-7', 'laboratory'));
    try {
      const granular = await app.as(`system/Observation.rs?category=${encodeURIComponent(`${VITAL_SIGNS.system}|${VITAL_SIGNS.code}`)}`, { clientId: 'bulk-granular' });
      const { manifest, files } = await finish(app, await kickOff(app, '/fhir/$export', granular), granular);
      expect(manifest.output.map((o: any) => o.type)).to.equal(['Observation']);
      expect(idsOf(files.Observation)).to.include(vitals);
      expect(idsOf(files.Observation)).to.not.include(labs);
      expect(idsOf(files.Observation)).to.equal(await searched('/fhir/Observation', granular));

      const v1 = await app.as('system/*.read', { clientId: 'bulk-v1' });
      const all = await finish(app, await kickOff(app, `/fhir/Group/${ward.groupId}/$export?_type=Patient,Observation`, v1), v1);
      expect(idsOf(all.files.Patient)).to.equal([...ward.patients].sort());
      expect(idsOf(all.files.Observation)).to.include([vitals, labs, ...ward.observations.flat()]);
    } finally {
      for (const id of [vitals, labs]) await app.request({ method: 'DELETE', url: `/fhir/Observation/${id}`, headers: app.system });
    }
  });

  it('a system/Observation.rs token gets no Patients at system level, and 403 for a named one', async () => {
    const observations = await app.as('system/Observation.rs', { clientId: 'bulk-obs-system' });
    const { manifest } = await finish(app, await kickOff(app, '/fhir/$export', observations), observations);
    expect(manifest.output.map((o: any) => o.type)).to.equal(['Observation']);
    const named = await app.request({ method: 'GET', url: '/fhir/$export?_type=Observation,Patient', headers: { ...ASYNC, ...observations } });
    expect(named.statusCode).to.equal(403);
    expect(named.json.resourceType).to.equal('OperationOutcome');
  });

  it('a Patient-level export holds the Patient compartment only; a Group-level one its members only', async () => {
    const outsider = await app.create({ resourceType: 'Patient', name: [{ family: 'Bulkoutsider' }] });
    const outsiderObs = await app.create(observation(ward.system, outsider, '8867-4', 80));
    const practitioner = await app.create({ resourceType: 'Practitioner', name: [{ family: 'Bulknotcompartment' }] });
    const reader = await app.as('system/*.rs', { clientId: 'bulk-levels' });
    try {
      const patientLevel = await finish(app, await kickOff(app, '/fhir/Patient/$export', reader), reader);
      expect(patientLevel.manifest.output.map((o: any) => o.type)).to.not.include(['Practitioner', 'Organization', 'Group']);
      expect(idsOf(patientLevel.files.Observation)).to.include([outsiderObs, ...ward.observations.flat()]);
      const refused = await app.request({ method: 'GET', url: '/fhir/Patient/$export?_type=Practitioner', headers: { ...ASYNC, ...reader } });
      expect(refused.statusCode).to.equal(400);

      const group = await finish(app, await kickOff(app, `/fhir/Group/${ward.groupId}/$export`, reader), reader);
      expect(idsOf(group.files.Patient)).to.equal([...ward.patients].sort());
      expect(idsOf(group.files.Observation)).to.not.include(outsiderObs);
      expect(idsOf(group.files.Practitioner)).to.not.include(practitioner);

      const system = await finish(app, await kickOff(app, '/fhir/$export?_type=Practitioner', reader), reader);
      expect(idsOf(system.files.Practitioner)).to.include(practitioner);
    } finally {
      await app.request({ method: 'DELETE', url: `/fhir/Observation/${outsiderObs}`, headers: app.system });
    }
  });

  it('leaves out resources deleted before the kick-off, and versions older than _since', async () => {
    const [alice] = ward.patients as [string];
    const gone = await app.create(observation(ward.system, alice, '8867-4', 81));
    const old = await app.create(observation(ward.system, alice, '8867-4', 82));
    const read = async (id: string) => (await app.request({ method: 'GET', url: `/fhir/Observation/${id}`, headers: app.system })).json;
    await new Promise((resolve) => setTimeout(resolve, 5));
    const since = new Date().toISOString();
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect((await app.request({ method: 'DELETE', url: `/fhir/Observation/${gone}`, headers: app.system })).statusCode).to.equal(204);
    const updated = await app.create(observation(ward.system, alice, '8867-4', 83));
    const reader = await app.as('system/*.rs', { clientId: 'bulk-since' });
    const all = await finish(app, await kickOff(app, `/fhir/Group/${ward.groupId}/$export?_type=Observation`, reader), reader);
    expect(idsOf(all.files.Observation)).to.not.include(gone);
    expect(idsOf(all.files.Observation)).to.include([old, updated]);
    const recent = await finish(app, await kickOff(app, `/fhir/Group/${ward.groupId}/$export?_type=Observation&_since=${encodeURIComponent(since)}`, reader), reader);
    expect(idsOf(recent.files.Observation)).to.equal([updated]);
    expect((await read(old)).meta.lastUpdated < since).to.be.true();
    for (const id of [old, updated]) await app.request({ method: 'DELETE', url: `/fhir/Observation/${id}`, headers: app.system });
  });

  it('narrows a Patient- or Group-level export to the patients a POST names (patient); refuses it elsewhere, and names it cannot honour', async () => {
    const [alice, bob] = ward.patients as [string, string];
    const outsider = await app.create({ resourceType: 'Patient', name: [{ family: 'Bulknotmember' }] });
    const reader = await app.as('system/*.rs', { clientId: 'bulk-patient-param' });
    const body = (...patients: string[]) => ({ resourceType: 'Parameters', parameter: [{ name: '_type', valueString: 'Patient,Observation' }, ...patients.map((p) => ({ name: 'patient', valueReference: { reference: p } }))] });
    const post = (url: string, payload: object, headers: Record<string, string> = reader) => app.request({ method: 'POST', url, headers: { ...ASYNC, ...headers }, payload });
    const exported = async (url: string, payload: object) => {
      const res = await post(url, payload);
      expect(res.statusCode, res.payload).to.equal(202);
      return (await finish(app, new URL(String(res.headers['content-location'])).pathname, reader)).files;
    };

    const one = await exported('/fhir/Patient/$export', body(`Patient/${alice}`));
    expect(idsOf(one.Patient)).to.equal([alice]);
    expect(idsOf(one.Observation)).to.equal([...ward.observations[0]!].sort());
    const both = await exported(`/fhir/Group/${ward.groupId}/$export`, body(`Patient/${alice}`, `Patient/${bob}`));
    expect(idsOf(both.Patient)).to.equal([alice, bob].sort());
    const member = await exported(`/fhir/Group/${ward.groupId}/$export`, body(`Patient/${bob}`));
    expect(idsOf(member.Patient)).to.equal([bob]);
    expect(idsOf(member.Observation)).to.equal([...ward.observations[1]!].sort());

    const refused = async (res: Awaited<ReturnType<typeof post>>, why: string) => {
      expect(res.statusCode, `${why}: ${res.payload}`).to.equal(400);
      expect(res.json.resourceType).to.equal('OperationOutcome');
      expect(res.json.issue[0].expression).to.equal(['patient']);
    };
    await refused(await post(`/fhir/Group/${ward.groupId}/$export`, body(`Patient/${outsider}`)), 'not a member');
    await refused(await post('/fhir/Patient/$export', body('Patient/no-such-patient')), 'unknown');
    await refused(await post('/fhir/Patient/$export', body('Observation/1')), 'not a Patient');
    await refused(await post('/fhir/$export', body(`Patient/${alice}`)), 'system level');
    const ownPatient = await app.as('patient/*.rs', { clientId: 'bulk-patient-param-app', patient: bob });
    await refused(await post('/fhir/Patient/$export', body(`Patient/${alice}`), ownPatient), 'another patient than the token\'s');
    // In a query string it is refused, even when lenient: ignored, it would export every patient.
    for (const prefer of ['respond-async', 'respond-async, handling=lenient']) {
      const res = await app.request({ method: 'GET', url: `/fhir/Patient/$export?patient=Patient/${alice}`, headers: { ...reader, ...ASYNC, prefer } });
      await refused(res, prefer);
    }
  });

  it('refuses at kick-off (403) a _typeFilter that reaches a type the token may not search, rather than failing the job', async () => {
    const observations = await app.as('system/Observation.rs', { clientId: 'bulk-typefilter-reach' });
    const patients = await app.as('system/Patient.rs', { clientId: 'bulk-typefilter-reach' });
    for (const [filter, token] of [['Observation?subject:Patient.name=Ward0', observations], ['Patient?_has:Observation:subject:code=8867-4', patients]] as const) {
      const type = filter.split('?')[0];
      const res = await app.request({ method: 'GET', url: `/fhir/$export?_type=${type}&_typeFilter=${encodeURIComponent(filter)}`, headers: { ...ASYNC, ...token } });
      expect(res.statusCode, `${filter}: ${res.payload}`).to.equal(403);
      expect(res.json.resourceType).to.equal('OperationOutcome');
    }
    await app.bulk.drain();
  });

  it('audits the kick-off and each file download (AuditEvent with the request id), the download once per patient its file disclosed', async () => {
    const from = new Date(Date.now() - 1000).toISOString();
    const reader = await app.as('system/*.rs', { clientId: 'bulk-audited' });
    const auditor = await app.as('system/AuditEvent.rs', { clientId: 'bulk-auditor' });
    const started = await app.request({ method: 'GET', url: `/fhir/Group/${ward.groupId}/$export?_type=Observation`, headers: { ...ASYNC, ...reader } });
    expect(started.statusCode).to.equal(202);
    const status = new URL(String(started.headers['content-location'])).pathname;
    await app.bulk.drain();
    const manifest = (await app.request({ method: 'GET', url: status, headers: reader })).json;
    const download = await app.request({ method: 'GET', url: new URL(manifest.output[0].url).pathname, headers: reader });
    expect(download.statusCode).to.equal(200);
    await app.audit.flush();
    const res = await app.request({ method: 'GET', url: `/fhir/AuditEvent?_count=1000&date=ge${encodeURIComponent(from)}`, headers: auditor });
    expect(res.statusCode, res.payload).to.equal(200);
    const events: fhir4.AuditEvent[] = (res.json.entry ?? []).map((e: any) => e.resource as fhir4.AuditEvent);
    const of = (requestId: unknown) => events.find((e: fhir4.AuditEvent) => e.entity?.some((x) => x.type?.code === 'XrequestId' && x.what?.identifier?.value === requestId));
    const kickOffEvent = of(started.headers['x-request-id']);
    expect(kickOffEvent, 'kick-off audited').to.exist();
    expect(kickOffEvent!.outcome).to.equal('0');
    const downloadEvent = of(download.headers['x-request-id']);
    expect(downloadEvent, 'download audited').to.exist();
    expect(downloadEvent!.outcome).to.equal('0');
    // BALP: a disclosure names its patients, one event each, as a search's does.
    const downloaded = events.filter((e) => e.entity?.some((x) => x.type?.code === 'XrequestId' && x.what?.identifier?.value === download.headers['x-request-id']));
    const named = downloaded.flatMap((e) => (e.entity ?? []).filter((x) => x.role?.code === '1').map((x) => x.what?.reference));
    expect(named.sort()).to.equal(ward.patients.map((p) => `Patient/${p}`).sort());
  });
});
