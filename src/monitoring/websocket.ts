import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Server } from '@hapi/hapi';
import { type WebSocket, WebSocketServer } from 'ws';
import type { GrantStandings } from '../access/grant';
import type { AccessPolicy } from '../access/policy';
import { contributeToCapabilities } from '../fhir/capability';
import type { FhirContext, InteractionResult } from '../fhir/context';
import { parametersResult } from '../fhir/operation-params';
import { OperationOutcomeError, unprocessable } from '../kernel/outcome';
import { readResource } from '../store/repository';
import { DELIVERED_STATUSES, isRecordedSubscriber, subscriptionStandings, WEBSOCKET_NOTIFY_CHANNEL } from './notify';

/**
 * The R4 `websocket` channel (subscription.html#2.46.7.2), for a clinician's open dashboard: the
 * client connects to WEBSOCKET_PATH, binds to its Subscription, and hears `ping <id>` whenever a
 * committed change matches it (it then searches, under its own token, for what changed).
 *
 * A browser cannot send an Authorization header on a websocket, and an R4 `bind <id>` proves
 * nothing, so binding takes the R4B/R5 backport's handshake: the client asks
 * `Subscription/{id}/$get-ws-binding-token` with its SMART token (the access policy and the
 * Subscription's owner decide), then sends `bind-with-token <token>` on the socket. Tokens are
 * single-use, live a minute and sit hashed in the database, so any server process may accept
 * them. Pings come from a NOTIFY sent in the matching write's own transaction (./notify.ts): every
 * process hears it at commit and pings the sockets it holds.
 */
export const WEBSOCKET_PATH = '/websocket';
const BINDING_TOKEN_TTL_S = 60;
/** A bind message is a few dozen bytes; anything larger is not one. */
const MAX_MESSAGE_BYTES = 1024;
/** Ping frames keep an idle socket open through proxies (which often drop one after 60 s) and find dead peers. */
const HEARTBEAT_MS = 30_000;
const BIND_DEADLINE_MS = 15_000;

const hashOf = (token: string) => createHash('sha256').update(token).digest('hex');

export function websocketUrl(fhirBase: string): string {
  return `${fhirBase.replace(/\/fhir$/, '').replace(/^http/, 'ws')}${WEBSOCKET_PATH}`;
}

// R4 subscription.html: the server's websocket URL is published on CapabilityStatement.rest.
contributeToCapabilities('monitoring.websocket', (statement, ctx) => {
  const rest = statement.rest?.[0];
  if (rest) rest.extension = [...(rest.extension ?? []), { url: 'http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket', valueUri: websocketUrl(ctx.baseUrl) }];
});

/** Only the one who set the Subscription may listen on it (the server's unrestricted callers aside). */
async function assertOwner(ctx: FhirContext, id: string, policy: AccessPolicy): Promise<void> {
  if (!(await isRecordedSubscriber(ctx.db, id, policy))) {
    throw new OperationOutcomeError(403, { code: 'forbidden', diagnostics: `Subscription/${id} was set by another client or user; bind to your own` });
  }
}

/**
 * Subscription/{id}/$get-ws-binding-token: a one-time token for `bind-with-token` (the R4
 * Subscriptions Backport IG's backport-subscription-get-ws-binding-token, R5's operation). Refused for a Subscription that will ping nobody: off, or
 * set under a grant that has ended (decision 032), so that a client signed in again (the
 * dashboard, whose Subscription outlives a login session) sets a new one rather than listen to
 * a silent one.
 */
