import { idOfReference } from '../kernel/id';
import { escapeSearchValue, findMatchingIds, type PatientExclusion } from '../search';
import type { Queryable } from '../store/db';
import { readResource, readResources } from '../store/repository';
import { CLIENT_ACTOR, CLIENT_ID_SYSTEM, type ConsentProvision, type ConsentRules, consentRules, CONSENT_SCOPE_SYSTEM, type DataClass } from './consent-rules';
import { type AccessPolicy, type Action, unrestricted } from './policy';

/**
 * Consents in the access policy (decision record 015). Every request's policy passes through
 * `withConsents` once, when its token is accepted (and a subscriber's, when a notification is
 * matched): what the Consents and caregiver links say *now* decides, never what they said when
 * the token was issued, so a withdrawal holds from the next request on.
 *
 * - A caregiver (fhirUser RelatedPerson) sees nothing by default: only the data classes that
 *   active Consents of their linked patient permit *them*, read-only, while the link
 *   (RelatedPerson.active, .period, .patient) holds.
 * - Anyone else named by a deny (a Practitioner, …) loses the data it covers; the rest of their
 *   access is their scopes'.
 *
 * Both become the policy's ordinary limits (compartment, constraint, exclusions), which search
 * turns into SQL: no path filters afterwards.
 */

/** Why a request reads: v3-ActReason codes a provision's purpose must share to apply. */
const PURPOSES = {
  caregiver: ['CAREMGT', 'FAMRQT', 'PWATRNY', 'SUPNWK'],
  clinician: ['TREAT', 'ETREAT', 'CAREMGT'],
} as const;

/** Reading is what these actions cover; a provision only about `collect` or `correct` does not concern it. */
const READ_ACTIONS = new Set(['access', 'use', 'disclose']);

type Decision = 'permit' | 'deny' | undefined;

/** A decision over one resource type of one patient: for all of it, and for resources with a given category. */
interface TypeDecision {
  base: Decision;
  categories: Map<string, Decision>;
}

function stronger(a: Decision, b: Decision): Decision {
  return a === 'deny' || b === 'deny' ? 'deny' : (a ?? b);
}

/** Siblings and separate Consents: deny wins. */
function merge(a: TypeDecision, b: TypeDecision): TypeDecision {
  const categories = new Map<string, Decision>();
  for (const c of new Set([...a.categories.keys(), ...b.categories.keys()])) {
    categories.set(c, stronger(a.categories.get(c) ?? a.base, b.categories.get(c) ?? b.base));
  }
  return { base: stronger(a.base, b.base), categories };
}

/** A nested provision is an exception: where it decides, it overrides its parent. */
function override(parent: TypeDecision, child: TypeDecision): TypeDecision {
  const categories = new Map<string, Decision>();
  for (const c of new Set([...parent.categories.keys(), ...child.categories.keys()])) {
    categories.set(c, child.categories.get(c) ?? child.base ?? parent.categories.get(c) ?? parent.base);
  }
  return { base: child.base ?? parent.base, categories };
}

const NONE: TypeDecision = Object.freeze({ base: undefined, categories: new Map() }) as TypeDecision;

/** Whether `p` holds now for a read with these purposes (its actors aside). */
function applies(p: ConsentProvision, purposes: readonly string[], now: number): boolean {
  return (
    (p.start === undefined || p.start <= now) &&
    (p.end === undefined || now <= p.end) &&
    (p.purposes.length === 0 || p.purposes.some((x) => purposes.includes(x))) &&
    (p.actions.length === 0 || p.actions.some((x) => READ_ACTIONS.has(x)))
  );
}

/**
 * Who asks, as the actors a provision may name: its permits count when they name one of
 * `permits`, its denies when they name one of `denies`. A caregiver's permits must name the
 * caregiver (a permit to the app they use grants them nothing); a deny of the app holds for
 * everyone who uses it.
 */
interface Who {
  permits: readonly string[];
  denies: readonly string[];
}

function names(actors: readonly string[], who: readonly string[]): boolean {
  return actors.some((a) => who.includes(a));
}

/** What `p` says of `type` for `who`: nothing unless it names them (itself or through its parent). */
function decide(p: ConsentProvision, type: string, who: Who, purposes: readonly string[], now: number, inheritedActors: readonly string[]): TypeDecision {
  const actors = p.actors.length ? p.actors : inheritedActors;
  if (!applies(p, purposes, now)) return NONE;
  let own: TypeDecision = NONE;
  if (p.decision && names(actors, p.decision === 'permit' ? who.permits : who.denies)) own = covered(p.classes, type, p.decision);
  const exceptions = p.exceptions.map((e) => decide(e, type, who, purposes, now, actors)).reduce(merge, NONE);
  return override(own, exceptions);
}

