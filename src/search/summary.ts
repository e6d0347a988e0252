import { parseStoredJson } from '../kernel/input-limits';
import { carryKeptDecimals, stringifyKeepingDecimals } from '../kernel/json-decimals';
import { badRequest } from '../kernel/outcome';
import { structureElements } from '../kernel/structure-definitions';
import { patientsOf } from './compartment';

/**
 * `_summary` and `_elements`: subsets of a resource, marked SUBSETTED as the R4 page requires.
 * Which top-level elements are "summary" and which are mandatory comes from the type's official
 * R4 StructureDefinition (hl7.fhir.r4.examples, src/kernel/structure-definitions.ts), the same
 * definitions the validator's required elements come from, read per type on first use.
 */
interface ElementFlags {
  summary: Set<string>;
  mandatory: Set<string>;
  /** The choice elements (`value` of value[x], `multipleBirth` of multipleBirth[x]). */
  choices: Set<string>;
}

const flags = new Map<string, ElementFlags>();

/** Per type: backbone element path (`CapabilityStatement.rest.resource`) → its summary children's names and its choice elements. */
const backboneSummaries = new Map<string, Map<string, { summary: Set<string>; choices: Set<string> }>>();

function backboneSummariesOf(resourceType: string): Map<string, { summary: Set<string>; choices: Set<string> }> {
  let m = backboneSummaries.get(resourceType);
  if (!m) {
    m = new Map();
    for (const e of structureElements(resourceType) ?? []) {
      const parts = e.path.split('.');
      if (parts.length < 3 || parts[0] !== resourceType) continue;
      const parent = parts.slice(0, -1).join('.');
      const children = m.get(parent) ?? { summary: new Set<string>(), choices: new Set<string>() };
      const name = parts.at(-1)!.replace('[x]', '');
      if (name !== parts.at(-1)) children.choices.add(name);
      if (e.isSummary) children.summary.add(name);
      m.set(parent, children);
    }
    backboneSummaries.set(resourceType, m);
  }
  return m;
}

function flagsOf(resourceType: string): ElementFlags {
  let f = flags.get(resourceType);
  if (!f) {
    f = { summary: new Set(), mandatory: new Set(), choices: new Set() };
    for (const e of structureElements(resourceType) ?? []) {
      const parts = e.path.split('.');
      if (parts.length !== 2 || parts[0] !== resourceType) continue;
      // Choice elements are declared as `value[x]`; the JSON keys are valueQuantity etc.
      const name = parts[1]!.replace('[x]', '');
      if (name !== parts[1]) f.choices.add(name);
      if (e.isSummary) f.summary.add(name);
      if ((e.min ?? 0) > 0) f.mandatory.add(name);
    }
    flags.set(resourceType, f);
  }
  return f;
}

const SUBSETTED = { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED', display: 'subsetted' };

function keep(resource: Record<string, unknown>, wanted: (key: string) => boolean): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(resource)) if (wanted(key)) out[key] = value;
  const meta = { ...((out.meta as Record<string, unknown> | undefined) ?? {}) };
  meta.tag = [...((meta.tag as unknown[] | undefined) ?? []), SUBSETTED];
  out.meta = meta;
  return out;
}

/**
 * The JSON key `key` is element `name`, one of its choice forms (valueQuantity for value[x]), or
 * a primitive's `_name` companion (its id and extensions: json.html#primitive), which goes with it.
 * A choice is known by the type's definition, not by the key's first capital: multipleBirthInteger
 * is multipleBirth[x] (read as `multiple`, `_elements=multipleBirth` and ServiceRequest's summary
 * asNeeded[x] lost it).
 */
function matches(names: Set<string>, key: string, choices: Set<string>): boolean {
  const own = key.startsWith('_') ? key.slice(1) : key;
  if (names.has(own)) return true;
  for (const choice of choices) {
    if (own.length > choice.length && own.startsWith(choice) && /[A-Z]/.test(own[choice.length]!) && names.has(choice)) return true;
  }
  return false;
}

export type SubsetMode = { summary: 'true' | 'text' | 'data' } | { elements: string[] };

/** `_elements`' value as element names. */
export function parseElements(value: string): string[] {
  return value.split(',').map((e) => e.trim()).filter(Boolean);
}

