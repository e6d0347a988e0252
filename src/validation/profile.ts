import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Issue } from '../kernel/outcome';
import { profilesDir } from '../kernel/paths';
import { valueSetContains, valueSetExpansion } from '../terminology/valueset';

/**
 * Validation of a resource against the StructureDefinitions it declares in `meta.profile`,
 * driven by their snapshots (profiles/StructureDefinition-*.json, copied from the R4 package):
 * cardinality, fixed[x] and pattern[x] values, required bindings to value sets we hold
 * (terminology/valuesets), slicing by value/pattern/type discriminators (open and closed), and
 * the profiles' FHIRPath invariants. Generic over snapshots: no per-profile code.
 *
 * Not covered (out of what the vital-signs profiles use): `profile` and `exists` discriminators,
 * type profiles of references, extensible/preferred bindings, element types beyond the schema's.
 * A profile URL we do not hold is not checked (the JSON schema still is).
 */

import { fhirpathEngine } from './fhirpath-engine';
import { nativeInvariant } from './invariants';
import { CORE } from './core-invariants';
import { ELEMENT_INVARIANTS } from './element-invariants';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const r4Model = require('fhirpath/fhir-context/r4') as unknown;

type CompiledFhirpath = (resource: unknown, env?: Record<string, unknown>) => unknown[];

type ElementDefinition = fhir4.ElementDefinition & Record<string, unknown>;

interface ElementNode {
  def: ElementDefinition;
  /** Last path segment, e.g. `value[x]`, `coding`. */
  name: string;
  children: ElementNode[];
  slices: ElementNode[];
  /** The element's fixed[x] and pattern[x] keys, found once at compile time. */
  fixed: string[];
  patterns: string[];
}

interface Invariant {
  key: string;
  human: string;
  path: string;
  check: (resource: unknown, env: Record<string, unknown>) => unknown[];
}

interface CompiledProfile {
  url: string;
  type: string;
  root: ElementNode;
  invariants: Invariant[];
}

interface Instance {
  value: unknown;
  /** The type chosen for a choice element (`Quantity` for valueQuantity). */
  type?: string;
  /** Where it sits, kept as links: the path text is only built for an issue (most checks pass). */
  parent?: Instance;
  key: string;
  index?: number;
}

/** `Observation.component[1].code`: the FHIRPath-style location of an instance, for issues. */
function pathOf(inst: Instance): string {
  const own = inst.index === undefined ? inst.key : `${inst.key}[${inst.index}]`;
  return inst.parent ? `${pathOf(inst.parent)}.${own}` : own;
}

/**
 * Checked on every resource before any profile: ele-1 by ./resource.ts, the core invariants the
 * snapshots repeat (dom-2..5, ext-1) by ./core-invariants.ts, and the element invariants of the
 * base definitions (obs-3, qty-3, ...) by its walk, where a profile states them as the base does.
 */
const SKIPPED_INVARIANTS = new Set(['ele-1', ...Object.keys(CORE)]);
/** Not sqty-1: the walk checks it on the base's SimpleQuantity elements only, and a profile may make another Quantity one. */
const CHECKED_ELEMENT_INVARIANTS = new Set(ELEMENT_INVARIANTS.filter((i) => i.key !== 'sqty-1').map((i) => `${i.key}@${i.expression}`));

