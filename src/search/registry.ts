import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { supportedTypes } from '../kernel/resource-types';
import { officialDefinitionsDir, profilesDir } from '../kernel/paths';
import { type Accessor, compileExpression, isRepeatingPath, splitUnion } from './accessor';
import { identifierRowsCode } from './index-tables';

/**
 * The search parameter registry: the official R4 SearchParameter resources (from the
 * `hl7.fhir.r4.examples` package, never retyped) plus ours in `profiles/search-parameters/`,
 * split per resource type, with their expressions compiled once.
 *
 * Some parameters are unions or subsets of others (`combo-code` = `code` ∪ `component-code`;
 * Observation `patient` = `subject` where the target is a Patient). Those are `derived`: they
 * store no index rows of their own and are searched through their sources' rows, which cuts the
 * rows written per blood-pressure Observation by a third.
 */
export type SearchParamType = 'number' | 'date' | 'string' | 'token' | 'reference' | 'composite' | 'quantity' | 'uri';

export interface CompositeComponent {
  type: Exclude<SearchParamType, 'composite'>;
  accessor: Accessor;
  /** The component's expression, relative to the composite's element (`code`, `value.as(Quantity)`). */
  expression: string;
}

/** Where a parameter's values live. */
export type Storage =
  /** Rows of its own in the type's index table (`param` = code). */
  | { kind: 'indexed'; accessor: Accessor; fast: boolean; components?: CompositeComponent[] }
  /** The rows of other parameters of the same type, optionally only those referencing `targetType`. */
  | { kind: 'derived'; sources: Array<{ code: string; targetType?: string }> }
  /** A column of the resource table itself (`_id`, `_lastUpdated`). */
  | { kind: 'column'; column: 'id' | 'last_updated' };

export interface SearchParameterDef {
  code: string;
  type: SearchParamType;
  resourceType: string;
  url: string;
  description?: string;
  /** The expression restricted to this resource type. */
  expression: string;
  /** Reference targets (reference parameters only). */
  targets: string[];
  storage: Storage;
}

export interface PatientCompartment {
  /** The parameters that put a resource of this type in a Patient's compartment. */
  params: string[];
  /**
   * The stored reference parameter whose Patient target is copied as `patient` onto every index
   * row of the resource (the shard key and the hot-path filter); undefined for Patient itself
   * (its key is its own id) and for types outside the compartment.
   */
  keySource?: { code: string; targetType: string };
  /**
   * True when the key parameter cannot repeat (`Observation.subject` is 0..1), so that
   * `subject=Patient/X` is exactly `patient = X` and can be answered from any index row.
   */
  keyIsExact: boolean;
}

interface SearchParameterResource {
  resourceType: 'SearchParameter';
  url: string;
  code: string;
  base: string[];
  type: string;
  status?: string;
  experimental?: boolean;
  expression?: string;
  description?: string;
  target?: string[];
  component?: Array<{ definition: string; expression: string }>;
}

const SEARCHABLE_TYPES = new Set(['number', 'date', 'string', 'token', 'reference', 'composite', 'quantity', 'uri']);
const COLUMNS: Record<string, 'id' | 'last_updated'> = { _id: 'id', _lastUpdated: 'last_updated' };
/** The Resource-level parameters applied to every type (R4 `Resource.*`). */
const RESOURCE_BASES = new Set(['Resource', 'DomainResource']);

let own: readonly fhir4.SearchParameter[] | undefined;

/**
 * The server's own SearchParameters, as `profiles/search-parameters/` holds them: the ones the
 * registry searches by, and the ones src/fhir serves at their canonicals (decision 043).
 */
export function ownSearchParameters(): readonly fhir4.SearchParameter[] {
  const dir = join(profilesDir, 'search-parameters');
  own ??= Object.freeze(readdirSync(dir).sort().filter((f) => f.endsWith('.json')).map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as fhir4.SearchParameter));
  return own;
}

function readDefinitions(): SearchParameterResource[] {
  const out: SearchParameterResource[] = [];
  const official = officialDefinitionsDir();
  for (const f of readdirSync(official)) {
    if (f.startsWith('SearchParameter-') && f.endsWith('.json')) out.push(JSON.parse(readFileSync(join(official, f), 'utf8')));
  }
  out.push(...(ownSearchParameters() as unknown as SearchParameterResource[]));
  // The examples package also holds example and extension SearchParameters (experimental: true)
  // and ones without an expression (_text, _content, _query, _filter): none are core search.
  return out.filter(
    (sp) => sp.resourceType === 'SearchParameter' && Array.isArray(sp.base) && sp.experimental !== true && !!sp.expression && SEARCHABLE_TYPES.has(sp.type),
  );
}

/** The members of `expression` that apply to `type`, rooted at it (Resource-level ones re-rooted). */
function expressionFor(sp: SearchParameterResource, type: string): string | undefined {
  const expr = sp.expression as string;
  if (sp.type === 'composite') return sp.base.includes(type) ? expr : undefined;
  const members = splitUnion(expr)
    .map((m) => {
      for (const base of RESOURCE_BASES) {
        if (m.startsWith(`${base}.`)) return type + m.slice(base.length);
      }
      return m;
    })
    .filter((m) => m === type || m.startsWith(`${type}.`) || m.startsWith(`(${type}.`));
  return members.length ? members.join(' | ') : undefined;
}

