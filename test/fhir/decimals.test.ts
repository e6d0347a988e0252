import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/** The numbers of a JSON text as written, in order (strings skipped). */
function numberTexts(json: string): string[] {
  const out: string[] = [];
  const re = /"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
  for (const m of json.matchAll(re)) if (!m[0].startsWith('"')) out.push(m[0]);
  return out;
}

/**
 * R4 datatypes.html#decimal: "0.010 is regarded as different to 0.01, and the original precision
 * should be preserved". JSON.parse loses it (36.60 → 36.6); the server keeps the text of such
 * numbers from the body to the stored version and every answer built from it
 * (src/kernel/json-decimals.ts).
 */
describe('decimals keep the precision they were sent with', () => {
  let app: TestServer;
  let patient: string;
  const system = `urn:test:${unique('dec')}`;
  const reading = (value: string, extra = '', code = '"coding":[{"system":"http://loinc.org","code":"8310-5"}]') =>
    `{"resourceType":"Observation","status":"final","identifier":[{"system":"${system}","value":"${unique('r')}"}],` +
    `"code":{${code}},"subject":{"reference":"Patient/${patient}"},` +
    `"effectiveDateTime":"2026-12-01T08:00:00Z","valueQuantity":{"value":${value},"unit":"Cel","system":"http://unitsofmeasure.org","code":"Cel"}${extra}}`;

  before(async () => {
    app = await startTestServer();
    patient = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family: 'Decimal' }] } })).json.id;
  });
  after(() => app.stop());

  const post = (body: string, url = '/fhir/Observation', headers: Record<string, string> = {}) =>
    app.request({ method: 'POST', url, payload: body, headers: { 'content-type': 'application/fhir+json', ...headers } });

  it('stores and answers trailing zeros and long values as written, on create, read, search and vread', async () => {
    const created = await post(reading('36.60', ',"note":[{"text":"36.60 and 0.010"}],"referenceRange":[{"low":{"value":35.0},"high":{"value":37.50}}],"component":[{"code":{"text":"a plain number after them"},"valueInteger":7}]'), '/fhir/Observation', { prefer: 'return=representation' });
    expect(created.statusCode, created.payload).to.equal(201);
    expect(numberTexts(created.payload)).to.include(['36.60', '35.0', '37.50']);
    expect(created.json.note[0].text).to.equal('36.60 and 0.010');
    const id = created.json.id as string;
    for (const url of [`/fhir/Observation/${id}`, `/fhir/Observation/${id}/_history/1`, `/fhir/Observation?identifier=${encodeURIComponent(`${system}|${created.json.identifier[0].value}`)}`, `/fhir/Observation/${id}?_pretty=true`]) {
      const res = await app.request({ method: 'GET', url });
      expect(res.statusCode, url).to.equal(200);
      expect(numberTexts(res.payload), url).to.include(['36.60', '35.0', '37.50']);
    }
    const long = await post(reading('12345678901234567890.1230', '', '"text":"a counter of no physiological range"'));
    expect(long.statusCode).to.equal(201);
    const read = await app.request({ method: 'GET', url: `/fhir/Observation/${long.json.id}` });
    expect(numberTexts(read.payload)).to.include('12345678901234567890.1230');
  });

  it('keeps them through a transaction, its answer, and a batch GET of the stored version', async () => {
    const entry = (value: string) => `{"fullUrl":"urn:uuid:${crypto.randomUUID()}","resource":${reading(value)},"request":{"method":"POST","url":"Observation"}}`;
    const res = await post(`{"resourceType":"Bundle","type":"transaction","entry":[${entry('37.50')},${entry('36.6')},${entry('38.000')}]}`, '/fhir', { prefer: 'return=representation' });
    expect(res.statusCode, res.payload).to.equal(200);
    const values = res.json.entry.map((e: { resource: fhir4.Observation }) => e.resource.valueQuantity!.value);
    expect(values).to.equal([37.5, 36.6, 38]);
    expect(numberTexts(res.payload).filter((n) => ['37.50', '36.6', '38.000'].includes(n))).to.equal(['37.50', '36.6', '38.000']);
    const ids = res.json.entry.map((e: { resource: { id: string } }) => e.resource.id as string);
    const batch = await post(`{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Observation/${ids[0]}"}},{"request":{"method":"GET","url":"Observation/${ids[2]}?_elements=valueQuantity"}}]}`, '/fhir');
    expect(batch.statusCode).to.equal(200);
    expect(numberTexts(batch.payload).filter((n) => ['37.50', '38.000'].includes(n))).to.equal(['37.50', '38.000']);
  });

  it('keeps the stored decimals a PATCH does not touch, and writes the patched ones as JSON Patch gave them', async () => {
    const created = await post(reading('38.00', ',"referenceRange":[{"low":{"value":35.0}}]'));
    const id = created.json.id as string;
    const patched = await app.request({
      method: 'PATCH', url: `/fhir/Observation/${id}`, headers: { 'content-type': 'application/json-patch+json' },
      payload: '[{"op":"replace","path":"/referenceRange/0/low/value","value":34.50},{"op":"add","path":"/status","value":"amended"}]',
    });
    expect(patched.statusCode, patched.payload).to.equal(200);
    const read = await app.request({ method: 'GET', url: `/fhir/Observation/${id}` });
    expect(read.json.status).to.equal('amended');
    expect(numberTexts(read.payload)).to.include(['38.00', '34.50']);
    const first = await app.request({ method: 'GET', url: `/fhir/Observation/${id}/_history/1` });
    expect(numberTexts(first.payload)).to.include(['38.00', '35.0']);
  });

  it('keeps them in _summary and _elements answers, and never turns a string into a number', async () => {
    const created = await post(reading('39.10', ',"note":[{"text":"\\"0.50\\""}]'));
    expect(created.statusCode, created.payload).to.equal(201);
    const id = created.json.id as string;
    const elements = await app.request({ method: 'GET', url: `/fhir/Observation/${id}?_elements=valueQuantity,note` });
    expect(numberTexts(elements.payload)).to.include('39.10');
    expect(elements.json.note[0].text).to.equal('"0.50"');
    const search = await app.request({ method: 'GET', url: `/fhir/Observation?_id=${id}&_summary=data` });
    expect(numberTexts(search.payload)).to.include('39.10');
    // A component's string that looks like the server's stand-in for a kept number stays a string.
    const sneaky = await post(reading('40.20', ',"component":[{"code":{"text":"x"},"valueString":"\\u00010.50\\u0001"}]'));
    expect(sneaky.statusCode, sneaky.payload).to.equal(201);
    const back = await app.request({ method: 'GET', url: `/fhir/Observation/${sneaky.json.id}` });
    expect(back.json.component[0].valueString).to.equal('\u00010.50\u0001');
    expect(numberTexts(back.payload)).to.include('40.20');
  });
});
