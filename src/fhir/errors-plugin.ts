import { type Server as HttpServer, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { Plugin, Request, ResponseToolkit } from '@hapi/hapi';
import type { Boom } from '@hapi/boom';
import type { Logger } from 'pino';
import { type Issue, type IssueCode, OperationOutcomeError, operationOutcome } from '../kernel/outcome';

const CODE_BY_STATUS: Record<number, IssueCode> = {
  400: 'invalid', 401: 'login', 403: 'forbidden', 404: 'not-found', 405: 'not-supported', 406: 'not-supported',
  408: 'timeout', 409: 'conflict', 410: 'deleted', 412: 'conflict', 413: 'too-costly', 415: 'not-supported', 422: 'business-rule',
  429: 'throttled',
};

/**
 * The one place errors become responses: every error (ours, Hapi's 404/413/415, a thrown
 * bug) leaves as an OperationOutcome with its status. Unexpected errors are logged and answered
 * 500 without internals.
 */
export const errorsPlugin: Plugin<void> = {
  name: 'fhir-errors',
  register(server) {
    answerParserErrors(server.listener);
    server.ext('onPreResponse', (request: Request, h: ResponseToolkit) => {
      const response = request.response;
      if (!(response instanceof Error)) return h.continue;
      const boom = response as Boom & Partial<OperationOutcomeError>;
      let status: number;
      let issues: Issue[];
      let headers: Record<string, string> = {};
      if (response instanceof OperationOutcomeError) {
        status = response.status;
        issues = response.issues;
        headers = response.headers;
      } else if (boom.isServer) {
        // hapi-pino's request logger, so the line carries the request id and pino's error serialiser.
        (request as Request & { logger?: Logger }).logger?.error({ err: boom }, 'request failed');
        status = 500;
        issues = [{ severity: 'fatal', code: 'exception', diagnostics: 'internal server error; the request id is in X-Request-Id' }];
      } else if (timedOut.has(request.raw.req.socket)) {
        // hapi answers the request whose body stopped arriving (REQUEST_TIMEOUT) as a bare 400.
        status = 408;
        issues = [{ code: 'timeout', diagnostics: REQUEST_TIMEOUT_TEXT }];
        headers = { connection: 'close' };
      } else {
        status = boom.output.statusCode;
        const message = status === 413 ? `the request body is larger than the limit of ${request.route.settings.payload?.maxBytes ?? '?'} bytes` : boom.message;
        issues = [{ code: CODE_BY_STATUS[status] ?? 'processing', diagnostics: message }];
        headers = Object.fromEntries(Object.entries(boom.output.headers).map(([k, v]) => [k, String(v)]));
      }
      const res = h
        .response(JSON.stringify(operationOutcome(issues)))
        .code(status)
        .type('application/fhir+json; charset=utf-8')
        .header('x-request-id', request.info.id);
      for (const [name, value] of Object.entries(headers)) res.header(name, value);
      return res;
    });
  },
};

/** Connections whose request did not arrive in time: their one answer is a 408 and they close. */
const timedOut = new WeakSet<object>();
const REQUEST_TIMEOUT_TEXT = 'the request did not arrive in time (REQUEST_TIMEOUT, HEADERS_TIMEOUT); the connection is closed';

/**
 * Requests Node's HTTP parser refuses before hapi sees them (a request line or headers past the
 * 16 KB limit, a malformed request line) are answered, like every other error, with an
 * OperationOutcome and the headers every response carries, instead of a bare
 * `400 Bad Request` and a closed socket. While a response is under way on the socket (a
 * pipelined request broke), hapi's own handler keeps the connection's state right.
 */
function answerParserErrors(listener: HttpServer): void {
  const hapiHandlers = listener.listeners('clientError') as Array<(err: Error, socket: Socket) => void>;
  listener.removeAllListeners('clientError');
  listener.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    // The request did not arrive within REQUEST_TIMEOUT or HEADERS_TIMEOUT (src/server.ts).
    const late = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
    if ((socket as Socket & { _httpMessage?: unknown })._httpMessage || !socket.writable || err.code === 'ECONNRESET') {
      // hapi answers the request it has begun and closes the connection; onPreResponse says why.
      if (late) timedOut.add(socket);
      for (const handler of hapiHandlers) handler(err, socket);
      return;
    }
    const status = late ? 408 : err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    const [code, diagnostics] =
      status === 408 ? ['timeout', REQUEST_TIMEOUT_TEXT]
      : status === 431 ? ['too-costly', 'the request line and headers are larger than the server accepts (16 KB); send long searches as POST _search']
      : ['structure', 'the request is not valid HTTP'];
    const body = JSON.stringify(operationOutcome([{ code: code as IssueCode, diagnostics }]));
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/fhir+json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${body}`,
    );
  });
}
