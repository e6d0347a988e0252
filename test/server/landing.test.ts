import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { startTestServer, type TestServer } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

describe('the landing page', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer({ AUTH_DISABLED: 'false' });
  });
  after(() => app.stop());

  it('GET / says what this is, without a token, and every link on it answers 200', async () => {
    const res = await app.request({ method: 'GET', url: '/' });
    expect(res.statusCode).to.equal(200);
    expect(res.headers['content-type']).to.equal('text/html; charset=utf-8');
    expect(res.payload).to.include('FHIR R4 server for remote patient monitoring');
    const links = [...res.payload.matchAll(/href="([^"]+)"/g)].map((m) => m[1]!);
    expect(links).to.include(['/fhir/metadata', '/fhir/.well-known/smart-configuration', '/auth/.well-known/openid-configuration', '/docs/README.md', '/docs/DESIGN.md']);
    for (const link of links) {
      const target = await app.request({ method: 'GET', url: link });
      expect(target.statusCode, link).to.equal(200);
    }
  });

  it('serves the README as Markdown and nothing outside the documents listed', async () => {
    const readme = await app.request({ method: 'GET', url: '/docs/README.md' });
    expect(readme.headers['content-type']).to.equal('text/markdown; charset=utf-8');
    expect(readme.payload).to.startWith('# rpm-fhir-server');
    for (const url of ['/docs/package.json', '/docs/../package.json', '/docs/%2e%2e/package.json', '/docs/decisions/../../package.json', '/docs/']) {
      const res = await app.request({ method: 'GET', url });
      expect(res.statusCode, url).to.equal(404);
      expect(res.payload, url).to.not.include('"dependencies"');
    }
  });
});
