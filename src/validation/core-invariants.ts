import type { Issue } from '../kernel/outcome';
import { ELEMENT_INVARIANTS_BY_DEFINITION, type ElementInvariant } from './element-invariants';
import { nativeInvariant } from './invariants';
import { narrativeProblem } from './narrative';
import { schemaDefinitions } from './schema';

/**
 * The invariants of the R4 core that every resource is held to, whatever profile it declares:
 * DomainResource dom-2..dom-5 on contained resources, Reference ref-1, Extension ext-1 and
 * Period per-1 wherever those datatypes occur, and Narrative txt-1 (./narrative.ts). CORE below holds each one's key, its exact
 * expression in the official StructureDefinitions (hl7.fhir.r4.examples; the tests compare them)
 * and its text. ele-1 is checked by ./resource.ts (no empty element). The walk also checks the
 * invariants of other datatypes and of resources' own elements (./element-invariants.ts).
 *
 * Hand-written rather than evaluated by the fhirpath library: measured on a heart-rate
 * Observation (2 cores, Node 20, compiled expressions, medians), fhirpath took 325 µs per
 * resource for these seven (ref-1 at every Reference 137 µs, dom-3 60 µs, dom-2 56 µs), which
 * alone would cap a core near 3,000 writes/s on checks that pass; this walk takes 1.4 µs on it
 * (6.6 µs on the R4 blood-pressure example, extensions and narrative included). fhirpath 5 also
 * refuses dom-3 as written (`descendants().as(uri)`: `as` on a collection). The walk's datatype
 * knowledge is the R4 JSON schema's (which property holds a Period, a Reference, a uri), the
 * definitions the validators use. test/validation/core-invariants.test.ts checks it against
 * fhirpath on the interop corpus, the R4 examples and variants that break each invariant.
 */
type Json = Record<string, unknown>;

interface CoreInvariant {
  key: string;
  /** The StructureDefinition (resource or datatype) whose root element holds it. */
  on: string;
  expression: string;
  human: string;
}

export const CORE = {
  'dom-2': {
    key: 'dom-2',
    on: 'DomainResource',
    expression: 'contained.contained.empty()',
    human: 'If the resource is contained in another resource, it SHALL NOT contain nested Resources',
  },
  'dom-3': {
    key: 'dom-3',
    on: 'DomainResource',
    expression:
      "contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().as(canonical) | %resource.descendants().as(uri) | %resource.descendants().as(url))) or descendants().where(reference = '#').exists() or descendants().where(as(canonical) = '#').exists() or descendants().where(as(canonical) = '#').exists()).not()).trace('unmatched', id).empty()",
    human: 'If the resource is contained in another resource, it SHALL be referred to from elsewhere in the resource or SHALL refer to the containing resource',
  },
  'dom-4': {
    key: 'dom-4',
    on: 'DomainResource',
    expression: 'contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()',
    human: 'If a resource is contained in another resource, it SHALL NOT have a meta.versionId or a meta.lastUpdated',
  },
  'dom-5': {
    key: 'dom-5',
    on: 'DomainResource',
    expression: 'contained.meta.security.empty()',
    human: 'If a resource is contained in another resource, it SHALL NOT have a security label',
  },
  'ref-1': {
    key: 'ref-1',
    on: 'Reference',
    expression: "reference.startsWith('#').not() or (reference.substring(1).trace('url') in %rootResource.contained.id.trace('ids'))",
    human: 'SHALL have a contained resource if a local reference is provided',
  },
  'ext-1': {
    key: 'ext-1',
    on: 'Extension',
    expression: 'extension.exists() != value.exists()',
    human: 'Must have either extensions or value[x], not both',
  },
  'per-1': {
    key: 'per-1',
    on: 'Period',
    expression: 'start.hasValue().not() or end.hasValue().not() or (start <= end)',
    human: 'If present, start SHALL have a lower value than end',
  },
} satisfies Record<string, CoreInvariant>;

/** dom-2, dom-4 and dom-5 are the same checks profiles' snapshots repeat (./invariants.ts). */
const CONTAINED_CHECKS = (['dom-2', 'dom-4', 'dom-5'] as const).map((key) => {
  const holds = nativeInvariant(key, '', CORE[key].expression);
  if (!holds) throw new Error(`no native check of ${key}`);
  return { invariant: CORE[key], holds };
});

/** What the walk needs to know of a schema definition's properties. */
interface Shape {
  /** Property → the definition of the complex value it holds; `RESOURCE` for a resource. */
  children: Map<string, string>;
  /** Properties typed uri, url or canonical: dom-3 counts their `#id` values as references. */
  uris: Set<string>;
  canonicals: Set<string>;
}

const RESOURCE = '<resource>';
const CHOICE_SUFFIX = /[a-z](Uri|Url|Canonical)$/;
const shapes = new Map<string, Shape>();

