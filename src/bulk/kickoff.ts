import { forbidden, policyReach, readLimits, readVisible } from '../access/enforce';
import type { AccessPolicy } from '../access/policy';
import { badRequest, notFound, OperationOutcomeError } from '../kernel/outcome';
import { isSupportedType, supportedTypes } from '../kernel/resource-types';
import { checkParameters } from '../fhir/operations';
import { checkScanFilter, type Reach } from '../search';
import { parseDateRange, TIME_ZONE } from '../search/date-range';
import { patientCompartmentOf } from '../search/registry';
import type { Queryable } from '../store/db';
import type { ExportSpec } from './jobs';

/**
 * The kick-off request of a bulk export (Bulk Data Access v2.0.0, export.md "Bulk Data Kick-off
 * Request"), checked in full before a job exists: every refusal is a 4xx OperationOutcome now,
 * never a failed job later.
 */

/** `_outputFormat` values the spec requires servers to accept, all meaning FHIR NDJSON. */
export const OUTPUT_FORMATS = ['application/fhir+ndjson', 'application/ndjson', 'ndjson'];
const KNOWN = new Set(['_outputFormat', '_since', '_type', '_typeFilter', 'patient']);
/** Transport parameters the REST layer honours anywhere. */
const TRANSPORT = new Set(['_format', '_pretty']);

// FHIR instant: a full date-time with seconds and a zone (R4 datatypes.html#instant).
const INSTANT = new RegExp(`^\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\\d|3[01])T([01]\\d|2[0-3]):[0-5]\\d:([0-5]\\d|60)(\\.\\d{1,9})?(${TIME_ZONE})$`);

export interface KickOff {
  level: ExportSpec['level'];
  groupId?: string;
  /** The query (GET) merged with a Parameters body (POST). */
  params: URLSearchParams;
  /** A POST's Parameters body alone (`patient` is taken only there); undefined for GET. */
  posted?: URLSearchParams;
  prefer: string | undefined;
  /** `Prefer: handling=lenient`: unsupported parameters are ignored instead of refused. */
  lenient: boolean;
}

/** The parameters of a POST kick-off's Parameters body, as query parameters. */
export function parametersOfBody(body: unknown): URLSearchParams {
  const params = new URLSearchParams();
  const resource = body as fhir4.Parameters | undefined;
  if (resource === undefined) return params;
  if (resource?.resourceType !== 'Parameters') throw badRequest('a POST kick-off takes a Parameters resource');
  checkParameters(resource);
  for (const p of resource.parameter ?? []) {
    const value = p.valueString ?? p.valueInstant ?? p.valueDateTime ?? p.valueCode ?? p.valueReference?.reference;
    if (value === undefined) throw badRequest(`parameter ${p.name}: a string, instant, code or reference value is required`, [p.name]);
    params.append(p.name, value);
  }
  return params;
}

/** Checks the kick-off and says what to export; 4xx OperationOutcomeError otherwise. */
export async function planExport(db: Queryable, policy: AccessPolicy, kickOff: KickOff): Promise<ExportSpec> {
  if (!(kickOff.prefer ?? '').split(/[;,]/).some((p) => p.trim() === 'respond-async')) {
    throw badRequest('a bulk export is asynchronous: send Prefer: respond-async');
  }
  const params = kickOff.params;
  for (const name of new Set(params.keys())) {
    if (KNOWN.has(name) || TRANSPORT.has(name)) continue;
    if (!kickOff.lenient) {
      throw new OperationOutcomeError(400, { code: 'not-supported', diagnostics: `parameter ${name} is not supported by this server's export (send Prefer: handling=lenient to have it ignored)`, expression: [name] });
    }
  }
  const format = joined(params, '_outputFormat');
  if (format !== undefined && !OUTPUT_FORMATS.includes(format)) {
    throw badRequest(`_outputFormat '${format.slice(0, 60)}' is not supported; use ${OUTPUT_FORMATS.join(', ')}`, ['_outputFormat']);
  }
  const since = joined(params, '_since');
  if (since !== undefined && (!INSTANT.test(since) || Number.isNaN(Date.parse(since)))) {
    throw badRequest(`_since '${since.slice(0, 60)}' is not a FHIR instant (e.g. 2026-01-01T00:00:00Z)`, ['_since']);
  }

  const inScope = kickOff.level === 'system' ? supportedTypes : ['Patient', ...supportedTypes.filter((t) => t !== 'Patient' && patientCompartmentOf(t).params.length > 0)];
  const requested = typesOf(joined(params, '_type'), inScope, kickOff);
  const types = requested ?? inScope.filter((t) => policy.allows(t, 'r') && policy.allows(t, 's'));
  // An explicitly named type the token does not grant is refused; unnamed ones are left out.
  for (const type of types) {
    if (!policy.allows(type, 'r')) throw forbidden(`the access token grants no read of ${type}`);
    readLimits(policy, type, 's');
  }
  if (types.length === 0) throw forbidden('the access token grants no read and search of any type this export covers');

  const typeFilters = filtersOf(params.getAll('_typeFilter'), types, policyReach(policy));
  const spec: ExportSpec = { level: kickOff.level, types, typeFilters, ...(since !== undefined ? { since: new Date(since).toISOString() } : {}) };
  if (kickOff.level === 'patient') spec.patients = 'any';
  if (kickOff.level === 'group') spec.patients = await groupMembers(db, policy, kickOff.groupId!);
  if (params.has('patient')) spec.patients = await namedPatients(db, policy, kickOff, spec.patients);
  return spec;
}