function covered(classes: readonly DataClass[], type: string, decision: 'permit' | 'deny'): TypeDecision {
  if (classes.length === 0 || classes.some((c) => c.type === type && c.category === undefined)) return { base: decision, categories: new Map() };
  const categories = new Map<string, Decision>(classes.filter((c) => c.type === type && c.category).map((c) => [c.category!, decision]));
  return categories.size ? { base: undefined, categories } : NONE;
}

/** FHIR search escaping of a token value (`\`, `,`, `$`, `|` inside a code). */
function tokenValue(systemCode: string): string {
  const at = systemCode.indexOf('|');
  return `${escapeSearchValue(systemCode.slice(0, at))}|${escapeSearchValue(systemCode.slice(at + 1))}`;
}

function categoriesParam(codes: readonly string[]): string {
  return codes.map(tokenValue).join(',');
}

function withDecision(d: TypeDecision, wanted: Decision): string[] {
  return [...d.categories].filter(([, x]) => x === wanted).map(([c]) => c);
}

/** The Consents naming one actor, and (for a caregiver) their link, as loaded at one moment. */
interface ActorConsents {
  rules: ConsentRules[];
  link?: fhir4.RelatedPerson;
  /** When the answer may change by the clock alone (a period starts or ends): epoch ms. */
  changesAt: number;
}

/** The patient a RelatedPerson links while the link holds (active, within its period); undefined otherwise. */
export function linkedPatient(link: fhir4.RelatedPerson | undefined, now = Date.now()): string | undefined {
  if (!link || link.active === false) return undefined;
  if (link.period?.start && Date.parse(link.period.start) > now) return undefined;
  if (link.period?.end && Date.parse(link.period.end) < now) return undefined;
  return idOfReference(link.patient.reference, 'Patient');
}

/* ---------- the per-actor cache ---------- */

/**
 * Per actor, what the Consents say. A clinician's read must not pay a query for Consents that
 * almost never name them: the answer is cached, and every write of a Consent or RelatedPerson
 * through this process forgets the whole cache before its response is sent (the pipeline's
 * after-commit stage, src/auth/consent-stages.ts). A load that overlaps such a write is not
 * kept (the generation moved). Another process's writes are seen within CONSENT_CACHE_MS.
 * Work inside a write's transaction (notification matching) loads `fresh` and keeps nothing:
 * it may see that transaction's own, not yet committed, Consents.
 */
const CONSENT_CACHE_MS = 1000;
const MAX_CACHED_ACTORS = 10_000;
let generation = 0;
const cache = new Map<string, { generation: number; until: number; consents: ActorConsents }>();

/** The types whose writes change what a Consent-governed caller may see (decision record 015). */
export const GOVERNING_TYPES: ReadonlySet<string> = new Set(['Consent', 'RelatedPerson']);

/** Called after every commit that wrote one of GOVERNING_TYPES. */
export function forgetConsents(): void {
  generation++;
  cache.clear();
}

async function consentsNaming(db: Queryable, actor: string, now: number): Promise<ActorConsents> {
  const hit = cache.get(actor);
  if (hit && hit.generation === generation && now < hit.until) return hit.consents;
  const started = generation;
  const consents = await loadConsents(db, actor, now);
  if (started === generation) {
    if (cache.size >= MAX_CACHED_ACTORS) cache.clear();
    cache.set(actor, { generation: started, until: Math.min(now + CONSENT_CACHE_MS, consents.changesAt), consents });
  }
  return consents;
}

/** One indexed search for the active privacy Consents naming `actor` (a reference, or an app), and a caregiver's link. */
async function loadConsents(db: Queryable, actor: string, now: number): Promise<ActorConsents> {
  const named: Record<string, string> = actor.startsWith(CLIENT_ACTOR)
    ? { 'provision-actor-identifier': tokenValue(`${CLIENT_ID_SYSTEM}|${actor.slice(CLIENT_ACTOR.length)}`) }
    : { 'provision-actor': actor };
  const ids = await findMatchingIds(db, 'Consent', new URLSearchParams({ ...named, status: 'active', scope: `${CONSENT_SCOPE_SYSTEM}|patient-privacy` }));
  const rules = [...(await readResources<fhir4.Consent>(db, 'Consent', ids)).values()].flatMap((c) => consentRules(c) ?? []);
  const link = actor.startsWith('RelatedPerson/') ? (await readResource<fhir4.RelatedPerson>(db, 'RelatedPerson', actor.slice('RelatedPerson/'.length)))?.resource : undefined;
  return { rules, ...(link ? { link } : {}), changesAt: nextChange(rules, link, now) };
}