/** The subset asked for by `_summary` and `_elements` (named elements win); undefined for the whole resource. */
export function subsetModeFor(summary: string | undefined, elements: readonly string[] | undefined): SubsetMode | undefined {
  if (elements?.length) return { elements: [...elements] };
  if (summary === 'true' || summary === 'text' || summary === 'data') return { summary };
  return undefined;
}

const READ_SUMMARIES = ['true', 'false', 'text', 'data'];

/**
 * The subset a read or vread asks for (search.html#summary, #elements: both apply to what a
 * read returns too, as HAPI FHIR and Medplum serve them). `_summary=count` counts a search's
 * matches and means nothing for one resource, so it is refused like any value not in the list.
 */
export function readSubsetMode(query: URLSearchParams): SubsetMode | undefined {
  if (!query.has('_summary') && !query.has('_elements')) return undefined;
  const summary = query.getAll('_summary').at(-1);
  if (summary !== undefined && !READ_SUMMARIES.includes(summary)) {
    throw badRequest(`_summary on a read must be one of ${READ_SUMMARIES.join(', ')}, got '${summary.slice(0, 20)}'`, ['_summary']);
  }
  const elements = query.getAll('_elements').at(-1);
  return subsetModeFor(summary, elements === undefined ? undefined : parseElements(elements));
}

/**
 * A stored resource's JSON text as `mode` subsets it, adding to `disclosed` the patients whose
 * compartment the whole resource is in: the subset may no longer show them, and the audit must
 * still name them (InteractionResult.disclosedPatients).
 */
export function subsetJson(type: string, json: string, mode: SubsetMode, disclosed: Set<string>): string {
  const resource = parseStoredJson(json) as Record<string, unknown>;
  for (const patient of patientsOf(type, resource as unknown as fhir4.FhirResource)) disclosed.add(patient);
  const subset = subsetResource(resource, mode);
  carryKeptDecimals(resource, subset);
  return stringifyKeepingDecimals(subset);
}

/**
 * `_summary=true` within backbone elements too (search.html#summary: "solely … elements marked
 * as summary"): `CapabilityStatement.rest` is a summary element, its `resource.searchParam` is
 * not, and a summary statement without them is a few percent of the whole. Datatypes' elements
 * are kept whole (their children are summary in their own definitions); an element reached
 * through a content reference (`Questionnaire.item.item`) is kept whole as well.
 */
function withSummaryChildren(type: string, resource: Record<string, unknown>): Record<string, unknown> {
  const backbones = backboneSummariesOf(type);
  const prune = (value: unknown, path: string): unknown => {
    const children = backbones.get(path);
    if (!children) return value;
    if (Array.isArray(value)) return value.map((v) => prune(v, path));
    if (value === null || typeof value !== 'object') return value;
    const out: Record<string, unknown> = {};
    for (const [key, child] of Object.entries(value)) {
      if (!matches(children.summary, key, children.choices)) continue;
      out[key] = prune(child, `${path}.${key.startsWith('_') ? key.slice(1) : key}`);
    }
    carryKeptDecimals(value, out);
    return out;
  };
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(resource)) out[key] = key === 'meta' ? value : prune(value, `${type}.${key}`);
  return out;
}

export function subsetResource(resource: Record<string, unknown>, mode: SubsetMode): Record<string, unknown> {
  const type = resource.resourceType as string;
  const always = (key: string) => key === 'resourceType' || key === 'id' || key === 'meta';
  const f = flagsOf(type);
  if ('elements' in mode) {
    // search.html#elements: servers SHOULD return the mandatory elements too, so that what
    // comes back is still a valid resource (an Observation keeps its status and code).
    const names = new Set(mode.elements);
    return keep(resource, (k) => always(k) || matches(names, k, f.choices) || matches(f.mandatory, k, f.choices));
  }
  switch (mode.summary) {
    case 'true':
      return withSummaryChildren(type, keep(resource, (k) => always(k) || matches(f.summary, k, f.choices)));
    case 'text':
      return keep(resource, (k) => always(k) || k === 'text' || matches(f.mandatory, k, f.choices));
    case 'data':
      return keep(resource, (k) => k !== 'text');
  }
}
