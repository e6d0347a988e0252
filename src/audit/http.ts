import type { Request } from '@hapi/hapi';
import type { AccessPolicy } from '../access/policy';
import { localReference, patientsOf } from '../search';
import type { Action, Actor, AuditFact, Outcome } from './event';
import { rawQueryOf, urlAsSent } from '../kernel/request-target';
import { isValidId } from '../kernel/id';
import { SERVED_DEFINITION_PATHS } from '../fhir/served-definitions';
import { splitRequestUrl } from '../fhir/bundle/entries';

declare module '@hapi/hapi' {
  interface RequestApplicationState {
    /** What an unauthenticated endpoint (token, login) learnt of who asks, for the audit trail. */
    auditActor?: Pick<Actor, 'claimedClient' | 'claimedUser'>;
  }
}

/** Called by the token and login endpoints: the client or user a request claims to be, before (or whether or not) it proves it. */
export function noteClaimedActor(request: Request, actor: Pick<Actor, 'claimedClient' | 'claimedUser'>): void {
  request.app.auditActor = { ...request.app.auditActor, ...actor };
}

/** What the response of a request disclosed, worked out later (off the response path) by the recorder. */
export interface RequestAudit {
  fact: Omit<AuditFact, 'patients'>;
  /** The response body, when the patients it discloses are still to be found in it, and those it holds without showing. */
  disclosed?: { json: string; type?: string; id?: string; onlyReads?: boolean; hidden?: readonly string[] };
  /**
   * The patients the request itself names (see patientsNamedBy): its events are linked to them
   * when the answer disclosed nobody, a refusal or an empty search.
   */
  named?: string[];
  /** The entries of a batch or transaction that failed inside its 200 answer, one failure event each. */
  failedEntries?: Array<Pick<RequestAudit, 'fact' | 'named'>>;
}

interface Interaction {
  subtype?: string;
  action: Action;
  /** A read-like interaction whose success is audited here; writes succeed in their own transaction. */
  reads: boolean;
}

const SERVED_PATHS = new Set(SERVED_DEFINITION_PATHS);
const READ: Interaction = { subtype: 'read', action: 'R', reads: true };
const SEARCH: Interaction = { subtype: 'search-type', action: 'E', reads: true };
const SEARCH_SYSTEM: Interaction = { subtype: 'search-system', action: 'E', reads: true };
const OPERATION: Interaction = { subtype: 'operation', action: 'E', reads: true };
/**
 * `$erase` succeeds as a write: its unit records the erasure by a keyed pseudonym
 * (src/audit/erasure.ts). A response event would name the erased patient beside the same
 * X-Request-Id, and so undo the pseudonym.
 */
const ERASE: Interaction = { subtype: 'operation', action: 'D', reads: false };

/** The `$operation` a route's path names, if any. */
function operationOf(request: Request): string | undefined {
  const params = request.params as Record<string, string | undefined>;
  const named = params.operation ?? params.compartmentType ?? params.id;
  return named?.startsWith('$') ? named : undefined;
}

/** The FHIR interaction of a route (by Hapi's route path: the router already parsed the URL). */
function interactionOf(request: Request): Interaction | undefined {
  const method = request.method.toUpperCase();
  const params = request.params as Record<string, string | undefined>;
  // The server's own definitions: public descriptions, like metadata; a write is a refusal to record.
  if (SERVED_PATHS.has(request.route.path)) return method === 'GET' ? undefined : write(method);
  switch (request.route.path) {
    case '/fhir/metadata':
    case '/fhir/.well-known/smart-configuration':
      return undefined;
    case '/fhir':
      if (method === 'GET') return SEARCH_SYSTEM;
      // batch or transaction (the subtype comes from the response); its writes are audited one by one in its unit.
      return { action: 'E', reads: true };
    case '/fhir/_search':
      return SEARCH_SYSTEM;
    case '/fhir/{type}':
      return method === 'GET' ? SEARCH : write(method);
    case '/fhir/{type}/_search':
    case '/fhir/AuditEvent':
      return SEARCH;
    case '/fhir/AuditEvent/{id}':
      return method === 'GET' ? READ : write(method);
    case '/fhir/{type}/{id}':
      if (params.id?.startsWith('$')) return OPERATION;
      return method === 'GET' ? READ : write(method);
    case '/fhir/{type}/{id}/_history/{vid}':
      return { subtype: 'vread', action: 'R', reads: true };
    case '/fhir/_history':
      return { subtype: 'history-system', action: 'R', reads: true };
    case '/fhir/{type}/_history':
      return { subtype: 'history-type', action: 'R', reads: true };
    case '/fhir/{type}/{id}/_history':
    case '/fhir/Patient/{id}/_history':
      return { subtype: 'history-instance', action: 'R', reads: true };
    case '/fhir/Patient/{id}/{compartmentType}':
      return params.compartmentType?.startsWith('$') ? OPERATION : SEARCH;
    case '/fhir/Patient/{id}/_search':
    case '/fhir/Patient/{id}/{compartmentType}/_search':
      return SEARCH;
    case '/fhir/{type}/{operation}':
    case '/fhir/{type}/{id}/{operation}':
      return operationOf(request) === '$erase' ? ERASE : OPERATION;
    default:
      if (request.route.path.startsWith('/ingest/')) return { subtype: 'create', action: 'C', reads: false };
      if (request.route.path.startsWith('/fhir/')) return { action: 'E', reads: true };
      return undefined;
  }
}

