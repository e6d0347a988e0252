import { idOfReference } from '../kernel/id';
import { isSupportedType } from '../kernel/resource-types';
import { type DateRange, parseDateRange } from '../search/date-range';

/**
 * A patient-privacy Consent read as access rules (decision record 015). What this server
 * cannot enforce in the access policy is refused when the Consent is written, never ignored:
 * a permit whose restriction were dropped would grant more than the patient gave.
 */

export const CONSENT_SCOPE_SYSTEM = 'http://terminology.hl7.org/CodeSystem/consentscope';
export const RESOURCE_TYPE_SYSTEM = 'http://hl7.org/fhir/resource-types';
export const PURPOSE_SYSTEM = 'http://terminology.hl7.org/CodeSystem/v3-ActReason';
const ACTION_SYSTEM = 'http://terminology.hl7.org/CodeSystem/consentaction';
/**
 * An app (a registered SMART client) as a provision's actor: `actor.reference.identifier` with
 * this system and the client_id as value. OAuth registers no URI for client ids; this one is the
 * server's convention (decision record 015).
 */
export const CLIENT_ID_SYSTEM = 'urn:ietf:params:oauth:client-id';
/** How rules name an app among references. */
export const CLIENT_ACTOR = 'client:';
const CLIENT_ID = /^[A-Za-z0-9._~-]{1,128}$/;

/**
 * Data classes that are a category rather than a whole resource type: the code system of the
 * category, and the types whose `category` search parameter carries codes of it. A class of
 * any other system cannot be matched to data, so a Consent naming one is refused.
 */
export const CATEGORY_CLASSES: Readonly<Record<string, readonly string[]>> = {
  'http://terminology.hl7.org/CodeSystem/observation-category': ['Observation'],
  'http://terminology.hl7.org/CodeSystem/condition-category': ['Condition'],
  'http://terminology.hl7.org/CodeSystem/medicationrequest-category': ['MedicationRequest'],
  'http://terminology.hl7.org/CodeSystem/v2-0074': ['DiagnosticReport'],
};

/** Who a provision may name: the FHIR identities users sign in as, and the groups they belong to. */
const ACTOR = /^(Practitioner|PractitionerRole|RelatedPerson|Patient|Organization|CareTeam|Device|Group)\/[A-Za-z0-9\-.]{1,64}$/;

/** A whole resource type, or the resources of a type that carry one category code. */
export interface DataClass {
  type: string;
  /** `system|code` of a category; absent: every resource of the type. */
  category?: string;
}

export interface ConsentProvision {
  /** Absent on a root that only frames its nested provisions. */
  decision?: 'permit' | 'deny';
  /** `Type/id` references and `client:<client_id>` apps; empty: the parent's actors (for the root: nobody in particular). */
  actors: string[];
  /** v3-ActReason codes; empty: any purpose. */
  purposes: string[];
  /** Empty: all of the patient's data. */
  classes: DataClass[];
  /** Consent actions (access, use, disclose, …); empty: all. */
  actions: string[];
  /** Epoch milliseconds, inclusive; absent: open. */
  start?: number;
  end?: number;
  /** Nested provisions: exceptions to this one for the data they cover. */
  exceptions: ConsentProvision[];
}

export interface ConsentRules {
  consentId: string;
  patientId: string;
  root: ConsentProvision;
}

/** Whether the Consent is one this server enforces (scope patient-privacy); others are only stored. */
export function isPrivacyConsent(consent: fhir4.Consent): boolean {
  return consent.scope?.coding?.some((c) => c.system === CONSENT_SCOPE_SYSTEM && c.code === 'patient-privacy') ?? false;
}

/** What is wrong with a privacy Consent as an access rule; empty when it can be enforced. */
export function consentProblems(consent: fhir4.Consent): string[] {
  if (!isPrivacyConsent(consent)) return [];
  const problems: string[] = [];
  if (!patientIdOf(consent)) problems.push('Consent.patient must reference the Patient whose data it governs (Patient/id)');
  if (!consent.provision) problems.push('a patient-privacy Consent needs a provision saying what it permits or denies');
  else provisionProblems(consent.provision, 'Consent.provision', 0, problems);
  return problems;
}

