import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { countRows, startTestServer, type TestServer } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const TYPES = ['Patient', 'Practitioner', 'CarePlan', 'Observation', 'Device'];

/**
 * Issue 11, hostile input: each of the malformed requests an attacker's run found answered 500
 * (or stored something that could never be read back) is a 4xx OperationOutcome that writes
 * nothing. The bounds live where input enters (src/kernel/input-limits.ts, src/kernel/id.ts).
 */
describe('hostile input is a 4xx OperationOutcome and writes nothing', () => {
  let app: TestServer;
  let patient: string;
  before(async () => {
    app = await startTestServer({ MAX_OR_VALUES: '100', MAX_SEARCH_PARAMETERS: '50' });
    patient = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient' } })).json.id;
  });
  after(() => app.stop());

  const snapshot = async () => Object.fromEntries(await Promise.all(TYPES.map(async (t) => [t, await countRows(app, t)])));

  /** Sends the request; expects `status` (or any 4xx), an OperationOutcome, and no row written anywhere. */
  const refused = async (options: Parameters<TestServer['request']>[0], status?: number) => {
    const beforeRows = await snapshot();
    const res = await app.request(options);
    const label = `${options.method} ${String(options.url).slice(0, 80)} → ${res.statusCode} ${res.payload.slice(0, 200)}`;
    if (status) expect(res.statusCode, label).to.equal(status);
    else expect(res.statusCode >= 400 && res.statusCode < 500, label).to.be.true();
    expect(res.json?.resourceType, label).to.equal('OperationOutcome');
    expect(await snapshot(), label).to.equal(beforeRows);
    return res;
  };
  const json = (method: string, url: string, body: string, contentType = 'application/fhir+json') =>
    ({ method, url, payload: body, headers: { 'content-type': contentType } });

  it('refuses a Host that is not a host at every door (RFC 9112 §3.2), and serves a valid one', async () => {
    const badHost = { host: 'bad host' };
    await refused({ method: 'GET', url: `/fhir/Patient/${patient}`, headers: badHost }, 400);
    await refused({ method: 'GET', url: '/fhir/Observation?code=8867-4', headers: badHost }, 400);
    await refused({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient' }, headers: badHost }, 400);
    await refused({ method: 'GET', url: '/fhir/$export', headers: { ...badHost, prefer: 'respond-async', accept: 'application/fhir+json' } }, 400);
    await refused({ method: 'GET', url: '/fhir/AuditEvent', headers: badHost }, 400);
    await refused({ method: 'POST', url: '/ingest/readings', payload: {}, headers: { ...badHost, 'content-type': 'application/json' } }, 400);
    for (const host of ['a/b', 'x@y', 'h:80:80', 'ex%zzample', '[::1', 'a\\b']) await refused({ method: 'GET', url: `/fhir/Patient/${patient}`, headers: { host } }, 400);
    for (const host of ['example.org', 'example.org:8080', '127.0.0.1:3000', '[::1]:3000', 'xn--bcher-kva.example', 'ex%41mple']) {
      const res = await app.request({ method: 'GET', url: `/fhir/Patient/${patient}`, headers: { host } });
      expect(res.statusCode, `${host}: ${res.payload.slice(0, 200)}`).to.equal(200);
    }
  });

  it('refuses ids outside the FHIR id grammar at every door', async () => {
    await refused({ method: 'PUT', url: "/fhir/Patient/bad%20id'", payload: { resourceType: 'Patient', id: "bad id'" } }, 400);
    await refused({ method: 'PUT', url: '/fhir/Practitioner/%F0%9F%98%80', payload: { resourceType: 'Practitioner', id: '😀' } }, 400);
    await refused({ method: 'PUT', url: '/fhir/Patient/a%00b', payload: { resourceType: 'Patient' } }, 400);
    await refused({ method: 'DELETE', url: '/fhir/Patient/a%00b' }, 400);
    // NUL anywhere in a request is refused before any handler (src/fhir/input-guard.ts).
    await refused({ method: 'GET', url: '/fhir/Patient/a%00b' }, 400);
    await refused({ method: 'GET', url: `/fhir/Patient/${patient}/_history/1%00` }, 400);
    await refused({ method: 'POST', url: '/auth/token', payload: 'grant_type=client_credentials&client_id=%00', headers: { 'content-type': 'application/x-www-form-urlencoded' } }, 400);
    // Other ids no resource can have: nothing to read.
    await refused({ method: 'GET', url: "/fhir/Patient/bad%20id'" }, 404);
    await refused({ method: 'GET', url: '/fhir/Patient/%F0%9F%98%80/_history' }, 404);
    await refused({ method: 'GET', url: `/fhir/Patient/${patient}/_history/99999999999999999999` }, 404);
    // %2e%2e is normalised to the parent path by the router: never a CarePlan with id '..'.
    await refused({ method: 'PUT', url: '/fhir/CarePlan/%2e%2e', payload: { resourceType: 'CarePlan', status: 'active', intent: 'plan', subject: { reference: `Patient/${patient}` } } });
    for (const url of ['Patient/x y<script>', 'Patient/x%20y', 'CarePlan/%2e%2e', 'Practitioner/%F0%9F%98%80']) {
      const resource = url.startsWith('CarePlan') ? { resourceType: 'CarePlan', status: 'active', intent: 'plan', subject: { reference: `Patient/${patient}` } } : { resourceType: url.split('/')[0] };
      await refused({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'transaction', entry: [{ fullUrl: url, resource, request: { method: 'PUT', url } }] } }, 400);
      const batch = await app.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'batch', entry: [{ resource, request: { method: 'PUT', url } }, { request: { method: 'GET', url: `${url}/_history/1` } }] } });
      expect(batch.statusCode).to.equal(200);
      expect(batch.json.entry.map((e: any) => e.response.status.slice(0, 3))).to.equal(['400', '404']);
    }
    // Conditional update creating from a body id, and a create naming one.
    await refused({ method: 'PUT', url: '/fhir/Patient?identifier=urn:x|nobody', payload: { resourceType: 'Patient', id: 'a b' } }, 400);
    await refused({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', id: 'x y<script>' } }, 400);
    // A device door naming a patient by an impossible id.
    await refused(json('POST', '/ingest/readings', JSON.stringify({ device: { identifier: { system: 'urn:test:serial', value: 'hostile-1' }, create: true }, patient: { reference: 'Patient/x y' }, readings: [{ code: { system: 'http://loinc.org', code: '8867-4' }, value: 70, unit: '/min', time: '2026-11-02T08:00:00Z' }] })));
  });

  it('refuses a body that is not UTF-8, escapes a lone surrogate or overflows a number, at every JSON door; ignores a byte order mark', async () => {
    const latin1 = (text: string) => Buffer.from(text, 'latin1');
    const bad = await refused({ method: 'POST', url: '/fhir/Patient', payload: latin1('{"resourceType":"Patient","name":[{"family":"M\u00fcller"}]}'), headers: { 'content-type': 'application/fhir+json' } }, 400);
    expect(bad.json.issue[0].diagnostics).to.include('UTF-8');
    await refused({ method: 'PUT', url: `/fhir/Patient/${patient}`, payload: latin1(`{"resourceType":"Patient","id":"${patient}","name":[{"family":"Gr\u00e4f"}]}`), headers: { 'content-type': 'application/fhir+json' } }, 400);
    await refused({ method: 'POST', url: '/fhir', payload: latin1('{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","name":[{"family":"\u00c5s"}]},"request":{"method":"POST","url":"Patient"}}]}'), headers: { 'content-type': 'application/fhir+json' } }, 400);
    await refused({ method: 'POST', url: '/ingest/readings', payload: Buffer.from([0x7b, 0xff, 0x7d]), headers: { 'content-type': 'application/json' } }, 400);
    // An escaped lone surrogate is no character: JSON.parse takes it, PostgreSQL's jsonb did not (a 500).
    for (const family of ['a\\ud800b', 'a\\udc00b', '\\ude00\\ud83d', 'a\\ud83d\\u0041']) {
      const res = await refused(json('POST', '/fhir/Patient', `{"resourceType":"Patient","name":[{"family":"${family}"}]}`), 400);
      expect(res.json.issue[0].diagnostics, family).to.include('lone surrogate');
    }
    await refused(json('POST', '/fhir', '{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"resourceType":"Patient","name":[{"family":"\\ud800"}]},"request":{"method":"POST","url":"Patient"}}]}'), 400);
    await refused(json('POST', '/ingest/readings', '{"device":{"identifier":{"system":"urn:x","value":"\\udc00"},"create":true},"readings":[]}', 'application/json'), 400);
    const pair = await app.request(json('POST', '/fhir/Patient', '{"resourceType":"Patient","name":[{"family":"a\\ud83d\\ude00b \\\\ud800"}]}'));
    expect(pair.statusCode, pair.payload).to.equal(201);
    expect((await app.request({ method: 'GET', url: `/fhir/Patient/${pair.json.id}` })).json.name).to.equal([{ family: 'a😀b \\ud800' }]);
    // A number beyond a double parses to Infinity, which JSON.stringify would store as null.
    await refused(json('POST', '/fhir/Patient', '{"resourceType":"Patient","multipleBirthInteger":1e400}'), 400);
    await refused(json('POST', '/fhir/Patient', '{"resourceType":"Patient","extension":[{"url":"urn:x","valueDecimal":-1e400}]}'), 400);
    await refused(json('POST', '/fhir', '{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","multipleBirthInteger":1e999},"request":{"method":"POST","url":"Patient"}}]}'), 400);
    // RFC 8259 §8.1 lets a parser ignore a byte order mark; the resource is stored as sent.
    const withBom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Müller' }] }))]);
    const created = await app.request({ method: 'POST', url: '/fhir/Patient', payload: withBom, headers: { 'content-type': 'application/fhir+json' } });
    expect(created.statusCode, created.payload).to.equal(201);
    const read = await app.request({ method: 'GET', url: `/fhir/Patient/${created.json.id}` });
    expect(read.json.name).to.equal([{ family: 'Müller' }]);
  });

  it('bounds JSON bodies before any work grows with them', async () => {
    const deep = (n: number) => `{"resourceType":"Patient","extension":${'['.repeat(n)}${']'.repeat(n)}}`;
    await refused(json('POST', '/fhir/Patient', deep(2000)), 400);
    await refused(json('POST', '/fhir/Patient', `{"resourceType":"Patient","a":${'{"a":'.repeat(2000)}1${'}'.repeat(2000)}}`), 400);
    await refused(json('POST', '/fhir', `{"resourceType":"Bundle","type":"batch","entry":${'['.repeat(5000)}${']'.repeat(5000)}}`), 400);
    await refused(json('POST', '/ingest/readings', `{"device":${'['.repeat(3000)}${']'.repeat(3000)}}`), 400);
    // 7 MB: one string over 1 MB is 413; a resource of 180,000 values is 400 without a minute of validation.
    await refused({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family: 'x'.repeat(7_000_000) }] } }, 413);
    await refused({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: Array.from({ length: 60_000 }, (_, i) => ({ family: `f${i}`, given: ['g', 'h'] })) } }, 400);
    await refused(json('POST', '/fhir/Patient', '{"resourceType":"Patient","name":[{"family":"a\\u0000b"}]}'), 400);
    // An escaped backslash and then \u0000 is a NUL; brackets, commas, quotes and an escaped
    // backslash before `u0000` inside a string are text, neither structure nor escapes.
    await refused(json('POST', '/fhir/Patient', '{"resourceType":"Patient","name":[{"family":"a\\\\\\u0000"}]}'), 400);
    const family = `${'['.repeat(3000)}{,}" \\ \\u0000 \\"]`;
    const text = await app.request(json('POST', '/fhir/Patient', JSON.stringify({ resourceType: 'Patient', name: [{ family }] })));
    expect(text.statusCode, text.payload).to.equal(201);
    expect((await app.request({ method: 'GET', url: `/fhir/Patient/${text.json.id}` })).json.name).to.equal([{ family }]);
    await refused({ method: 'POST', url: '/fhir/Observation', payload: { resourceType: 'Observation', status: 'final', code: { coding: [null] } } }, 400);
    await refused({ method: 'PUT', url: '/fhir/Patient/x1', payload: { resourceType: '%ff%fe' } }, 400);
    await refused({ method: 'POST', url: '/fhir/Observation', payload: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: null } }, 400);
  });

  it('refuses malformed operation parameters and patches instead of crashing', async () => {
    await refused({ method: 'POST', url: '/fhir/Patient/$validate', payload: { resourceType: 'Parameters', parameter: {} } }, 400);
    await refused({ method: 'POST', url: '/fhir/Patient/$validate', payload: { resourceType: 'Parameters', parameter: [null] } }, 400);
    await refused({ method: 'POST', url: '/fhir/ConceptMap/$translate', payload: { resourceType: 'Parameters', parameter: {} } }, 400);
    await refused({ method: 'POST', url: '/fhir/ConceptMap/$translate', payload: { resourceType: 'Parameters', parameter: [{ name: 'system', valueUri: 7 }, { name: 'coding', valueCoding: 'x' }] } }, 400);
    for (const path of ['/__proto__/polluted', '/__proto__', '/constructor/prototype/x']) {
      await refused(json('PATCH', `/fhir/Patient/${patient}`, JSON.stringify([{ op: 'add', path, value: { polluted: true } }]), 'application/json-patch+json'), 400);
    }
    expect(({} as Record<string, unknown>).polluted).to.not.exist();
    await refused(json('PATCH', `/fhir/Patient/${patient}`, JSON.stringify([null, 1]), 'application/json-patch+json'), 400);
    await refused(json('PATCH', `/fhir/Patient/${patient}`, JSON.stringify([{ op: 'add', path: '/gender', value: null }]), 'application/json-patch+json'), 400);
  });

  it('refuses hostile search and transport parameters', async () => {
    await refused({ method: 'GET', url: '/fhir/Patient?name=a%00b' }, 400);
    await refused({ method: 'GET', url: '/fhir/Patient?_id=a%00b' }, 400);
    await refused({ method: 'GET', url: '/fhir/Patient?_format=json&_format=xml' }, 400);
    await refused({ method: 'GET', url: `/fhir/Patient/${patient}?_format=json&_format=json` }, 400);
    await refused({ method: 'GET', url: '/fhir/Patient?_cursor=eyJhIjoxfQ' }, 400);
    await refused({ method: 'GET', url: '/fhir/Patient?_cursor=%ff%fe' }, 400);
    await refused({ method: 'GET', url: `/fhir/Patient?name=${Array.from({ length: 70_000 }, (_, i) => `n${i}`).join(',')}` }, 400);
    await refused({ method: 'GET', url: `/fhir/Patient?${Array.from({ length: 600 }, (_, i) => `name=n${i}`).join('&')}` }, 400);
    await refused({ method: 'POST', url: '/fhir/Patient/_search', payload: Array.from({ length: 600 }, (_, i) => `name=n${i}`).join('&'), headers: { 'content-type': 'application/x-www-form-urlencoded' } }, 400);
    await refused({ method: 'PUT', url: `/fhir/Patient?${Array.from({ length: 101 }, (_, i) => `identifier=i${i}`).join('&')}`, payload: { resourceType: 'Patient' } }, 400);
    await refused({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient' }, headers: { 'if-none-exist': 'identifier=a%00b' } }, 400);
    // At the caps, searches still answer.
    const atCap = await app.request({ method: 'GET', url: `/fhir/Patient?name=${Array.from({ length: 100 }, (_, i) => `n${i}`).join(',')}` });
    expect(atCap.statusCode).to.equal(200);
  });

  it('caps the terms of one search in all, _has and chained values weighing 10, at every search door', async () => {
    const values = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}`).join(',');
    // 200 terms (the default MAX_SEARCH_TERMS): two parameters at the per-parameter cap of 100.
    const atCap = `name=${values('n', 100)}&family=${values('f', 100)}`;
    const overCap = `${atCap}&gender=male`;
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const namesLimit = (res: { json: { issue: Array<{ code: string; diagnostics: string }> } }) => {
      expect(res.json.issue[0]!.code).to.equal('too-costly');
      expect(res.json.issue[0]!.diagnostics).to.contain('at most 200 terms');
      expect(res.json.issue[0]!.diagnostics).to.contain('maxSearchTerms');
    };
    expect((await app.request({ method: 'GET', url: `/fhir/Patient?${atCap}` })).statusCode).to.equal(200);
    namesLimit(await refused({ method: 'GET', url: `/fhir/Patient?${overCap}` }, 400));
    expect((await app.request({ method: 'POST', url: '/fhir/Patient/_search', payload: atCap, headers: form })).statusCode).to.equal(200);
    namesLimit(await refused({ method: 'POST', url: '/fhir/Patient/_search', payload: overCap, headers: form }, 400));
    // Compartment search.
    const obs = `code=${values('c', 100)}&category=${values('k', 100)}`;
    expect((await app.request({ method: 'GET', url: `/fhir/Patient/${patient}/Observation?${obs}` })).statusCode).to.equal(200);
    namesLimit(await refused({ method: 'GET', url: `/fhir/Patient/${patient}/Observation?${obs}&status=final` }, 400));
    // _has and chains: each value counts 10, so 20 pass and 21 do not, nor 20 and one more term.
    const has = (n: number) => `_has:Observation:subject:code=${values('c', n)}`;
    expect((await app.request({ method: 'GET', url: `/fhir/Patient?${has(20)}` })).statusCode).to.equal(200);
    namesLimit(await refused({ method: 'GET', url: `/fhir/Patient?${has(21)}` }, 400));
    namesLimit(await refused({ method: 'GET', url: `/fhir/Patient?${has(20)}&name=x` }, 400));
    expect((await app.request({ method: 'GET', url: `/fhir/Observation?subject.name=${values('n', 20)}` })).statusCode).to.equal(200);
    namesLimit(await refused({ method: 'GET', url: `/fhir/Observation?subject.name=${values('n', 21)}` }, 400));
    // A search in a batch.
    const batch = await app.request({
      method: 'POST', url: '/fhir',
      payload: { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: `Patient?${overCap}` } }, { request: { method: 'GET', url: `Patient?${atCap}` } }] },
    });
    expect(batch.statusCode, batch.payload.slice(0, 300)).to.equal(200);
    expect(String(batch.json.entry[0].response.status)).to.startWith('400');
    expect(JSON.stringify(batch.json.entry[0].response.outcome)).to.contain('at most 200 terms');
    expect(String(batch.json.entry[1].response.status)).to.startWith('200');
    // A conditional URL, Subscription criteria and an export's _typeFilter.
    namesLimit(await refused({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient' }, headers: { 'if-none-exist': overCap } }, 400));
    const sub = await refused({
      method: 'POST', url: '/fhir/Subscription',
      payload: { resourceType: 'Subscription', status: 'requested', reason: 'cap', criteria: `Patient?${overCap}`, channel: { type: 'rest-hook', endpoint: 'https://hooks.example.org/x' } },
    }, 400);
    expect(sub.json.issue[0].diagnostics).to.contain('at most 200 terms');
    const exportRes = await refused({
      method: 'GET', url: `/fhir/$export?_type=Patient&_typeFilter=${encodeURIComponent(`Patient?${overCap}`)}`,
      headers: { prefer: 'respond-async', accept: 'application/fhir+json' },
    }, 400);
    expect(exportRes.json.issue[0].diagnostics).to.contain('at most 200 terms');
  });

  it('files no reading at a Withings time no clock can hold', async () => {
    const res = await app.request({
      method: 'POST', url: `/ingest/withings?patient=Patient/${patient}`,
      payload: { status: 0, body: { measuregrps: [{ grpid: 1, attrib: 0, date: 1e20, category: 1, deviceid: 'hostile-w', measures: [{ value: 128, type: 10, unit: 0 }, { value: 80, type: 9, unit: 0 }] }] } },
    });
    expect(res.statusCode).to.equal(200);
    expect(res.json.entry.map((e: any) => e.response.status)).to.equal(['400 Bad Request']);
  });
});

describe('security headers on every response', () => {
  const paths = [
    ['GET', '/fhir/metadata'], ['GET', '/fhir/Patient'], ['GET', '/fhir/Patient/nope'], ['GET', '/not-a-route'],
    ['POST', '/auth/token'], ['GET', '/fhir/.well-known/smart-configuration'], ['POST', '/ingest/readings'],
  ] as const;

  it('nosniff everywhere, no-store on everything but public key and style documents, no HSTS over plain http', async () => {
    const app = await startTestServer({}, { listen: true });
    try {
      for (const [method, path] of paths) {
        const res = await fetch(`http://127.0.0.1:${app.server.info.port}${path}`, { method });
        expect(res.headers.get('x-content-type-options'), path).to.equal('nosniff');
        expect(res.headers.get('cache-control'), path).to.equal('no-store');
        expect(res.headers.get('strict-transport-security'), path).to.be.null();
      }
      // Refused by Node's HTTP parser before hapi (request line over 16 KB): still an OperationOutcome.
      const huge = await fetch(`http://127.0.0.1:${app.server.info.port}/fhir/Patient?name=${'x'.repeat(20_000)}`);
      expect(huge.status).to.equal(431);
      expect(huge.headers.get('x-content-type-options')).to.equal('nosniff');
      expect(huge.headers.get('cache-control')).to.equal('no-store');
      expect(((await huge.json()) as { resourceType: string }).resourceType).to.equal('OperationOutcome');
    } finally {
      await app.stop();
    }
  });

  it('HSTS when the public base is https, or a TLS proxy is declared', async () => {
    for (const env of [{ BASE_URL: 'https://fhir.example.org' }, { TLS_PROXY: 'true' }] as Array<Record<string, string>>) {
      const app = await startTestServer(env, { listen: true });
      try {
        for (const [method, path] of paths) {
          const res = await fetch(`http://127.0.0.1:${app.server.info.port}${path}`, { method });
          expect(res.headers.get('strict-transport-security'), `${path} ${JSON.stringify(env)}`).to.equal('max-age=31536000; includeSubDomains');
          expect(res.headers.get('x-content-type-options')).to.equal('nosniff');
        }
      } finally {
        await app.stop();
      }
    }
  });
});