function shapeOf(definition: string): Shape | undefined {
  let shape = shapes.get(definition);
  if (shape) return shape;
  const properties = schemaDefinitions()[definition]?.properties;
  if (!properties) return undefined;
  shape = { children: new Map(), uris: new Set(), canonicals: new Set() };
  for (const [property, spec] of Object.entries(properties)) {
    // The schema writes a choice's primitive types inline, untyped (`definitionCanonical`):
    // their type is the name's suffix.
    const target = (spec.$ref ?? spec.items?.$ref)?.split('/').pop() ?? CHOICE_SUFFIX.exec(property)?.[1]?.toLowerCase();
    if (!target) continue;
    if (target === 'ResourceList' || target === 'Resource') shape.children.set(property, RESOURCE);
    else if (target === 'uri' || target === 'url') shape.uris.add(property);
    else if (target === 'canonical') shape.canonicals.add(property);
    else if (/^[A-Z]/.test(target)) shape.children.set(property, target);
  }
  shapes.set(definition, shape);
  return shape;
}

/** One resource that is not contained (the one written, or one a Bundle or Parameters holds), with what dom-3 and ref-1 read of it. */
interface Scope {
  containedIds: Set<string>;
  /** Every `#…` value of a Reference.reference, uri, url or canonical anywhere in it, its contained resources' included. */
  localReferences: Set<string>;
  /** The contained resource being walked (its index), if any. */
  inContained?: number;
  /** The contained resources that refer to their container (`#` as a reference or canonical). */
  referToContainer: Set<number>;
}

/** Every core invariant `resource` breaks, each with its key and the element's path. */
export function coreInvariantIssues(resource: Json): Issue[] {
  const issues: Issue[] = [];
  const type = resource.resourceType;
  if (typeof type === 'string') checkResource(resource, type, [type], issues);
  return issues;
}

function checkResource(resource: Json, type: string, at: string[], issues: Issue[]): void {
  const contained = Array.isArray(resource.contained) ? (resource.contained as unknown[]) : [];
  const scope: Scope = { containedIds: new Set(), localReferences: new Set(), referToContainer: new Set() };
  for (const c of contained) if (isObject(c) && typeof c.id === 'string') scope.containedIds.add(c.id);
  walk(resource, type, at, scope, issues);
  if (contained.length === 0) return;
  for (const { invariant, holds } of CONTAINED_CHECKS) {
    if (holds(resource)) continue;
    // Which ones: only on failure, each alone in the same check.
    contained.forEach((c, i) => holds({ contained: [c] }) || issues.push(invariantIssue(invariant, `${at.join('')}.contained[${i}]`)));
  }
  contained.forEach((c, i) => {
    if (!isObject(c)) return;
    const referred = typeof c.id === 'string' && scope.localReferences.has(`#${c.id}`);
    if (!referred && !scope.referToContainer.has(i)) issues.push(invariantIssue(CORE['dom-3'], `${at.join('')}.contained[${i}]`));
  });
}

/**
 * Checks `node`, of schema definition `definition`, and all below it; `at` is its path as
 * segments, joined only for an issue (a valid resource builds no string).
 */
function walk(node: unknown, definition: string, at: string[], scope: Scope, issues: Issue[]): void {
  if (Array.isArray(node)) {
    for (let i = 0; i < node.length; i++) {
      at.push(`[${i}]`);
      walk(node[i], definition, at, scope, issues);
      at.pop();
    }
    return;
  }
  if (!isObject(node)) return;
  if (definition === 'Reference') reference(node, at, scope, issues);
  else if (definition === 'Extension' && hasExtensions(node) === hasValue(node)) issues.push(invariantIssue(CORE['ext-1'], at.join('')));
  else if (definition === 'Period' && startAfterEnd(node.start, node.end)) issues.push(invariantIssue(CORE['per-1'], at.join('')));
  else if (definition === 'Narrative' && typeof node.div === 'string') narrative(node.div, at, issues);
  const own = ELEMENT_INVARIANTS_BY_DEFINITION.get(definition);
  if (own) elementInvariants(node, own, at, issues);
  const shape = shapeOf(definition);
  if (!shape) return;
  for (const property in node) {
    const value = node[property];
    if (shape.uris.has(property) || shape.canonicals.has(property)) {
      for (const text of Array.isArray(value) ? value : [value]) {
        if (typeof text !== 'string' || !text.startsWith('#')) continue;
        scope.localReferences.add(text);
        if (text === '#' && shape.canonicals.has(property) && scope.inContained !== undefined) scope.referToContainer.add(scope.inContained);
      }
      continue;
    }
    const child = shape.children.get(property);
    // A contained resource's own contained resources: dom-2 refuses them.
    if (!child || (property === 'contained' && scope.inContained !== undefined)) continue;
    at.push(`.${property}`);
    if (child !== RESOURCE) walk(value, child, at, scope, issues);
    else if (property === 'contained') containedResources(value, at, scope, issues);
    else heldResources(value, at, issues);
    at.pop();
  }
}

function elementInvariants(node: Json, invariants: readonly ElementInvariant[], at: string[], issues: Issue[]): void {
  for (const invariant of invariants) {
    const element = invariant.breach(node);
    if (element !== undefined) issues.push(invariantIssue(invariant, element ? `${at.join('')}.${element}` : at.join('')));
  }
}

