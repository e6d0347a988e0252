import type { Plugin } from '@hapi/hapi';
import { forbidden, hasNamedScope, type ReadLimits, readLimits } from '../access/enforce';
import type { AccessPolicy } from '../access/policy';
import { policyOf } from '../access/request';
import type { FhirContext } from '../fhir/context';
import { refuseWrites } from '../fhir/read-only-routes';
import { respond } from '../fhir/respond';
import { badRequest, notFound } from '../kernel/outcome';
import { dateFromQuery, parseDateRange } from '../search/date-range';
import { type AuditRecord, QUERY_ROLE, renderAuditEvent } from './event';
import { openQueries } from './sealed-query';
import type { Queryable } from '../store/db';
import { queryParamsOf, rawQueryOf } from '../kernel/request-target';

/**
 * `GET /fhir/AuditEvent` and `GET /fhir/AuditEvent/{id}`: the audit trail through FHIR, for
 * tokens whose scopes grant AuditEvent (a patient/AuditEvent.rs token sees the events about its
 * own patient: who saw my record, GDPR Art. 15(1)(c)). Read only: no client writes an AuditEvent.
 *
 * The events live in the append-only audit table, not the resource tables, so they have their
 * own small search over the table's indexed columns: patient, agent, entity, date, type,
 * subtype, action, outcome; newest first, paged by chain position. An event names at most one
 * patient, one user, one client and one data entity, so each is a btree-indexed column.
 */
const TOKEN_COLUMNS: Record<string, string> = { type: 'type', subtype: 'subtype', action: 'action', outcome: 'outcome' };
const RESULT_PARAMETERS = new Set(['_count', '_cursor', '_format', '_pretty']);

export const auditRoutes: Plugin<{ ctx: FhirContext }> = {
  name: 'audit-fhir',
  register(server, { ctx }) {
    server.route({
      method: 'GET',
      path: '/fhir/AuditEvent',
      handler: async (request, h) => {
        const limits = auditLimits(policyOf(request), 's');
        const query = queryParamsOf(request);
        const where: string[] = [];
        const params: unknown[] = [];
        addConditions(query, where, params);
        if (limits.constraint) addConditions(limits.constraint, where, params);
        addCompartment(limits, where, params);
        addExclusions(limits, where, params);
        const count = Math.min(Math.max(intParam(query, '_count') ?? ctx.config.defaultPageSize, 1), ctx.config.maxPageSize);
        const cursor = query.get('_cursor');
        if (cursor !== null) {
          if (!/^\d{1,18}$/.test(cursor)) throw badRequest('_cursor is not one this server gave', ['_cursor']);
          params.push(cursor);
          where.push(`seq < $${params.length}::bigint`);
        }
        params.push(count + 1);
        const rows = (await ctx.db.query<StoredText & { id: string | null }>(
          `SELECT seq::text AS seq, id, record, json FROM audit_event ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY audit_event.seq DESC LIMIT $${params.length}`,
          params,
        )).rows;
        const page = rows.slice(0, count);
        const asked = rawQueryOf(request);
        const self = `${ctx.baseUrl}/AuditEvent${asked ? `?${asked}` : ''}`;
        const links = [{ relation: 'self', url: self }];
        if (rows.length > count) {
          const next = new URLSearchParams([...query].filter(([k]) => k !== '_cursor'));
          next.set('_cursor', page[page.length - 1]!.seq);
          links.push({ relation: 'next', url: `${ctx.baseUrl}/AuditEvent?${next.toString()}` });
        }
        const texts = await served(ctx.db, page, limits);
        const entries = page.map((r, i) => `{"fullUrl":${JSON.stringify(`${ctx.baseUrl}/AuditEvent/${r.id ?? r.seq}`)},"resource":${texts[i]!},"search":{"mode":"match"}}`);
        // R4 json.html: arrays are never empty, so a page with nothing on it has no entry element.
        const entry = entries.length ? `,"entry":[${entries.join(',')}]` : '';
        const json = `{"resourceType":"Bundle","type":"searchset","link":${JSON.stringify(links)}${entry}}`;
        return respond(request, h, { status: 200, body: { json } });
      },
    });

    server.route({
      method: 'GET',
      path: '/fhir/AuditEvent/{id}',
      handler: async (request, h) => {
        const limits = auditLimits(policyOf(request), 'r');
        // An id of digits is a chain position (records from migration 053 on); older events keep their random ids.
        const id = String(request.params.id);
        const params: unknown[] = [id];
        const where = [/^\d{1,18}$/.test(id) ? 'seq = $1::bigint AND id IS NULL' : 'id = $1'];
        if (limits.constraint) addConditions(limits.constraint, where, params);
        addCompartment(limits, where, params);
        addExclusions(limits, where, params);
        const row = (await ctx.db.query<StoredText>(`SELECT seq::text AS seq, record, json FROM audit_event WHERE ${where.join(' AND ')}`, params)).rows[0];
        if (!row) throw notFound(`AuditEvent/${String(request.params.id).slice(0, 64)} is not known`);
        return respond(request, h, { status: 200, body: { json: (await served(ctx.db, [row], limits))[0]! } });
      },
    });

    // The trail is the server's record of what happened: nobody writes, changes or deletes it through FHIR.
    refuseWrites(server, ctx, ['/fhir/AuditEvent', '/fhir/AuditEvent/{id}'], 'AuditEvents are recorded by the server and cannot be written, changed or deleted through the API');
  },
};

