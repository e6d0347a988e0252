import net from 'node:net';

/**
 * The bench's HTTP/1.1 load generator: keep-alive connections over node:net, one request in
 * flight on each, the request written as one string and the response framed by Content-Length
 * or chunked encoding, nothing else parsed.
 *
 * Why not node:http: the bench shares the machine's two cores with the server and PostgreSQL,
 * so whatever the load generator spends is taken from the server. Measured on a read phase
 * (GET /Observation/{id}, c=16): node:http's client with a keep-alive agent 90–93 µs of CPU per
 * request, this one 38–39 µs, the server's own CPU per request unchanged. Dedicated load
 * generators (wrk, h2load) are written in C for the same reason. `BENCH_HTTP_CLIENT=node` runs
 * the node:http client instead, to compare.
 */
export interface LeanResponse {
  status: number;
  /** Header names in lower case; a repeated header keeps its last value. */
  headers: Record<string, string>;
  body: string;
}

const HEAD_END = Buffer.from('\r\n\r\n');
const LINE_END = Buffer.from('\r\n');

class Connection {
  private socket?: net.Socket;
  private buffer?: Buffer;
  private pending?: { resolve: (res: LeanResponse) => void; reject: (err: Error) => void };

  constructor(private readonly host: string, private readonly port: number) {}

  send(request: string): Promise<LeanResponse> {
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.buffer = undefined;
      const socket = this.socket ?? this.open();
      socket.write(request);
    });
  }

  close(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }

  private open(): net.Socket {
    const socket = net.connect(this.port, this.host);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.received(chunk));
    const fail = (err: Error) => {
      // A socket this connection already let go of (after `Connection: close`) fails no request.
      if (this.socket !== socket) return;
      this.socket = undefined;
      const pending = this.pending;
      this.pending = undefined;
      pending?.reject(err);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('the server closed the connection')));
    this.socket = socket;
    return socket;
  }

  private received(chunk: Buffer): void {
    const buffer = (this.buffer = this.buffer ? Buffer.concat([this.buffer, chunk]) : chunk);
    const headEnd = buffer.indexOf(HEAD_END);
    if (headEnd < 0) return;
    const lines = buffer.toString('latin1', 0, headEnd).split('\r\n');
    const status = Number(lines[0]!.slice(9, 12));
    const headers: Record<string, string> = {};
    for (let i = 1; i < lines.length; i++) {
      const colon = lines[i]!.indexOf(':');
      if (colon > 0) headers[lines[i]!.slice(0, colon).toLowerCase()] = lines[i]!.slice(colon + 1).trim();
    }
    const body = bodyOf(buffer, headEnd + 4, headers, status);
    if (body === undefined) return; // more to come
    const pending = this.pending;
    this.pending = undefined;
    this.buffer = undefined;
    if (headers.connection?.toLowerCase() === 'close') this.close();
    pending?.resolve({ status, headers, body });
  }
}

/** The body that starts at `start`, or undefined while it is incomplete. */
function bodyOf(buffer: Buffer, start: number, headers: Record<string, string>, status: number): string | undefined {
  if (headers['content-length'] !== undefined) {
    const end = start + Number(headers['content-length']);
    return buffer.length < end ? undefined : buffer.toString('utf8', start, end);
  }
  if (headers['transfer-encoding']?.toLowerCase() === 'chunked') {
    const parts: Buffer[] = [];
    let at = start;
    for (;;) {
      const eol = buffer.indexOf(LINE_END, at);
      if (eol < 0) return undefined;
      const size = parseInt(buffer.toString('latin1', at, eol), 16);
      if (buffer.length < eol + 2 + size + 2) return undefined;
      if (size === 0) return Buffer.concat(parts).toString('utf8');
      parts.push(buffer.subarray(eol + 2, eol + 2 + size));
      at = eol + 2 + size + 2;
    }
  }
  if (status === 204 || status === 304 || (status >= 100 && status < 200)) return '';
  throw new Error(`a response without Content-Length or chunked encoding (status ${status}): the bench cannot frame it`);
}

/** A pool of at most `maxSockets` connections to one server. */
export class LeanHttpPool {
  private readonly idle: Connection[] = [];
  private readonly all: Connection[] = [];
  private readonly waiting: ((c: Connection) => void)[] = [];
  private readonly host: string;
  private readonly port: number;

  constructor(base: URL, private readonly maxSockets: number) {
    this.host = base.hostname;
    this.port = Number(base.port || 80);
  }

  async request(method: string, path: string, headers: Record<string, string>, body?: string): Promise<LeanResponse> {
    let head = `${method} ${path} HTTP/1.1\r\nhost: ${this.host}:${this.port}\r\n`;
    for (const name in headers) head += `${name}: ${headers[name]}\r\n`;
    if (body !== undefined) head += `content-length: ${Buffer.byteLength(body)}\r\n`;
    const request = `${head}\r\n${body ?? ''}`;
    const connection = await this.acquire();
    try {
      return await connection.send(request);
    } finally {
      this.release(connection);
    }
  }

  close(): void {
    for (const c of this.all) c.close();
  }

  private acquire(): Promise<Connection> {
    const free = this.idle.pop();
    if (free) return Promise.resolve(free);
    if (this.all.length < this.maxSockets) {
      const c = new Connection(this.host, this.port);
      this.all.push(c);
      return Promise.resolve(c);
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(c: Connection): void {
    const next = this.waiting.shift();
    if (next) next(c);
    else this.idle.push(c);
  }
}