function write(method: string): Interaction {
  if (method === 'POST') return { subtype: 'create', action: 'C', reads: false };
  if (method === 'PUT') return { subtype: 'update', action: 'U', reads: false };
  if (method === 'PATCH') return { subtype: 'patch', action: 'U', reads: false };
  return { subtype: 'delete', action: 'D', reads: false };
}

/**
 * The audit of one finished request, or undefined when there is none to record here: a
 * successful write was audited in its own transaction, and discovery documents disclose nothing.
 * Every refusal (401, 403, …) and failure is recorded with the reason the client was given.
 */
export function auditOfRequest(request: Request, policyOf: (r: Request) => AccessPolicy | undefined, baseUrl: string): RequestAudit | undefined {
  const response = request.response as { statusCode?: number; source?: unknown } | null;
  const status = response?.statusCode ?? 500;
  const outcome: Outcome = status < 400 ? '0' : status < 500 ? '4' : '8';
  const path = request.route.path;
  const origin = { requestId: request.info.id, address: request.info.remoteAddress };
  const policy = policyOf(request);
  // Facts and actors have one shape, every property present (undefined when absent): built by
  // conditional spreads, each object got a shape of its own, and reading and copying them took
  // auditRecords 3.8 µs per request instead of 0.3 µs (measured on captured facts).
  const claimed = request.app.auditActor;
  const actor: Actor = { policy, origin, claimedClient: claimed?.claimedClient, claimedUser: claimed?.claimedUser };
  const body = typeof response?.source === 'string' ? response.source : undefined;

  if (path === '/auth/token' && request.method === 'post') {
    return { fact: fact({ kind: 'token', subtype: 'token', action: 'E', outcome, outcomeDesc: failure(status, response?.source, 'oauth'), actor }) };
  }
  if (path === '/auth/interaction/{id}/login' && request.method === 'post') {
    // Success redirects to the next step (303, src/auth/authorize.ts); a refusal shows the login
    // page again with its status (400, 401, 429).
    const ok = status >= 300 && status < 400;
    return { fact: fact({ kind: 'login', subtype: 'login', action: 'E', outcome: ok ? '0' : '4', outcomeDesc: ok ? undefined : `login refused (${status})`, actor }) };
  }
  const interaction = path.startsWith('/auth/') ? (status === 401 || status === 403 ? { action: 'E' as const, reads: true } : undefined) : interactionOf(request);
  if (!interaction) return undefined;
  if (outcome === '0' && !interaction.reads) return undefined;

  const params = request.params as Record<string, string | undefined>;
  const subtype = request.route.path === '/fhir' && request.method === 'post' ? bundleKind(body) : interaction.subtype;
  const what = outcome === '0' && (interaction.subtype === 'read' || interaction.subtype === 'vread') && params.type && params.id ? `${params.type}/${params.id}${versionOf(request, params)}` : undefined;
  const rest = fact({ kind: 'rest', subtype: subtype || undefined, action: interaction.action, outcome, outcomeDesc: failure(status, body, 'fhir'), actor, query: rawRequest(request), what });
  // Only an answer that may disclose nobody needs them: a refusal, a failure, an empty searchset.
  const named = policy && (outcome !== '0' || body === undefined || !body.includes('"entry"'))
    ? patientsNamedBy(params.type ?? (path.startsWith('/fhir/Patient/{id}') ? 'Patient' : undefined), params.id, searchParamsOf(request))
    : undefined;
  // A streamed answer (a bulk export's file) has no text here: what it disclosed is what its
  // route noted as it went (request.app.hiddenPatients, patientsInNdjson).
  const streamed = body === undefined ? request.app.hiddenPatients : undefined;
  if (streamed?.length && outcome === '0') return { fact: rest, disclosed: { json: '', hidden: streamed }, named };
  if (outcome !== '0' || body === undefined) return { fact: rest, named };
  // The pseudonymised copy is nobody's identifiable data: what it disclosed is the record of the
  // patient it was made from, under that patient's own id (not the pseudonym it carries, which
  // the event would otherwise link to the id).
  if (operationOf(request) === '$anonymize') return { fact: rest, disclosed: { json: '{}', type: 'Patient', id: params.id } };
  const bundle = subtype === 'batch' || subtype === 'transaction';
  const failedEntries = bundle && request.app.failedEntries ? entryFailures(request.app.failedEntries, actor, baseUrl) : undefined;
  return { fact: rest, disclosed: { json: body, type: params.type, id: params.id, onlyReads: bundle, hidden: request.app.hiddenPatients }, named, failedEntries };
}

