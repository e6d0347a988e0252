import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { createResource, searchAll, startTestServer, type TestServer, unique } from '../helpers/server';
import { type SecuredServer, startSecuredServer } from '../security/helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const LOINC = 'http://loinc.org';

/** An Observation of `code` on `date` whose subject is `subject` (a Reference by identifier, literal, or both). */
const reading = (code: string, date: string, subject: fhir4.Reference) => ({
  resourceType: 'Observation', status: 'final', code: { coding: [{ system: LOINC, code }] }, effectiveDateTime: date, subject,
});

/**
 * R4 search.html, reference parameters: `subject:identifier=system|value` matches resources whose
 * Reference carries that identifier, in the token forms (`system|value`, `|value`, `value`,
 * `system|`). Device gateways that know a patient's MRN, not the server's id, send references by
 * identifier and search them so (decision 035).
 */
describe('reference search by identifier (:identifier)', () => {
  let app: TestServer;
  let patient: string;
  const mrn = `urn:test:mrn:${unique('sys')}`;
  const other = `urn:test:other:${unique('sys')}`;
  const [v1, v2, v3] = [unique('v1'), unique('v2'), unique('v3')];
  const obs: Record<string, string> = {};

  before(async () => {
    app = await startTestServer();
    patient = await createResource(app, { resourceType: 'Patient', identifier: [{ system: mrn, value: v1 }] });
    const fixtures: Record<string, ReturnType<typeof reading>> = {
      onlyId: reading('8867-4', '2026-01-01T10:00:00Z', { identifier: { system: mrn, value: v1 } }),
      both: reading('29463-7', '2026-02-01T10:00:00Z', { reference: `Patient/${patient}`, identifier: { system: mrn, value: v1 } }),
      otherSystem: reading('8867-4', '2026-01-01T10:00:00Z', { identifier: { system: other, value: v1 } }),
      noSystem: reading('8867-4', '2026-01-01T10:00:00Z', { identifier: { value: v2 } }),
      typedPatient: reading('8867-4', '2026-01-01T10:00:00Z', { type: 'Patient', identifier: { system: mrn, value: v2 } }),
      typedDevice: reading('8867-4', '2026-01-01T10:00:00Z', { type: 'Device', identifier: { system: mrn, value: v3 } }),
      literalOnly: reading('8867-4', '2026-01-01T10:00:00Z', { reference: `Patient/${patient}` }),
    };
    for (const [name, resource] of Object.entries(fixtures)) obs[name] = await createResource(app, resource);
  });
  after(() => app?.stop());

  const ids = async (query: string) => (await searchAll(app, `/fhir/Observation?${query}`)).filter((r) => r.resourceType === 'Observation').map((r) => r.id as string).sort();
  const of = (...names: string[]) => names.map((n) => obs[n]!).sort();
  const q = (param: string, value: string) => `${param}=${encodeURIComponent(value)}`;

  it('matches system|value, |value, value and system| as a token search does', async () => {
    expect(await ids(q('subject:identifier', `${mrn}|${v1}`))).to.equal(of('onlyId', 'both'));
    expect(await ids(q('subject:identifier', `|${v2}`))).to.equal(of('noSystem'));
    expect(await ids(q('subject:identifier', v1))).to.equal(of('onlyId', 'both', 'otherSystem'));
    expect(await ids(q('subject:identifier', `${mrn}|`))).to.equal(of('onlyId', 'both', 'typedPatient', 'typedDevice'));
  });

  it('ORs a list, and finds nothing under another system', async () => {
    expect(await ids(q('subject:identifier', `${mrn}|${v2},${other}|${v1}`))).to.equal(of('otherSystem', 'typedPatient'));
    expect(await ids(q('subject:identifier', `urn:test:nope|${v1}`))).to.equal([]);
    expect(await ids(q('subject:identifier', `${other}|${v2}`))).to.equal([]);
  });

  it('patient:identifier takes references that name a Patient, literally or by Reference.type', async () => {
    expect(await ids(q('patient:identifier', `${mrn}|${v1}`))).to.equal(of('both'));
    expect(await ids(q('patient:identifier', `${mrn}|`))).to.equal(of('both', 'typedPatient'));
    expect(await ids(q('patient:identifier', v3))).to.equal([]);
  });

  it('combines with other parameters', async () => {
    expect(await ids(`${q('subject:identifier', `${mrn}|${v1}`)}&code=${LOINC}|8867-4`)).to.equal(of('onlyId'));
    expect(await ids(`${q('subject:identifier', `${mrn}|${v1}`)}&date=ge2026-02-01`)).to.equal(of('both'));
    expect(await ids(`${q('subject:identifier', `${mrn}|${v1}`)}&patient=${patient}`)).to.equal(of('both'));
    expect(await ids(`patient=${patient}&${q('subject:identifier', v1)}&_sort=-date`)).to.equal(of('both'));
  });

  it('follows an update: the old identifier no longer matches', async () => {
    const id = await createResource(app, reading('8867-4', '2026-03-01T10:00:00Z', { identifier: { system: mrn, value: unique('before') } }));
    const value = unique('after');
    const res = await app.request({ method: 'PUT', url: `/fhir/Observation/${id}`, payload: { id, ...reading('8867-4', '2026-03-01T10:00:00Z', { identifier: { system: mrn, value } }) } });
    expect(res.statusCode, res.payload).to.equal(200);
    expect(await ids(q('subject:identifier', `${mrn}|${value}`))).to.equal([id]);
  });

  it('is a 400 on a parameter that is not a reference, and other modifiers list it', async () => {
    const bad = await app.request({ method: 'GET', url: '/fhir/Observation?code:identifier=x' });
    expect(bad.statusCode).to.equal(400);
    const exact = await app.request({ method: 'GET', url: '/fhir/Observation?subject:exact=x' });
    expect(exact.statusCode).to.equal(400);
    expect(exact.json.issue[0].diagnostics).to.contain(':identifier');
    const chained = await app.request({ method: 'GET', url: '/fhir/Observation?subject:identifier.name=x' });
    expect(chained.statusCode).to.equal(400);
  });
});

