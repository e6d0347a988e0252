import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { isValidId } from '../../src/kernel/id';
import { projectRoot } from '../../src/kernel/paths';
import { supportedTypes } from '../../src/kernel/resource-types';
import { tableOf } from '../../src/store/tables';
import { validationIssues } from '../../src/validation/resource';
import { countRows } from '../helpers/server';
import { type SecuredServer, startSecuredServer } from './helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * Issue 11, "must show": a fuzz campaign over every route of the server (server.table()), on a
 * real loopback port with auth on. Each request mutates method, path parameters, query,
 * headers and body from pools of hostile values; a seeded generator makes every run
 * reproducible: the fixed seed always runs, and one random seed is printed so that a failure
 * seen once can be replayed with FUZZ_SEED=<seed>. FUZZ_REQUESTS scales the campaign.
 *
 * Holds: no 5xx, no connection reset, every 4xx of the FHIR and device routes an
 * OperationOutcome, no resource in a 2xx answer outside a narrow token's grant (a patient's
 * compartment, granular vital-signs Observations, Patients only), the sentinel types (never
 * sent a valid body) unchanged, and every row in the database a valid resource under a valid id.
 */

/** mulberry32: a tiny seeded PRNG, enough to replay a campaign exactly. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(list: readonly T[]): T => list[int(list.length)]!;
  const chance = (p: number) => next() < p;
  return { next, int, pick, chance };
}
type Rng = ReturnType<typeof rng>;

/** Types the campaign never sends a valid body: their row counts must not move. */
const SENTINELS = ['Practitioner', 'Goal', 'MedicationRequest', 'Subscription'];
/** Types it may write validly (system token): what it writes must be valid and readable. */
const WRITABLE = ['Patient', 'Observation', 'CarePlan', 'Device', 'DeviceUseStatement', 'Flag'];

/** Percent-encodes; a lone surrogate (not encodable) goes out as its raw, invalid UTF-8 bytes. */
function enc(value: string): string {
  try {
    return encodeURIComponent(value);
  } catch {
    return '%ED%A0%80';
  }
}

const fixture = (name: string) => JSON.parse(readFileSync(join(projectRoot, 'fixtures', name), 'utf8')) as Record<string, unknown>;

const HOSTILE_STRINGS = [
  '', ' ', "x y<script>alert(1)</script>", '%2e%2e', '..', '../../etc/passwd', '\u0000', 'a\u0000b', '😀', '\ud800', "' OR 1=1 --",
  '"', '\\', '{}', '[]', 'null', 'undefined', '__proto__', 'constructor', 'x'.repeat(65), 'x'.repeat(5000), '-1', '0', '1e20',
  '99999999999999999999', 'NaN', 'Infinity', '2026-13-45', '2026-11-02T25:61:00Z', 'Patient/x y', 'Patient?identifier=a', 'urn:uuid:zz',
  'http://169.254.169.254/latest/meta-data', 'https://127.0.0.1:1/x', '$validate', '_history', 'ge', 'gt2020-01-01', 'ap1e308', '%ff%fe',
];
const HOSTILE_VALUES: unknown[] = [
  null, true, false, 0, -1, 1e20, -1e308, 1.5, Number.MAX_SAFE_INTEGER + 2, '', 'x', [], [null], [1, 'a', null], {}, { a: null },
  { __proto__: { polluted: true } }, { reference: 'Patient/x y' }, { coding: [null] }, { coding: [{ system: 7, code: [] }] }, [[[[[]]]]],
];
const PARAM_NAMES = [
  '_format', '_format', '_count', '_cursor', '_sort', '_summary', '_elements', '_total', '_include', '_include:iterate', '_revinclude',
  '_revinclude:iterate', '_has:Observation:subject:code', '_id', '_lastUpdated', 'name', 'identifier', 'code', 'subject', 'patient',
  'subject.name', 'subject:Patient.identifier', 'date', 'value-quantity', 'component-code', 'status', 'category', 'combo-code',
  '_pretty', 'mode', 'url', 'system', 'code', 'now', 'start', 'end', '_since', '_at', 'x:y:z', 'name:exact', 'name:missing', 'code:not',
  'patient', '%00', '_content', 'birthdate', 'gender', 'device', 'criteria',
];
const PARAM_VALUES = [
  'json', 'xml', 'application/fhir+json', '10', '0', '-1', '1001', 'abc', '*', 'Observation:subject', 'Observation:*', 'Patient:x',
  'true', 'count', 'accurate', 'name,gender', '-date', 'nonsense', 'http://loinc.org|8867-4', '|8867-4', 'Patient/1', 'ge2026-01-01',
  'lt1e20', 'ap100|http://unitsofmeasure.org|mm[Hg]', 'eq', 'a,b,c', 'eyJhIjoxfQ', '2026-11-02T08:00:00Z',
];
const CONTENT_TYPES = [
  'application/fhir+json', 'application/fhir+json', 'application/json', 'application/json-patch+json', 'application/fhir+xml',
  'application/x-www-form-urlencoded', 'text/plain', 'multipart/form-data; boundary=x', 'application/fhir+json; charset=utf-16', 'garbage/;;;',
];
const ACCEPTS = [undefined, 'application/fhir+json', 'application/fhir+xml', '*/*', 'text/html', 'application/json;q=0', ';;;,,,q=abc'];

interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
}

interface Figures {
  sent: number;
  byClass: Record<string, number>;
  resets: string[];
  serverErrors: string[];
  leaks: string[];
  /** Resources in 2xx answers to the narrow tokens, each checked against the grant. */
  checked: number;
  notOutcome: string[];
  routesHit: Map<string, number>;
}

describe('fuzz campaign over every route', () => {
  let app: SecuredServer;
  let base: string;
  let tokens: Array<Record<string, string>>;
  let patientId: string;
  let observationId: string;
  let routes: Array<{ method: string; path: string }>;
  let otherId: string;
  let readIds: string[];
  let narrowTokens: Array<Record<string, string>>;
  let grants: Map<string, (resource: Record<string, unknown>) => boolean>;
  /** A reference to a Patient other than the patient token's own. */
  const otherPatient = (res: Record<string, unknown>) => [...JSON.stringify(res).matchAll(/"reference":"Patient\/([^"/]+)"/g)].some((m) => m[1] !== patientId);
  /** Resources that say nothing about patients, answered to any caller. */
  const NEUTRAL = new Set(['OperationOutcome', 'CapabilityStatement', 'Parameters', 'ConceptMap']);

  /** Every resource in a response body: the body itself, or a Bundle's entries (nested bundles too). */
  function resourcesIn(body: unknown): Array<Record<string, unknown>> {
    if (body === null || typeof body !== 'object') return [];
    const res = body as Record<string, unknown> & { entry?: Array<{ resource?: unknown; response?: { outcome?: unknown } }> };
    if (res.resourceType === 'Bundle') return (res.entry ?? []).flatMap((e) => resourcesIn(e.resource));
    // Discovery documents and keys (no resourceType) carry no patient data.
    return typeof res.resourceType !== 'string' || NEUTRAL.has(res.resourceType) ? [] : [res];
  }

  before(async () => {
    // Throttles stay on (429 is a fine answer); the statement timeout is the production default.
    app = await startSecuredServer({ TOKEN_REQUESTS_PER_ADDRESS: '100000' }, { listen: true });
    base = `http://127.0.0.1:${app.server.info.port}`;
    patientId = await app.create({ resourceType: 'Patient', identifier: [{ system: 'urn:fuzz', value: 'p1' }] });
    // Someone else's data, in and out of each narrow grant, for the leak check to find if it can.
    otherId = await app.create({ resourceType: 'Patient', identifier: [{ system: 'urn:fuzz', value: 'p2' }] });
    const obs = (patient: string, category: string) => app.create({
      resourceType: 'Observation', status: 'final', subject: { reference: `Patient/${patient}` },
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: category }] }],
      code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] }, valueQuantity: { value: 70, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
    });
    readIds = [await obs(otherId, 'vital-signs'), await obs(otherId, 'laboratory'), await obs(patientId, 'laboratory'), await obs(patientId, 'vital-signs')];
    readIds.push(await app.create({ resourceType: 'CarePlan', status: 'active', intent: 'plan', subject: { reference: `Patient/${otherId}` } }));
    observationId = await app.create({ resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] }, subject: { reference: `Patient/${patientId}` }, valueQuantity: { value: 70, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' } });
    const patientToken = await app.as('patient/*.cruds', { patient: patientId, fhirUser: `Patient/${patientId}` });
    const vitalSigns = await app.as('system/Observation.rs?category=vital-signs');
    const patientsOnly = await app.as('system/Patient.r');
    narrowTokens = [patientToken, vitalSigns, patientsOnly];
    tokens = [app.system, app.system, app.system, patientToken, vitalSigns, patientsOnly, { authorization: 'Bearer not.a.token' }, { authorization: 'Basic Zm9vOmJhcg==' }, {}];
    // What each narrow grant may see in a 2xx answer; anything else is a leak.
    grants = new Map<string, (resource: Record<string, unknown>) => boolean>([
      [patientToken.authorization!, (res) => (res.resourceType === 'Patient' ? res.id === patientId : !otherPatient(res))],
      [vitalSigns.authorization!, (res) => res.resourceType === 'Observation' && JSON.stringify(res.category ?? []).includes('"vital-signs"')],
      [patientsOnly.authorization!, (res) => res.resourceType === 'Patient'],
    ]);
    routes = app.server.table().map((r) => ({ method: r.method, path: r.path }));
  });
  after(() => app.stop());

  const idPool = () => [patientId, observationId, 'example', 'does-not-exist', ...HOSTILE_STRINGS.filter((s) => !s.includes('/'))];

  function pathFor(r: Rng, route: { path: string }): string {
    return route.path.replace(/\{(\w+)\*?\}/g, (_, name: string) => {
      let value: string;
      switch (name) {
        case 'type':
        case 'compartmentType':
          value = r.chance(0.8) ? r.pick(supportedTypes) : r.pick(['Nope', 'metadata', '_history', 'patient', '$validate', 'ConceptMap', 'Binary']);
          break;
        case 'vid':
          value = r.pick(['1', '2', '0', '-1', '99999999999999999999', '1e3', 'abc', '1.5', '\u0000']);
          break;
        case 'operation':
          value = r.pick(['$validate', '$evaluate', '$check-adherence', '$translate', '$everything', '$nope', 'x', '_history', '_search']);
          break;
        case 'path':
          value = r.pick(['', 'Patient/x/y/z', '_history/1', 'metadata', 'Nope', 'Patient/$validate/x']);
          return value;
        default:
          value = r.chance(0.5) ? r.pick(idPool()) : r.pick(HOSTILE_STRINGS);
      }
      return enc(value);
    });
  }

  function query(r: Rng): string {
    if (r.chance(0.3)) return '';
    const n = r.chance(0.01) ? 60 + r.int(600) : 1 + r.int(4);
    const parts: string[] = [];
    for (let i = 0; i < n; i++) {
      const name = r.chance(0.9) ? r.pick(PARAM_NAMES) : r.pick(HOSTILE_STRINGS);
      let value = r.chance(0.6) ? r.pick(PARAM_VALUES) : r.pick(HOSTILE_STRINGS);
      if (r.chance(0.01)) value = Array.from({ length: 50 + r.int(2000) }, (_, k) => `v${k}`).join(',');
      parts.push(`${enc(name)}=${enc(value)}`);
    }
    if (r.chance(0.05)) parts.push('%00=%00', 'a=%E0%A4%A', '=');
    return `?${parts.join('&')}`;
  }

  /** A resource of `type`, valid unless mutated; sentinel types always carry an unknown element. */
  function resource(r: Rng, type: string): Record<string, unknown> {
    const known = ['CarePlan', 'Device', 'DeviceUseStatement', 'Flag', 'Goal', 'MedicationRequest', 'Observation', 'Patient', 'Practitioner', 'Subscription'];
    const res: Record<string, unknown> = known.includes(type) ? fixture(`resources/${type}.json`) : { resourceType: type };
    for (const [k, v] of Object.entries(res)) {
      if (JSON.stringify(v).includes('Patient/example')) res[k] = JSON.parse(JSON.stringify(v).replace('Patient/example', `Patient/${patientId}`));
    }
    if (type === 'Device') res.identifier = [{ system: 'urn:fuzz:serial', value: `fz-${r.int(1e9)}` }];
    const mutations = SENTINELS.includes(type) ? 1 + r.int(3) : r.chance(0.4) ? 0 : 1 + r.int(3);
    for (let i = 0; i < mutations; i++) mutate(r, res);
    if (SENTINELS.includes(type)) res.fuzzUnknownElement = r.pick(HOSTILE_VALUES);
    return res;
  }

  function mutate(r: Rng, res: Record<string, unknown>): void {
    const keys = Object.keys(res);
    switch (r.int(8)) {
      case 0: delete res[r.pick(keys)]; break;
      case 1: res[r.pick(keys)] = r.pick(HOSTILE_VALUES); break;
      case 2: res[r.pick(keys)] = r.pick(HOSTILE_STRINGS); break;
      case 3: res.id = r.pick(HOSTILE_STRINGS); break;
      case 4: res.resourceType = r.pick([...supportedTypes, 'Nope', '', 7]); break;
      case 5: {
        const depth = 10 + r.int(100);
        res.extension = JSON.parse(`${'['.repeat(depth)}${']'.repeat(depth)}`);
        break;
      }
      case 6: res.contained = [r.pick([null, {}, { resourceType: 'Patient', id: 'c' }, { resourceType: 'Nope' }, [[]]])]; break;
      default: res.meta = r.pick([{ profile: ['http://hl7.org/fhir/StructureDefinition/bp'] }, { versionId: 7 }, { tag: [null] }, 'x']);
    }
  }

  function bundle(r: Rng): Record<string, unknown> {
    const entries = Array.from({ length: r.int(6) }, () => {
      const type = r.pick([...WRITABLE, ...SENTINELS]);
      const method = r.pick(['POST', 'PUT', 'PATCH', 'DELETE', 'GET', 'HEAD', 'TRACE', 7]);
      const url = r.pick([type, `${type}/${r.pick(idPool())}`, `${type}?identifier=urn:fuzz|p1`, `${type}/${r.pick(HOSTILE_STRINGS)}`, `${type}/x/_history/1`, 'metadata', `${base}/fhir/${type}`, '']);
      const entry: Record<string, unknown> = { fullUrl: r.pick([`urn:uuid:${r.int(1e6)}`, 'Patient/x y<script>', undefined, 7]), request: r.chance(0.9) ? { method, url, ifMatch: r.pick([undefined, 'W/"1"', 'garbage']) } : r.pick(HOSTILE_VALUES) };
      if (method === 'PATCH') entry.resource = { resourceType: 'Binary', contentType: 'application/json-patch+json', data: Buffer.from(JSON.stringify(patch(r))).toString('base64') };
      else if (r.chance(0.9)) entry.resource = resource(r, type);
      return r.chance(0.1) ? r.pick(HOSTILE_VALUES) : entry;
    });
    return { resourceType: 'Bundle', type: r.pick(['transaction', 'batch', 'batch', 'searchset', 7]), entry: r.chance(0.95) ? entries : r.pick(HOSTILE_VALUES) };
  }

  function patch(r: Rng): unknown {
    return Array.from({ length: 1 + r.int(3) }, () => ({
      op: r.pick(['add', 'replace', 'remove', 'move', 'copy', 'test', 'nope']),
      path: r.pick(['/status', '/__proto__/x', '/constructor/prototype/y', '/id', '/meta', '/subject/reference', '/name/-', '/a/b/c', '', 'status']),
      from: r.pick([undefined, '/status', '/__proto__']),
      value: r.pick([...HOSTILE_VALUES, 'final', 'amended', ...HOSTILE_STRINGS]),
    }));
  }

  function deviceBody(r: Rng, door: string): Record<string, unknown> {
    const body = fixture(door === '/ingest/withings' ? 'devices/withings-getmeas.json' : door === '/ingest/ble' ? 'devices/ble-worked-examples.json' : 'devices/readings.json');
    const text = JSON.stringify(body).replace(/Patient\/example/g, `Patient/${patientId}`).replace(/"value":"(SN-1|AA:BB:CC:DD:EE:FF)"/, `"value":"fz-${r.int(1e9)}"`);
    const out = JSON.parse(text) as Record<string, unknown>;
    const groups = (out.body as { measuregrps?: Array<Record<string, unknown>> } | undefined)?.measuregrps ?? (out.readings as Array<Record<string, unknown>> | undefined) ?? [];
    for (let i = r.int(4); i > 0; i--) {
      const target = r.chance(0.6) && groups.length ? r.pick(groups) : out;
      const keys = Object.keys(target);
      if (keys.length) target[r.pick(keys)] = r.chance(0.5) ? r.pick(HOSTILE_VALUES) : r.pick(HOSTILE_STRINGS);
    }
    if (r.chance(0.1)) (out as { patient?: unknown }).patient = { reference: r.pick(['Patient/x y', `Patient/${r.pick(HOSTILE_STRINGS)}`, 'Practitioner/1']) };
    return out;
  }

  function authForm(r: Rng): string {
    const fields = ['grant_type', 'code', 'redirect_uri', 'client_id', 'client_secret', 'code_verifier', 'refresh_token', 'scope', 'client_assertion_type', 'client_assertion', 'token', 'username', 'password', 'patient', 'launch', 'csrf', 'state', 'aud', 'response_type'];
    const values = ['authorization_code', 'client_credentials', 'refresh_token', 'password', 'system/*.cruds', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', 'eyJhbGciOiJub25lIn0.e30.', ...HOSTILE_STRINGS];
    return Array.from({ length: r.int(8) }, () => `${enc(r.pick(fields))}=${enc(r.pick(values))}`).join('&');
  }

  function body(r: Rng, method: string, path: string): { body?: string; contentType?: string } {
    if (method === 'GET' || method === 'HEAD') return {};
    if (method === 'DELETE') return r.chance(0.05) ? { body: 'x', contentType: 'text/plain' } : {};
    const roll = r.next();
    if (path.startsWith('/auth')) return r.chance(0.8) ? { body: authForm(r), contentType: 'application/x-www-form-urlencoded' } : { body: JSON.stringify(r.pick(HOSTILE_VALUES)), contentType: 'application/json' };
    if (roll < 0.04) return { body: `{"resourceType":"Patient","a":${'['.repeat(500 + r.int(5000))}`, contentType: 'application/fhir+json' };
    if (roll < 0.045) return { body: '{"resourceType":"Patient","name":[{"family":"' + 'x'.repeat(1_100_000) + '"}]}', contentType: 'application/fhir+json' };
    if (roll < 0.12) return { body: JSON.stringify(resource(r, 'Patient')).slice(0, r.int(60)), contentType: 'application/fhir+json' };
    if (roll < 0.16) return { body: JSON.stringify(r.pick(HOSTILE_VALUES)), contentType: r.pick(CONTENT_TYPES) };
    let value: unknown;
    if (path.startsWith('/ingest')) value = deviceBody(r, path);
    else if (path === '/fhir') value = bundle(r);
    else if (method === 'PATCH' && r.chance(0.7)) return { body: JSON.stringify(patch(r)), contentType: 'application/json-patch+json' };
    else if (path.includes('$')) value = r.chance(0.5) ? { resourceType: 'Parameters', parameter: r.pick([{}, [null], [{ name: 7 }], [{ name: 'resource', resource: resource(r, 'Patient') }], [{ name: 'system', valueUri: 'http://loinc.org' }, { name: 'code', valueCode: '8867-4' }], [{ name: 'now', valueDateTime: '3000-01-01T00:00:00Z' }]]) } : resource(r, r.pick(WRITABLE));
    else if (path.endsWith('_search')) return { body: query(r).slice(1), contentType: r.chance(0.8) ? 'application/x-www-form-urlencoded' : r.pick(CONTENT_TYPES) };
    else {
      const type = /^\/fhir\/([A-Za-z]+)/.exec(path)?.[1] ?? 'Patient';
      value = resource(r, r.chance(0.85) ? type : r.pick([...WRITABLE, ...SENTINELS]));
    }
    return { body: JSON.stringify(value), contentType: r.chance(0.9) ? 'application/fhir+json' : r.pick(CONTENT_TYPES) };
  }

  /**
   * A read a narrow token might well be answered (every read path: read, vread, history at three
   * levels, search with includes of every modifier, chains, _has, compartments, batch GETs),
   * so that the leak check sees real answers and not only refusals.
   */
  function plausibleRead(r: Rng): FuzzRequest {
    const type = r.pick(['Patient', 'Observation', 'CarePlan', 'Device', 'Flag']);
    const id = r.pick([patientId, otherId, observationId, ...readIds]);
    const paths = [
      `/fhir/${type}`, `/fhir/${type}/${id}`, `/fhir/${type}/${id}/_history`, `/fhir/${type}/${id}/_history/1`, `/fhir/${type}/_history`, '/fhir/_history',
      `/fhir/${type}?_include=*`, `/fhir/${type}?_revinclude=*`, '/fhir/Observation?_include=Observation:subject', '/fhir/Observation?_include:iterate=Observation:subject',
      '/fhir/Patient?_revinclude=Observation:subject', '/fhir/Patient?_revinclude:iterate=Observation:subject&_revinclude:iterate=CarePlan:subject',
      '/fhir/Patient?_has:Observation:subject:code=8867-4', '/fhir/Observation?subject.identifier=urn:fuzz|p2', '/fhir/Observation?subject:Patient.identifier=urn:fuzz|p1',
      `/fhir/Patient/${r.pick([patientId, otherId])}/Observation`, `/fhir/Patient/${r.pick([patientId, otherId])}/CarePlan?_include=CarePlan:subject`,
      '/fhir/Observation?code=8867-4&_count=1', '/fhir/Observation?category=laboratory', `/fhir/Observation?patient=${otherId}`,
    ];
    if (r.chance(0.15)) {
      const entry = Array.from({ length: 1 + r.int(4) }, () => ({ request: { method: 'GET', url: r.pick(paths).slice('/fhir/'.length) } }));
      return { method: 'POST', path: '/fhir', headers: { ...r.pick(narrowTokens), 'content-type': 'application/fhir+json' }, body: JSON.stringify({ resourceType: 'Bundle', type: 'batch', entry }) };
    }
    return { method: 'GET', path: r.pick(paths), headers: { ...r.pick(narrowTokens) } };
  }

  function generate(r: Rng): { request: FuzzRequest; route: string } {
    if (r.chance(0.1)) return { request: plausibleRead(r), route: 'plausible read' };
    const route = r.pick(routes);
    let method = route.method === '*' || r.chance(0.05) ? r.pick(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD']) : route.method.toUpperCase();
    if (method === 'OPTIONS' && r.chance(0.5)) method = 'GET';
    const path = pathFor(r, route) + query(r);
    const headers: Record<string, string> = { ...r.pick(tokens) };
    const accept = r.pick(ACCEPTS);
    if (accept) headers.accept = accept;
    if (r.chance(0.1)) headers['if-match'] = r.pick(['W/"1"', 'W/"999999999999999999999"', '"x"', '*', '']);
    if (r.chance(0.05)) headers['if-none-exist'] = r.pick(['identifier=urn:fuzz|p1', 'identifier=a%00b', 'nonsense=1', `name=${'a,'.repeat(500)}`]);
    if (r.chance(0.05)) headers['if-none-match'] = r.pick(['W/"1"', '*', 'garbage']);
    if (r.chance(0.1)) headers.prefer = r.pick(['return=minimal', 'return=OperationOutcome', 'handling=lenient', 'respond-async', 'return=']);
    const b = body(r, method, route.path);
    if (b.body !== undefined && method !== 'HEAD') {
      headers['content-type'] = b.contentType ?? 'application/fhir+json';
      return { request: { method, path, headers, body: b.body }, route: `${route.method} ${route.path}` };
    }
    return { request: { method, path, headers }, route: `${route.method} ${route.path}` };
  }

  async function send(request: FuzzRequest, figures: Figures): Promise<void> {
    figures.sent++;
    let res: Response;
    const label = `${request.method} ${request.path.slice(0, 160)}`;
    try {
      res = await fetch(`${base}${request.path}`, { method: request.method, headers: request.headers, body: request.body, signal: AbortSignal.timeout(60_000) });
    } catch (err) {
      figures.resets.push(`${label}: ${String((err as { cause?: unknown }).cause ?? err)}`);
      return;
    }
    const text = await res.text();
    const cls = `${Math.floor(res.status / 100)}xx`;
    figures.byClass[cls] = (figures.byClass[cls] ?? 0) + 1;
    const allowed = grants.get(request.headers.authorization ?? '');
    if (allowed && res.status < 300 && text.startsWith('{')) {
      for (const found of resourcesIn(JSON.parse(text))) {
        figures.checked++;
        if (!allowed(found)) figures.leaks.push(`${label} (${request.headers.authorization!.slice(7, 20)}…) → ${String(found.resourceType)}/${String(found.id)}`);
      }
    }
    if (res.status >= 500) figures.serverErrors.push(`${label} → ${res.status} ${text.slice(0, 200)} body=${(request.body ?? '').slice(0, 300)}`);
    const fhirRoute = request.path.startsWith('/fhir') || request.path.startsWith('/ingest');
    if (fhirRoute && res.status >= 400 && request.method !== 'HEAD') {
      let json: { resourceType?: unknown } | undefined;
      try {
        json = JSON.parse(text) as { resourceType?: unknown };
      } catch {
        json = undefined;
      }
      if (json?.resourceType !== 'OperationOutcome') figures.notOutcome.push(`${label} → ${res.status} ${text.slice(0, 120)}`);
    }
  }

  async function campaign(seed: number, requests: number): Promise<Figures> {
    const r = rng(seed);
    const figures: Figures = { sent: 0, byClass: {}, resets: [], serverErrors: [], leaks: [], checked: 0, notOutcome: [], routesHit: new Map() };
    // Generated up front, in order, so that concurrency cannot change what a seed sends.
    const batch = Array.from({ length: requests }, () => generate(r));
    for (const { route } of batch) figures.routesHit.set(route, (figures.routesHit.get(route) ?? 0) + 1);
    let next = 0;
    const worker = async () => {
      while (next < batch.length) await send(batch[next++]!.request, figures);
    };
    await Promise.all(Array.from({ length: 6 }, worker));
    return figures;
  }

  const scale = Number(process.env.FUZZ_REQUESTS ?? 10_000);
  const seeds = process.env.FUZZ_SEED ? [{ seed: Number(process.env.FUZZ_SEED), share: 1 }] : [{ seed: 11, share: 0.7 }, { seed: Math.floor(Math.random() * 2 ** 31), share: 0.3 }];

  it(`sends ${scale} hostile requests over every route: no 5xx, no reset, OperationOutcomes, nothing invalid stored`, { timeout: 600_000 }, async () => {
    const sentinelsBefore = Object.fromEntries(await Promise.all(SENTINELS.map(async (t) => [t, await countRows(app, t)])));
    const totals: Figures = { sent: 0, byClass: {}, resets: [], serverErrors: [], leaks: [], checked: 0, notOutcome: [], routesHit: new Map() };
    for (const { seed, share } of seeds) {
      const started = Date.now();
      const f = await campaign(seed, Math.round(scale * share));
      // Printed for reproduction: FUZZ_SEED=<seed> FUZZ_REQUESTS=<n> replays this part alone.
      console.log(`fuzz seed ${seed}: ${f.sent} requests in ${Date.now() - started} ms, ${JSON.stringify(f.byClass)}, resets ${f.resets.length}, 5xx ${f.serverErrors.length}, leaks ${f.leaks.length} of ${f.checked} resources answered to narrow tokens, 4xx without OperationOutcome ${f.notOutcome.length}`);
      totals.sent += f.sent;
      for (const [k, v] of Object.entries(f.byClass)) totals.byClass[k] = (totals.byClass[k] ?? 0) + v;
      totals.resets.push(...f.resets.map((x) => `seed ${seed}: ${x}`));
      totals.serverErrors.push(...f.serverErrors.map((x) => `seed ${seed}: ${x}`));
      totals.leaks.push(...f.leaks.map((x) => `seed ${seed}: ${x}`));
      totals.checked += f.checked;
      totals.notOutcome.push(...f.notOutcome.map((x) => `seed ${seed}: ${x}`));
      for (const [k, v] of f.routesHit) totals.routesHit.set(k, (totals.routesHit.get(k) ?? 0) + v);
    }
    for (const [what, list] of [['5xx', totals.serverErrors], ['leak', totals.leaks], ['connection error', totals.resets], ['4xx without OperationOutcome', totals.notOutcome]] as const) {
      for (const line of list.slice(0, 20)) console.log(`fuzz ${what}: ${line}`);
    }
    expect(totals.serverErrors.slice(0, 5), `${totals.serverErrors.length} 5xx`).to.equal([]);
    expect(totals.leaks.slice(0, 5), `${totals.leaks.length} resources outside the caller's grant`).to.equal([]);
    // The leak check saw real answers, not only refusals.
    expect(totals.checked).to.be.above(0);
    expect(totals.resets.slice(0, 5), `${totals.resets.length} connection errors`).to.equal([]);
    expect(totals.notOutcome.slice(0, 5), `${totals.notOutcome.length} 4xx without OperationOutcome`).to.equal([]);
    expect(totals.sent).to.equal(scale);
    // Every route was tried.
    for (const route of routes) expect(totals.routesHit.get(`${route.method} ${route.path}`) ?? 0, `${route.method} ${route.path}`).to.be.above(0);

    // The sentinel types were never sent a valid body: nothing of theirs may have been written.
    for (const type of SENTINELS) expect(await countRows(app, type), type).to.equal(sentinelsBefore[type]);
    // Whatever was written is a valid resource under a valid id, current and history alike.
    const sweepStarted = Date.now();
    let rowsChecked = 0;
    for (const type of supportedTypes) {
      const table = tableOf(type); // some type names are SQL keywords (Group, Binary)
      const { rows } = await app.ctx.db.query<{ id: string; content: unknown }>(
        `SELECT id, content FROM ${table} WHERE NOT deleted UNION ALL SELECT id, content FROM ${table}_history WHERE content IS NOT NULL`,
      );
      for (const row of rows) {
        expect(isValidId(row.id), `${type}/${row.id}`).to.be.true();
        const content = typeof row.content === 'string' ? JSON.parse(row.content) : row.content;
        expect(validationIssues(content), `${type}/${row.id}`).to.equal([]);
        rowsChecked++;
      }
    }
    console.log(`fuzz: ${rowsChecked} stored versions checked valid in ${Date.now() - sweepStarted} ms`);
  });
});
