import { CLIENT_ID_SYSTEM } from '../access/consent-rules';
import { isoNow } from '../kernel/clock';
import type { AccessPolicy, RequestOrigin } from '../access/policy';

/**
 * AuditEvent resources as the IHE Basic Audit Log Patterns (BALP 1.1) profile them: type `rest`
 * with a restful-interaction subtype, a fixed action per interaction, client, server and user
 * agents in the roles BALP gives each interaction, and entities for the data, the query (the raw
 * request, base64), the patient (one event per patient, as the Patient* profiles require) and
 * the X-Request-Id (entity[transaction]). Identifiers only, never the data itself ("Minimal").
 *
 * What is stored and chained is the AuditRecord, the facts of one event (about 400 bytes); the
 * BALP resource (1.5–2 kB of fixed codings around those facts) is rendered from it when it is
 * read, searched or exported (docs/decisions/021-audit-storage.md). Rendering is a pure
 * function of the record, so a record verified by the chain renders the same resource every time.
 */

const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
const PARTICIPATION = 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType';
const ENTITY_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-entity-type';
const OBJECT_ROLE = 'http://terminology.hl7.org/CodeSystem/object-role';
const BALP = 'https://profiles.ihe.net/ITI/BALP';
/** How a client is named: the OAuth client_id (RFC 7591), as BALP's Minimal token pattern says (and a Consent names an app). */
export { CLIENT_ID_SYSTEM };
/** A signed-in user without a FHIR identity: the token's `sub`. */
export const SUBJECT_SYSTEM = 'urn:ietf:params:oauth:sub';
/** This server's own codes for what BALP and DICOM do not name (token issuance). */
export const LOCAL_SUBTYPE_SYSTEM = 'urn:rpm-fhir-server:audit-subtype';
/** The system of an erased patient's pseudonym in the erasure record (HMAC of `Patient/<id>` under PSEUDONYM_KEY). */
export const ERASED_PATIENT_SYSTEM = 'urn:rpm-fhir-server:erased-patient';

export type Action = 'C' | 'R' | 'U' | 'D' | 'E';
/** 0 success, 4 minor failure (a 4xx), 8 serious failure (a 5xx). */
export type Outcome = '0' | '4' | '8';

/** Who acted, as far as the request shows it; `policy` absent for an unauthenticated request. */
export interface Actor {
  policy?: AccessPolicy;
  origin?: RequestOrigin;
  /** A client or user name the request claimed before it was authenticated (a failed token request or login). */
  claimedClient?: string;
  claimedUser?: string;
}

export interface AuditFact {
  kind: 'rest' | 'login' | 'token';
  /** A restful-interaction code (read, vread, search-type, create, …), or `login` / `token`. */
  subtype?: string;
  action: Action;
  outcome: Outcome;
  outcomeDesc?: string;
  actor: Actor;
  /** The reference of the data (`Observation/5/_history/2`): every door names one resource per event. */
  what?: string;
  /** The raw request (`GET https://…/Observation?…`), for entity[query]. */
  query?: string;
  /** The patients the interaction touched or disclosed; one event each. */
  patients?: readonly string[];
  /** An erased patient, by its keyed pseudonym (src/audit/erasure.ts). */
  erasedPatient?: string;
}

export interface Observer {
  /** The FHIR base URL: source.observer and the server agent. */
  baseUrl: string;
}

/**
 * One AuditEvent as it is stored and chained: the facts the BALP resource is rendered from. Its
 * JSON text (keys in this order, absent facts left out) is what the chain's hash covers.
 */
export interface AuditRecord {
  /**
   * Records before migration 053 only: their random id. A newer record has none; its event's id
   * is its position in the chain (`seq`), which the link's hash covers, so that no unique index
   * over random ids is written per event (docs/decisions/021-audit-storage.md, "Ids by position").
   */
  id?: string;
  recorded: string;
  kind: AuditFact['kind'];
  subtype?: string;
  action: Action;
  outcome: Outcome;
  outcomeDesc?: string;
  /** The user: a FHIR identity (`Practitioner/1`), else the token's subject or the name a login claimed. */
  fhirUser?: string;
  subject?: string;
  /** The client id; absent for the server's own work (Flags a rule raised, deliveries). */
  client?: string;
  /** The client's network address. */
  address?: string;
  requestId?: string;
  patient?: string;
  erasedPatient?: string;
  what?: string;
  /** The raw request as written: a read by id, or any request of an event that names no patient. */
  query?: string;
  /**
   * The raw request of an event that names a patient and carries search terms, sealed under the
   * patient's key (src/audit/sealed-query.ts): base64 of IV, ciphertext and tag; '' when the
   * patient was erased before the event was stored, and the request was not kept.
   */
  sealedQuery?: string;
  /** This server's base URL when the event was recorded. */
  server: string;
}