/**
 * The trail names who looked at which patient: a scope must name AuditEvent itself. A wildcard
 * (`user/*.rs`) grants a clinician's data, not the record of everyone's access to it.
 */
function auditLimits(policy: AccessPolicy, action: 'r' | 's'): ReadLimits {
  if (!hasNamedScope(policy, 'AuditEvent')) {
    throw forbidden('reading the audit trail needs a scope that names AuditEvent (e.g. system/AuditEvent.rs)');
  }
  return readLimits(policy, 'AuditEvent', action);
}

/** A stored event: its record (rendered here), or the AuditEvent JSON of a row stored before records (migration 052). */
interface StoredText {
  seq: string;
  record: string | null;
  json: string | null;
}

/**
 * The AuditEvents of stored rows, as this caller sees them. Sealed requests are opened with their
 * patients' keys (one query a page), except in a patient's own view, which leaves the request out
 * whatever it says.
 */
async function served(db: Queryable, rows: readonly StoredText[], limits: ReadLimits): Promise<string[]> {
  const records = rows.map((row) => (row.record === null ? undefined : (JSON.parse(row.record) as AuditRecord)));
  const ownView = limits.compartmentPatientId !== undefined;
  const opened = ownView ? new Map<AuditRecord, string>() : await openQueries(db, records.filter((r) => r !== undefined));
  return rows.map((row, i) => {
    const r = records[i];
    const text = r === undefined ? row.json! : JSON.stringify(renderAuditEvent(r, row.seq, opened.get(r)));
    return ownView ? withoutQuery(text) : text;
  });
}

/**
 * A patient's view of its trail (who saw my record, GDPR Art. 15(1)(c)) leaves out the raw
 * request. A search that disclosed several patients is recorded once per patient, each event
 * carrying the whole query, and that may name the others (`Patient?identifier=…|A,…|B`): an
 * authorization probe read another patient's MRN that way. Who, when, what and the outcome stay.
 */
function withoutQuery(text: string): string {
  const event = JSON.parse(text) as fhir4.AuditEvent;
  const entity = event.entity?.filter((e) => e.role?.code !== QUERY_ROLE.code || e.role.system !== QUERY_ROLE.system);
  if (entity?.length) event.entity = entity;
  else delete event.entity;
  return JSON.stringify(event);
}

/** A patient/ token's compartment: the events about its patient. */
function addCompartment(limits: ReadLimits, where: string[], params: unknown[]): void {
  if (limits.compartmentPatientId === undefined) return;
  params.push(limits.compartmentPatientId);
  where.push(`patient = $${params.length}`);
}

/**
 * What a Consent denies the caller: events about those patients. A data class never narrows an
 * AuditEvent (no category names one), so an exclusion here is the patient's whole trail.
 */
function addExclusions(limits: ReadLimits, where: string[], params: unknown[]): void {
  const patients = [...new Set((limits.exclude ?? []).map((e) => e.patientId))];
  if (patients.length === 0) return;
  params.push(patients);
  where.push(`(patient IS NULL OR patient <> ALL($${params.length}::text[]))`);
}

function intParam(query: URLSearchParams, name: string): number | undefined {
  const text = query.get(name);
  if (text === null) return undefined;
  if (!/^\d{1,6}$/.test(text)) throw badRequest(`${name} must be a non-negative integer`, [name]);
  return Number(text);
}