export async function bindingTokenOperation(ctx: FhirContext, id: string, policy: AccessPolicy, grants: GrantStandings): Promise<InteractionResult> {
  const stored = await readResource<fhir4.Subscription>(ctx.db, 'Subscription', id);
  if (stored?.resource.channel.type !== 'websocket') throw unprocessable(`Subscription/${id} is not a websocket Subscription`, ['Subscription.channel.type']);
  await assertOwner(ctx, id, policy);
  if (!DELIVERED_STATUSES.includes(stored.resource.status)) {
    throw unprocessable(`Subscription/${id} is ${stored.resource.status} and notifies nobody; set a new one`, ['Subscription.status']);
  }
  const standing = (await subscriptionStandings(ctx.db, grants, [id])).get(id)!;
  if (!standing.alive) throw unprocessable(`Subscription/${id} was set under a grant that has ended (${standing.reason}); set a new one`, ['Subscription.status']);
  const token = randomBytes(32).toString('base64url');
  const { rows } = await ctx.db.query<{ expires_at: string }>(
    `WITH gone AS (DELETE FROM monitoring_ws_binding WHERE expires_at < now())
     INSERT INTO monitoring_ws_binding (token_hash, subscription_id, expires_at, access_expires_at)
     VALUES ($1, $2, now() + make_interval(secs => $3), to_timestamp($4::float8)) RETURNING expires_at`,
    [hashOf(token), id, BINDING_TOKEN_TTL_S, policy.expiresAt ?? null],
  );
  return parametersResult([
    { name: 'token', valueString: token },
    { name: 'expiration', valueDateTime: new Date(rows[0]!.expires_at).toISOString() },
    { name: 'subscription', valueString: `Subscription/${id}` },
    { name: 'websocket-url', valueUrl: websocketUrl(ctx.baseUrl) },
  ]);
}

/**
 * A request asking to switch to a protocol this server does not speak there (`Upgrade: h2c`, sent
 * by HTTP/2 clients over http; websocket anywhere but WEBSOCKET_PATH) is served over HTTP/1.1 as if
 * it had not asked: RFC 9110 §7.8 lets a server ignore Upgrade, and RFC 9113 §3.1 has deprecated
 * h2c. Node hands every Upgrade request to the 'upgrade' listener once there is one, with its
 * parser detached (it had been a bare 404, or an h2c client's GET of /fhir/metadata went
 * unanswered), so the request head is written back without the upgrade and the connection given
 * to the HTTP server again ('connection' may be emitted by users for this: Node's http docs): the
 * request, its body and any that follow on the connection are then parsed, bounded and answered
 * like every other.
 */
function serveWithoutUpgrade(listener: HttpServer, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const upgradeOnly = (name: string) => name === 'upgrade' || name === 'http2-settings';
  const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!;
    const value = req.rawHeaders[i + 1]!;
    if (upgradeOnly(name.toLowerCase())) continue;
    if (name.toLowerCase() !== 'connection') lines.push(`${name}: ${value}`);
    else {
      const options = value.split(',').map((o) => o.trim()).filter((o) => o !== '' && !upgradeOnly(o.toLowerCase()));
      if (options.length) lines.push(`${name}: ${options.join(', ')}`);
    }
  }
  // Node read the head as latin1; written back the same way, each byte is the one sent.
  socket.unshift(Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), head]));
  const handOver = () => {
    // That answer closed the connection (Connection: close), or the client left: nothing to serve.
    if (socket.destroyed || !socket.writable) return;
    // The idle timer Node set after the previous response would end this request mid-work.
    (socket as Socket).setTimeout(0);
    listener.emit('connection', socket);
  };
  // A request pipelined behind one still being answered: the connection is handed over once that
  // answer is written, or its answer would wait for ever behind it.
  const answering = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage;
  if (answering && !answering.writableFinished) answering.once('finish', handOver);
  else handOver();
}