function nextChange(rules: readonly ConsentRules[], link: fhir4.RelatedPerson | undefined, now: number): number {
  const times: number[] = [];
  const walk = (p: ConsentProvision) => {
    if (p.start !== undefined) times.push(p.start);
    if (p.end !== undefined) times.push(p.end + 1);
    p.exceptions.forEach(walk);
  };
  rules.forEach((r) => walk(r.root));
  for (const t of [link?.period?.start, link?.period?.end]) if (t) times.push(Date.parse(t) + 1);
  return Math.min(Infinity, ...times.filter((t) => t > now));
}

/* ---------- policies ---------- */

/** Whose Consents apply to `policy`: a caregiver's grant is all they get; anyone else keeps their scopes minus the denies that name them. */
function actorKind(policy: AccessPolicy): 'caregiver' | 'other' {
  return policy.fhirUser?.startsWith('RelatedPerson/') ? 'caregiver' : 'other';
}

/**
 * `policy` as the Consents and caregiver links stand now. A caregiver's policy is always
 * narrowed (nothing without a Consent); anyone else's only when a Consent names them (their
 * fhirUser, or the app as `client:<client_id>`), so the common request costs map lookups.
 */
export async function withConsents(db: Queryable, policy: AccessPolicy, options: { now?: number; fresh?: boolean } = {}): Promise<AccessPolicy> {
  if (policy.clientId === unrestricted.clientId) return policy;
  const now = options.now ?? Date.now();
  const load = (key: string) => (options.fresh ? loadConsents(db, key, now) : consentsNaming(db, key, now));
  const { user, app } = actorsOf(policy);
  const [ofUser, ofApp] = await Promise.all([user ? load(user) : undefined, load(app)]);
  const seen = new Set<string>();
  const rules = [...(ofUser?.rules ?? []), ...ofApp.rules].filter((r) => !seen.has(r.consentId) && seen.add(r.consentId));
  const consents: ActorConsents = { rules, ...(ofUser?.link ? { link: ofUser.link } : {}), changesAt: Math.min(ofUser?.changesAt ?? Infinity, ofApp.changesAt) };
  if (actorKind(policy) === 'caregiver') return caregiverPolicy(policy, { permits: [user!], denies: [user!, app] }, consents, now);
  if (rules.length === 0) return policy;
  const everyone = user ? [user, app] : [app];
  return clinicianPolicy(policy, { permits: everyone, denies: everyone }, consents, now);
}

/** The caller as the actors a provision may name: its user (a patient's own identity is not an actor of their own data's Consents) and its app. */
function actorsOf(policy: AccessPolicy): { user?: string; app: string } {
  const user = policy.fhirUser && !policy.fhirUser.startsWith('Patient/') ? policy.fhirUser : undefined;
  return { ...(user ? { user } : {}), app: `${CLIENT_ACTOR}${policy.clientId}` };
}

/**
 * Whether a deny of the stored `consent` names the caller (its user or its app), whatever its
 * period or purpose. Such a caller may not change or delete that Consent: a clinician with
 * `user/*.cruds` whom a patient's Consent denied their vital signs could name a colleague
 * instead, or withdraw it, and read them at the next request (security probe). A restriction is
 * lifted by the patient or by someone it does not restrict, never by its subject.
 */
export function consentRestrictsCaller(consent: fhir4.Consent, policy: AccessPolicy): boolean {
  if (policy.clientId === unrestricted.clientId) return false;
  const rules = consentRules(consent);
  if (!rules) return false;
  const { user, app } = actorsOf(policy);
  const caller = user ? [user, app] : [app];
  const denies = (p: ConsentProvision, inherited: readonly string[]): boolean => {
    const actors = p.actors.length ? p.actors : inherited;
    return (p.decision === 'deny' && names(actors, caller)) || p.exceptions.some((e) => denies(e, actors));
  };
  return denies(rules.root, []);
}

function decisionsOf(consents: ActorConsents, patientId: string, who: Who, purposes: readonly string[], now: number) {
  const own = consents.rules.filter((r) => r.patientId === patientId);
  const memo = new Map<string, TypeDecision>();
  return (type: string): TypeDecision => {
    let d = memo.get(type);
    if (!d) {
      d = own.map((r) => decide(r.root, type, who, purposes, now, [])).reduce(merge, NONE);
      memo.set(type, d);
    }
    return d;
  };
}