function compile(sd: fhir4.StructureDefinition): CompiledProfile {
  const elements = (sd.snapshot?.element ?? []) as ElementDefinition[];
  const byId = new Map<string, ElementNode>();
  let root: ElementNode | undefined;
  const invariants: Invariant[] = [];
  const seenInvariants = new Set<string>();
  for (const def of elements) {
    const id = def.id ?? def.path;
    const segments = id.split('.');
    const last = segments[segments.length - 1]!;
    const keys = Object.keys(def);
    const node: ElementNode = {
      def,
      name: last.split(':')[0]!,
      children: [],
      slices: [],
      fixed: keys.filter((k) => k.startsWith('fixed')),
      patterns: keys.filter((k) => k.startsWith('pattern')),
    };
    byId.set(id, node);
    if (segments.length === 1) {
      root = node;
    } else if (last.includes(':')) {
      const sliced = byId.get([...segments.slice(0, -1), node.name].join('.'));
      sliced?.slices.push(node);
    } else {
      byId.get(segments.slice(0, -1).join('.'))?.children.push(node);
    }
    for (const c of def.constraint ?? []) {
      if (c.severity !== 'error' || !c.expression || SKIPPED_INVARIANTS.has(c.key) || CHECKED_ELEMENT_INVARIANTS.has(`${c.key}@${c.expression}`)) continue;
      const relative = def.path.split('.').slice(1).join('.').replace(/\[x\]/g, '');
      const where = `${c.key}@${relative}`;
      if (seenInvariants.has(where)) continue;
      seenInvariants.add(where);
      const native = nativeInvariant(c.key, relative, c.expression);
      if (native) {
        invariants.push({ key: c.key, human: c.human, path: def.path, check: (resource) => [native(resource)] });
        continue;
      }
      const expression = relative ? `${relative}.all(${c.expression})` : c.expression;
      invariants.push({ key: c.key, human: c.human, path: def.path, check: fhirpathInvariant(expression) });
    }
  }
  if (!root) throw new Error(`StructureDefinition ${sd.url} has no snapshot`);
  prune(root);
  return { url: sd.url, type: sd.type, root, invariants };
}

/**
 * An invariant the native checks do not cover, compiled on its first use: the fhirpath engine
 * (7 MB of heap) is loaded only when a resource meets such an invariant, and the vital-signs
 * profiles have none (decision 023).
 */
function fhirpathInvariant(expression: string): Invariant['check'] {
  let compiled: CompiledFhirpath | undefined;
  return (resource, env) => {
    compiled ??= fhirpathEngine().compile(expression, r4Model as never) as CompiledFhirpath;
    return compiled(resource, env);
  };
}

/**
 * Whether an element adds nothing to its base definition (cardinality as the base's, which the
 * R4 JSON schema already enforces; no fixed or pattern value, no required binding, no slicing)
 * and neither does anything below it. A vital-signs snapshot has a few hundred elements, a
 * dozen of which constrain anything: walking only those took profile checks from ~25 µs to a
 * few per Observation.
 */
function inert(node: ElementNode): boolean {
  const { def } = node;
  const sameMin = def.min === undefined || def.min === 0 || def.min === def.base?.min;
  const sameMax = def.max === undefined || def.max === def.base?.max;
  const bound = def.binding?.strength === 'required' && def.binding.valueSet !== undefined;
  return sameMin && sameMax && !bound && !def.slicing && node.fixed.length === 0 && node.patterns.length === 0 && node.slices.length === 0 && node.children.length === 0;
}

/** Drops inert elements, deepest first, so a parent whose descendants constrain nothing goes too. */
function prune(node: ElementNode): void {
  for (const child of node.children) prune(child);
  for (const slice of node.slices) prune(slice);
  node.children = node.children.filter((c) => !inert(c));
}

let profiles: Map<string, CompiledProfile> | undefined;

function loadProfiles(): Map<string, CompiledProfile> {
  if (profiles) return profiles;
  profiles = new Map();
  for (const file of readdirSync(profilesDir)) {
    if (!file.startsWith('StructureDefinition-') || !file.endsWith('.json')) continue;
    const sd = JSON.parse(readFileSync(join(profilesDir, file), 'utf8')) as fhir4.StructureDefinition;
    if (sd.snapshot) profiles.set(sd.url, compile(sd));
  }
  return profiles;
}

/** The profiles the server holds (and so checks), by the resource type each constrains: the CapabilityStatement's supportedProfile. */
export function heldProfilesByType(): ReadonlyMap<string, string[]> {
  const byType = new Map<string, string[]>();
  for (const [url, profile] of loadProfiles()) byType.set(profile.type, [...(byType.get(profile.type) ?? []), url].sort());
  return byType;
}

/** Whether the server holds (and so checks) the profile with this canonical URL. */
export function isKnownProfile(url: string): boolean {
  return loadProfiles().has(url.split('|')[0]!);
}