const RESOLVE_IS = /^(.*)\.where\(resolve\(\) is ([A-Za-z]+)\)$/;

/** A member's identity for subset matching: the path without a trailing target-type filter. */
function memberKey(member: string, componentSignature: string): { key: string; targetType?: string } {
  const m = member.match(RESOLVE_IS);
  return m ? { key: m[1] + componentSignature, targetType: m[2] } : { key: member + componentSignature };
}

interface Candidate {
  sp: SearchParameterResource;
  code: string;
  type: SearchParamType;
  expression: string;
  members: Array<{ key: string; targetType?: string }>;
}

/**
 * Chooses, per type, which parameters are derived from others: P derives from Q1..Qn when
 * every member of P is a member of some Qi (with the same search type), and Q's members carry
 * no target filter of their own. Equal member sets derive the later code from the earlier.
 */
function deriveSources(candidates: Candidate[]): Map<string, Array<{ code: string; targetType?: string }>> {
  const derived = new Map<string, Array<{ code: string; targetType?: string }>>();
  const plain = candidates.filter((c) => c.members.every((m) => m.targetType === undefined));
  for (const p of candidates) {
    const needed = new Set(p.members.map((m) => m.key));
    const sources: Array<{ code: string; targetType?: string }> = [];
    const covered = new Set<string>();
    const qs = plain
      .filter((q) => q.code !== p.code && q.type === p.type)
      .filter((q) => q.members.every((m) => needed.has(m.key)))
      .filter((q) => q.members.length < p.members.length || (q.members.length === p.members.length && (p.members.some((m) => m.targetType) || q.code < p.code)))
      .sort((a, b) => b.members.length - a.members.length || (a.code < b.code ? -1 : 1));
    for (const q of qs) {
      if (q.members.every((m) => covered.has(m.key))) continue;
      if (derived.has(q.code)) continue;
      const targetTypes = new Set(q.members.map((qm) => p.members.find((pm) => pm.key === qm.key)?.targetType));
      if (targetTypes.size !== 1) continue;
      const [targetType] = targetTypes;
      q.members.forEach((m) => covered.add(m.key));
      sources.push(targetType ? { code: q.code, targetType } : { code: q.code });
    }
    if (sources.length && [...needed].every((k) => covered.has(k))) derived.set(p.code, sources);
  }
  // A source that is itself derived (possible with equal member sets) is replaced by its own
  // sources, so that every derived parameter points at rows that exist.
  for (const [code, sources] of derived) {
    derived.set(
      code,
      sources.flatMap((s) =>
        (derived.get(s.code) ?? [s]).map((t) => {
          const targetType = s.targetType ?? t.targetType;
          return targetType ? { code: t.code, targetType } : { code: t.code };
        }),
      ),
    );
  }
  return derived;
}

interface Registry {
  byType: Map<string, Map<string, SearchParameterDef>>;
  compartments: Map<string, PatientCompartment>;
}

let registry: Registry | undefined;

function build(): Registry {
  const definitions = readDefinitions();
  const byUrl = new Map(definitions.map((sp) => [sp.url, sp]));
  const byType = new Map<string, Map<string, SearchParameterDef>>();

  for (const type of supportedTypes) {
    const candidates: Candidate[] = [];
    for (const sp of definitions) {
      if (!sp.base.includes(type) && !sp.base.some((b) => RESOURCE_BASES.has(b))) continue;
      const expression = expressionFor(sp, type);
      if (!expression) continue;
      const signature = sp.type === 'composite' ? `#${(sp.component ?? []).map((c) => c.expression).join('$')}` : '';
      const existing = candidates.findIndex((c) => c.code === sp.code);
      // Ours (read last) replace an official one of the same code, never silently duplicate it.
      if (existing >= 0) candidates.splice(existing, 1);
      candidates.push({
        sp,
        code: sp.code,
        type: sp.type as SearchParamType,
        expression,
        members: splitUnion(expression).map((m) => memberKey(m, signature)),
      });
    }
    const derived = deriveSources(candidates.filter((c) => !(c.code in COLUMNS)));
    const params = new Map<string, SearchParameterDef>();
    for (const c of candidates) {
      params.set(c.code, {
        code: c.code,
        type: c.type,
        resourceType: type,
        url: c.sp.url,
        description: c.sp.description,
        expression: c.expression,
        targets: c.sp.target ?? [],
        storage: storageOf(c, type, derived.get(c.code), byUrl),
      });
    }
    byType.set(type, params);
  }
  return { byType, compartments: buildCompartments(byType) };
}