/** Whether `p` or one of its exceptions permits `who` anything now. */
function permitsSomething(p: ConsentProvision, who: Who, inheritedActors: readonly string[], now: number): boolean {
  const actors = p.actors.length ? p.actors : inheritedActors;
  if (!applies(p, PURPOSES.caregiver, now)) return false;
  return (p.decision === 'permit' && names(actors, who.permits)) || p.exceptions.some((e) => permitsSomething(e, who, actors, now));
}

/** What a caregiver may read of `type`: nothing, all of it, or what matches a constraint. */
type Visibility = { visible: false } | { visible: true; constraint?: URLSearchParams };

function caregiverPolicy(policy: AccessPolicy, who: Who, consents: ActorConsents, now: number): AccessPolicy {
  const patientId = linkedPatient(consents.link, now);
  // A token for another patient than the link's (the link was moved since) reaches nothing.
  const linked = patientId !== undefined && patientId === policy.patient;
  const decisionOf = decisionsOf(consents, patientId ?? '', who, PURPOSES.caregiver, now);
  const anyPermit = consents.rules.some((r) => r.patientId === patientId && permitsSomething(r.root, who, [], now));
  const memo = new Map<string, Visibility>();
  const visibility = (type: string): Visibility => {
    let v = memo.get(type);
    if (!v) {
      v = linked ? caregiverVisibility(type, decisionOf(type), anyPermit) : { visible: false };
      memo.set(type, v);
    }
    return v;
  };
  const allows = (type: string, action: Action) => (action === 'r' || action === 's') && visibility(type).visible && policy.allows(type, action);
  return Object.freeze({
    ...policy,
    allows,
    // The caregiver's patient, whatever scopes the token carries: never another patient's compartment.
    confinedToPatient: () => true,
    constraints(type: string, action: Action): URLSearchParams[] | undefined {
      if (!allows(type, action)) return [];
      const v = visibility(type);
      const granted = policy.constraints(type, action);
      if (!v.visible || !v.constraint) return granted;
      if (granted === undefined) return [v.constraint];
      return granted.map((g) => new URLSearchParams([...g, ...v.constraint!]));
    },
  });
}

/**
 * A caregiver's view of one type. The Patient resource itself comes with any grant (an app
 * must be able to say whose vital signs it shows) unless a Consent denies it explicitly.
 */
function caregiverVisibility(type: string, d: TypeDecision, anyGrant: boolean): Visibility {
  const base = type === 'Patient' && d.base === undefined && anyGrant ? 'permit' : d.base;
  const denied = withDecision(d, 'deny');
  if (base === 'permit') {
    return denied.length ? { visible: true, constraint: new URLSearchParams({ 'category:not': categoriesParam(denied) }) } : { visible: true };
  }
  const permitted = withDecision(d, 'permit');
  // Under a deny of the whole type (or no word on it), only the categories an exception permits.
  if (permitted.length === 0) return { visible: false };
  const constraint = new URLSearchParams({ category: categoriesParam(permitted) });
  if (denied.length) constraint.append('category:not', categoriesParam(denied));
  return { visible: true, constraint };
}

function clinicianPolicy(policy: AccessPolicy, who: Who, consents: ActorConsents, now: number): AccessPolicy {
  const patients = [...new Set(consents.rules.map((r) => r.patientId))];
  const deciders = patients.map((p) => [p, decisionsOf(consents, p, who, PURPOSES.clinician, now)] as const);
  const memo = new Map<string, PatientExclusion[]>();
  return Object.freeze({
    ...policy,
    exclusions(type: string): readonly PatientExclusion[] {
      let list = memo.get(type);
      if (!list) {
        list = deciders.flatMap(([patientId, decisionOf]) => exclusionsOf(patientId, decisionOf(type)));
        memo.set(type, list);
      }
      return list;
    },
  });
}

/** What a clinician loses of one patient's `type` (default: their scopes' access, so only denies count). */
function exclusionsOf(patientId: string, d: TypeDecision): PatientExclusion[] {
  const denied = withDecision(d, 'deny');
  if (d.base === 'deny') {
    const excepted = withDecision(d, 'permit');
    if (excepted.length === 0) return [{ patientId }];
    return [
      { patientId, constraint: new URLSearchParams({ 'category:not': categoriesParam(excepted) }) },
      ...(denied.length ? [{ patientId, constraint: new URLSearchParams({ category: categoriesParam(denied) }) }] : []),
    ];
  }
  return denied.length ? [{ patientId, constraint: new URLSearchParams({ category: categoriesParam(denied) }) }] : [];
}