function provisionProblems(p: fhir4.ConsentProvision, path: string, depth: number, problems: string[]): void {
  // R4: a root provision may leave the decision to Consent.policyRule and only frame its nested
  // provisions (period, actors, purpose); every nested provision decides.
  if (p.type !== undefined ? p.type !== 'permit' && p.type !== 'deny' : depth > 0) problems.push(`${path}.type must be permit or deny`);
  for (const field of ['data', 'dataPeriod', 'securityLabel', 'code'] as const) {
    if (p[field] !== undefined) problems.push(`${path}.${field} cannot be enforced by this server; name data classes in ${path}.class (resource types or categories)`);
  }
  (p.actor ?? []).forEach((a, i) => {
    if (!actorOf(a)) {
      problems.push(`${path}.actor[${i}].reference must be a relative reference such as RelatedPerson/id or Practitioner/id, or an app by identifier (system ${CLIENT_ID_SYSTEM}, value its client_id)`);
    }
  });
  (p.purpose ?? []).forEach((c, i) => {
    if (c.system !== PURPOSE_SYSTEM || !c.code) problems.push(`${path}.purpose[${i}] must be a code of ${PURPOSE_SYSTEM}`);
  });
  (p.class ?? []).forEach((c, i) => {
    if (!dataClassOf(c)) problems.push(`${path}.class[${i}] must be a resource type (${RESOURCE_TYPE_SYSTEM}) or a category of ${Object.keys(CATEGORY_CLASSES).join(', ')}`);
  });
  (p.action ?? []).forEach((a, i) => {
    if (!a.coding?.some((c) => c.system === ACTION_SYSTEM && c.code)) problems.push(`${path}.action[${i}] must carry a code of ${ACTION_SYSTEM}`);
  });
  const start = p.period?.start ? Date.parse(p.period.start) : undefined;
  const end = p.period?.end ? Date.parse(p.period.end) : undefined;
  if (start !== undefined && end !== undefined && start > end) problems.push(`${path}.period ends before it starts`);
  if (p.provision?.length) {
    if (depth > 0) problems.push(`${path}.provision: one level of nested provisions is supported`);
    else p.provision.forEach((n, i) => provisionProblems(n, `${path}.provision[${i}]`, depth + 1, problems));
  }
}

/** `Type/id`, or `client:<client_id>` for an app; undefined when the actor is neither. */
function actorOf(a: fhir4.ConsentProvisionActor): string | undefined {
  const { reference, identifier } = a.reference;
  if (reference !== undefined) return ACTOR.test(reference) ? reference : undefined;
  if (identifier?.system === CLIENT_ID_SYSTEM && identifier.value && CLIENT_ID.test(identifier.value)) return `${CLIENT_ACTOR}${identifier.value}`;
  return undefined;
}

function dataClassOf(c: fhir4.Coding): DataClass | undefined {
  if (!c.code) return undefined;
  if (c.system === RESOURCE_TYPE_SYSTEM) return isSupportedType(c.code) ? { type: c.code } : undefined;
  const types = c.system ? CATEGORY_CLASSES[c.system] : undefined;
  return types ? { type: types[0]!, category: `${c.system}|${c.code}` } : undefined;
}

function patientIdOf(consent: fhir4.Consent): string | undefined {
  return idOfReference(consent.patient?.reference, 'Patient');
}

/** The rules of an active, well-formed privacy Consent; undefined for any other. */
export function consentRules(consent: fhir4.Consent): ConsentRules | undefined {
  const patientId = patientIdOf(consent);
  if (consent.status !== 'active' || !isPrivacyConsent(consent) || !patientId || !consent.provision || consentProblems(consent).length) return undefined;
  return { consentId: consent.id ?? '', patientId, root: provisionOf(consent.provision) };
}

function provisionOf(p: fhir4.ConsentProvision): ConsentProvision {
  return {
    ...(p.type ? { decision: p.type } : {}),
    actors: (p.actor ?? []).map((a) => actorOf(a)!),
    purposes: (p.purpose ?? []).map((c) => c.code!),
    classes: (p.class ?? []).map((c) => dataClassOf(c)!),
    actions: (p.action ?? []).flatMap((a) => (a.coding ?? []).filter((c) => c.system === ACTION_SYSTEM).map((c) => c.code!)),
    ...(p.period?.start ? { start: instantsOf(p.period.start).low } : {}),
    ...(p.period?.end ? { end: instantsOf(p.period.end).high } : {}),
    exceptions: (p.provision ?? []).map(provisionOf),
  };
}

/**
 * The first and last millisecond a dateTime covers, as search reads dates (`2026-12-31` lasts
 * the whole day, `…T10:00:00Z` its whole second). A dateTime the validator let through that this
 * cannot read is its own instant.
 */
function instantsOf(dateTime: string): DateRange {
  return parseDateRange(dateTime) ?? { low: Date.parse(dateTime), high: Date.parse(dateTime) };
}