/** A parameter given once or repeated: repeats are comma-joined (export.md "Query Parameters"). */
function joined(params: URLSearchParams, name: string): string | undefined {
  const values = params.getAll(name);
  return values.length ? values.join(',') : undefined;
}

function typesOf(value: string | undefined, inScope: readonly string[], kickOff: KickOff): string[] | undefined {
  if (value === undefined) return undefined;
  const asked = [...new Set(value.split(',').map((t) => t.trim()).filter(Boolean))];
  const unknown = asked.filter((t) => !isSupportedType(t) || !inScope.includes(t));
  if (unknown.length && !kickOff.lenient) {
    const where = kickOff.level === 'system' ? 'supported by this server' : 'in the Patient compartment';
    throw badRequest(`_type: ${unknown.map((t) => `'${t.slice(0, 40)}'`).join(', ')} is not a resource type ${where}`, ['_type']);
  }
  const kept = asked.filter((t) => !unknown.includes(t));
  if (kept.length === 0) throw badRequest('_type names no resource type this export can contain', ['_type']);
  return kept;
}

/**
 * `_typeFilter=Type?query`, repeated or comma-joined (a comma inside a query's values stays:
 * only a comma followed by `Type?` starts another). Several for one type are alternatives.
 */
function filtersOf(values: readonly string[], types: readonly string[], reach: Reach): Record<string, string[]> {
  const filters: Record<string, string[]> = {};
  for (const text of values.flatMap((v) => v.split(/,(?=[A-Z][A-Za-z]*\?)/))) {
    const at = text.indexOf('?');
    const type = at > 0 ? text.slice(0, at) : '';
    if (!isSupportedType(type)) throw badRequest(`_typeFilter '${text.slice(0, 80)}' is not Type?query for a supported type`, ['_typeFilter']);
    if (!types.includes(type)) throw badRequest(`_typeFilter names ${type}, which this export does not contain (see _type)`, ['_typeFilter']);
    const query = text.slice(at + 1);
    checkScanFilter(type, new URLSearchParams(query), reach);
    (filters[type] ??= []).push(query);
  }
  return filters;
}

const PATIENT_REFERENCE = /(?:^|\/)Patient\/([A-Za-z0-9\-.]{1,64})$/;

/**
 * The `patient` parameter (export.md: POST only, not at system level): the export's reference
 * set narrowed to these Patients. Each must be one the token may read, and at Group level a
 * current member; otherwise 400, before a job exists. Unsupported in a query string, it is
 * refused there rather than ignored: ignoring it would export every patient of the set.
 */
async function namedPatients(db: Queryable, policy: AccessPolicy, kickOff: KickOff, set: ExportSpec['patients']): Promise<string[]> {
  if (set === undefined) throw badRequest('patient does not apply to a system-level export: use Patient/$export or Group/[id]/$export', ['patient']);
  const references = kickOff.posted?.getAll('patient') ?? [];
  if (references.length !== kickOff.params.getAll('patient').length) throw badRequest('patient is taken only in the Parameters body of a POST kick-off (valueReference)', ['patient']);
  const ids = [...new Set(references.map((reference) => {
    const id = PATIENT_REFERENCE.exec(reference)?.[1];
    if (id === undefined) throw badRequest(`patient '${reference.slice(0, 80)}' is not a reference to a Patient`, ['patient']);
    return id;
  }))];
  for (const id of ids) {
    // Not known and not visible get the same answer: the parameter must not probe for patients.
    if (policy.allows('Patient', 'r') && !(await readVisible(db, policy, 'Patient', id))) throw badRequest(`Patient/${id} is not known`, ['patient']);
    if (set !== 'any' && !set.includes(id)) throw badRequest(`Patient/${id} is not a current member of Group/${kickOff.groupId}`, ['patient']);
  }
  return ids;
}

/** The Group's current Patient members, as the token sees the Group now (404 when it cannot). */
async function groupMembers(db: Queryable, policy: AccessPolicy, groupId: string): Promise<string[]> {
  const stored = await readVisible<fhir4.Group>(db, policy, 'Group', groupId);
  if (!stored) throw notFound(`Group/${groupId} is not known`);
  const ids = (stored.resource.member ?? [])
    // A ward's Group keeps its former patients as inactive members or members whose period ended
    // (a date-only end covers its whole day, as in search).
    .filter((m) => !m.inactive && !(m.period?.end !== undefined && (parseDateRange(m.period.end)?.high ?? Infinity) < Date.now()))
    .map((m) => PATIENT_REFERENCE.exec(m.entity.reference ?? '')?.[1])
    .filter((id): id is string => id !== undefined);
  return [...new Set(ids)];
}
