import { VERSION_AUTHOR_URL } from '../audit';
import { pseudonym, purposeKey } from '../kernel/pseudonym';

/**
 * Pseudonymisation of one patient's compartment (decision 014), the alternative to erasure that
 * keeps the clinical values: Microsoft's FHIR anonymisation tool's methods (cryptoHash, redact,
 * dateShift) as fixed rules, with the key from configuration.
 *
 * - ids and references: `Type/<HMAC(Type/id)>`, so links between the resources still resolve
 *   within the copy, and the same resource gets the same pseudonym in every copy made with a key;
 * - identifiers: the value becomes the HMAC of `system|value` (the system stays, so a type of
 *   identifier is still recognisable);
 * - removed: names of persons, telecom, address, photo, contacts, narrative text, notes (every
 *   Annotation: free text written about the patient, by someone named in it), reference
 *   displays, meta.source and the version-author extension (they name people);
 * - dates and times (full dates, date-times, instants): shifted by one offset per patient, a whole
 *   number of days in ±1..365 derived from the key, so intervals inside the record are kept;
 *   partial dates (a year, a year-month) are coarse already and stay;
 * - kept: codes, values, units, statuses, interpretations, reference ranges.
 *
 * The result is pseudonymised, not anonymous, for whoever holds the key (GDPR Recital 26), and
 * free text in other elements (a valueString, a CodeableConcept's text) is the sender's to keep
 * clean: those carry the clinical content itself.
 */
const PERSON_TYPES = new Set(['Patient', 'Practitioner', 'RelatedPerson', 'Person']);
/** `note` is an Annotation wherever R4 has it (Observation, CarePlan, MedicationRequest, Device, …). */
const REMOVED_EVERYWHERE = new Set(['telecom', 'address', 'photo', 'note']);
const REMOVED_FROM_PERSONS = new Set(['name', 'contact']);
/** The security label of a pseudonymised copy (its resources and its Bundle). */
export const PSEUDONYMISED: fhir4.Coding = { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'PSEUDED', display: 'pseudonymized' };
const FULL_DATE = /^(\d{4}-\d{2}-\d{2})(T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}))?$/;
const REFERENCE = /^(?:.*\/)?([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/;
const DAY_MS = 86_400_000;

/** A resource without its narrative (`text`: the generated HTML names the patient); `text` elsewhere (CodeableConcept.text) is clinical and stays. */
function withoutNarrative(resource: unknown): unknown {
  if (resource === null || typeof resource !== 'object') return resource;
  const { text: _narrative, ...rest } = resource as Record<string, unknown>;
  return rest;
}

export interface Pseudonymiser {
  /** The pseudonymised copy of `resource` (the input is not changed). */
  resource<T extends fhir4.FhirResource>(resource: T): T;
  /** The whole days every date of this patient's record moves by. */
  readonly shiftDays: number;
}

/**
 * The purpose anonymisation derives its own key for (kernel/pseudonym.ts): with the configured key
 * itself, a copy's Patient id was the prefix of the erasure record's pseudonym of that patient
 * (src/audit/erasure.ts), which linked every extract to the erasure. The erasure record keeps
 * the configured key: the audit chain is immutable (decision 014).
 */
export const ANONYMISATION_PURPOSE = 'anonymize';

export function pseudonymiser(configuredKey: string, patientId: string): Pseudonymiser {
  const key = purposeKey(configuredKey, ANONYMISATION_PURPOSE);
  const seed = Number.parseInt(pseudonym(key, `date-shift|Patient/${patientId}`).slice(0, 8), 16);
  const shiftDays = ((seed % 365) + 1) * (seed & 0x100 ? 1 : -1);
  const idOf = (type: string, id: string) => pseudonym(key, `${type}/${id}`).slice(0, 40);

  const shift = (text: string): string => {
    const m = FULL_DATE.exec(text);
    if (!m) return text;
    if (m[2] === undefined) return new Date(Date.parse(`${m[1]}T00:00:00Z`) + shiftDays * DAY_MS).toISOString().slice(0, 10);
    return new Date(Date.parse(text) + shiftDays * DAY_MS).toISOString();
  };

  const walk = (value: unknown, personType: boolean): unknown => {
    if (typeof value === 'string') return shift(value);
    if (Array.isArray(value)) return value.map((v) => walk(v, personType));
    if (value === null || typeof value !== 'object') return value;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (REMOVED_EVERYWHERE.has(k) || (personType && REMOVED_FROM_PERSONS.has(k))) continue;
      if (k === 'reference' && typeof v === 'string') {
        const m = REFERENCE.exec(v);
        out[k] = m ? `${m[1]}/${idOf(m[1]!, m[2]!)}` : v.startsWith('#') ? v : undefined;
      } else if (k === 'display' && typeof (value as Record<string, unknown>).reference === 'string') {
        continue;
      } else if (k === 'identifier') {
        out[k] = Array.isArray(v) ? v.map(identifier) : identifier(v);
      } else if (k === 'resourceType' || k === 'system' || k === 'code' || k === 'url' || k === 'unit') {
        out[k] = v;
      } else if (k === 'contained' && Array.isArray(v)) {
        out[k] = v.map((r) => walk(withoutNarrative(r), PERSON_TYPES.has((r as { resourceType?: string }).resourceType ?? '')));
      } else {
        out[k] = walk(v, personType);
      }
    }
    return out;
  };

  const identifier = (v: unknown): unknown => {
    if (v === null || typeof v !== 'object') return v;
    const { value, assigner: _assigner, ...rest } = v as fhir4.Identifier;
    const kept = walk(rest, false) as fhir4.Identifier;
    return value === undefined ? kept : { ...kept, value: pseudonym(key, `${rest.system ?? ''}|${value}`) };
  };

  return {
    shiftDays,
    resource<T extends fhir4.FhirResource>(resource: T): T {
      const { meta, id, ...body } = withoutNarrative(resource) as T;
      const copy = walk(body, PERSON_TYPES.has(resource.resourceType)) as T;
      if (id !== undefined) copy.id = idOf(resource.resourceType, id);
      // Not `_profile`: a null in profile (an extension-only entry, json.html#primitive) goes with it.
      const profile = meta?.profile?.filter((p) => p !== null);

      const security = (meta?.security ?? []).filter((s) => !(s.system === PSEUDONYMISED.system && s.code === PSEUDONYMISED.code));
      const tags = meta?.tag;
      const extension = (meta?.extension ?? []).filter((e) => e.url !== VERSION_AUTHOR_URL);
      copy.meta = {
        ...(profile?.length ? { profile } : {}),
        ...(tags ? { tag: tags } : {}),
        ...(extension.length ? { extension } : {}),
        security: [...security, PSEUDONYMISED],
      };
      return copy;
    },
  };
}
