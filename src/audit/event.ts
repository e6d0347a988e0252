import { randomUUID } from 'node:crypto';
import type { AccessPolicy, RequestOrigin } from '../access/policy';
import type { AuditRecord } from './chain';

/**
 * AuditEvent resources as the IHE Basic Audit Log Patterns (BALP 1.1) profile them: type `rest`
 * with a restful-interaction subtype, a fixed action per interaction, client, server and user
 * agents in the roles BALP gives each interaction, and entities for the data, the query (the raw
 * request, base64), the patient (one event per patient, as the Patient* profiles require) and
 * the X-Request-Id (entity[transaction]). Identifiers only, never the data itself ("Minimal").
 */

const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
const PARTICIPATION = 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType';
const ENTITY_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-entity-type';
const OBJECT_ROLE = 'http://terminology.hl7.org/CodeSystem/object-role';
const BALP = 'https://profiles.ihe.net/ITI/BALP';
/** How a client is named: the OAuth client_id (RFC 7591), as BALP's Minimal token pattern says. */
export const CLIENT_ID_SYSTEM = 'urn:ietf:params:oauth:client-id';
/** A signed-in user without a FHIR identity: the token's `sub`. */
export const SUBJECT_SYSTEM = 'urn:ietf:params:oauth:sub';
/** This server's own codes for what BALP and DICOM do not name (token issuance). */
export const LOCAL_SUBTYPE_SYSTEM = 'urn:rpm-fhir-server:audit-subtype';

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
  /** References of the data (`Observation/5/_history/2`). */
  what?: readonly string[];
  /** The raw request (`GET https://…/Observation?…`), for entity[query]. */
  query?: string;
  /** The patients the interaction touched or disclosed; one event each. */
  patients?: readonly string[];
}

export interface Observer {
  /** The FHIR base URL: source.observer and the server agent. */
  baseUrl: string;
}

const PROFILE: Record<Action, string> = { C: 'Create', R: 'Read', U: 'Update', D: 'Delete', E: 'Query' };

/** The AuditEvents of one fact: one per patient (BALP Patient* profiles), or one without. */
export function auditRecords(fact: AuditFact, observer: Observer): AuditRecord[] {
  const patients = fact.patients?.length ? [...new Set(fact.patients)] : [undefined];
  return patients.map((patient) => auditRecord(fact, observer, patient));
}

function auditRecord(fact: AuditFact, observer: Observer, patient: string | undefined): AuditRecord {
  const { agents, keys } = agentsOf(fact, observer);
  const entity: fhir4.AuditEventEntity[] = [];
  const entities: string[] = [];
  if (patient !== undefined) {
    entity.push({ what: { reference: `Patient/${patient}` }, type: { system: ENTITY_TYPE, code: '1', display: 'Person' }, role: { system: OBJECT_ROLE, code: '1', display: 'Patient' } });
    entities.push(`Patient/${patient}`);
  }
  for (const what of fact.what ?? []) {
    entity.push({ what: { reference: what }, type: { system: ENTITY_TYPE, code: '2', display: 'System Object' }, role: { system: OBJECT_ROLE, code: '4', display: 'Domain Resource' } });
    entities.push(what);
    const unversioned = what.replace(/\/_history\/[^/]+$/, '');
    if (unversioned !== what) entities.push(unversioned);
  }
  if (fact.query !== undefined) {
    entity.push({ type: { system: ENTITY_TYPE, code: '2', display: 'System Object' }, role: { system: OBJECT_ROLE, code: '24', display: 'Query' }, query: Buffer.from(fact.query).toString('base64') });
  }
  const requestId = fact.actor.origin?.requestId;
  if (requestId !== undefined) {
    entity.push({ what: { identifier: { value: requestId } }, type: { system: `${BALP}/CodeSystem/BasicAuditEntityType`, code: 'XrequestId', display: 'X-Request-Id' } });
  }
  const event: fhir4.AuditEvent & { id: string } = {
    resourceType: 'AuditEvent',
    id: randomUUID(),
    ...(fact.kind === 'rest' ? { meta: { profile: [`${BALP}/StructureDefinition/IHE.BasicAudit.${patient !== undefined ? 'Patient' : ''}${PROFILE[fact.action]}`] } } : {}),
    type: typeOf(fact),
    ...(fact.subtype ? { subtype: [subtypeOf(fact)] } : {}),
    action: fact.action,
    recorded: new Date().toISOString(),
    outcome: fact.outcome,
    ...(fact.outcomeDesc ? { outcomeDesc: fact.outcomeDesc.slice(0, 500) } : {}),
    agent: agents,
    source: { observer: { display: observer.baseUrl }, type: [{ system: 'http://terminology.hl7.org/CodeSystem/security-source-type', code: '4', display: 'Application Server' }] },
    ...(entity.length ? { entity } : {}),
  };
  return { event, patients: patient !== undefined ? [patient] : [], agents: keys, entities };
}