export class WebsocketChannel {
  private readonly sockets = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES });
  private readonly bound = new Map<string, Set<WebSocket>>();
  private readonly alive = new WeakSet<WebSocket>();
  private heartbeat: NodeJS.Timeout | undefined;
  private unlisten: (() => Promise<void>) | undefined;
  private readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const websocket = /^websocket$/i.test(String(req.headers.upgrade ?? '').trim());
    if (!websocket || new URL(req.url ?? '/', 'http://x').pathname !== WEBSOCKET_PATH) {
      serveWithoutUpgrade(this.server.listener, req, socket, head);
      return;
    }
    this.sockets.handleUpgrade(req, socket, head, (ws) => this.accept(ws));
  };

  constructor(
    private readonly ctx: FhirContext,
    private readonly server: Server,
  ) {}

  async start(): Promise<void> {
    this.sockets.on('error', (err) => this.ctx.log.warn({ err: { message: err.message } }, 'websocket server error'));
    this.server.listener.on('upgrade', this.onUpgrade);
    this.heartbeat = setInterval(() => {
      for (const ws of this.sockets.clients) {
        if (!this.alive.has(ws)) {
          ws.terminate();
          continue;
        }
        this.alive.delete(ws);
        ws.ping();
      }
    }, HEARTBEAT_MS).unref();
    this.unlisten = await this.ctx.db.listen(WEBSOCKET_NOTIFY_CHANNEL, (id) => this.ping(id));
  }

  async stop(): Promise<void> {
    this.server.listener.off('upgrade', this.onUpgrade);
    clearInterval(this.heartbeat);
    for (const ws of this.sockets.clients) ws.terminate();
    this.bound.clear();
    await new Promise((resolve) => this.sockets.close(resolve));
    await this.unlisten?.();
  }

  private ping(id: string): void {
    for (const ws of this.bound.get(id) ?? []) ws.send(`ping ${id}`);
  }

  private accept(ws: WebSocket): void {
    const mine = new Set<string>();
    this.alive.add(ws);
    // A frame that breaks the protocol (too long, unmasked, bad UTF-8) is an 'error' on the
    // socket, which ws then closes (1002, 1009): unheard, it was an uncaught exception that ended
    // the process, and the upgrade needs no token (robustness probe).
    ws.on('error', (err) => this.ctx.log.debug({ err: { message: err.message } }, 'websocket closed on a protocol error'));
    // A socket that binds nothing is only a cost: it has a few seconds to present its token.
    const deadline = setTimeout(() => mine.size === 0 && ws.close(1008, 'bind-with-token expected'), BIND_DEADLINE_MS).unref();
    ws.on('close', () => clearTimeout(deadline));
    ws.on('pong', () => this.alive.add(ws));
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? '' : String(data);
      void this.handle(ws, mine, text).catch((err: unknown) => {
        this.ctx.log.error({ err }, 'websocket bind failed');
        ws.send('error the server could not bind');
      });
    });
    ws.on('close', () => {
      for (const id of [...mine]) this.unbind(ws, mine, id);
    });
  }

  private bind(ws: WebSocket, mine: Set<string>, id: string): void {
    mine.add(id);
    if (!this.bound.has(id)) this.bound.set(id, new Set());
    this.bound.get(id)!.add(ws);
  }

  private unbind(ws: WebSocket, mine: Set<string>, id: string): void {
    mine.delete(id);
    const set = this.bound.get(id);
    set?.delete(ws);
    if (set?.size === 0) this.bound.delete(id);
  }

  /**
   * Ends a binding when the access token that asked for it expires (the database's clock, as
   * for the binding token): the socket hears nothing more of that Subscription, and a socket left
   * with no binding is closed. The client binds again with a fresh token.
   */
  private unbindAfter(ws: WebSocket, mine: Set<string>, id: string, ms: number): void {
    const timer = setTimeout(() => {
      this.unbind(ws, mine, id);
      ws.send(`unbound ${id} the access token that bound it has expired`);
      if (mine.size === 0) ws.close(1008, 'access token expired');
    }, Math.max(0, ms));
    timer.unref();
    ws.once('close', () => clearTimeout(timer));
  }

  private async handle(ws: WebSocket, mine: Set<string>, text: string): Promise<void> {
    const [verb, arg, ...rest] = text.trim().split(/\s+/);
    if (verb === 'bind-with-token' && arg && rest.length === 0) {
      const { rows } = await this.ctx.db.query<{ subscription_id: string; access_ms: string | null }>(
        `DELETE FROM monitoring_ws_binding WHERE token_hash = $1 AND expires_at >= now() AND (access_expires_at IS NULL OR access_expires_at > now())
         RETURNING subscription_id, (extract(epoch FROM access_expires_at - now()) * 1000)::bigint::text AS access_ms`,
        [hashOf(arg)],
      );
      const id = rows[0]?.subscription_id;
      if (!id) return void ws.send('error the binding token is unknown, used or expired; ask Subscription/{id}/$get-ws-binding-token for another');
      this.bind(ws, mine, id);
      ws.send(`bound ${id}`);
      const accessMs = rows[0]!.access_ms;
      if (accessMs !== null) this.unbindAfter(ws, mine, id, Number(accessMs));
      return;
    }
    if (verb === 'bind') return void ws.send('error bind needs proof of access: send bind-with-token <token> from Subscription/{id}/$get-ws-binding-token');
    ws.send('error unknown message; send bind-with-token <token>');
  }
}
