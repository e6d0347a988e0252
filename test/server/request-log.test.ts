import { Writable } from 'node:stream';
import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import pino from 'pino';
import { startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * The request log (hapi-pino): one line per response with its request id, status, size and
 * time, and nothing a client sent in its query string or got back in its headers. The search
 * values are PHI (ASVS 16.2.5); the audit trail is where requests are recorded in full.
 */
describe('the request log', () => {
  let app: TestServer;
  const lines: Array<Record<string, any>> = [];
  before(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, any>);
        done();
      },
    });
    app = await startTestServer({}, { logger: pino({ level: 'info' }, sink) });
  });
  after(() => app.stop());

  const lineOf = async (requestId: string) => {
    for (let i = 0; i < 50 && !lines.some((l) => l.requestId === requestId && l.res); i++) await new Promise((resolve) => setTimeout(resolve, 10));
    const line = lines.find((l) => l.requestId === requestId && l.res);
    expect(line, `no response line for ${requestId}`).to.exist();
    return line!;
  };

  it('logs a search with its status, size and time, without its query string or the response headers', async () => {
    const family = unique('Family');
    const res = await app.request({ method: 'GET', url: `/fhir/Patient?family=${family}&birthdate=1931-02-03` });
    expect(res.statusCode).to.equal(200);
    const line = await lineOf(res.headers['x-request-id'] as string);
    expect(line.res).to.equal({ statusCode: 200, length: Number(res.headers['content-length']) });
    expect(line.responseTime).to.be.a.number();
    expect(line.msg).to.equal(`[response] get /fhir/Patient 200 (${line.responseTime}ms)`);
    const text = JSON.stringify(line);
    for (const sent of [family, '1931-02-03', 'x-frame-options', 'access-control-expose-headers']) expect(text, sent).to.not.contain(sent);
  });

  it('logs a refusal the same way', async () => {
    const res = await app.request({ method: 'GET', url: `/fhir/Patient?${unique('nosuchparam')}=x`, headers: { prefer: 'handling=strict' } });
    expect(res.statusCode).to.equal(400);
    const line = await lineOf(res.headers['x-request-id'] as string);
    expect(line.res.statusCode).to.equal(400);
    expect(Object.keys(line.res).sort()).to.equal(['length', 'statusCode']);
  });
});
