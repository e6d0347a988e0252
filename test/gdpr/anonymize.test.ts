import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { pseudonym, purposeKey } from '../../src/kernel/pseudonym';
import { type SecuredServer, startSecuredServer } from '../security/helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const KEY = 'anonymize-suite-pseudonym-key-0123456789abcdef';
const DAY_MS = 86_400_000;
/** Anonymisation pseudonymises with a key of its own, derived from the configured one. */
const ANON_KEY = purposeKey(KEY, 'anonymize');

/**
 * `Patient/{id}/$anonymize`: the record as a pseudonymised copy — keyed pseudonyms for ids,
 * references and identifiers, no names, telecom or address, every date shifted by one offset per
 * patient, clinical values kept — within the caller's rights, and the stored data unchanged.
 */
describe('Patient/$anonymize', () => {
  let app: SecuredServer;
  const id: Record<string, string> = {};

  const observation = (patient: string, when: string, value: number) => ({
    resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }], text: 'Heart rate' },
    subject: { reference: `Patient/${patient}`, display: 'Anna Anonymous' }, effectiveDateTime: when,
    valueQuantity: { value, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
  });

  const anonymize = async (patient: string, headers: Record<string, string>, method: 'GET' | 'POST' = 'GET') =>
    app.request({ method, url: `/fhir/Patient/${patient}/$anonymize`, headers, ...(method === 'POST' ? { payload: { resourceType: 'Parameters' } } : {}) });

  before(async () => {
    app = await startSecuredServer({ PSEUDONYM_KEY: KEY });
    id.anna = await app.create({
      resourceType: 'Patient', name: [{ family: 'Anonymous', given: ['Anna'] }], birthDate: '1950-03-04', gender: 'female',
      identifier: [{ system: 'urn:mrn', value: 'MRN-4711' }], telecom: [{ system: 'phone', value: '+49 30 1234567' }],
      address: [{ line: ['Hauptstr. 1'], city: 'Berlin' }], text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Anna Anonymous</div>' },
    });
    id.first = await app.create(observation(id.anna, '2026-10-01T08:00:00Z', 61));
    id.second = await app.create({ ...observation(id.anna, '2026-10-03T20:30:00Z', 64), note: [{ authorString: 'Nurse Brigitte Kowalski', text: 'Anna says her daughter Clara Anonymous measures it' }] });
    id.other = await app.create({ resourceType: 'Patient', name: [{ family: 'Someoneelse' }] });
    await app.create(observation(id.other, '2026-10-01T08:00:00Z', 99));
  });

  after(async () => {
    await app.stop();
  });

  it('pseudonymises ids, references and identifiers, drops names, telecom, address, narrative and notes, keeps values', async () => {
    const res = await anonymize(id.anna!, app.system);
    expect(res.statusCode, res.payload).to.equal(200);
    const bundle = res.json as fhir4.Bundle;
    expect(bundle.type).to.equal('collection');
    for (const secret of ['Anonymous', 'Anna', 'MRN-4711', '1234567', 'Hauptstr', 'Berlin', id.anna, id.first, id.second, 'Someoneelse', 'Kowalski', 'Clara']) {
      expect(res.payload, secret).to.not.include(secret!);
    }
    const patient = bundle.entry!.map((e) => e.resource!).find((r) => r.resourceType === 'Patient') as fhir4.Patient;
    const observations = bundle.entry!.map((e) => e.resource!).filter((r) => r.resourceType === 'Observation') as fhir4.Observation[];
    expect(observations).to.have.length(2);
    expect(patient.id).to.equal(pseudonym(ANON_KEY, `Patient/${id.anna}`).slice(0, 40));
    expect(patient.identifier).to.equal([{ system: 'urn:mrn', value: pseudonym(ANON_KEY, 'urn:mrn|MRN-4711') }]);
    expect(patient.gender).to.equal('female');
    expect(patient.meta!.security!.map((s) => s.code)).to.include('PSEUDED');
    for (const o of observations) {
      expect(o.subject).to.equal({ reference: `Patient/${patient.id}` });
      expect(o.code).to.equal({ coding: [{ system: 'http://loinc.org', code: '8867-4' }], text: 'Heart rate' });
      expect(o.status).to.equal('final');
    }
    expect(observations.map((o) => o.valueQuantity!.value).sort()).to.equal([61, 64]);
  });

  it('shifts every date by one offset per patient, so intervals stay true, and gives the same copy twice', async () => {
    const first = (await anonymize(id.anna!, app.system)).json as fhir4.Bundle;
    const again = (await anonymize(id.anna!, app.system, 'POST')).json as fhir4.Bundle;
    expect(again.entry).to.equal(first.entry);
    const patient = first.entry!.map((e) => e.resource!).find((r) => r.resourceType === 'Patient') as fhir4.Patient;
    const times = (first.entry!.map((e) => e.resource!).filter((r) => r.resourceType === 'Observation') as fhir4.Observation[])
      .map((o) => Date.parse(o.effectiveDateTime!)).sort();
    const shift = Date.parse(patient.birthDate!) - Date.parse('1950-03-04');
    expect(Math.abs(shift) % DAY_MS).to.equal(0);
    expect(shift).to.not.equal(0);
    expect(Math.abs(shift)).to.be.at.most(365 * DAY_MS);
    expect(times[0]! - shift).to.equal(Date.parse('2026-10-01T08:00:00Z'));
    expect(times[1]! - times[0]!).to.equal(Date.parse('2026-10-03T20:30:00Z') - Date.parse('2026-10-01T08:00:00Z'));
  });

  it('changes nothing stored', async () => {
    const res = await app.request({ method: 'GET', url: `/fhir/Patient/${id.anna}`, headers: app.system });
    expect(res.json.name[0].family).to.equal('Anonymous');
    expect(res.json.meta.versionId).to.equal('1');
  });

  it('holds to the caller rights: another patient is 403 or 404, no read scope 403', async () => {
    const others = await app.as('patient/*.rs', { patient: id.other! });
    expect([403, 404]).to.include((await anonymize(id.anna!, others)).statusCode);
    const none = await app.as('system/Observation.rs');
    const res = await anonymize(id.anna!, none);
    expect(res.statusCode).to.equal(403);
    expect(res.json.resourceType).to.equal('OperationOutcome');
    const own = await anonymize(id.other!, others);
    expect(own.statusCode).to.equal(200);
    expect(own.payload).to.not.include('Someoneelse');
  });

  it('is audited as a disclosure of the patient it was made from, never under the pseudonym', async () => {
    await anonymize(id.anna!, app.system);
    await anonymize(id.anna!, app.system, 'POST');
    await app.audit.flush();
    const auditor = await app.as('system/AuditEvent.rs');
    const search = async (patient: string) => {
      const res = await app.request({ method: 'GET', url: `/fhir/AuditEvent?patient=${patient}&subtype=operation&_count=1000`, headers: auditor });
      expect(res.statusCode, res.payload).to.equal(200);
      return ((res.json as fhir4.Bundle).entry ?? []).map((e) => e.resource as fhir4.AuditEvent);
    };
    const real = await search(id.anna!);
    expect(real.length).to.be.at.least(2);
    expect(await search(pseudonym(ANON_KEY, `Patient/${id.anna}`).slice(0, 40))).to.equal([]);
  });

  it('leaves out a profile known only by its extension: the copy holds no null without its _profile', async () => {
    const masked = { extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/data-absent-reason', valueCode: 'masked' }] };
    const patient = await app.create({
      resourceType: 'Patient', meta: { profile: [null, 'http://example.org/StructureDefinition/p'], _profile: [masked, null] },
      name: [{ family: 'Placeholder', given: [null, 'Pia'], _given: [masked, null] }],
    });
    const res = await anonymize(patient, app.system);
    expect(res.statusCode, res.payload).to.equal(200);
    const copy = (res.json as fhir4.Bundle).entry!.map((e) => e.resource!).find((r) => r.resourceType === 'Patient')!;
    expect(copy.meta!.profile).to.equal(['http://example.org/StructureDefinition/p']);
    expect(res.payload).to.not.include('Pia');
  });

  it('is 501 without a pseudonym key', async () => {
    const keyless = await startSecuredServer();
    try {
      const headers = await keyless.as('system/*.rs');
      const res = await keyless.request({ method: 'GET', url: `/fhir/Patient/${id.anna}/$anonymize`, headers });
      expect(res.statusCode).to.equal(501);
      expect(res.json.resourceType).to.equal('OperationOutcome');
    } finally {
      await keyless.stop();
    }
  });
});