/**
 * Every issue of `resource` against each profile it declares that the server holds, and against
 * `named` ones too (`$validate`'s `profile` parameter holds it to a profile it need not declare),
 * each profile once.
 */
export function profileIssues(resource: fhir4.FhirResource, named: readonly string[] = []): Issue[] {
  const declared = resource.meta?.profile ?? [];
  if (declared.length === 0 && named.length === 0) return [];
  const issues: Issue[] = [];
  // A null in meta.profile holds the place of an extension-only entry (json.html#primitive): no profile.
  const urls = [...declared, ...named].filter((u): u is string => typeof u === 'string');
  for (const url of new Set(urls.map((u) => u.split('|')[0]!))) {
    const profile = loadProfiles().get(url);
    if (!profile) continue;
    issues.push(...profileIssuesOf(profile, resource));
  }
  return issues;
}

/** Issues against one profile, by canonical URL; undefined when the profile is not held. */
export function issuesAgainst(url: string, resource: fhir4.FhirResource): Issue[] | undefined {
  const profile = loadProfiles().get(url);
  return profile ? profileIssuesOf(profile, resource) : undefined;
}

function profileIssuesOf(profile: CompiledProfile, resource: fhir4.FhirResource): Issue[] {
  const issues: Issue[] = [];
  const add = (path: string, diagnostics: string, code: Issue['code'] = 'invariant') =>
    issues.push({ code, diagnostics: `${path}: ${diagnostics} (profile ${profile.url})`, expression: [path] });
  if (resource.resourceType !== profile.type) {
    add(resource.resourceType, `a ${resource.resourceType} cannot conform to a profile on ${profile.type}`, 'invalid');
    return issues;
  }
  checkNode(profile.root, [{ value: resource, key: profile.type }], add);
  for (const inv of profile.invariants) {
    let result: unknown[];
    try {
      result = inv.check(resource, { resource });
    } catch {
      continue;
    }
    if (result.length === 1 && result[0] === false) add(inv.path, `invariant ${inv.key} failed: ${inv.human}`);
  }
  return issues;
}

type Add = (path: string, diagnostics: string, code?: Issue['code']) => void;

function cardinality(node: ElementNode, instances: readonly Instance[], parent: Instance | undefined, add: Add): void {
  const { min, max } = node.def;
  if (min !== undefined && instances.length < min) {
    add(cardinalityLabel(node, parent), `minimum cardinality is ${min}, found ${instances.length}`, 'required');
  }
  if (max !== undefined && max !== '*' && instances.length > Number(max)) {
    add(cardinalityLabel(node, parent), max === '0' ? 'is not allowed by the profile' : `maximum cardinality is ${max}, found ${instances.length}`, 'structure');
  }
}

/** Built only for an issue (see ABSENT). */
function cardinalityLabel(node: ElementNode, parent: Instance | undefined): string {
  return `${parent ? pathOf(parent) : ''}.${node.name}${node.def.sliceName ? `:${node.def.sliceName}` : ''}`;
}

/** The element's own rules on each instance, then its slices and children. */
function checkNode(node: ElementNode, instances: readonly Instance[], add: Add): void {
  // Most of a profile's elements are absent from a given resource: nothing to check below them
  // but a slice's minimum cardinality.
  if (instances.length === 0 && node.slices.length === 0) return;
  for (const inst of instances) checkValue(node, inst, add);

  let unsliced = instances;
  if (node.slices.length > 0 && node.def.slicing) {
    const matched = new Map<ElementNode, Instance[]>(node.slices.map((s) => [s, []]));
    const rest: Instance[] = [];
    for (const inst of instances) {
      const slice = node.slices.find((s) => matchesSlice(node, s, inst));
      if (slice) matched.get(slice)!.push(inst);
      else rest.push(inst);
    }
    unsliced = rest;
    const parent = instances[0]?.parent;
    for (const [slice, insts] of matched) {
      cardinality(slice, insts, parent, add);
      checkChildren(slice, insts, add);
    }
    if (node.def.slicing.rules === 'closed') {
      for (const inst of unsliced) add(pathOf(inst), `matches no slice of ${node.def.path}, and the slicing is closed`, 'structure');
    }
  }
  checkChildren(node, unsliced, add);
}

