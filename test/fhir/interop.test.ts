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
    expect(corpusTypes.filter((t) => !supportedTypes.includes(t))).to.equal([]);
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
