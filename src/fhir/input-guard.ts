import type { Plugin, Request, ResponseToolkit } from '@hapi/hapi';
import { OperationOutcomeError } from '../kernel/outcome';
import { isValidHost } from '../kernel/request-target';

/**
 * One guard before every handler (FHIR, device doors, the authorization server), in one
 * extension (each one hapi runs costs every request):
 * - the Host header must be a host (RFC 9112 §3.2): a Host no URL parser accepts made every
 *   handler that built the request's URL answer 500; and an HTTP/1.1 request must have one
 *   (§3.2: 400), which Node answered with a bare 400 before hapi saw it (src/server.ts lets it
 *   through to be answered here, after authentication like the rest of the guard);
 * - no path parameter, query parameter or form field may hold a NUL character. PostgreSQL text
 *   cannot hold one (the query fails: a 500), and no FHIR id, search value, client id or
 *   password needs one. JSON bodies are checked by their parser (src/kernel/input-limits.ts),
 *   headers by Node's HTTP parser;
 * - a body must come without a content coding (gzip, deflate, …): none is decoded (415).
 */
export const inputGuard: Plugin<void> = {
  name: 'input-guard',
  register(server) {
    server.ext('onPreHandler', (request: Request, h: ResponseToolkit) => {
      const host = request.headers.host as string | undefined;
      if (host !== undefined && !isValidHost(host)) throw new OperationOutcomeError(400, { code: 'invalid', diagnostics: 'the Host header is not a valid host (RFC 9112 §3.2)' });
      if (host === undefined && request.raw.req.httpVersion === '1.1') throw new OperationOutcomeError(400, { code: 'required', diagnostics: 'an HTTP/1.1 request must carry a Host header (RFC 9112 §3.2)' });
      const coding = contentCoding(request);
      if (coding) throw new OperationOutcomeError(415, { code: 'not-supported', diagnostics: `Content-Encoding ${coding.slice(0, 40)} is not supported; send the body without a content coding (identity)` });
      const where = nulIn('path', request.params) ?? nulIn('query', request.query) ?? nulIn('form', formOf(request));
      if (where) throw new OperationOutcomeError(400, { code: 'invalid', diagnostics: `the ${where} holds a NUL character (%00), which no value of this server may contain` });
      return h.continue;
    });
  },
};

/**
 * The content coding of a request body other than identity (RFC 9110 §8.4), which no door of this
 * server decodes: a gzip body was read as text and refused as "not UTF-8", a body labelled gzip
 * and sent plain was taken. §8.4.1: an unacceptable content coding is a 415.
 */
function contentCoding(request: Request): string | undefined {
  const coding = request.headers['content-encoding'] as string | undefined;
  if (coding === undefined) return undefined;
  const codings = coding.split(',').map((c) => c.trim().toLowerCase()).filter((c) => c !== '' && c !== 'identity');
  const payload = request.payload;
  const hasBody = payload !== null && payload !== undefined && !(Buffer.isBuffer(payload) && payload.length === 0) && payload !== '';
  return codings.length && hasBody ? codings.join(', ') : undefined;
}

/** The fields of a form body, parsed by hapi or (the authorization server's routes) left raw. */
function formOf(request: Request): Record<string, unknown> | undefined {
  const payload = request.payload;
  if (payload === null || payload === undefined) return undefined;
  if (!Buffer.isBuffer(payload) && typeof payload !== 'string') return typeof payload === 'object' ? (payload as Record<string, unknown>) : undefined;
  const type = String(request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') return undefined;
  const fields: Record<string, string[]> = Object.create(null) as Record<string, string[]>; // 'constructor' is a field name too
  for (const [name, value] of new URLSearchParams(payload.toString())) (fields[name] ??= []).push(value);
  return fields;
}

function nulIn(kind: string, fields: Record<string, unknown> | null | undefined): string | undefined {
  for (const [name, value] of Object.entries(fields ?? {})) {
    const values = Array.isArray(value) ? value : [value];
    if (name.includes('\u0000') || values.some((v) => typeof v === 'string' && v.includes('\u0000'))) return `${kind} parameter '${name.replace(/\u0000/g, '\\0').slice(0, 60)}'`;
  }
  return undefined;
}