function checkChildren(node: ElementNode, instances: readonly Instance[], add: Add): void {
  for (const child of node.children) {
    for (const inst of instances) {
      if (inst.value === null || typeof inst.value !== 'object') continue;
      const values = childInstances(inst, child.name);
      cardinality(child, values, inst, add);
      checkNode(child, values, add);
    }
  }
}

/**
 * Shared by every absent element, never written to. Checking a vital sign against its profile
 * visits every element the profile names, most of them absent; an empty array for each, and a
 * closure for each cardinality's label (cardinalityLabel), made it allocate 15.8 kB per
 * Observation, 10.3 kB without them (allocation profile of 100-entry transactions, 2026-12-06).
 */
const ABSENT: readonly Instance[] = Object.freeze([]);

function childInstances(parent: Instance, name: string): readonly Instance[] {
  const obj = parent.value as Record<string, unknown>;
  if (!name.endsWith('[x]') && obj[name] === undefined) return ABSENT;
  const out: Instance[] = [];
  if (name.endsWith('[x]')) {
    const prefix = name.slice(0, -3);
    for (const key in obj) {
      if (Object.hasOwn(obj, key) && key.startsWith(prefix) && key.length > prefix.length && /[A-Z]/.test(key[prefix.length]!)) pushInstances(out, parent, key, obj[key], key.slice(prefix.length));
    }
  } else {
    pushInstances(out, parent, name, obj[name], undefined);
  }
  return out;
}

function pushInstances(out: Instance[], parent: Instance, key: string, value: unknown, type: string | undefined): void {
  if (value === undefined) return;
  if (!Array.isArray(value)) {
    out.push({ value, type, parent, key });
    return;
  }
  for (let i = 0; i < value.length; i++) out.push({ value: value[i], type, parent, key, index: i });
}

/** fixed[x], pattern[x] and required bindings of one element on one instance. */
function checkValue(node: ElementNode, inst: Instance, add: Add): void {
  const { def } = node;
  for (const key of node.fixed) {
    if (!deepEqual(inst.value, def[key])) add(pathOf(inst), `must be exactly ${JSON.stringify(def[key])}, found ${JSON.stringify(inst.value)}`, 'value');
  }
  for (const key of node.patterns) {
    if (!containsPattern(inst.value, def[key])) add(pathOf(inst), `must match the pattern ${JSON.stringify(def[key])}`, 'value');
  }
  const binding = def.binding;
  if (binding?.strength === 'required' && binding.valueSet && !(inst.type !== undefined && inst.type !== 'Quantity' && bindsUnitsOnly(binding.valueSet))) {
    const verdict = inBinding(binding.valueSet, inst);
    if (verdict === false) add(pathOf(inst), `is not in the required value set ${binding.valueSet}`, 'code-invalid');
  }
}

const UCUM = 'http://unitsofmeasure.org';
const unitsOnly = new Map<string, boolean>();

/**
 * Whether a value set holds units alone (every code UCUM): bound to a choice element, it binds
 * the unit of a Quantity and says nothing of a CodeableConcept, string or boolean choice. The R4
 * vital-signs profile binds Observation.component.value[x] to its units ("a UCUM unit code in
 * valueQuantity.code", its summary says), and the PHD IG's vital signs carry a measurement-status
 * component coded in MDC (numeric-spo2-alarm): read as binding every type, that refused them.
 */
function bindsUnitsOnly(valueSet: string): boolean {
  let found = unitsOnly.get(valueSet);
  if (found === undefined) {
    const codings = valueSetExpansion(valueSet)?.codings ?? [];
    found = codings.length > 0 && codings.every((c) => c.system === UCUM);
    unitsOnly.set(valueSet, found);
  }
  return found;
}

