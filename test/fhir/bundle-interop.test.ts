import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { supportedTypes } from '../../src/kernel/resource-types';
import { interopFiles } from '../helpers/interop';
import { countRows, startTestServer, type TestServer } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const specBundle = (name: string) => structuredClone(interopFiles('r4-spec-examples/Bundle').find((f) => f.file === name)!.json);

describe('bundles written by others', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
  });
  after(() => app.stop());

  const allCounts = async () => Object.fromEntries(await Promise.all(supportedTypes.map(async (t) => [t, await countRows(app, t)])));

  describe('the R4 spec examples', () => {
    it('fails the spec transaction whole: its ValueSet/$lookup entry is not an interaction this server has', async () => {
      const before = await allCounts();
      const res = await app.request({ method: 'POST', url: '/fhir', payload: specBundle('Bundle-bundle-transaction.json') });
      expect(res.statusCode).to.equal(400);
      expect(res.json.issue[0].diagnostics).to.contain('Bundle.entry[7]: request.url ValueSet/$lookup is not a POST this server supports');
      expect(await allCounts()).to.equal(before);
    });

    it('fails it whole on the ifMatch of a missing Patient/123a once the operation entry is taken out', async () => {
      const bundle = specBundle('Bundle-bundle-transaction.json');
      bundle.entry = bundle.entry.filter((e: any) => !e.request.url.includes('$lookup'));
      const before = await allCounts();
      const res = await app.request({ method: 'POST', url: '/fhir', payload: bundle });
      expect(res.statusCode).to.equal(412);
      expect(res.json.issue[0].diagnostics).to.match(/Bundle\.entry\[4\].*If-Match/);
      expect(await allCounts()).to.equal(before);
    });

    it('answers the spec batches entry by entry: what we serve, and 404 for types we do not', async () => {
      await app.request({ method: 'PUT', url: '/fhir/Patient/example', payload: interopFiles('r4-spec-examples/Patient').find((f) => f.json.id === 'example')!.json });
      for (const name of ['Bundle-bundle-request-simplesummary.json', 'Bundle-bundle-request-medsallergies.json']) {
        const bundle = specBundle(name);
        const res = await app.request({ method: 'POST', url: '/fhir', payload: bundle });
        expect(res.statusCode).to.equal(200);
        expect(res.json.type).to.equal('batch-response');
        expect(res.json.entry).to.have.length(bundle.entry.length);
        expect(res.json.entry[0].response.status).to.equal('200 OK');
        expect(res.json.entry[0].resource.id).to.equal('example');
        bundle.entry.forEach((e: any, i: number) => {
          const type = e.request.url.replace(/^\//, '').split(/[/?]/)[0];
          if (!supportedTypes.includes(type)) expect(res.json.entry[i].response.status, e.request.url).to.equal('404 Not Found');
        });
      }
    });
  });

  describe('HL7 Personal Health Device uploads', () => {
    it('loads the PHG upload, and posting it again matches the devices instead of duplicating them', async () => {
      const bundle = interopFiles('device-observations/hl7-phd-stu2').find((f) => f.file === 'bundle-example-1.json')!.json;
      const first = await app.request({ method: 'POST', url: '/fhir', payload: structuredClone(bundle) });
      expect(first.statusCode).to.equal(200);
      expect(first.json.entry.map((e: any) => e.response.status)).to.equal(Array(6).fill('201 Created'));
      const idOf = (entry: any) => entry.response.location.split('/_history')[0];
      const read = async (ref: string) => (await app.request({ method: 'GET', url: `/fhir/${ref}` })).json;
      const pulseOx = await read(idOf(first.json.entry[4]));
      expect(pulseOx.subject.reference).to.equal(idOf(first.json.entry[0]));
      expect(pulseOx.device.reference).to.equal(idOf(first.json.entry[2]));
      // The coincident time stamp observation is about the gateway's clock: its subject is the device.
      expect((await read(idOf(first.json.entry[3]))).subject.reference).to.equal(idOf(first.json.entry[2]));

      const devices = await countRows(app, 'Device');
      const second = await app.request({ method: 'POST', url: '/fhir', payload: structuredClone(bundle) });
      expect(second.statusCode).to.equal(200);
      // The example's Patient ifNoneExist names system urn:oid:2.9991.2.… while the Patient it
      // sends has urn:oid:2.999.1.2.…: its condition never matches its own patient, so a second
      // Patient is right. The device conditions do match.
      expect(second.json.entry.map((e: any) => e.response.status)).to.equal(['201 Created', '200 OK', '200 OK', '201 Created', '201 Created', '201 Created']);
      expect(idOf(second.json.entry[1])).to.equal(idOf(first.json.entry[1]));
      expect(second.json.entry[1].response.etag).to.equal('W/"1"');
      expect(await countRows(app, 'Device')).to.equal(devices);
      const again = await read(idOf(second.json.entry[4]));
      expect(again.device.reference).to.equal(idOf(first.json.entry[2]));
      expect(again.subject.reference).to.equal(idOf(second.json.entry[0]));
    });

    it('loads the 47-observation continuous oximeter upload', async () => {
      const bundle = interopFiles('device-observations/hl7-phd-stu2').find((f) => f.file === 'bundle-continuousnonin.json')!.json;
      const before = await countRows(app, 'Observation');
      const res = await app.request({ method: 'POST', url: '/fhir', payload: bundle });
      expect(res.statusCode).to.equal(200);
      expect(res.json.entry.filter((e: any) => e.response.status === '201 Created')).to.have.length(47);
      expect((await countRows(app, 'Observation')).current - before.current).to.equal(47);
    });
  });

  describe('Synthea patient bundles', () => {
    const synthea = () => interopFiles('synthea/smart-on-fhir-generated-sample-data');
    const patientBundles = () => synthea().filter((f) => f.json.entry.some((e: any) => e.resource.resourceType === 'Patient'));
    /** Every `reference` string in a resource, outside contained resources' own `#` links. */
    const referencesIn = (node: unknown, out: string[] = []): string[] => {
      if (Array.isArray(node)) node.forEach((n) => referencesIn(n, out));
      else if (node && typeof node === 'object') {
        for (const [k, v] of Object.entries(node)) {
          if (k === 'reference' && typeof v === 'string') out.push(v);
          else referencesIn(v, out);
        }
      }
      return out;
    };
    const loaded = new Map<string, { patientId: string; bundle: any; locations: string[] }>();

    before(async () => {
      // The practitioners' bundle first, then each patient's record, each one transaction.
      for (const { file, json } of [...synthea().filter((f) => !patientBundles().some((p) => p.file === f.file)), ...patientBundles()]) {
        const res = await app.request({ method: 'POST', url: '/fhir', payload: json });
        expect(res.statusCode, `${file}: ${res.payload.slice(0, 400)}`).to.equal(200);
        expect(res.json.entry).to.have.length(json.entry.length);
        expect(res.json.entry.every((e: any) => e.response.status === '201 Created'), file).to.be.true();
        const locations = res.json.entry.map((e: any) => e.response.location.replace(/^.*\/fhir\//, '').replace(/\/_history\/\d+$/, ''));
        const patient = locations.find((l: string) => l.startsWith('Patient/'));
        if (patient) loaded.set(file, { patientId: patient.split('/')[1], bundle: json, locations });
      }
      expect(loaded.size).to.equal(5);
    });

    it('loads each whole as a transaction: every resource readable, every internal reference rewritten and resolvable', async () => {
      for (const [file, { locations }] of loaded) {
        for (const location of locations) {
          const read = await app.request({ method: 'GET', url: `/fhir/${location}` });
          expect(read.statusCode, `${file} ${location}`).to.equal(200);
          for (const ref of referencesIn(read.json)) {
            if (ref.startsWith('#')) continue;
            expect(ref, `${file} ${location}`).to.match(/^[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/);
            const target = await app.request({ method: 'GET', url: `/fhir/${ref}` });
            expect(target.statusCode, `${file} ${location} -> ${ref}`).to.equal(200);
          }
        }
      }
    });

    it('finds each patient\'s blood-pressure panels by combo-code of the systolic LOINC', async () => {
      let panels = 0;
      for (const [file, { patientId, bundle }] of loaded) {
        const expected = bundle.entry.filter((e: any) => e.resource.resourceType === 'Observation' && (e.resource.component ?? []).some((c: any) => c.code.coding.some((x: any) => x.code === '8480-6'))).length;
        const res = await app.request({ method: 'GET', url: `/fhir/Observation?subject=Patient/${patientId}&combo-code=http://loinc.org|8480-6&_count=100` });
        expect(res.statusCode).to.equal(200);
        expect(res.json.entry ?? [], file).to.have.length(expected);
        for (const e of res.json.entry ?? []) expect(e.resource.code.coding[0].code).to.equal('55284-4');
        panels += expected;
      }
      expect(panels).to.be.above(5);
    });

    it('returns each patient\'s whole record through compartment search, type by type, and nothing of another patient', async () => {
      for (const [file, { patientId, bundle }] of loaded) {
        const types = new Set<string>(bundle.entry.map((e: any) => e.resource.resourceType));
        for (const type of types) {
          if (['Patient', 'Organization', 'Practitioner'].includes(type)) continue;
          const expected = bundle.entry.filter((e: any) => e.resource.resourceType === type).length;
          const res = await app.request({ method: 'GET', url: `/fhir/Patient/${patientId}/${type}?_count=200` });
          expect(res.statusCode).to.equal(200);
          expect(res.json.entry ?? [], `${file} ${type}`).to.have.length(expected);
        }
      }
    });
  });
});