const QUERY_TYPE = { system: ENTITY_TYPE, code: '2', display: 'System Object' };
export const QUERY_ROLE = { system: OBJECT_ROLE, code: '24', display: 'Query' };
/** entity[query] of a request that cannot be opened here (src/audit/sealed-query.ts). */
const SEALED = "The request is stored sealed under the patient's key: not opened in this copy, or the patient's data was erased";

const PROFILE: Record<Action, string> = { C: 'Create', R: 'Read', U: 'Update', D: 'Delete', E: 'Query' };

/** The AuditRecords of one fact: one per patient (BALP Patient* profiles; `disclosed`, else the fact's own), or one without. */
export function auditRecords(fact: AuditFact, observer: Observer, disclosed: readonly string[] | undefined = fact.patients): AuditRecord[] {
  const patients = disclosed?.length ? [...new Set(disclosed)] : [undefined];
  const { policy, origin, claimedClient, claimedUser } = fact.actor;
  const fhirUser = policy?.fhirUser;
  // The server's own work (Flags a rule raised, deliveries) has no client: the server is the requestor.
  const ownWork = policy !== undefined && origin === undefined && policy.clientId === 'internal';
  const recorded = isoNow();
  return patients.map((patient) => ({
    recorded,
    kind: fact.kind,
    subtype: fact.subtype,
    action: fact.action,
    outcome: fact.outcome,
    outcomeDesc: fact.outcomeDesc?.slice(0, 500) || undefined,
    fhirUser,
    subject: fhirUser === undefined ? (policy?.subject ?? claimedUser) : undefined,
    client: ownWork ? undefined : (policy?.clientId ?? claimedClient),
    address: origin?.address || undefined,
    requestId: origin?.requestId,
    patient,
    erasedPatient: fact.erasedPatient,
    what: fact.what,
    query: fact.query,
    sealedQuery: undefined,
    server: observer.baseUrl,
  }));
}

/** What `GET /fhir/AuditEvent` searches by: the columns stored beside a record's text. */
export interface AuditKeys {
  type: string;
  subtype: string | null;
  patient: string | null;
  /** The user: `Practitioner/1`, or `<sub system>|<sub>`. */
  agentUser: string | null;
  /** The client: `<client-id system>|<id>`. */
  agentClient: string | null;
  /** The data entity as recorded (`Observation/5/_history/2`), or an erased patient's `<system>|<pseudonym>`. */
  entity: string | null;
}

export function searchKeysOf(r: AuditRecord): AuditKeys {
  return {
    type: typeOf(r).code!,
    subtype: r.subtype ? subtypeOf(r).code! : null,
    patient: r.patient ?? null,
    agentUser: r.fhirUser ?? (r.subject !== undefined ? `${SUBJECT_SYSTEM}|${r.subject}` : null),
    agentClient: r.client !== undefined ? `${CLIENT_ID_SYSTEM}|${r.client}` : null,
    entity: r.what ?? (r.erasedPatient !== undefined ? `${ERASED_PATIENT_SYSTEM}|${r.erasedPatient}` : null),
  };
}

/**
 * The BALP AuditEvent of a stored record at chain position `seq`; `openedQuery` is its sealed
 * request opened with the patient's key, when the caller holds it (the FHIR API; not an export).
 */
export function renderAuditEvent(r: AuditRecord, seq: string, openedQuery?: string): fhir4.AuditEvent & { id: string } {
  const entity: fhir4.AuditEventEntity[] = [];
  if (r.erasedPatient !== undefined) {
    entity.push({ what: { identifier: { system: ERASED_PATIENT_SYSTEM, value: r.erasedPatient } }, type: { system: ENTITY_TYPE, code: '1', display: 'Person' }, role: { system: OBJECT_ROLE, code: '1', display: 'Patient' } });
  }
  if (r.patient !== undefined) {
    entity.push({ what: { reference: `Patient/${r.patient}` }, type: { system: ENTITY_TYPE, code: '1', display: 'Person' }, role: { system: OBJECT_ROLE, code: '1', display: 'Patient' } });
  }
  if (r.what !== undefined) {
    entity.push({ what: { reference: r.what }, type: { system: ENTITY_TYPE, code: '2', display: 'System Object' }, role: { system: OBJECT_ROLE, code: '4', display: 'Domain Resource' } });
  }
  const query = r.query ?? openedQuery;
  if (query !== undefined) {
    entity.push({ type: QUERY_TYPE, role: QUERY_ROLE, query: Buffer.from(query).toString('base64') });
  } else if (r.sealedQuery !== undefined) {
    entity.push({ type: QUERY_TYPE, role: QUERY_ROLE, description: SEALED });
  }
  if (r.requestId !== undefined) {
    entity.push({ what: { identifier: { value: r.requestId } }, type: { system: `${BALP}/CodeSystem/BasicAuditEntityType`, code: 'XrequestId', display: 'X-Request-Id' } });
  }
  return {
    resourceType: 'AuditEvent',
    id: auditEventId(r, seq),
    ...(r.kind === 'rest' ? { meta: { profile: [`${BALP}/StructureDefinition/IHE.BasicAudit.${r.patient !== undefined ? 'Patient' : ''}${PROFILE[r.action]}`] } } : {}),
    type: typeOf(r),
    ...(r.subtype ? { subtype: [subtypeOf(r)] } : {}),
    action: r.action,
    recorded: r.recorded,
    outcome: r.outcome,
    ...(r.outcomeDesc ? { outcomeDesc: r.outcomeDesc } : {}),
    agent: agentsOf(r),
    source: { observer: { display: r.server }, type: [{ system: 'http://terminology.hl7.org/CodeSystem/security-source-type', code: '4', display: 'Application Server' }] },
    ...(entity.length ? { entity } : {}),
  };
}

