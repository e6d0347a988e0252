import { type InputLimits, parseJsonWithin } from '../kernel/input-limits';
import { OperationOutcomeError } from '../kernel/outcome';
import { isUtf8 } from 'node:buffer';

export const FHIR_JSON = 'application/fhir+json';
const JSON_TYPES = new Set([FHIR_JSON, 'application/json', 'json', 'application/json+fhir']);
/** The media ranges of an Accept header that FHIR JSON satisfies. */
const ACCEPTED_AS_JSON = new Set([FHIR_JSON, 'application/json+fhir', 'application/json', 'application/*', '*/*']);
const XML_TYPES = new Set(['application/fhir+xml', 'application/xml', 'text/xml', 'xml', 'application/xml+fhir']);

const mediaType = (value: string) => value.split(';')[0]!.trim().toLowerCase();

/** The FHIR version this server speaks, as the media type's `fhirVersion` parameter names it (R4 http.html#version-parameter). */
const FHIR_VERSION = '4.0';

/** The `fhirVersion` parameter of a media type or range, if it names one this server does not speak (4.0, or 4.0.x). */
function otherFhirVersion(value: string): string | undefined {
  const version = /;\s*fhirVersion\s*=\s*"?([^;",\s]*)/i.exec(value)?.[1];
  return version === undefined || version === FHIR_VERSION || version.startsWith(`${FHIR_VERSION}.`) ? undefined : version;
}

/**
 * The response media type from `_format` (which wins, R4 http.html#mime) or Accept. JSON is the
 * only format served: an explicit request for XML or anything else is 406. A request for plain
 * JSON (`_format=json`, `Accept: application/json`) is answered as application/fhir+json: R4
 * http.html#mime reads those as "the JSON format" and says "the correct mime type SHALL be used
 * by clients and servers", which for FHIR JSON is application/fhir+json (a +json type, RFC 6839,
 * so a client that asked for JSON reads it as JSON).
 */
export function responseType(format: string | string[] | undefined, accept: string | undefined): string {
  // Hapi hands a repeated query parameter over as an array; two formats are no answer.
  if (Array.isArray(format)) throw new OperationOutcomeError(400, { code: 'invalid', diagnostics: '_format is given more than once', expression: ['_format'] });
  if (format) {
    const f = mediaType(format);
    if (JSON_TYPES.has(f)) return FHIR_JSON;
    throw notAcceptable(`_format=${format} is not supported; use json or ${FHIR_JSON}`);
  }
  if (!accept) return FHIR_JSON;
  // A range asking for another FHIR version is one this server cannot serve (406 when none is left).
  const ranges = accept.split(',').map((r) => ({ type: mediaType(r), q: otherFhirVersion(r) === undefined ? Number(/;\s*q=([0-9.]+)/.exec(r)?.[1] ?? '1') : 0 }));
  const acceptable = ranges.filter((r) => r.q > 0);
  if (acceptable.some((r) => ACCEPTED_AS_JSON.has(r.type))) return FHIR_JSON;
  throw notAcceptable(`none of the accepted types (${accept}) can be served; this server speaks ${FHIR_JSON}; fhirVersion=${FHIR_VERSION}`);
}

function notAcceptable(diagnostics: string): OperationOutcomeError {
  return new OperationOutcomeError(406, { code: 'not-supported', diagnostics });
}

/** Checks a request body's Content-Type: FHIR JSON (or `allowPatch`: JSON Patch). XML and others are 415. */
export function checkBodyType(contentType: string | undefined, { allowPatch }: { allowPatch: boolean }): 'resource' | 'json-patch' {
  if (!contentType) return 'resource';
  const type = mediaType(contentType);
  const version = otherFhirVersion(contentType);
  if (version !== undefined) {
    throw new OperationOutcomeError(415, { code: 'not-supported', diagnostics: `the body is FHIR ${version.slice(0, 20)}; this server takes FHIR ${FHIR_VERSION} (R4)` });
  }
  // FHIR's JSON is UTF-8 (R4 http.html#mime, RFC 8259 §8.1): a body declared in another charset
  // was read as UTF-8 regardless, and a real Latin-1 one refused as "not UTF-8".
  const charset = /;\s*charset\s*=\s*"?([^;"\s]*)/i.exec(contentType)?.[1]?.toLowerCase();
  if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
    throw new OperationOutcomeError(415, { code: 'not-supported', diagnostics: `the body's charset ${charset.slice(0, 40)} is not supported; FHIR JSON is UTF-8 (charset=utf-8)` });
  }
  if (JSON_TYPES.has(type)) return 'resource';
  if (allowPatch && type === 'application/json-patch+json') return 'json-patch';
  const accepted = allowPatch ? `${FHIR_JSON} or application/json-patch+json` : FHIR_JSON;
  throw new OperationOutcomeError(415, {
    code: 'not-supported',
    diagnostics: `Content-Type ${type} is not supported${XML_TYPES.has(type) ? ' (XML is not served)' : ''}; send ${accepted}`,
  });
}

const BYTE_ORDER_MARK = 0xfeff;

/**
 * Parses a JSON body within the input limits (depth, values, string length, no NUL); malformed
 * JSON is a 400 naming where it broke. Every JSON door (REST, bundles, operations, device
 * doors) reads its body here.
 *
 * JSON between systems is UTF-8 (RFC 8259 §8.1). Bytes that are not UTF-8 are a 400: decoded,
 * each would become U+FFFD and be stored in place of what was sent (a Latin-1 "Müller" stored
 * as "M\uFFFDller"). A leading byte order mark, which the same section lets a parser ignore and
 * some clients send, is ignored.
 */
export function parseJsonBody(payload: unknown, limits: InputLimits): unknown {
  if (Buffer.isBuffer(payload) && !isUtf8(payload)) {
    throw new OperationOutcomeError(400, { code: 'structure', diagnostics: 'the body is not UTF-8, which JSON between systems must be (RFC 8259 §8.1)' });
  }
  let text = Buffer.isBuffer(payload) ? payload.toString('utf8') : typeof payload === 'string' ? payload : '';
  if (text.charCodeAt(0) === BYTE_ORDER_MARK) text = text.slice(1);
  if (text.trim() === '') {
    throw new OperationOutcomeError(400, { code: 'required', diagnostics: 'the request body is empty' });
  }
  try {
    return parseJsonWithin(text, limits);
  } catch (err) {
    if (err instanceof OperationOutcomeError) throw err;
    throw new OperationOutcomeError(400, { code: 'structure', diagnostics: `the body is not valid JSON: ${(err as Error).message}` });
  }
}

export type ReturnPreference = 'minimal' | 'representation' | 'OperationOutcome';

export function preferences(prefer: string | undefined): { return: ReturnPreference; explicit: boolean; lenient: boolean } {
  const parts = (prefer ?? '').split(/[;,]/).map((p) => p.trim());
  const ret = parts.find((p) => p.startsWith('return='))?.slice('return='.length);
  return {
    return: ret === 'minimal' || ret === 'OperationOutcome' ? ret : 'representation',
    explicit: ret !== undefined,
    lenient: parts.includes('handling=lenient'),
  };
}