function typeOf(fact: AuditFact): fhir4.Coding {
  return fact.kind === 'rest'
    ? { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest', display: 'Restful Operation' }
    : { system: DCM, code: '110114', display: 'User Authentication' };
}

function subtypeOf(fact: AuditFact): fhir4.Coding {
  if (fact.kind === 'login') return { system: DCM, code: '110122', display: 'Login' };
  if (fact.kind === 'token') return { system: LOCAL_SUBTYPE_SYSTEM, code: 'token', display: 'Access token request' };
  return { system: 'http://hl7.org/fhir/restful-interaction', code: fact.subtype! };
}

/**
 * BALP's agent roles: in a Read the client is the destination (110152) and the server the
 * source (110153); in Create, Update and Query the other way round; in a Delete the client is
 * the application (110150) and the server the custodian. The user reads as the information
 * recipient (IRCP) and writes as the author (AUT).
 */
function agentsOf(fact: AuditFact, observer: Observer): { agents: fhir4.AuditEventAgent[]; keys: string[] } {
  const { policy, origin } = fact.actor;
  const dcm = (code: string, display: string) => ({ coding: [{ system: DCM, code, display }] });
  const roles =
    fact.action === 'R' ? { client: dcm('110152', 'Destination Role ID'), server: dcm('110153', 'Source Role ID') }
    : fact.action === 'D' ? { client: dcm('110150', 'Application'), server: { coding: [{ system: PARTICIPATION, code: 'CST', display: 'custodian' }] } }
    : { client: dcm('110153', 'Source Role ID'), server: dcm('110152', 'Destination Role ID') };
  const agents: fhir4.AuditEventAgent[] = [];
  const keys: string[] = [];
  const user = policy?.fhirUser ?? policy?.subject ?? fact.actor.claimedUser;
  if (user !== undefined) {
    const who: fhir4.Reference = policy?.fhirUser ? { reference: policy.fhirUser } : { identifier: { system: SUBJECT_SYSTEM, value: user } };
    const role = fact.action === 'R' || fact.action === 'E' ? { code: 'IRCP', display: 'information recipient' } : { code: 'AUT', display: 'author (originator)' };
    agents.push({ type: { coding: [{ system: PARTICIPATION, ...role }] }, who, requestor: true });
    keys.push(policy?.fhirUser ?? `${SUBJECT_SYSTEM}|${user}`);
  }
  const clientId = policy?.clientId ?? fact.actor.claimedClient;
  // The server's own work (Flags a rule raised, deliveries) has no client: the server is the requestor.
  const ownWork = policy !== undefined && origin === undefined && policy.clientId === 'internal';
  if (clientId !== undefined && !ownWork) {
    agents.push({
      type: roles.client,
      who: { identifier: { system: CLIENT_ID_SYSTEM, value: clientId }, display: clientId },
      requestor: user === undefined,
      ...(origin?.address ? { network: { address: origin.address, type: '2' as const } } : {}),
    });
    keys.push(`${CLIENT_ID_SYSTEM}|${clientId}`);
  } else if (origin?.address && user === undefined) {
    // An unauthenticated request: who is unknown, where from is not.
    agents.push({ type: roles.client, who: { display: 'unauthenticated' }, requestor: true, network: { address: origin.address, type: '2' } });
  }
  agents.push({
    type: roles.server,
    who: { identifier: { system: 'urn:ietf:rfc:3986', value: observer.baseUrl }, display: observer.baseUrl },
    requestor: agents.length === 0,
    network: { address: hostOf(observer.baseUrl), type: '1' },
  });
  return { agents, keys };
}

function hostOf(url: string): string {
  try {
    return new URL(url).hostname;
  } catch {
    return url;
  }
}
