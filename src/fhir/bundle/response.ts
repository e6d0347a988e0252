import type { FhirContext, InteractionResult } from '../context';
import { type Issue, operationOutcome, OperationOutcomeError } from '../../kernel/outcome';
import { parseStoredJson } from '../../kernel/input-limits';
import { containsKeptDecimals } from '../../kernel/json-decimals';
import type { ReturnPreference } from '../negotiation';
import type { WriteOutcome } from '../../pipeline';

const REASONS: Record<number, string> = {
  200: 'OK', 201: 'Created', 204: 'No Content', 304: 'Not Modified', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
  405: 'Method Not Allowed', 409: 'Conflict', 410: 'Gone', 412: 'Precondition Failed', 413: 'Payload Too Large', 415: 'Unsupported Media Type', 422: 'Unprocessable Entity', 500: 'Internal Server Error',
};
const statusLine = (status: number) => `${status} ${REASONS[status] ?? ''}`.trim();

/** The response entry of a write: status, location, etag, lastModified, and the resource if asked for. */
export function writeEntry(baseUrl: string, outcome: WriteOutcome, prefer: ReturnPreference): fhir4.BundleEntry {
  const response: fhir4.BundleEntryResponse = { status: statusLine(outcome.status) };
  if (outcome.id && outcome.versionId !== undefined) {
    if (outcome.status !== 204) response.location = `${outcome.type}/${outcome.id}/_history/${outcome.versionId}`;
    response.etag = `W/"${outcome.versionId}"`;
  }
  if (outcome.lastUpdated) response.lastModified = outcome.lastUpdated;
  const entry: fhir4.BundleEntry = { response };
  if (outcome.id && outcome.status !== 204) entry.fullUrl = `${baseUrl}/${outcome.type}/${outcome.id}`;
  if (prefer === 'representation' && outcome.resource) entry.resource = outcome.resource;
  if (prefer === 'OperationOutcome') response.outcome = operationOutcome([{ severity: 'information', code: 'informational', diagnostics: `${statusLine(outcome.status)}` }]);
  return entry;
}

/** A batch's or transaction's response Bundle, with the patients its GET entries' subsets may no longer show. */
export interface BundleAnswer {
  bundle: fhir4.Bundle;
  disclosedPatients: string[];
}

/** The response Bundle of a batch or transaction; its resources' decimals are written as they were sent or stored. */
export function bundleAnswer(type: 'batch-response' | 'transaction-response', entry: fhir4.BundleEntry[], disclosedPatients: string[]): BundleAnswer {
  // R4 json.html: arrays are never empty; a bundle of no entries is answered with none.
  const bundle: fhir4.Bundle = { resourceType: 'Bundle', type, ...(entry.length ? { entry } : {}) };
  containsKeptDecimals(bundle, entry.map((e) => e.resource));
  return { bundle, disclosedPatients };
}

/**
 * The response entry of a GET entry, or of a HEAD entry (R4 http.html: the headers of the GET,
 * without its body); the patients its subset may no longer show are added to `disclosed`.
 */
export function readEntryResponse(result: InteractionResult, disclosed: string[], method: 'GET' | 'HEAD'): fhir4.BundleEntry {
  if (result.disclosedPatients) disclosed.push(...result.disclosedPatients);
  const response: fhir4.BundleEntryResponse = { status: statusLine(result.status) };
  if (result.headers?.etag) response.etag = result.headers.etag;
  const entry: fhir4.BundleEntry = { response };
  if (result.body) entry.resource = 'json' in result.body && typeof result.body.json === 'string' ? (parseStoredJson(result.body.json) as fhir4.FhirResource) : (result.body as fhir4.FhirResource);
  // The version's own instant, to the millisecond, as a write entry gives it; the HTTP date of the
  // Last-Modified header holds whole seconds only (conformance probe C2).
  const lastUpdated = entry.resource?.resourceType !== 'Bundle' ? entry.resource?.meta?.lastUpdated : undefined;
  if (lastUpdated) response.lastModified = lastUpdated;
  else if (result.headers?.['last-modified']) response.lastModified = new Date(result.headers['last-modified']).toISOString();
  if (method === 'HEAD') delete entry.resource;
  return entry;
}

/** The response entry of a failed batch entry: its status and OperationOutcome. */
export function errorEntry(err: OperationOutcomeError): fhir4.BundleEntry {
  return { response: { status: statusLine(err.status), outcome: operationOutcome(err.issues) } };
}

/** A failed entry's response: its OperationOutcome restated for the bundle, or a 500 logged here when it is no OperationOutcome. */
export function failedEntry(ctx: FhirContext, index: number, err: unknown): fhir4.BundleEntry {
  if (!(err instanceof OperationOutcomeError)) {
    ctx.log.error({ err, entry: index }, 'bundle entry failed');
    return errorEntry(new OperationOutcomeError(500, { severity: 'fatal', code: 'exception', diagnostics: `Bundle.entry[${index}]: internal error` }));
  }
  return errorEntry(err.issues.some((i) => i.diagnostics.startsWith('Bundle.entry[')) ? err : inEntry(index, err));
}

/** A read entry's error, restated for the bundle: it is about the entry's request URL, not a resource it sent. */
export function inReadEntry(index: number, err: OperationOutcomeError): OperationOutcomeError {
  const prefix = `Bundle.entry[${index}]`;
  const issues: Issue[] = err.issues.map((issue) => ({ ...issue, diagnostics: `${prefix}: ${issue.diagnostics}`, expression: [`${prefix}.request.url`] }));
  return new OperationOutcomeError(err.status, issues, err.headers);
}

/** An entry's error, restated for the bundle: `Observation.status` becomes `Bundle.entry[36].resource.status`. */
export function inEntry(index: number, err: OperationOutcomeError): OperationOutcomeError {
  const prefix = `Bundle.entry[${index}]`;
  const issues: Issue[] = err.issues.map((issue) => ({
    ...issue,
    diagnostics: `${prefix}: ${issue.diagnostics}`,
    expression: issue.expression?.map((e) => (/^[A-Z]/.test(e) ? `${prefix}.resource${e.replace(/^[A-Za-z]+/, '')}` : `${prefix}.resource.${e}`)) ?? [prefix],
  }));
  return new OperationOutcomeError(err.status, issues, err.headers);
}