/** The AuditEvent JSON of a stored record's text at chain position `seq`. */
export function renderRecordText(text: string, seq: string): string {
  return JSON.stringify(renderAuditEvent(JSON.parse(text) as AuditRecord, seq));
}

/** An event's id: its own (records before migration 053), else its chain position. */
export function auditEventId(r: Pick<AuditRecord, 'id'>, seq: string): string {
  return r.id ?? seq;
}

function typeOf(r: Pick<AuditRecord, 'kind'>): fhir4.Coding {
  return r.kind === 'rest'
    ? { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest', display: 'Restful Operation' }
    : { system: DCM, code: '110114', display: 'User Authentication' };
}

function subtypeOf(r: Pick<AuditRecord, 'kind' | 'subtype'>): fhir4.Coding {
  if (r.kind === 'login') return { system: DCM, code: '110122', display: 'Login' };
  if (r.kind === 'token') return { system: LOCAL_SUBTYPE_SYSTEM, code: 'token', display: 'Access token request' };
  return { system: 'http://hl7.org/fhir/restful-interaction', code: r.subtype! };
}

/**
 * BALP's agent roles: in a Read the client is the destination (110152) and the server the
 * source (110153); in Create, Update and Query the other way round; in a Delete the client is
 * the application (110150) and the server the custodian. The user reads as the information
 * recipient (IRCP) and writes as the author (AUT).
 */
function agentsOf(r: AuditRecord): fhir4.AuditEventAgent[] {
  const dcm = (code: string, display: string) => ({ coding: [{ system: DCM, code, display }] });
  const roles =
    r.action === 'R' ? { client: dcm('110152', 'Destination Role ID'), server: dcm('110153', 'Source Role ID') }
    : r.action === 'D' ? { client: dcm('110150', 'Application'), server: { coding: [{ system: PARTICIPATION, code: 'CST', display: 'custodian' }] } }
    : { client: dcm('110153', 'Source Role ID'), server: dcm('110152', 'Destination Role ID') };
  const agents: fhir4.AuditEventAgent[] = [];
  const user = r.fhirUser ?? r.subject;
  if (user !== undefined) {
    const who: fhir4.Reference = r.fhirUser !== undefined ? { reference: r.fhirUser } : { identifier: { system: SUBJECT_SYSTEM, value: user } };
    const role = r.action === 'R' || r.action === 'E' ? { code: 'IRCP', display: 'information recipient' } : { code: 'AUT', display: 'author (originator)' };
    agents.push({ type: { coding: [{ system: PARTICIPATION, ...role }] }, who, requestor: true });
  }
  if (r.client !== undefined) {
    agents.push({
      type: roles.client,
      who: { identifier: { system: CLIENT_ID_SYSTEM, value: r.client }, display: r.client },
      requestor: user === undefined,
      ...(r.address ? { network: { address: r.address, type: '2' as const } } : {}),
    });
  } else if (r.address && user === undefined) {
    // An unauthenticated request: who is unknown, where from is not.
    agents.push({ type: roles.client, who: { display: 'unauthenticated' }, requestor: true, network: { address: r.address, type: '2' } });
  }
  agents.push({
    type: roles.server,
    who: { identifier: { system: 'urn:ietf:rfc:3986', value: r.server }, display: r.server },
    requestor: agents.length === 0,
    network: { address: hostOf(r.server), type: '1' },
  });
  return agents;
}

function hostOf(url: string): string {
  try {
    return new URL(url).hostname;
  } catch {
    return url;
  }
}
