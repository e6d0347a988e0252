import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { startTestServer, type TestServer } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * R4 datatypes.html#integer: integer is a 32-bit signed integer, positiveInt ≥ 1, unsignedInt
 * ≥ 0 (both at most 2147483647), written `[0]|[-+]?[1-9][0-9]*`. The R4 JSON schema types them
 * as numbers with a pattern that JSON Schema applies to strings only, so 1.5 was stored as an
 * integer (src/validation/schema.ts, validInteger).
 */
describe('integer, positiveInt and unsignedInt elements', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
  });
  after(() => app.stop());

  /** POST of a body written as text, so that `1.0` and `1e2` reach the server as written. */
  const post = (type: string, body: string) =>
    app.request({ method: 'POST', url: `/fhir/${type}`, payload: body, headers: { 'content-type': 'application/fhir+json' } });
  const observation = (value: string) => `{"resourceType":"Observation","status":"final","code":{"text":"count"},"valueInteger":${value}}`;

  const refused = (res: { statusCode: number; json: any }, expression: string) => {
    expect(res.statusCode, JSON.stringify(res.json)).to.equal(400);
    expect(res.json.resourceType).to.equal('OperationOutcome');
    expect(res.json.issue.map((i: { expression?: string[] }) => i.expression?.[0])).to.include(expression);
  };

  it('refuses an Observation.valueInteger that is not a 32-bit integer, and names the element', async () => {
    for (const value of ['1.5', '-0.5', '2147483648', '-2147483649', '1.5e0', '12345678901234567890']) {
      refused(await post('Observation', observation(value)), 'Observation.valueInteger');
    }
  });

  it('refuses an integer written with a fraction, an exponent or a minus zero, whatever its value', async () => {
    for (const value of ['1.0', '1e2', '-0']) {
      const res = await post('Observation', observation(value));
      refused(res, 'Observation.valueInteger');
      expect(res.json.issue[0].diagnostics).to.contain(value);
    }
  });

  it('takes the integers of the range as written', async () => {
    for (const value of ['0', '7', '-7', '2147483647', '-2147483648']) {
      const res = await post('Observation', observation(value));
      expect(res.statusCode, value).to.equal(201);
      expect(res.json.valueInteger).to.equal(Number(value));
    }
  });

  it('checks datatype elements, choices, extensions and contained resources', async () => {
    refused(await post('Patient', '{"resourceType":"Patient","multipleBirthInteger":2.5}'), 'Patient.multipleBirthInteger');
    const timing = (frequency: string) =>
      `{"resourceType":"MedicationRequest","status":"active","intent":"order","medicationCodeableConcept":{"text":"x"},` +
      `"subject":{"reference":"Patient/p1"},"dosageInstruction":[{"timing":{"repeat":{"frequency":${frequency},"period":1,"periodUnit":"d"}}}]}`;
    for (const frequency of ['1.5', '0', '-1']) {
      refused(await post('MedicationRequest', timing(frequency)), 'MedicationRequest.dosageInstruction[0].timing.repeat.frequency');
    }
    expect((await post('MedicationRequest', timing('2'))).statusCode).to.equal(201);
    refused(await post('Patient', '{"resourceType":"Patient","extension":[{"url":"urn:x","valueUnsignedInt":-1}]}'), 'Patient.extension[0].valueUnsignedInt');
    refused(await post('Patient', '{"resourceType":"Patient","extension":[{"url":"urn:x","valuePositiveInt":0}]}'), 'Patient.extension[0].valuePositiveInt');
    refused(
      await post('Patient', '{"resourceType":"Patient","extension":[{"url":"urn:x","extension":[{"url":"n","valueInteger":1.0}]}]}'),
      'Patient.extension[0].extension[0].valueInteger',
    );
    refused(
      await post('Patient', `{"resourceType":"Patient","contained":[${observation('3.25').replace('{', '{"id":"o",')}]}`),
      'Patient.contained[0].valueInteger',
    );
    const fine = await post('Patient', '{"resourceType":"Patient","multipleBirthInteger":2,"extension":[{"url":"urn:x","valueUnsignedInt":0},{"url":"urn:y","valuePositiveInt":1}]}');
    expect(fine.statusCode).to.equal(201);
  });

  it('checks the resources of a transaction, which writes nothing', async () => {
    const entry = (value: string) =>
      `{"fullUrl":"urn:uuid:${crypto.randomUUID()}","resource":${observation(value)},"request":{"method":"POST","url":"Observation"}}`;
    for (const value of ['2.5', '2.0']) {
      const bundle = `{"resourceType":"Bundle","type":"transaction","entry":[${entry('1')},${entry(value)}]}`;
      const res = await app.request({ method: 'POST', url: '/fhir', payload: bundle, headers: { 'content-type': 'application/fhir+json' } });
      refused(res, 'Bundle.entry[1].resource.valueInteger');
    }
  });
});
