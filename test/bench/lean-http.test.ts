import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { LeanHttpPool } from '../../bench/lean-http';

const lab = Lab.script();
export { lab };
const { describe, it, before, after } = lab;

/**
 * The bench's load generator frames responses itself (bench/lean-http.ts): a figure measured
 * with a client that misreads a response would be a figure of nothing.
 */
describe('bench load generator (lean HTTP client)', () => {
  let server: http.Server;
  let pool: LeanHttpPool;
  const seen: { method: string; url: string; body: string; headers: http.IncomingHttpHeaders }[] = [];

  before(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        seen.push({ method: req.method!, url: req.url!, body, headers: req.headers });
        if (req.url === '/length') {
          res.writeHead(201, { location: '/x/1', 'content-length': Buffer.byteLength('ünï') });
          res.end('ünï');
        } else if (req.url === '/chunked') {
          // Written in pieces, the 'ü' split between two writes, so the client must join bytes.
          const bytes = Buffer.from('{"a":"ü"}');
          res.writeHead(200, { 'content-type': 'application/json' });
          res.write(bytes.subarray(0, 7));
          setTimeout(() => res.end(bytes.subarray(7)), 20);
        } else if (req.url === '/none') {
          res.writeHead(204);
          res.end();
        } else {
          res.writeHead(200, { connection: 'close', 'content-length': 2 });
          res.end('ok');
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    pool = new LeanHttpPool(new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`), 2);
  });

  after(() => {
    pool.close();
    server.close();
  });

  it('frames bodies by Content-Length and by chunks, sends bodies and headers, and reconnects after Connection: close', async () => {
    const created = await pool.request('POST', '/length', { 'content-type': 'application/fhir+json' }, '{"é":1}');
    expect(created).to.equal({ status: 201, headers: created.headers, body: 'ünï' });
    expect(created.headers.location).to.equal('/x/1');
    expect(seen.at(-1)).to.include({ method: 'POST', url: '/length', body: '{"é":1}' });
    expect(seen.at(-1)!.headers['content-length']).to.equal(String(Buffer.byteLength('{"é":1}')));

    expect((await pool.request('GET', '/chunked', {})).body).to.equal('{"a":"ü"}');
    expect(await pool.request('DELETE', '/none', {})).to.include({ status: 204, body: '' });
    // Two at once on the pool's two connections, then a closed connection is opened again.
    const both = await Promise.all([pool.request('GET', '/close', {}), pool.request('GET', '/length', {})]);
    expect(both.map((r) => r.body)).to.equal(['ok', 'ünï']);
    expect((await pool.request('GET', '/close', {})).body).to.equal('ok');
    expect((await pool.request('GET', '/chunked', {})).status).to.equal(200);
  });
});