/** Contained resources belong to the container's scope: their `#id` references name its contained resources. */
function containedResources(list: unknown, at: string[], scope: Scope, issues: Issue[]): void {
  if (!Array.isArray(list)) return;
  list.forEach((c, i) => {
    if (!isObject(c) || typeof c.resourceType !== 'string') return;
    at.push(`[${i}]`);
    scope.inContained = i;
    walk(c, c.resourceType, at, scope, issues);
    scope.inContained = undefined;
    at.pop();
  });
}

/** A resource a Bundle entry or a parameter holds is a resource of its own (%rootResource is itself). */
function heldResources(value: unknown, at: string[], issues: Issue[]): void {
  for (const [i, held] of (Array.isArray(value) ? value : [value]).entries()) {
    if (!isObject(held) || typeof held.resourceType !== 'string') continue;
    if (Array.isArray(value)) at.push(`[${i}]`);
    checkResource(held, held.resourceType, at, issues);
    if (Array.isArray(value)) at.pop();
  }
}

/**
 * ref-1. A bare `#` (a contained resource's reference to its container, R4 references.html#contained)
 * passes: `'#'.substring(1)` is empty (FHIRPath: a start beyond the string), so `in` is empty
 * and the invariant is not false; dom-3 counts it as the contained resource's link.
 */
function reference(node: Json, at: string[], scope: Scope, issues: Issue[]): void {
  const ref = node.reference;
  if (typeof ref !== 'string' || !ref.startsWith('#')) return;
  scope.localReferences.add(ref);
  if (ref === '#') {
    if (scope.inContained !== undefined) scope.referToContainer.add(scope.inContained);
    return;
  }
  if (!scope.containedIds.has(ref.slice(1))) issues.push(invariantIssue(CORE['ref-1'], at.join('')));
}

/** txt-1 (./narrative.ts): its `htmlChecks()` is no FHIRPath a library evaluates. */
function narrative(div: string, at: string[], issues: Issue[]): void {
  const problem = narrativeProblem(div);
  if (problem) issues.push({ code: 'invariant', diagnostics: `${at.join('')}.div: ${problem}`, expression: [`${at.join('')}.div`] });
}

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

const hasExtensions = (o: Json): boolean => Array.isArray(o.extension) && o.extension.length > 0;

/** `value.exists()` of an Extension: any valueX, or a primitive valueX present only as its `_valueX` extensions. */
function hasValue(o: Json): boolean {
  for (const key in o) {
    const at = key.startsWith('_value') ? 6 : key.startsWith('value') ? 5 : -1;
    if (at > 0 && key.length > at && key[at]! >= 'A' && key[at]! <= 'Z' && o[key] !== undefined && o[key] !== null) return true;
  }
  return false;
}

/**
 * per-1's `start <= end` is false only when the two are comparable (FHIRPath: compared from the
 * year down, a difference of precision before any difference of value leaves the answer
 * unknown, and an unknown invariant holds). Two instants compare as instants, whatever their
 * offsets. A date has no zone, so against a dateTime it is after only if it is after both the
 * day the dateTime falls on where it was written and its UTC day (fhirpath compares the UTC day
 * alone, and would refuse a start at 23:00-05:00 on the day a period ends).
 */
export function startAfterEnd(start: unknown, end: unknown): boolean {
  if (typeof start !== 'string' || typeof end !== 'string') return false;
  const s = parseDateTime(start);
  const e = parseDateTime(end);
  if (!s || !e) return false; // the schema reports the format
  if (s.instant !== undefined && e.instant !== undefined) return s.instant > e.instant;
  return s.days.every((sd) => e.days.every((ed) => laterByDate(sd, ed)));
}

/** Whether date parts `a` are after `b`, decided before either runs out of precision. */
function laterByDate(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! > b[i]!;
  return false; // equal as far as both go: equal (same precision) or unknown
}

const DATE_TIME = /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}:\d{2}:\d{2}(?:\.\d+)?)(Z|[+-]\d{2}:\d{2})?)?)?)?$/;

/** A dateTime's date parts (the day where it was written, and its UTC day when it has a time) and, with a time, its instant. */
function parseDateTime(text: string): { days: number[][]; instant?: number } | undefined {
  const m = DATE_TIME.exec(text);
  if (!m) return undefined;
  const local = [m[1], m[2], m[3]].filter((p) => p !== undefined).map(Number);
  if (m[4] === undefined) return { days: [local] };
  const instant = Date.parse(`${m[1]}-${m[2]}-${m[3]}T${m[4]}${m[5] ?? 'Z'}`);
  if (Number.isNaN(instant)) return undefined;
  const utc = new Date(instant);
  return { days: [local, [utc.getUTCFullYear(), utc.getUTCMonth() + 1, utc.getUTCDate()]], instant };
}

function invariantIssue(invariant: Pick<CoreInvariant, 'key' | 'human'>, path: string): Issue {
  return { code: 'invariant', diagnostics: `${path}: invariant ${invariant.key} failed: ${invariant.human}`, expression: [path] };
}
