import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { supportedTypes } from '../../src/kernel/resource-types';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { interopDir, interopFiles } from '../helpers/interop';
import { startTestServer, type TestServer, withoutServerMeta } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * The numbers of a JSON text as written, sorted (stored JSON orders keys its own way). A number
 * written with an exponent, or one a double writes with one, is compared by value: PostgreSQL's
 * jsonb keeps a decimal's digits and scale, not its notation (docs/decisions/028).
 */
function decimalsOf(json: string): string[] {
  const texts: string[] = [];
  for (const m of json.matchAll(/"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g)) {
    if (m[0].startsWith('"')) continue;
    const value = Number(m[0]);
    texts.push(/[eE]/.test(m[0]) || /e/.test(String(value)) ? `value ${value}` : m[0]);
  }
  return texts.sort();
}

/** Stored faithfully: what comes back is what was sent, but for the server's meta fields, decimals as written. */
describe('real R4 data written by others is accepted and stored faithfully', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
  });
  after(() => app.stop());

  // The corpus ships the R4 spec examples of the monitoring types (named, so examples gone
  // missing fail here rather than quietly testing less); `npm run r4-examples` stores the
  // official package's examples of every type.
  const corpusTypes = ['Bundle', 'CarePlan', 'Device', 'DeviceUseStatement', 'Flag', 'Goal', 'MedicationRequest', 'Observation', 'Patient', 'Practitioner', 'SearchParameter'];
  it('has the R4 spec examples of the monitoring types, each of a supported type', () => {
    expect(readdirSync(join(interopDir, 'r4-spec-examples')).sort()).to.equal(corpusTypes);
    // The SearchParameter folder holds a Bundle of SearchParameters (searchParams-subset.json),
    // stored as a Bundle: SearchParameter itself is served, not stored (decision 043).
    const stored = corpusTypes.flatMap((t) => interopFiles(`r4-spec-examples/${t}`).map(({ json }) => json.resourceType as string));
    expect(stored.filter((t) => !supportedTypes.includes(t))).to.equal([]);
  });
  for (const type of corpusTypes) {
    it(`stores every R4 spec example of ${type} at its own id and reads it back unchanged`, async () => {
      const examples = interopFiles(`r4-spec-examples/${type}`);
      expect(examples).to.not.be.empty();
      for (const { file, json, text } of examples) {
        // A folder may hold a Bundle of its type's examples (SearchParameter/searchParams-subset.json).
        const put = await app.request({ method: 'PUT', url: `/fhir/${json.resourceType}/${json.id}`, payload: text, headers: { 'content-type': 'application/fhir+json' } });
        expect(put.statusCode, `${file}: ${put.payload.slice(0, 300)}`).to.be.within(200, 201);
        const read = await app.request({ method: 'GET', url: `/fhir/${json.resourceType}/${json.id}` });
        expect(withoutServerMeta(read.json), file).to.equal(withoutServerMeta(json));
        expect(decimalsOf(read.payload), file).to.equal(decimalsOf(text));
      }
    });
  }

  // Examples written independently reuse device identifiers; here, one identifier names one
  // live Device (a device door files readings under it), so the later example is refused until
  // the earlier one is gone.
  const sharedIdentifiers: Record<string, string[]> = {
    'device-observations/hl7-phd-stu2': ['phg-example.json claims the system id of phg-ecde3d4e58532d31.000000000000'],
    'device-observations/us-core': ['Device-knee.json claims the serial number AC221 of ACME Biomedical of udi-2'],
  };
  for (const folder of ['device-observations/hl7-phd-stu2', 'device-observations/us-core']) {
    it(`stores the ${folder} examples of supported types unchanged`, async () => {
      const examples = interopFiles(folder).filter(({ json }) => supportedTypes.includes(json.resourceType));
      expect(examples).to.not.be.empty();
      const refused: string[] = [];
      for (const { file, json, text } of examples) {
        const putText = () => app.request({ method: 'PUT', url: `/fhir/${json.resourceType}/${json.id}`, payload: text, headers: { 'content-type': 'application/fhir+json' } });
        let put = await putText();
        const holder = put.statusCode === 409 ? /already names Device\/([A-Za-z0-9.-]+)/.exec(put.json.issue[0].diagnostics)?.[1] : undefined;
        if (holder) {
          refused.push(`${file} claims the ${/serial number/.test(put.json.issue[0].diagnostics) ? `serial number ${json.serialNumber} of ${json.manufacturer}` : 'system id'} of ${holder}`);
          expect((await app.request({ method: 'DELETE', url: `/fhir/Device/${holder}` })).statusCode).to.equal(204);
          put = await putText();
        }
        expect(put.statusCode, `${file}: ${put.payload.slice(0, 300)}`).to.be.within(200, 201);
        const read = await app.request({ method: 'GET', url: `/fhir/${json.resourceType}/${json.id}` });
        expect(withoutServerMeta(read.json), file).to.equal(withoutServerMeta(json));
        expect(decimalsOf(read.payload), file).to.equal(decimalsOf(text));
      }
      expect(refused).to.equal(sharedIdentifiers[folder]);
    });
  }
});

