import { connect } from 'node:net';
import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { loadConfig } from '../../src/config';
import { startTestServer, type TestServer } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/** A response read off a raw connection. */
interface RawResponse {
  status: number;
  headers: Record<string, string>;
  json: any;
}

/**
 * Writes `bytes` on a new connection and reads until the server closes it or `waitMs` passes:
 * the responses, in order, and when (ms after the write) the connection was closed, if it was.
 */
function exchange(port: number, bytes: string, waitMs: number): Promise<{ responses: RawResponse[]; closedAfter?: number }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(port, '127.0.0.1');
    let sentAt = 0;
    const done = (closedAfter?: number) => {
      clearTimeout(timer);
      socket.destroy();
      try {
        resolve({ responses: parseResponses(Buffer.concat(chunks)), ...(closedAfter !== undefined ? { closedAfter } : {}) });
      } catch (err) {
        reject(err);
      }
    };
    const timer = setTimeout(() => done(), waitMs);
    socket.on('connect', () => {
      sentAt = Date.now();
      socket.write(bytes);
    });
    socket.on('data', (d) => chunks.push(d));
    socket.on('error', () => undefined);
    socket.on('close', () => done(Date.now() - sentAt));
  });
}

function parseResponses(data: Buffer): RawResponse[] {
  const responses: RawResponse[] = [];
  let rest = data;
  while (rest.length) {
    const end = rest.indexOf('\r\n\r\n');
    if (end === -1) throw new Error(`an incomplete response: ${rest.toString('latin1').slice(0, 200)}`);
    const [statusLine, ...lines] = rest.subarray(0, end).toString('latin1').split('\r\n');
    const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
    const length = Number(headers['content-length'] ?? 0);
    const body = rest.subarray(end + 4, end + 4 + length).toString('utf8');
    responses.push({ status: Number(statusLine!.split(' ')[1]), headers, json: body ? JSON.parse(body) : undefined });
    rest = rest.subarray(end + 4 + length);
  }
  return responses;
}

describe('connection bounds in the configuration', () => {
  it('defaults to 60 s per request, 20 s for its head, 5 s idle, and refuses bounds that are none or contradict', () => {
    expect(loadConfig({})).to.include({ requestTimeoutMs: 60_000, headersTimeoutMs: 20_000, keepAliveTimeoutMs: 5_000 });
    expect(loadConfig({ REQUEST_TIMEOUT: '5s' })).to.include({ requestTimeoutMs: 5_000, headersTimeoutMs: 5_000 });
    expect(() => loadConfig({ REQUEST_TIMEOUT: '0' })).to.throw(/positive/);
    expect(() => loadConfig({ REQUEST_TIMEOUT: '10s', HEADERS_TIMEOUT: '30s' })).to.throw(/must not exceed REQUEST_TIMEOUT/);
  });
});

/**
 * What Node's HTTP server did on its own, before any code of this server ran: hold a stalled
 * request for 300 s, answer a missing Host with a bare 400, and hand `Upgrade: h2c` to the
 * websocket channel's bare 404 (src/server.ts, src/fhir/errors-plugin.ts, src/monitoring/websocket.ts).
 */
describe('connections over a real port', () => {
  let app: TestServer;
  let port: number;
  const REQUEST_TIMEOUT = 600;
  before(async () => {
    app = await startTestServer({ REQUEST_TIMEOUT: `${REQUEST_TIMEOUT}ms`, HEADERS_TIMEOUT: '300ms' }, { listen: true });
    port = app.server.info.port as number;
  });
  after(() => app.stop());

  /** Node checks the bounds a quarter of HEADERS_TIMEOUT apart; the rest is a loaded machine's slack. */
  const BOUND = REQUEST_TIMEOUT + 1_400;

  it('answers a request whose body stops arriving with a 408 OperationOutcome and closes its connection within REQUEST_TIMEOUT', async () => {
    const stalled = 'POST /fhir/Patient HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/fhir+json\r\nContent-Length: 100\r\n\r\n{"resourceType":';
    const { responses, closedAfter } = await exchange(port, stalled, BOUND + 1_000);
    expect(closedAfter, 'the connection was still open').to.exist();
    expect(closedAfter!).to.be.below(BOUND);
    expect(responses.map((r) => r.status)).to.equal([408]);
    expect(responses[0]!.json.resourceType).to.equal('OperationOutcome');
    expect(responses[0]!.json.issue[0].code).to.equal('timeout');
  });

  it('answers headers that stop arriving with a 408 OperationOutcome and closes the connection', async () => {
    const { responses, closedAfter } = await exchange(port, 'GET /fhir/metadata HTTP/1.1\r\nHost: localhost\r\nAccept: appl', BOUND + 1_000);
    expect(closedAfter, 'the connection was still open').to.exist();
    expect(closedAfter!).to.be.below(BOUND);
    expect(responses.map((r) => r.status)).to.equal([408]);
    expect(responses[0]!.json.issue[0].code).to.equal('timeout');
  });

  it('answers an HTTP/1.1 request without Host with a 400 OperationOutcome (RFC 9112 §3.2), and serves HTTP/1.0 without one', async () => {
    const { responses } = await exchange(port, 'GET /fhir/metadata HTTP/1.1\r\nConnection: close\r\n\r\n', 5_000);
    expect(responses.map((r) => r.status)).to.equal([400]);
    expect(responses[0]!.json.resourceType).to.equal('OperationOutcome');
    expect(responses[0]!.json.issue[0].diagnostics).to.contain('Host');
    const old = await exchange(port, 'GET /fhir/metadata HTTP/1.0\r\n\r\n', 5_000);
    expect(old.responses.map((r) => r.status)).to.equal([200]);
    expect(old.responses[0]!.json.resourceType).to.equal('CapabilityStatement');
  });

  it('serves a request asking to upgrade to h2c over HTTP/1.1, body and following requests included (RFC 9110 §7.8)', async () => {
    const upgrade = 'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n';
    const body = JSON.stringify({ resourceType: 'Patient', name: [{ family: 'H2c' }] });
    const { responses } = await exchange(
      port,
      `GET /fhir/metadata HTTP/1.1\r\nHost: localhost\r\n${upgrade}\r\n` +
        `POST /fhir/Patient HTTP/1.1\r\nHost: localhost\r\n${upgrade}Content-Type: application/fhir+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}` +
        'GET /fhir/metadata HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n',
      5_000,
    );
    expect(responses.map((r) => r.status)).to.equal([200, 201, 200]);
    expect(responses[0]!.json.resourceType).to.equal('CapabilityStatement');
    expect(responses[1]!.json.name).to.equal([{ family: 'H2c' }]);
  });

  it('serves a websocket upgrade anywhere but the websocket path as a plain request', async () => {
    const { responses } = await exchange(port, 'GET /fhir/metadata HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', 5_000);
    expect(responses.map((r) => r.status)).to.equal([200, 404]);
    expect(responses[1]!.json.resourceType).to.equal('OperationOutcome');
  });
});
