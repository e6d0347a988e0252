import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { startTestServer, type TestServer } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const APP_ORIGIN = 'https://app.example';
/** Every request header the API reads: a browser app must be allowed to send each. */
const REQUEST_HEADERS = ['authorization', 'content-type', 'accept', 'if-match', 'if-none-match', 'if-none-exist', 'prefer', 'x-request-id'];
/** Every response header an app needs to read (versions, new locations, request ids, 401 reasons). */
const EXPOSED = ['etag', 'location', 'content-location', 'last-modified', 'x-request-id', 'www-authenticate'];

describe('CORS for browser apps, over HTTP', () => {
  let app: TestServer;
  let base: string;
  before(async () => {
    app = await startTestServer({ AUTH_DISABLED: 'false' }, { listen: true });
    base = `http://127.0.0.1:${app.server.info.port}`;
  });
  after(() => app.stop());

  const preflight = (path: string, method: string, headers: string[]) =>
    fetch(`${base}${path}`, {
      method: 'OPTIONS',
      headers: { origin: APP_ORIGIN, 'access-control-request-method': method, 'access-control-request-headers': headers.join(',') },
    });

  for (const [method, path] of [['PUT', '/fhir/Patient/p1'], ['POST', '/fhir/Patient'], ['DELETE', '/fhir/Patient/p1'], ['PATCH', '/fhir/Patient/p1'], ['POST', '/fhir'], ['GET', '/fhir/Observation'], ['POST', '/auth/token']]) {
    it(`allows ${method} ${path} with every header the API reads`, async () => {
      const res = await preflight(path, method, REQUEST_HEADERS);
      expect(res.status, await res.text()).to.equal(200);
      expect(res.headers.get('access-control-allow-origin')).to.match(/^(\*|https:\/\/app\.example)$/);
      expect(res.headers.get('access-control-allow-methods')).to.contain(method);
      const allowed = (res.headers.get('access-control-allow-headers') ?? '').toLowerCase().split(/\s*,\s*/);
      for (const h of REQUEST_HEADERS) expect(allowed, h).to.include(h);
    });
  }

  it('does not allow a header the API does not read (the browser then refuses the request)', async () => {
    const res = await preflight('/fhir/Patient', 'POST', ['content-type', 'x-not-a-fhir-header']);
    expect(res.headers.get('access-control-allow-origin')).to.be.null();
    expect(res.headers.get('access-control-allow-headers') ?? '').to.not.contain('x-not-a-fhir-header');
  });

  it('exposes ETag, Location, Last-Modified, Content-Location and X-Request-Id on the actual answer, and WWW-Authenticate on a 401', async () => {
    const res = await fetch(`${base}/fhir/Patient`, { method: 'POST', headers: { origin: APP_ORIGIN, 'content-type': 'application/fhir+json' }, body: '{"resourceType":"Patient"}' });
    expect(res.status).to.equal(401);
    expect(res.headers.get('access-control-allow-origin')).to.match(/^(\*|https:\/\/app\.example)$/);
    const exposed = (res.headers.get('access-control-expose-headers') ?? '').toLowerCase().split(/\s*,\s*/);
    for (const h of EXPOSED) expect(exposed, h).to.include(h);
    const metadata = await fetch(`${base}/fhir/metadata`, { headers: { origin: APP_ORIGIN } });
    expect(metadata.status).to.equal(200);
    expect((metadata.headers.get('access-control-expose-headers') ?? '').toLowerCase()).to.contain('etag');
  });
});