/** JSON forms of R4 (json.html) that real senders write, each stored and served as sent. */
describe('the R4 JSON forms others write are stored as written', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
  });
  after(() => app.stop());

  const put = (type: string, body: Record<string, unknown>) =>
    app.request({ method: 'PUT', url: `/fhir/${type}/${body.id as string}`, payload: JSON.stringify(body), headers: { 'content-type': 'application/fhir+json' } });
  const roundTrip = async (type: string, body: Record<string, unknown>) => {
    const res = await put(type, body);
    expect(res.statusCode, res.payload.slice(0, 400)).to.be.within(200, 201);
    const read = await app.request({ method: 'GET', url: `/fhir/${type}/${body.id as string}` });
    expect(withoutServerMeta(read.json)).to.equal(body);
    return read;
  };
  const extension = (value: string) => ({ extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/data-absent-reason', valueCode: value }] });

  // json.html#primitive: "when one of the repeating elements has no value, it is represented in
  // the first array using a null. When an element has a value but no extension/id, the second
  // array will have a null at the position of that element."
  it('keeps a null that holds the place of an item beside its _ companion, in resources, contained ones and meta', async () => {
    const patient = {
      resourceType: 'Patient', id: 'placeholders',
      name: [{ family: 'Chalmers', given: ['Peter', null, 'James'], _given: [null, { id: 'g2', ...extension('masked') }, null] }],
      address: [{ line: [null, '534 Erewhon St'], _line: [extension('masked'), null], city: 'PleasantVille' }],
    };
    await roundTrip('Patient', patient);
    const found = await app.request({ method: 'GET', url: '/fhir/Patient?given=James&_elements=name' });
    expect(found.json.entry.map((e: { resource: { id: string } }) => e.resource.id)).to.equal(['placeholders']);
    const subset = await app.request({ method: 'GET', url: '/fhir/Patient/placeholders?_elements=name' });
    expect(subset.json.name).to.equal(patient.name);

    // A profile known only by its extension: not a profile to judge against (this was a 500).
    await roundTrip('Observation', {
      resourceType: 'Observation', id: 'profile-placeholder',
      meta: { profile: ['http://hl7.org/fhir/StructureDefinition/vitalsigns', null], _profile: [null, extension('unknown')] },
      contained: [{ resourceType: 'Patient', id: 'p', name: [{ given: [null, 'X'], _given: [extension('masked'), null] }] }],
      status: 'final', category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
      code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] }, subject: { reference: '#p' }, effectiveDateTime: '2026-12-01T10:00:00Z',
      valueQuantity: { value: 72, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
    });
    const timing = { event: ['2026-12-08T08:00:00Z', null], _event: [null, extension('unknown')] };
    await roundTrip('MedicationRequest', {
      resourceType: 'MedicationRequest', id: 'event-placeholder', status: 'active', intent: 'order',
      medicationCodeableConcept: { text: 'x' }, subject: { reference: 'Patient/placeholders' }, dosageInstruction: [{ timing }],
    });
  });

  it('refuses a null with nothing beside it: no value, no companion item', async () => {
    for (const name of [{ given: ['Peter', null] }, { given: ['Peter', null], _given: [null, null] }, { given: ['Peter', null], _given: [extension('masked')] }]) {
      const res = await put('Patient', { resourceType: 'Patient', id: 'lone-null', name: [name] });
      expect(res.statusCode, JSON.stringify(name)).to.equal(400);
      expect(res.json.issue.map((i: { expression: string[] }) => i.expression[0])).to.include('Patient.name[0].given[1]');
    }
    expect((await app.request({ method: 'GET', url: '/fhir/Patient/lone-null' })).statusCode).to.equal(404);
  });

  it('keeps primitive extensions, contained resources, meta, narrative and every kind of character', async () => {
    await roundTrip('Patient', {
      resourceType: 'Patient', id: 'forms',
      meta: { profile: ['http://example.org/StructureDefinition/p'], security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' }], tag: [{ system: 'urn:x', code: 't1', display: 'T one' }], source: 'urn:src#1' },
      text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml"><p>Hello <b>wörld</b> &amp; 𝒜<br/></p></div>' },
      birthDate: '1970-03-30',
      _birthDate: { id: 'bd', extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/patient-birthTime', valueDateTime: '1970-03-30T08:30:00+01:00' }] },
      // Precomposed and combining ë, mathematical script capitals (astral plane), a ZWJ emoji family.
      name: [{ family: 'Nguyễn', given: ['Zoë', 'Zoe\u0308', '𝒜𝓃𝓃𝒶', '👨‍👩‍👧'] }],
    });
    // Each written form finds the Patient (other suites' Patients, a 'Zoe' among them, share the database).
    for (const given of ['Zo%C3%AB', 'Zoe%CC%88', '%F0%9D%92%9C']) {
      const found = await app.request({ method: 'GET', url: `/fhir/Patient?given=${given}&_elements=id&_count=1000` });
      expect(found.json.entry.map((e: { resource: { id: string } }) => e.resource.id), given).to.include('forms');
    }
    await roundTrip('MedicationRequest', {
      resourceType: 'MedicationRequest', id: 'contained', contained: [{ resourceType: 'Medication', id: 'med1', code: { text: 'Axid' } }],
      status: 'active', intent: 'order', medicationReference: { reference: '#med1' }, subject: { reference: 'Patient/forms' },
    });
  });
});

describe('HL7 PHD vital signs held to the R4 vital-signs profiles', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
  });
  after(() => app.stop());

  // The PHD IG codes its vital signs in MDC and LOINC and gives them a measurement-status
  // component coded in MDC (valueCodeableConcept). The vital-signs profile binds
  // component.value[x] to its UCUM units: a unit of a Quantity, not a code of that status.
  const byLoinc: Record<string, string> = { '85354-9': 'bp', '2708-6': 'oxygensat', '8867-4': 'heartrate', '8310-5': 'bodytemp' };
  const declaring = (json: any, profile: string) => ({
    ...json, id: `${json.id}-${profile}`, meta: { ...json.meta, profile: [...json.meta.profile, `http://hl7.org/fhir/StructureDefinition/${profile}`] },
  });
  const putObservation = (resource: any) =>
    app.request({ method: 'PUT', url: `/fhir/Observation/${resource.id}`, payload: JSON.stringify(resource), headers: { 'content-type': 'application/fhir+json' } });

  it('accepts each PHD vital sign declaring the vital-signs profile and its own, and stores it as sent', async () => {
    const vitals = interopFiles('device-observations/hl7-phd-stu2').filter(({ json }) => json.resourceType === 'Observation' && json.code.coding.some((c: any) => byLoinc[c.code]));
    expect(vitals.map((v) => v.file)).to.equal(['compound-numeric-blood-pressure-no-mean.json', 'compound-numeric-blood-pressure.json', 'numeric-spo2-alarm.json', 'numeric-spotnumeric.json', 'temperature-observation.json']);
    for (const { file, json } of vitals) {
      const loinc = json.code.coding.find((c: any) => byLoinc[c.code]).code as string;
      for (const profile of ['vitalsigns', byLoinc[loinc]!]) {
        const resource = declaring(json, profile);
        const res = await putObservation(resource);
        expect(res.statusCode, `${file} ${profile}: ${res.payload.slice(0, 400)}`).to.equal(201);
        const read = await app.request({ method: 'GET', url: `/fhir/Observation/${resource.id}` });
        expect(withoutServerMeta(read.json), file).to.equal(resource);
      }
    }
  });

  it('still refuses a component quantity in a unit that is not a vital-signs unit', async () => {
    const json = structuredClone(interopFiles('device-observations/hl7-phd-stu2').find((f) => f.file === 'compound-numeric-blood-pressure.json')!.json);
    json.component[0].valueQuantity = { value: 120, unit: 'mmHg', system: 'http://unitsofmeasure.org', code: 'mmHg' };
    const res = await putObservation(declaring(json, 'vitalsigns'));
    expect(res.statusCode).to.equal(422);
    expect(res.json.issue[0].diagnostics).to.contain('Observation.component[0].valueQuantity: is not in the required value set http://hl7.org/fhir/ValueSet/ucum-vitals-common');
  });
});