function inBinding(valueSet: string, inst: Instance): boolean | undefined {
  const v = inst.value;
  if (typeof v === 'string') return valueSetContains(valueSet, undefined, v);
  if (v === null || typeof v !== 'object') return undefined;
  const o = v as { system?: string; code?: string; coding?: fhir4.Coding[] };
  if (Array.isArray(o.coding)) {
    const verdicts = o.coding.filter((c) => c.code).map((c) => valueSetContains(valueSet, c.system, c.code!));
    if (verdicts.includes(true)) return true;
    return verdicts.includes(false) || o.coding.length === 0 ? false : undefined;
  }
  // Coding or Quantity: a Quantity without a code is not coded, so the binding does not apply.
  if (typeof o.code === 'string') return valueSetContains(valueSet, o.system, o.code);
  return undefined;
}

/** Whether an instance belongs to a slice, by the slicing's discriminators. */
function matchesSlice(sliced: ElementNode, slice: ElementNode, inst: Instance): boolean {
  for (const d of sliced.def.slicing?.discriminator ?? []) {
    if (d.type === 'type') {
      const types = (slice.def.type ?? []).map((t) => t.code);
      const actual = inst.type ?? (inst.value as { resourceType?: string } | null)?.resourceType;
      if (actual === undefined || !types.includes(actual)) return false;
    } else if (d.type === 'value' || d.type === 'pattern') {
      const expected = expectedAt(slice, d.path);
      if (expected === undefined) continue;
      const actual = valuesAt(inst.value, d.path);
      if (!actual.some((a) => (d.type === 'value' ? deepEqual(a, expected) : containsPattern(a, expected)))) return false;
    }
  }
  return true;
}

/** The fixed or pattern value a slice gives at a discriminator path (below the slice), found once per slice and path. */
const expectations = new WeakMap<ElementNode, Map<string, unknown>>();
function expectedAt(slice: ElementNode, path: string): unknown {
  let known = expectations.get(slice);
  if (!known) expectations.set(slice, (known = new Map()));
  if (!known.has(path)) known.set(path, findExpected(slice, path));
  return known.get(path);
}

function findExpected(slice: ElementNode, path: string): unknown {
  const target = path === '$this' ? '' : path;
  const found = findFixed(slice, slice.def.path, target);
  if (found !== undefined) return found;
  // A pattern on the slice itself, read at the path.
  const own = fixedOrPattern(slice.def);
  return own === undefined ? undefined : target ? valuesAt(own, target)[0] : own;
}

function findFixed(node: ElementNode, base: string, target: string): unknown {
  const relative = node.def.path === base ? '' : node.def.path.slice(base.length + 1);
  if (relative === target) {
    const v = fixedOrPattern(node.def);
    if (v !== undefined) return v;
  }
  if (target && !target.startsWith(relative)) return undefined;
  for (const next of [...node.children, ...node.slices]) {
    const v = findFixed(next, base, target);
    if (v !== undefined) return v;
  }
  return undefined;
}

function fixedOrPattern(def: ElementDefinition): unknown {
  for (const key of Object.keys(def)) if (key.startsWith('fixed') || key.startsWith('pattern')) return def[key];
  return undefined;
}

function valuesAt(value: unknown, path: string): unknown[] {
  let current: unknown[] = [value];
  if (path === '$this' || path === '') return current;
  for (const step of path.split('.')) {
    const next: unknown[] = [];
    for (const v of current) {
      if (v === null || typeof v !== 'object') continue;
      const child = (v as Record<string, unknown>)[step];
      if (Array.isArray(child)) next.push(...child);
      else if (child !== undefined) next.push(child);
    }
    current = next;
  }
  return current;
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/** FHIR pattern semantics: every element of the pattern is present with that value; array items match some item. */
function containsPattern(value: unknown, pattern: unknown): boolean {
  if (pattern === null || typeof pattern !== 'object') return value === pattern;
  if (value === null || typeof value !== 'object') return false;
  if (Array.isArray(pattern)) {
    const items = Array.isArray(value) ? value : [value];
    return pattern.every((p) => items.some((v) => containsPattern(v, p)));
  }
  return Object.entries(pattern).every(([k, p]) => containsPattern((value as Record<string, unknown>)[k], p));
}
