import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A rest-hook subscriber on 127.0.0.1 answering `status()` to each POST; `received` holds the 2xx ones. */
export async function subscriber(status: () => number = () => 200): Promise<{ url: string; received: Received[]; attempts: number; close(): Promise<void> }> {
  const received: Received[] = [];
  const hook = { url: '', received, attempts: 0, close: async () => undefined };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      hook.attempts++;
      const code = status();
      if (code < 300) received.push({ url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(code).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  hook.url = `http://127.0.0.1:${port}/notify`;
  hook.close = () => new Promise((r) => server.close(() => r(undefined)));
  return hook;
}

/** Polls `fn` until it returns something truthy. */
export async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
