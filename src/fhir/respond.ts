import type { ResponseToolkit, ResponseObject, Request } from '@hapi/hapi';
import type { FailedEntry, InteractionResult } from './context';
import { parseStoredJson } from '../kernel/input-limits';
import { stringifyKeepingDecimals } from '../kernel/json-decimals';
import { responseType } from './negotiation';

declare module '@hapi/hapi' {
  interface RequestApplicationState {
    /** The answer's InteractionResult.disclosedPatients, for the audit trail (src/audit/http.ts). */
    hiddenPatients?: readonly string[];
    /** The answer's InteractionResult.failedEntries, each audited as a failure (src/audit/http.ts). */
    failedEntries?: readonly FailedEntry[];
  }
}

/**
 * Writes an InteractionResult as the HTTP response: the negotiated JSON media type, `_pretty`,
 * headers. Stored JSON text is sent as is unless pretty printing asks for a re-parse.
 */
export function respond(request: Request, h: ResponseToolkit, result: InteractionResult): ResponseObject {
  const query = request.query as Record<string, string | string[] | undefined>;
  const type = responseType(query._format, request.headers.accept as string | undefined);
  let payload: string | undefined;
  if (result.body !== undefined) {
    const pretty = query._pretty === 'true';
    if ('json' in result.body && typeof result.body.json === 'string') {
      payload = pretty ? stringifyKeepingDecimals(parseStoredJson(result.body.json), 2) : result.body.json;
    } else {
      payload = stringifyKeepingDecimals(result.body, pretty ? 2 : undefined);
    }
  }
  if (result.disclosedPatients?.length) request.app.hiddenPatients = result.disclosedPatients;
  if (result.failedEntries?.length) request.app.failedEntries = result.failedEntries;
  const response = h.response(payload).code(result.status);
  if (payload !== undefined) response.type(`${type}; charset=utf-8`);
  for (const [name, value] of Object.entries(result.headers ?? {})) response.header(name, value);
  return response;
}