/** At most this many named patients link one request's events: a refused `patient=1,2,…` must not fan out without bound. */
export const MAX_NAMED_PATIENTS = 10;

/**
 * The patients a request names: the Patient of its path (`Patient/7`, `Patient/7/Observation`,
 * `Patient/7/$everything`), and in its search parameters a `patient` (or `:Patient`) id and any
 * `Patient/<id>` reference of this server. A refused or empty look at a patient's data belongs to
 * that patient's record of accesses (issue 14: a breach must be investigable by patient), and its
 * request, which names the patient, is then sealed under that patient's key like a search that
 * found them (decision 036), so that an erasure reaches it too. Names, birth dates and
 * identifiers name nobody the server can link, and chains (`patient.name`) are not ids.
 */
export function patientsNamedBy(type: string | undefined, id: string | undefined, search: URLSearchParams | undefined): string[] {
  const named = new Set<string>();
  if (type === 'Patient' && id && !id.startsWith('$')) named.add(id);
  for (const [name, raw] of search ?? []) {
    const [code, modifier] = name.split(':');
    if (code!.startsWith('_') && !(code === '_id' && type === 'Patient')) continue;
    if (code!.includes('.')) continue;
    for (const value of raw.split(',')) {
      const local = localReference(value);
      if (local) {
        if (local.type === 'Patient') named.add(local.id);
      } else if ((code === 'patient' || modifier === 'Patient' || code === '_id') && isValidId(value)) {
        named.add(value);
      }
    }
  }
  return [...named].slice(0, MAX_NAMED_PATIENTS).map(detached);
}

/** The search parameters of a request: its query, and for a form search its body. */
function searchParamsOf(request: Request): URLSearchParams | undefined {
  const query = rawQueryOf(request);
  const payload = request.payload;
  const form = request.route.path.endsWith('/_search') && payload !== undefined && payload !== null ? String(payload) : '';
  if (!query && !form) return undefined;
  return new URLSearchParams(form ? `${query}&${form}` : query);
}

/**
 * A batch answers 200 whatever its entries' fate (a transaction fails whole, decision 038): each
 * failed entry is audited as the failure it is, a refusal (403) as much as a REST request's, with
 * the entry's own request as the query.
 */
function entryFailures(failed: NonNullable<Request['app']['failedEntries']>, actor: Actor, baseUrl: string): Array<Pick<RequestAudit, 'fact' | 'named'>> {
  return failed.map((e) => {
    const interaction = entryInteraction(e.method, e.url);
    return {
      fact: fact({
        kind: 'rest', subtype: interaction.subtype, action: interaction.action, outcome: e.status < 500 ? '4' : '8',
        outcomeDesc: `HTTP ${e.status}${e.diagnostics ? `: ${e.diagnostics}` : ''}`, actor, query: `${e.method} ${e.url}`, what: undefined,
      }),
      named: actor.policy ? entryNamedPatients(e.url, baseUrl) : undefined,
    };
  });
}