/** Each parameter ANDed; the values of one parameter (comma-separated) ORed, as FHIR search does. */
function addConditions(query: URLSearchParams, where: string[], params: unknown[]): void {
  for (const [rawKey, value] of query) {
    if (RESULT_PARAMETERS.has(rawKey)) continue;
    const [key, modifier] = rawKey.split(':', 2) as [string, string | undefined];
    const values = value.split(',').filter((v) => v !== '');
    if (values.length === 0) throw badRequest(`${rawKey} has no value`, [rawKey]);
    if (key in TOKEN_COLUMNS && modifier === undefined) {
      // `system|code` or `code`: the stored column is the code (each column has one code system).
      params.push(values.map((v) => v.slice(v.indexOf('|') + 1)));
      where.push(`${TOKEN_COLUMNS[key]} = ANY($${params.length}::text[])`);
    } else if (key === 'patient' && modifier === undefined) {
      params.push(values.map((v) => v.replace(/^(?:.*\/)?Patient\//, '')));
      where.push(`patient = ANY($${params.length}::text[])`);
    } else if (key === 'agent' && (modifier === undefined || modifier === 'identifier')) {
      params.push(modifier === 'identifier' ? values : values.map(local));
      where.push(`(agent_user = ANY($${params.length}::text[]) OR agent_client = ANY($${params.length}::text[]))`);
    } else if (key === 'entity' && modifier === undefined) {
      where.push(entityCondition(values.map(local), params));
    } else if (key === 'date' && modifier === undefined) {
      where.push(`(${values.map((v) => dateCondition(v, params)).join(' OR ')})`);
    } else {
      throw badRequest(`unknown search parameter '${rawKey}' for AuditEvent (supported: patient, agent, agent:identifier, entity, date, type, subtype, action, outcome, _count)`, [rawKey]);
    }
  }
}

/** A reference relative to the FHIR base, as the columns hold it. */
function local(reference: string): string {
  return reference.replace(/^https?:\/\/[^?]*\/fhir\//, '');
}

/**
 * Events about any of `references`: a versioned one (`Observation/5/_history/2`) that version;
 * an unversioned one every version, by a range over the C-collated entity index
 * (`…/_history/` < key < `…/_history0`: '0' follows '/'); `Patient/x` also every event whose
 * patient is x, as the patient entity of each event is one of its entities.
 */
function entityCondition(references: string[], params: unknown[]): string {
  const param = (value: unknown) => {
    params.push(value);
    return `$${params.length}`;
  };
  const or = [`entity = ANY(${param(references)}::text[])`];
  for (const reference of references) {
    if (/\/_history\//.test(reference)) continue;
    or.push(`(entity > ${param(`${reference}/_history/`)}::text AND entity < ${param(`${reference}/_history0`)}::text)`);
  }
  const patients = references.flatMap((r) => /^Patient\/([^/]+)$/.exec(r)?.[1] ?? []);
  if (patients.length) or.push(`patient = ANY(${param(patients)}::text[])`);
  return `(${or.join(' OR ')})`;
}

const PREFIX = /^(eq|ne|gt|lt|ge|le|sa|eb)?(.*)$/;

function dateCondition(value: string, params: unknown[]): string {
  const [, prefix = 'eq', sent = ''] = PREFIX.exec(value)!;
  const range = parseDateRange(dateFromQuery(sent));
  if (!range) throw badRequest(`date: '${value}' is not a FHIR date with an optional prefix (ge, le, gt, lt, eq)`, ['date']);
  // Only the bounds a condition uses become parameters (an unused one has no type to infer).
  const bound = (ms: number) => {
    params.push(new Date(ms).toISOString());
    return `$${params.length}::timestamptz`;
  };
  const low = () => bound(range.low);
  const high = () => bound(range.high + 1);
  switch (prefix) {
    case 'gt': case 'sa': return `recorded >= ${high()}`;
    case 'ge': return `recorded >= ${low()}`;
    case 'lt': case 'eb': return `recorded < ${low()}`;
    case 'le': return `recorded < ${high()}`;
    case 'ne': return `NOT (recorded >= ${low()} AND recorded < ${high()})`;
    default: return `recorded >= ${low()} AND recorded < ${high()}`;
  }
}