/**
 * An identifier-only reference names no Patient of this server, so it puts a resource in no
 * patient's compartment: a patient token must not reach, by an identifier it knows, data outside
 * its compartment (decisions 006, 031, 035).
 */
describe('reference search by identifier under a patient token', () => {
  let app: SecuredServer;
  let alice: string;
  let bob: string;
  const mrn = `urn:test:mrn:${unique('sys')}`;
  const aliceMrn = unique('alice');
  const found: Record<'own' | 'identifierOnly' | 'bobs', string> = { own: '', identifierOnly: '', bobs: '' };

  before(async () => {
    app = await startSecuredServer();
    alice = await app.create({ resourceType: 'Patient', identifier: [{ system: mrn, value: aliceMrn }] });
    bob = await app.create({ resourceType: 'Patient' });
    found.own = await app.create(reading('8867-4', '2026-01-01T10:00:00Z', { reference: `Patient/${alice}`, identifier: { system: mrn, value: aliceMrn } }));
    found.identifierOnly = await app.create(reading('8867-4', '2026-01-01T10:00:00Z', { identifier: { system: mrn, value: aliceMrn } }));
    // Bob's reading carrying alice's MRN (a mislabelled feed): bob's compartment, not alice's.
    found.bobs = await app.create(reading('8867-4', '2026-01-01T10:00:00Z', { reference: `Patient/${bob}`, identifier: { system: mrn, value: aliceMrn } }));
  });
  after(() => app?.stop());

  const ids = async (url: string, headers: Record<string, string>) => {
    const res = await app.request({ method: 'GET', url, headers });
    expect(res.statusCode, res.payload).to.equal(200);
    return ((res.json.entry ?? []) as Array<{ resource: { id: string } }>).map((e) => e.resource.id).sort();
  };

  it('finds only what is in the token\'s compartment', async () => {
    const token = await app.as('patient/Observation.rs', { patient: alice });
    const value = encodeURIComponent(`${mrn}|${aliceMrn}`);
    expect(await ids(`/fhir/Observation?subject:identifier=${value}`, token)).to.equal([found.own]);
    expect(await ids(`/fhir/Observation?patient:identifier=${value}`, token)).to.equal([found.own]);
    expect(await ids(`/fhir/Observation?subject:identifier=${value}`, app.system)).to.equal(Object.values(found).sort());
    for (const id of [found.identifierOnly, found.bobs]) {
      expect((await app.request({ method: 'GET', url: `/fhir/Observation/${id}`, headers: token })).statusCode).to.equal(404);
    }
  });

  it('may not write a reading that names its patient by identifier only', async () => {
    const token = await app.as('patient/Observation.crus', { patient: alice });
    const res = await app.request({ method: 'POST', url: '/fhir/Observation', headers: token, payload: reading('8867-4', '2026-01-01T10:00:00Z', { identifier: { system: mrn, value: aliceMrn } }) });
    expect(res.statusCode, res.payload).to.equal(403);
  });
});