/** The patients an entry's request URL names, read as the bundle read it (relative, or absolute on this server's base). */
function entryNamedPatients(url: string, baseUrl: string): string[] {
  let split;
  try {
    split = splitRequestUrl(url, baseUrl);
  } catch {
    return []; // on another server's base: it names nobody here
  }
  return patientsNamedBy(split.path[0], split.path[1], split.query);
}

/** The interaction an entry's request asks for: its method, and for a read its URL's shape (`Type/id` or a search). */
function entryInteraction(method: string, url: string): Omit<Interaction, 'reads'> {
  if (method === 'POST' || method === 'PUT' || method === 'PATCH' || method === 'DELETE') return write(method);
  if (method !== 'GET' && method !== 'HEAD') return { action: 'E' };
  const path = url.split('?')[0]!.split('/').filter((s) => s !== '' && !s.includes(':'));
  if (path.length === 2 && !path[1]!.startsWith('_')) return READ;
  return path.length === 1 ? SEARCH : { action: 'R' };
}

/** A request's fact, every property set in one order: the one shape every fact of this module has (see the actor's comment). */
function fact(f: Omit<RequestAudit['fact'], 'erasedPatient'>): RequestAudit['fact'] {
  return { kind: f.kind, subtype: f.subtype, action: f.action, outcome: f.outcome, outcomeDesc: f.outcomeDesc, actor: f.actor, what: f.what, query: f.query, erasedPatient: undefined };
}

function versionOf(request: Request, params: Record<string, string | undefined>): string {
  if (params.vid) return `/_history/${params.vid}`;
  const etag = (request.response as { headers?: Record<string, unknown> } | null)?.headers?.etag;
  const m = typeof etag === 'string' ? /^W\/"(\d+)"$/.exec(etag) : null;
  return m ? `/_history/${m[1]}` : '';
}

/** The raw request for entity[query]: method, URL as sent and, for a form search, its body. */
function rawRequest(request: Request): string {
  const line = `${request.method.toUpperCase()} ${urlAsSent(request)}`;
  const payload = request.payload;
  const formSearch = request.route.path.endsWith('/_search'); // type, system and compartment searches
  if (formSearch && payload !== undefined && payload !== null) return `${line}\n\n${String(payload)}`;
  return line;
}

function bundleKind(body: string | undefined): string | undefined {
  if (!body) return undefined;
  const m = /"type"\s*:\s*"(batch|transaction)-response"/.exec(body.slice(0, 200));
  return m?.[1];
}

/** The reason the client was given: the OperationOutcome's diagnostics, or OAuth's error_description. */
function failure(status: number, body: unknown, kind: 'fhir' | 'oauth'): string | undefined {
  if (status < 400) return undefined;
  let reason = `HTTP ${status}`;
  try {
    // Our FHIR answers are JSON text; the OAuth endpoints answer objects hapi serialises.
    const parsed = (typeof body === 'string' ? JSON.parse(body) : body) as { issue?: Array<{ diagnostics?: string }>; error?: string; error_description?: string } | undefined;
    const text = kind === 'oauth' ? [parsed?.error, parsed?.error_description].filter(Boolean).join(': ') : parsed?.issue?.[0]?.diagnostics;
    if (text) reason = `HTTP ${status}: ${text}`;
  } catch {
    // not JSON (an HTML page): the status says it
  }
  return reason;
}

/**
 * The patients a response disclosed: the resource read, the entries of a searchset or history
 * Bundle, the read entries of a batch or transaction (writes are audited with their own events).
 * Runs in the recorder's batch, not on the response path.
 */
export function disclosedPatients(disclosed: NonNullable<RequestAudit['disclosed']>): string[] {
  const shown = patientsInBody(disclosed);
  return disclosed.hidden?.length ? [...new Set([...shown, ...disclosed.hidden])] : shown;
}

