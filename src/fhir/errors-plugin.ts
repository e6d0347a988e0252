import type { Plugin, Request, ResponseToolkit } from '@hapi/hapi';
import type { Boom } from '@hapi/boom';
import type { Logger } from 'pino';
import { type Issue, type IssueCode, OperationOutcomeError, operationOutcome } from '../kernel/outcome';

const CODE_BY_STATUS: Record<number, IssueCode> = {
  400: 'invalid', 401: 'login', 403: 'forbidden', 404: 'not-found', 405: 'not-supported', 406: 'not-supported',
  409: 'conflict', 410: 'deleted', 412: 'conflict', 413: 'too-costly', 415: 'not-supported', 422: 'business-rule',
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