function storageOf(
  c: Candidate,
  type: string,
  sources: Array<{ code: string; targetType?: string }> | undefined,
  byUrl: Map<string, SearchParameterResource>,
): Storage {
  const column = COLUMNS[c.code];
  if (column) return { kind: 'column', column };
  if (sources) return { kind: 'derived', sources };
  const compiled = compileExpression(c.expression, type);
  if (c.type !== 'composite') return { kind: 'indexed', accessor: compiled.accessor, fast: compiled.fast };
  const components = (c.sp.component ?? []).map((comp) => {
    const def = byUrl.get(comp.definition);
    if (!def || def.type === 'composite' || !SEARCHABLE_TYPES.has(def.type)) {
      throw new Error(`SearchParameter ${c.sp.url}: component ${comp.definition} is not a known simple parameter`);
    }
    const part = compileExpression(comp.expression, '', compiled.outTypes);
    return { type: def.type as CompositeComponent['type'], accessor: part.accessor, expression: comp.expression };
  });
  return { kind: 'indexed', accessor: compiled.accessor, fast: compiled.fast, components };
}

interface CompartmentDefinitionResource {
  resource: Array<{ code: string; param?: string[] }>;
}

/**
 * Patient compartment membership from the official CompartmentDefinition. R4 leaves Device out
 * of the Patient compartment, but a monitoring server scopes a patient's devices by
 * `Device.patient`: a type outside the definition that has a `patient` parameter uses it.
 */
function buildCompartments(byType: Map<string, Map<string, SearchParameterDef>>): Map<string, PatientCompartment> {
  const file = join(officialDefinitionsDir(), 'CompartmentDefinition-patient.json');
  const definition = JSON.parse(readFileSync(file, 'utf8')) as CompartmentDefinitionResource;
  const out = new Map<string, PatientCompartment>();
  for (const [type, params] of byType) {
    if (type === 'Patient') {
      out.set(type, { params: [], keyIsExact: true });
      continue;
    }
    const listed = definition.resource.find((r) => r.code === type)?.param;
    const names = (listed ?? (params.has('patient') ? ['patient'] : [])).filter((p) => params.has(p));
    let keySource: PatientCompartment['keySource'];
    let keyIsExact = false;
    const first = names.length ? params.get(names[0]) : undefined;
    if (first?.type === 'reference') {
      if (first.storage.kind === 'derived' && first.storage.sources.length === 1) {
        keySource = { code: first.storage.sources[0].code, targetType: first.storage.sources[0].targetType ?? 'Patient' };
      } else if (first.storage.kind === 'indexed') {
        keySource = { code: first.code, targetType: 'Patient' };
      }
      const source = keySource ? params.get(keySource.code) : undefined;
      keyIsExact = !!source && splitUnion(source.expression).every((m) => /^[A-Za-z.]+$/.test(m) && !isRepeatingPath(m));
    }
    out.set(type, { params: names, keySource, keyIsExact });
  }
  return out;
}

function get(): Registry {
  registry ??= build();
  return registry;
}

/** Every search parameter of `resourceType` by code (empty for unsupported types). */
export function parametersOf(resourceType: string): ReadonlyMap<string, SearchParameterDef> {
  return get().byType.get(resourceType) ?? new Map();
}

export function parameterOf(resourceType: string, code: string): SearchParameterDef | undefined {
  return get().byType.get(resourceType)?.get(code);
}

/** The parameters that have index rows of their own, in a stable order. */
export function indexedParametersOf(resourceType: string): SearchParameterDef[] {
  return [...parametersOf(resourceType).values()].filter((p) => p.storage.kind === 'indexed');
}

export function patientCompartmentOf(resourceType: string): PatientCompartment {
  return get().compartments.get(resourceType) ?? { params: [], keyIsExact: false };
}

/** The stored (parameter, target type) pairs behind `param`: itself, or its derived sources. */
export function storedSourcesOf(param: SearchParameterDef): Array<{ code: string; targetType?: string }> {
  return param.storage.kind === 'derived' ? param.storage.sources : [{ code: param.code }];
}

/** A composite's components; a derived composite (combo-*) has those of its sources. */
export function componentsOf(param: SearchParameterDef): CompositeComponent[] | undefined {
  if (param.storage.kind === 'indexed') return param.storage.components;
  if (param.storage.kind !== 'derived') return undefined;
  const source = parameterOf(param.resourceType, param.storage.sources[0].code);
  return source?.storage.kind === 'indexed' ? source.storage.components : undefined;
}

const identifierParams = new Map<SearchParameterDef, SearchParameterDef>();

/**
 * `P:identifier` of reference parameter P as a token parameter derived from the identifier rows
 * of P's stored sources, with their target types (`patient:identifier` is `subject:identifier`
 * where the Reference names a Patient; decision 035). As a parameter of its own, not a modifier,
 * it is searched, judged in memory and held to limits as any token filter.
 */
export function identifierParamOf(param: SearchParameterDef): SearchParameterDef {
  let def = identifierParams.get(param);
  if (!def) {
    const sources = storedSourcesOf(param).map((s) => ({ ...s, code: identifierRowsCode(s.code) }));
    def = { ...param, code: identifierRowsCode(param.code), type: 'token', targets: [], storage: { kind: 'derived', sources } };
    identifierParams.set(param, def);
  }
  return def;
}