function patientsInBody(disclosed: NonNullable<RequestAudit['disclosed']>): string[] {
  if (!disclosed.onlyReads && !(holdsPatientString(disclosed.json) && HAS_PATIENT.test(disclosed.json))) return referencedPatients(disclosed);
  let body: fhir4.FhirResource;
  try {
    body = JSON.parse(disclosed.json) as fhir4.FhirResource;
  } catch {
    return [];
  }
  const patients = new Set<string>();
  const add = (resource: fhir4.FhirResource | undefined) => {
    if (!resource) return;
    if (resource.resourceType === 'Bundle') {
      for (const e of resource.entry ?? []) if (e.resource && e.resource.resourceType !== 'Bundle' && e.resource.resourceType !== 'OperationOutcome') add(e.resource as fhir4.FhirResource);
      return;
    }
    for (const p of patientsOf(resource.resourceType, resource)) patients.add(p);
    addReferencedPatients(resource, patients);
  };
  if (disclosed.onlyReads && body.resourceType === 'Bundle') {
    // A read entry has a resource and no Location; a write's answer has a Location.
    for (const e of body.entry ?? []) if (e.resource && !e.response?.location) add(e.resource as fhir4.FhirResource);
  } else {
    add(body);
  }
  if (disclosed.type === 'Patient' && disclosed.id && !disclosed.id.startsWith('$')) patients.add(disclosed.id);
  return [...patients];
}

const HAS_PATIENT = /"resourceType"\s*:\s*"Patient"/;

/**
 * The patients an NDJSON text discloses, by the rule of a response's (patientsInBody) applied to
 * each line: a bulk export's file, which streams out and is never a body the recorder sees.
 */
export function patientsInNdjson(text: string): string[] {
  const patients = new Set<string>();
  for (let start = 0; start < text.length; ) {
    const end = text.indexOf('\n', start);
    const line = text.slice(start, end === -1 ? text.length : end);
    start = end === -1 ? text.length : end + 1;
    if (line !== '') for (const p of patientsInBody({ json: line })) patients.add(p);
  }
  return [...patients];
}

/**
 * Every Patient `node` references, in any element, as the fast path below finds them in the
 * text: both paths name the people the disclosed content is about (an Observation's `focus` as
 * well as its `subject`), not only its compartments (docs/decisions/013-audit-trail.md).
 */
function addReferencedPatients(node: unknown, into: Set<string>): void {
  if (Array.isArray(node)) {
    for (const item of node) addReferencedPatients(item, into);
  } else if (node !== null && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === 'reference' && typeof value === 'string') {
        const local = localReference(value);
        if (local?.type === 'Patient') into.add(local.id);
      } else if (typeof value === 'object') {
        addReferencedPatients(value, into);
      }
    }
  }
}

/**
 * Whether the text holds the JSON string "Patient", as every match of HAS_PATIENT does: a
 * prefilter, as the regex took ~6 µs to find nothing in a 50-entry searchset, and this ~1.2 µs.
 * Searched as `Patient` with a quote on each side: V8 took ~18 µs to not find `"Patient"` or
 * `Patient"` (needles that start or end with a quote, of which JSON is full).
 */
function holdsPatientString(json: string): boolean {
  for (let at = json.indexOf('Patient'); at !== -1; at = json.indexOf('Patient', at + 7)) {
    if (json.charCodeAt(at - 1) === 0x22 && json.charCodeAt(at + 7) === 0x22) return true;
  }
  return false;
}
/** A `reference` whose value names a Patient: judged by localReference, as on the parsing path. */
const PATIENT_REFERENCE = /"reference"\s*:\s*"([^"]*Patient\/[^"]*)"/g;

/**
 * The fast path for answers without Patient resources (the hot Observation searches): every
 * Patient the disclosed JSON references, found in the text without parsing it. A reference in
 * any element counts, as on the parsing path (addReferencedPatients). Measured reason: parsing a 50-entry searchset and evaluating the compartment
 * parameters cost about a quarter of the search's own server CPU in the bench.
 */
function referencedPatients(disclosed: NonNullable<RequestAudit['disclosed']>): string[] {
  const patients = new Set<string>();
  for (const m of disclosed.json.matchAll(PATIENT_REFERENCE)) {
    const local = localReference(m[1]!);
    if (local?.type === 'Patient') patients.add(local.id);
  }
  if (disclosed.type === 'Patient' && disclosed.id && !disclosed.id.startsWith('$')) patients.add(disclosed.id);
  return [...patients].map(detached);
}

/**
 * A copy of `s` that does not keep the string it was cut from alive. V8 represents a substring of
 * 13 characters or more (a regex capture, a slice) as a view of its parent: each patient id
 * found in a response body kept the whole body (tens of kB for a searchset) in memory until the
 * recorder's batch was written, long enough to be copied by the young generation's collections
 * and promoted. JSON.parse builds its strings afresh.
 */
function detached(s: string): string {
  return JSON.parse(JSON.stringify(s)) as string;
}
