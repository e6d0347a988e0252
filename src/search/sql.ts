import { badRequest } from '../kernel/outcome';
import { tableOf } from '../store/tables';
import { splitUnion } from './accessor';
import { indexTableOf, targetTypeColumn } from './index-tables';
import { DENORMALISED_DATE, drivesByPatient } from './extract';
import { type Filter, type ParamFilter, parseSearch, type SortKey } from './parse';
import { limitsIfAllowed, type Reach, type TypeLimits } from './reach';
import { parameterOf, parametersOf, patientCompartmentOf, storedSourcesOf, type SearchParameterDef } from './registry';
import type { SqlParams } from '../kernel/sql-params';
import { typeModules } from './types';
import { dateCondition, dateIndexBound, type DateTerm, instantCondition } from './types/date';
import type { ReferenceTerm } from './types/reference';
import type { TokenTerm } from './types/token';
import type { CompositeTerm } from './types/composite';

/**
 * SQL for a parsed search. Each filter is a condition on the resource row `r`, mostly
 * `EXISTS (index row of this resource matching the terms)`; AND between filters, OR between a
 * filter's comma-separated terms, all values bound. The hot monitoring shape (a patient, a
 * code, maybe a date range, sorted by date) is instead driven by one range scan of the token
 * table's (patient, param, code_hash, date_high) index, and a patient's search with no code by
 * the reference table's (patient, date_high) index of key rows — see `planDriver`.
 */

/** Which rows of an index table belong to `param`: its own, or its derived sources' (of their target type). */
function paramCondition(param: SearchParameterDef, i: string, q: SqlParams): string {
  const sources = storedSourcesOf(param);
  if (sources.every((s) => !s.targetType)) {
    return sources.length === 1 ? `${i}.param = ${q.bind(sources[0].code)}` : `${i}.param = ANY(${q.bind(sources.map((s) => s.code), 'text[]')})`;
  }
  const type = `${i}.${targetTypeColumn(typeModules[param.type].kind).name}`;
  const parts = sources.map((s) => (s.targetType ? `(${i}.param = ${q.bind(s.code)} AND ${type} = ${q.bind(s.targetType)})` : `${i}.param = ${q.bind(s.code)}`));
  return parts.length === 1 ? parts[0] : `(${parts.join(' OR ')})`;
}

function indexTable(resourceType: string, param: SearchParameterDef): string {
  return indexTableOf(tableOf(resourceType), typeModules[param.type].kind);
}

function columnFilter(filter: ParamFilter, r: string, q: SqlParams): string {
  const { param } = filter;
  if (filter.missing !== undefined) return filter.missing ? 'false' : 'true';
  if (param.storage.kind !== 'column') throw new Error('not a column parameter');
  if (param.storage.column === 'id') {
    const ids = (filter.terms as TokenTerm[]).map((t) => (t.kind === 'code' || t.kind === 'systemCode' ? t.code : ''));
    const cond = `${r}.id = ANY(${q.bind(ids, 'text[]')})`;
    return filter.negate ? `NOT (${cond})` : cond;
  }
  const terms = (filter.terms as DateTerm[]).map((t) => instantCondition(t, `${r}.last_updated`, q));
  return terms.length === 1 ? terms[0] : `(${terms.join(' OR ')})`;
}

export function paramFilterCondition(resourceType: string, filter: ParamFilter, r: string, q: SqlParams): string {
  const { param } = filter;
  if (param.storage.kind === 'column') return columnFilter(filter, r, q);
  const i = q.alias('i');
  const table = indexTable(resourceType, param);
  const rows = `SELECT 1 FROM ${table} ${i} WHERE ${i}.id = ${r}.id AND ${paramCondition(param, i, q)}`;
  if (filter.missing !== undefined) return `${filter.missing ? 'NOT ' : ''}EXISTS (${rows})`;
  const matching = `EXISTS (${rows} AND ${termsOnRow(filter, i, q)})`;
  return filter.negate ? `NOT ${matching}` : matching;
}

/** A filter's terms (any of them) on row `i` of its parameter's index table. */
export function termsOnRow(filter: ParamFilter, i: string, q: SqlParams): string {
  const module = typeModules[filter.param.type];
  const terms = filter.terms.map((t) => module.condition(t, i, q));
  return terms.length === 1 ? terms[0] : `(${terms.join(' OR ')})`;
}

/**
 * Conditions on resource row `r` of `resourceType` for every filter (AND'd by the caller).
 * `reach` limits what the filters may look at in other types: a chain or `_has` never matches
 * through a resource the caller could not search itself (else `Patient?_has:Observation:…`
 * would answer yes or no about Observations a granular scope hides).
 */
export function filterConditions(resourceType: string, filters: readonly Filter[], r: string, q: SqlParams, reach: Reach): string[] {
  return filters.map((f) => filterCondition(resourceType, f, r, q, reach));
}

function filterCondition(resourceType: string, filter: Filter, r: string, q: SqlParams, reach: Reach): string {
  switch (filter.kind) {
    case 'param':
      return paramFilterCondition(resourceType, filter, r, q);
    case 'chain': {
      const i = q.alias('i');
      // A target type named by a modifier, or the only candidate, must be searchable (403 otherwise);
      // of several implicit candidates, those the caller may not search simply cannot match.
      const explicit = filter.targets.length === 1;
      const targets = filter.targets.flatMap(({ type, filter: inner }) => {
        const limits = explicit ? reach(type, 's') : limitsIfAllowed(reach, type, 's');
        if (!limits) return [];
        const c = q.alias('c');
        const conditions = [`NOT ${c}.deleted`, filterCondition(type, inner, c, q, reach), ...limitConditions(type, limits, c, q)];
        return [`(${i}.target_type = ${q.bind(type)} AND ${i}.target_id IN (SELECT ${c}.id FROM ${tableOf(type)} ${c} WHERE ${conditions.join(' AND ')}))`];
      });
      if (targets.length === 0) return 'false';
      return `EXISTS (SELECT 1 FROM ${indexTable(resourceType, filter.param)} ${i} WHERE ${i}.id = ${r}.id AND ${paramCondition(filter.param, i, q)} AND (${targets.join(' OR ')}))`;
    }
    case 'has': {
      const limits = reach(filter.sourceType, 's');
      const i = q.alias('i');
      const s = q.alias('s');
      const refs = indexTableOf(tableOf(filter.sourceType), 'reference');
      const conditions = [`${s}.id = ${i}.id`, `NOT ${s}.deleted`, filterCondition(filter.sourceType, filter.filter, s, q, reach), ...limitConditions(filter.sourceType, limits, s, q)];
      return `${r}.id IN (SELECT ${i}.target_id FROM ${refs} ${i} WHERE ${paramCondition(filter.referenceParam, i, q)} AND ${i}.target_type = ${q.bind(resourceType)} AND EXISTS (SELECT 1 FROM ${tableOf(filter.sourceType)} ${s} WHERE ${conditions.join(' AND ')}))`;
    }
  }
}

/** Parsed constraint filters, cached: a granular scope's parameters are few and repeat on every request. */
const constraintFilters = new Map<string, Filter[]>();

/**
 * Conditions that keep row `r` of `type` within `limits`: its patient compartment, the
 * parameters of a granular scope (or a Consent's data classes), and what a Consent denies. A type that cannot be in a patient compartment matches
 * nothing under a compartment limit.
 */
export function limitConditions(type: string, limits: TypeLimits, r: string, q: SqlParams): string[] {
  const conditions: string[] = [];
  if (limits.compartmentPatientId !== undefined) {
    if (!canBeInPatientCompartment(type)) return ['false'];
    conditions.push(compartmentCondition(type, limits.compartmentPatientId, r, q));
  }
  if (limits.constraint) conditions.push(...constraintConditions(type, limits.constraint, r, q));
  // Only data in a patient compartment can be a patient's: other types have nothing to exclude.
  if (limits.exclude?.length && canBeInPatientCompartment(type)) {
    for (const ex of limits.exclude) {
      const excluded = [compartmentCondition(type, ex.patientId, r, q), ...(ex.constraint ? constraintConditions(type, ex.constraint, r, q) : [])];
      conditions.push(`NOT (${excluded.join(' AND ')})`);
    }
  }
  return conditions;
}

function constraintConditions(type: string, constraint: URLSearchParams, r: string, q: SqlParams): string[] {
  if ([...constraint.keys()].length === 0) return [];
  const key = `${type}?${constraint.toString()}`;
  let filters = constraintFilters.get(key);
  if (!filters) {
    filters = parseSearch(type, constraint, { defaultCount: 0, maxCount: 0 }).filters;
    if (constraintFilters.size < 10_000) constraintFilters.set(key, filters);
  }
  // A scope's or Consent's parameters are simple (no chains, no _has): nothing further to reach.
  return filterConditions(type, filters, r, q, () => ({}));
}

export function canBeInPatientCompartment(resourceType: string): boolean {
  return resourceType === 'Patient' || patientCompartmentOf(resourceType).params.length > 0;
}

/**
 * Membership of `r` in Patient `patientId`'s compartment: a reference to the Patient from one
 * of the type's compartment parameters (for Patient itself, being that Patient).
 */
export function compartmentCondition(resourceType: string, patientId: string, r: string, q: SqlParams): string {
  return patientsCompartmentCondition(resourceType, [patientId], r, q);
}

/**
 * Membership of `r` in the compartment of any of `patients`, or of any Patient at all (`'any'`):
 * the reference set of the bulk export's Group and Patient levels, in one condition so that a
 * resource two members share is found once.
 */
export function patientsCompartmentCondition(resourceType: string, patients: readonly string[] | 'any', r: string, q: SqlParams): string {
  const one = (column: string) => (patients.length === 1 ? `${column} = ${q.bind(patients[0])}` : `${column} = ANY(${q.bind(patients, 'text[]')})`);
  if (resourceType === 'Patient') return patients === 'any' ? 'true' : one(`${r}.id`);
  if (!patientCompartmentOf(resourceType).params.length) throw badRequest(`${resourceType} is not in the Patient compartment`);
  const i = q.alias('i');
  const target = patients === 'any' ? undefined : one(`${i}.target_id`);
  return `EXISTS (SELECT 1 FROM ${indexTableOf(tableOf(resourceType), 'reference')} ${i} WHERE ${i}.id = ${r}.id AND ${namingPatient(i, compartmentSourceCodes(resourceType), target, q)})`;
}

/** Reference rows `i` that name a Patient through one of `codes`, and `target` (a condition on `${i}.target_id`) when given. */
function namingPatient(i: string, codes: readonly string[], target: string | undefined, q: SqlParams): string {
  return `${i}.param = ANY(${q.bind(codes, 'text[]')}) AND ${i}.target_type = 'Patient'${target ? ` AND ${target}` : ''}`;
}

/**
 * The compartment's parameters a resource keyed to another Patient (or to none) may still name
 * this one in. Not the key's own when it has a single path: the Patient it names is the key.
 * With several paths (`a | b`) the key is the first Patient named, and another may be named too.
 */
function compartmentSourcesBesideKey(resourceType: string): string[] {
  const { keySource } = patientCompartmentOf(resourceType);
  const key = keySource && parameterOf(resourceType, keySource.code);
  const single = key !== undefined && splitUnion(key.expression).length === 1;
  return compartmentSourceCodes(resourceType).filter((code) => !(single && code === keySource!.code));
}

/** The stored reference parameters whose Patient targets put a `resourceType` in that Patient's compartment. */
function compartmentSourceCodes(resourceType: string): string[] {
  const sources = patientCompartmentOf(resourceType).params.flatMap((code) => {
    const def = parameterOf(resourceType, code);
    return def ? storedSourcesOf(def).map((s) => s.code) : [];
  });
  return [...new Set(sources)];
}


/* ---------- sorting and keyset paging ---------- */

export interface SortColumn {
  /** SQL of the sort value for row `r`. */
  expression: string;
  descending: boolean;
  pgType: string;
  /** A value never NULL (`_lastUpdated`, `_id`, a date row's end): ordered as its index is read, see orderBy; bounds a later page's scan, see keysetCondition. */
  notNull?: boolean;
}

/**
 * The sort value of one key: the resource column, or the smallest (ascending) / largest
 * (descending) indexed value of the parameter, as the R4 page says for repeating elements.
 */
export function sortColumn(resourceType: string, key: SortKey, r: string, q: SqlParams): SortColumn {
  const { param, descending } = key;
  if (param.storage.kind === 'column') {
    return { expression: `${r}.${param.storage.column}`, descending, pgType: param.storage.column === 'id' ? 'text' : 'timestamptz', notNull: true };
  }
  const module = typeModules[param.type];
  if (!module.sortColumn) throw badRequest(`Cannot sort by ${param.code} (${param.type})`, ['_sort']);
  const column = descending ? module.sortColumn.desc : module.sortColumn.asc;
  const i = q.alias('i');
  return {
    expression: `(SELECT ${descending ? 'max' : 'min'}(${i}.${column}) FROM ${indexTable(resourceType, param)} ${i} WHERE ${i}.id = ${r}.id AND ${paramCondition(param, i, q)})`,
    descending,
    pgType: module.sortColumn.pgType,
  };
}

/**
 * ORDER BY of the keys; missing values sort last either way, then the id breaks ties. A NOT
 * NULL column has no missing values, so it takes PostgreSQL's own NULLS order for its direction,
 * the order its btree index gives read forwards or backwards: PostgreSQL does not know the NULLS
 * clause is moot there, and `last_updated DESC NULLS LAST` could not use `(last_updated, id)`
 * (`Observation?_sort=-_lastUpdated` read and sorted every row, 2.4 s at 1M).
 */
export function orderBy(columns: readonly SortColumn[], reverse: boolean): string {
  return columns
    .map((c) => {
      const desc = c.descending !== reverse;
      const nullsFirst = c.notNull ? desc : reverse;
      return `${c.expression} ${desc ? 'DESC' : 'ASC'} NULLS ${nullsFirst ? 'FIRST' : 'LAST'}`;
    })
    .join(', ');
}

/**
 * Keyset condition: rows strictly after `values` in the order of `columns` (or before, when
 * `reverse`), with NULLs last in the forward order. Values are bound with their column's type.
 */
export function keysetCondition(columns: readonly SortColumn[], values: ReadonlyArray<string | null>, reverse: boolean, q: SqlParams): string {
  const alternatives: string[] = [];
  const equalities: string[] = [];
  columns.forEach((c, k) => {
    const v = values[k];
    const desc = c.descending !== reverse;
    const op = desc ? '<' : '>';
    // Forward: NULLs come last, so after a value come larger values and NULLs, after NULL nothing.
    // Reverse: NULLs come first, so before a value come smaller values only, before NULL every value.
    let after: string;
    if (v === null) after = reverse ? `${c.expression} IS NOT NULL` : 'false';
    else if (reverse || c.notNull) after = `${c.expression} ${op} ${q.bind(v, c.pgType)}`;
    else after = `(${c.expression} ${op} ${q.bind(v, c.pgType)} OR ${c.expression} IS NULL)`;
    alternatives.push(equalities.length ? `(${equalities.join(' AND ')} AND ${after})` : after);
    if (k < columns.length - 1) equalities.push(v === null ? `${c.expression} IS NULL` : `${c.expression} = ${q.bind(v, c.pgType)}`);
  });
  const condition = `(${alternatives.join(' OR ')})`;
  // The OR above is no index bound: a NOT NULL first key also gets its plain one, so a later page
  // starts its scan at the cursor instead of reading and discarding every row before it.
  const first = columns[0];
  if (!first?.notNull || values[0] === null || values[0] === undefined) return condition;
  return `(${first.expression} ${first.descending !== reverse ? '<=' : '>='} ${q.bind(values[0], first.pgType)} AND ${condition})`;
}

/* ---------- the hot path ---------- */

export interface Driver {
  /** FROM clause: the driving table (token, or reference for the patient key's rows) joined to the resource table. */
  from: string;
  conditions: string[];
  /** Filters fully answered by the driver, to leave out of the generic conditions. */
  consumed: Set<Filter>;
  /** Sort columns served by the driver index: the type's `date`, or its newest-first order when the search has no sort. */
  sort?: SortColumn[];
  /** What breaks ties after `sort`: the driving row's id (the patient indexes hold it after the date). */
  tiebreak: SortColumn;
  /**
   * Whether the driver's plan holds for every value bound (a range scan of one patient's rows):
   * its statement is then prepared once and keeps PostgreSQL's generic plan. Else it is planned
   * for its values on every call (CUSTOM_PLAN).
   */
  planOnce: boolean;
  /** The resources the driving rows miss: after all of them (the undated, ./newest-first.ts), or merged among them (a compartment's other members, compartmentTail). */
  tail?: DriverTail;
  /** The search's compartment is decided by the driving rows, and by the tail's own conditions. */
  answersCompartment?: boolean;
  /**
   * The driving rows alone, before their join to the resource: the patient key they are of, and
   * their FROM and conditions (`conditions`, all on the driving row, but for the probe that keeps
   * one row per resource). Every match but the tail's is among their ids (Observation/$lastn
   * reads the matches' codes from the index, ./lastn.ts).
   */
  driving?: DrivingRows;
}

/** A patient's driving rows of a search, as Driver.driving. */
export interface DrivingRows {
  key: string;
  /** Its alias is `d`; `d.id` is the resource's id. */
  from: string;
  conditions: string[];
}

/** A second set of rows of the same search, with its own FROM, conditions and sort expressions (same positions as the driver's). */
export interface DriverTail {
  from: string;
  conditions: string[];
  sort: SortColumn[];
  tiebreak: SortColumn;
  /** Its sort values are the driver's own kind: the two sets are merged in one order, not one after the other. */
  merged?: boolean;
}

/** The patient id a filter pins the compartment key to, when the key answers it exactly. */
function patientKeyOf(resourceType: string, filter: Filter): string | undefined {
  if (filter.kind !== 'param' || filter.param.type !== 'reference' || filter.terms.length !== 1 || filter.negate) return undefined;
  const compartment = patientCompartmentOf(resourceType);
  if (!compartment.keySource || !compartment.keyIsExact) return undefined;
  const sources = storedSourcesOf(filter.param);
  if (sources.length !== 1 || sources[0].code !== compartment.keySource.code) return undefined;
  const term = filter.terms[0] as ReferenceTerm;
  if (term.kind !== 'local') return undefined;
  // The key holds Patient targets only: the term must name a Patient, explicitly or as the sole target.
  const types = sources[0].targetType ? [sources[0].targetType] : term.types;
  return types.length === 1 && types[0] === 'Patient' && (term.types.length === 0 || term.types.includes('Patient')) ? term.id : undefined;
}

/** A token parameter and the terms of it (one or more, OR-ed) that can drive the patient index. */
interface DrivingToken {
  param: SearchParameterDef;
  terms: TokenTerm[];
  /** True when the driver answers the whole filter (a token filter); false when it only narrows it (a composite's code). */
  answers: boolean;
}

function drivingToken(resourceType: string, filter: Filter): DrivingToken | undefined {
  if (filter.kind !== 'param' || filter.modifier !== undefined || filter.missing !== undefined || filter.negate || filter.terms.length === 0) return undefined;
  if (filter.param.type === 'token' && filter.param.storage.kind === 'indexed') {
    return filter.terms.length <= MAX_DRIVING_TERMS ? driverOf(filter.param, filter.terms as TokenTerm[], true) : undefined;
  }
  if (filter.terms.length !== 1) return undefined;
  // A composite's code is also a row of its code parameter (`code-value-quantity=…|29463-7$gt60`
  // implies `code=…|29463-7`): the patient's rows of that code drive, and the composite filter
  // stays a condition on each. Without it the search read every patient's pairs of the code.
  const codeParam = filter.param.type === 'composite' ? compositeCodeParam(resourceType, filter.param) : undefined;
  return codeParam ? driverOf(codeParam, [(filter.terms[0] as CompositeTerm).code], false) : undefined;
}

function driverOf(param: SearchParameterDef, terms: TokenTerm[], answers: boolean): DrivingToken | undefined {
  // Only driving rows are in the patient index (an identifier's are found by the code index).
  if (!drivesByPatient(param.resourceType, param.code)) return undefined;
  // Each a system|code or a bare code; a resource's repeats are dropped by planDriver.
  return terms.every((t) => t.kind === 'systemCode' || t.kind === 'code') ? { param, terms, answers } : undefined;
}

/**
 * The most codes of one filter (`code=a,b,c`) that drive as one range scan each, merged. A
 * chart's series are a handful; beyond this the statement and its planning grow with every
 * term, and the generic plan answers.
 */
const MAX_DRIVING_TERMS = 16;

const compositeCodeParams = new Map<SearchParameterDef, SearchParameterDef | null>();

/**
 * The stored token parameter whose rows a composite's code component is: the one whose
 * expression is the composite's element path followed by the component's (`Observation` +
 * `code` is `code`'s `Observation.code`; `Observation.component` + `code` is `component-code`'s).
 * None for a composite over several element paths (`combo-*`).
 */
function compositeCodeParam(resourceType: string, composite: SearchParameterDef): SearchParameterDef | undefined {
  let found = compositeCodeParams.get(composite);
  if (found === undefined) {
    const code = composite.storage.kind === 'indexed' ? composite.storage.components?.[0] : undefined;
    const path = code?.type === 'token' && splitUnion(composite.expression).length === 1 ? `${composite.expression}.${code.expression}` : undefined;
    found = (path && [...parametersOf(resourceType).values()].find((p) => p.type === 'token' && p.storage.kind === 'indexed' && p.expression === path)) || null;
    compositeCodeParams.set(composite, found);
  }
  return found ?? undefined;
}

/**
 * Plans the hot path: a filter pinning the patient compartment key drives the query from one
 * range scan of a patient index. With a code (of a token filter, else of a composite filter's
 * code component) it is the token table's, `(patient, param, code_hash, date_high DESC, id)`;
 * without one, the reference table's `(patient, date_high DESC, id)` over the resource's key row
 * (`patientDriven`). A date filter and a `_sort` on the type's `date` parameter use the date
 * copied onto the driving row as the index's next column. A compartment search with no patient
 * filter is driven by its Patient's key the same way (compartmentKeyOf, compartmentTail).
 */
export function planDriver(
  resourceType: string,
  filters: readonly Filter[],
  sort: readonly SortKey[],
  /** The search's Patient compartment; `withTail` when the driver may add the members its key misses as a second set (a page). */
  compartment: { id: string | undefined; withTail: boolean },
  r: string,
  q: SqlParams,
): Driver | undefined {
  const keyFilter = filters.find((f) => patientKeyOf(resourceType, f) !== undefined);
  const key = keyFilter ? patientKeyOf(resourceType, keyFilter) : compartment.withTail ? compartmentKeyOf(resourceType, compartment.id, sort) : undefined;
  if (key === undefined) return undefined;
  // A token filter drives in preference to a composite's code: it answers its whole filter.
  const drivers = filters.map((f) => ({ filter: f, driver: drivingToken(resourceType, f) })).filter((x) => x.driver !== undefined);
  // One code before a list of them: a single range scan, where a list merges one per code.
  const chosen = drivers.find((x) => x.driver!.answers && x.driver!.terms.length === 1) ?? drivers.find((x) => x.driver!.terms.length === 1) ?? drivers[0];
  // Decided before anything is bound: a value bound for a plan not taken stays in the statement.
  if (!chosen && !patientDriven(filters, keyFilter, sort)) return undefined;
  const d = 'd';
  const boundKey = q.bind(key);
  const conditions = [
    `${d}.patient = ${boundKey}`,
    `${d}.drives`, // the patient index's predicate: its rows alone are driving rows
  ];
  const consumed = new Set<Filter>(keyFilter ? [keyFilter] : []);
  // reference: one driving row per resource, its key's
  const table = indexTableOf(tableOf(resourceType), chosen ? 'token' : 'reference');
  // Oldest first, the index (newest first by the range's end) cannot give the order: the
  // patient's driving rows are sorted on their own, before each is joined to its resource, so
  // that only a page of resources is fetched. Measured: sorted after the join, a page of one code
  // fetched all 2,000 of the patient's readings of it (15 ms at 100k); sorted before it, 1.0 ms.
  const order = sortColumnsOf(sort, d);
  const tiebreak: SortColumn = { expression: `${d}.id`, descending: false, pgType: 'text' };
  const inOrder = order ? ` ORDER BY ${orderBy([...order, tiebreak], false)}` : '';
  const oldestFirst = isDateSort(sort) && !sort[0].descending;
  let rows = oldestFirst ? `(SELECT * FROM ${table} ${d}${inOrder}) ${d}` : `${table} ${d}`;
  let repeatCondition: string | undefined;
  if (chosen) {
    const { param, terms, answers } = chosen.driver!;
    conditions.push(`${d}.param = ${q.bind(param.code)}`);
    if (terms.length === 1) conditions.push(typeModules.token.condition(terms[0]!, d, q));
    else rows = `(${termBranches(table, terms, d, inOrder, q)}) ${d}`;
    const repeats = repeatedRowCondition(terms, d, q.alias('x'), q);
    if (repeats) {
      repeatCondition = `NOT EXISTS (SELECT 1 FROM ${table} ${repeats})`;
      conditions.push(repeatCondition);
    }
    if (answers) consumed.add(chosen.filter);
  }
  for (const f of filters) {
    if (!isDateFilter(f)) continue;
    const terms = f.terms as DateTerm[];
    if (terms.length === 1) {
      const bound = dateIndexBound(terms[0], `${d}.date_low`, `${d}.date_high`, q);
      if (bound) conditions.push(bound);
    }
    // The driving row carries the resource's `date` range: when it is the only one, the filter
    // is decided on the row (index-only), with no probe of the date table; a resource with
    // several ranges (date_multi) is checked against them. Never re-check what the row knows.
    // On `d.id` (= r.id), so the whole condition is on the driving row and filters in its scan.
    const onRow = terms.map((t) => dateCondition(t, `${d}.date_low`, `${d}.date_high`, q));
    const exact = onRow.length === 1 ? onRow[0] : `(${onRow.join(' OR ')})`;
    conditions.push(`(CASE WHEN ${d}.date_multi THEN ${paramFilterCondition(resourceType, f, d, q)} ELSE ${exact} END)`);
    consumed.add(f);
  }
  return {
    from: `${rows} JOIN ${tableOf(resourceType)} ${r} ON ${r}.id = ${d}.id`,
    conditions,
    consumed,
    sort: order,
    tiebreak,
    planOnce: true,
    // As a set of ids, a resource's repeated rows do no harm: the probe that drops them is left out.
    driving: { key, from: rows, conditions: conditions.filter((c) => c !== repeatCondition) },
    // Rows keyed to the compartment's own Patient are in it: no probe per row re-checks that
    // (a patient-scoped token's `Observation?patient=X&…` is searched within X's compartment).
    ...(keyFilter ? { answersCompartment: key === compartment.id } : { answersCompartment: true, tail: compartmentTail(resourceType, key, consumed, sort, r, boundKey, q) }),
  };
}

/**
 * The Patient a compartment search (`Patient/X/Observation?…`) may be driven by: its key rows
 * answer membership for every resource whose key is that Patient, in the order of the type's
 * `date` (newest first when the search has no `_sort`). The members the key misses are merged in
 * by the same order (compartmentTail). The key must be exact, and the type must have the `date`
 * the driving rows are ordered by; otherwise the compartment stays a condition, as for a count.
 */
function compartmentKeyOf(resourceType: string, compartmentId: string | undefined, sort: readonly SortKey[]): string | undefined {
  if (compartmentId === undefined || (sort.length !== 0 && !isDateSort(sort))) return undefined;
  const compartment = patientCompartmentOf(resourceType);
  if (compartment.keySource?.targetType !== 'Patient' || !compartment.keyIsExact) return undefined;
  const date = parameterOf(resourceType, DENORMALISED_DATE);
  return date?.type === 'date' && date.storage.kind === 'indexed' ? compartmentId : undefined;
}

/**
 * The members of Patient `patientId`'s compartment whose key is another Patient or none, named
 * by another of the compartment's parameters (`Observation.performer`): one small range of the
 * reference table's target index. The filters the driver consumed are checked on them as
 * conditions. Their sort value is the generic one of the driver's order (the latest `date` for
 * newest first, as the driving rows carry it), their tiebreak the id, so the two sets merge into
 * one order and a cursor reads the same set wherever it stops. Undefined when no other parameter
 * can name the patient (MedicationRequest: `subject` alone).
 */
function compartmentTail(resourceType: string, patientId: string, consumed: ReadonlySet<Filter>, sort: readonly SortKey[], r: string, boundKey: string, q: SqlParams): DriverTail | undefined {
  const others = compartmentSourcesBesideKey(resourceType);
  if (others.length === 0) return undefined;
  const t = q.alias('t');
  // DISTINCT: a resource may name the patient in two of its other parameters.
  const members = `SELECT DISTINCT ${t}.id FROM ${indexTableOf(tableOf(resourceType), 'reference')} ${t} WHERE ${namingPatient(t, others, `${t}.target_id = ${q.bind(patientId)}`, q)} AND ${t}.patient IS DISTINCT FROM ${boundKey}`;
  const order = sort[0] ?? { param: parameterOf(resourceType, DENORMALISED_DATE)!, descending: true };
  return {
    from: `(${members}) ${t} JOIN ${tableOf(resourceType)} ${r} ON ${r}.id = ${t}.id`,
    conditions: [...consumed].map((f) => paramFilterCondition(resourceType, f as ParamFilter, r, q)),
    sort: [sortColumn(resourceType, order, r, q)],
    tiebreak: { expression: `${r}.id`, descending: false, pgType: 'text' },
    merged: true,
  };
}

/** The order the driving rows give: the type's `date`, or none the driver serves (the generic sort applies). */
function sortColumnsOf(sort: readonly SortKey[], d: string): SortColumn[] | undefined {
  if (isDateSort(sort)) {
    return [{ expression: sort[0].descending ? `${d}.date_high` : `${d}.date_low`, descending: sort[0].descending, pgType: 'timestamptz' }];
  }
  // FHIR leaves the order of an unsorted search to the server: the driving index's order
  // (newest first), so the query is one range scan with a LIMIT, never a fetch-all-and-sort.
  if (sort.length === 0) return [{ expression: `${d}.date_high`, descending: true, pgType: 'timestamptz' }];
  return undefined;
}

/**
 * The driving rows of a list of codes (`code=a,b,c`): a UNION ALL of one branch per code, each
 * tagged with its term's position `k` (repeatedRowCondition keeps a resource's first). Each
 * branch is sorted in the search's order (`inOrder`: the driving order, then the tiebreak), so
 * PostgreSQL reads each code's range of the patient index in order and merges them (Merge
 * Append): the first page reads about a page of rows, as with one code. Measured reason: as one
 * OR of the terms the patient's rows of every listed code were read and sorted (4,000 rows,
 * 78 ms at 100k); as branches that differ only in a tag, PostgreSQL kept each code's condition
 * to its branch but lost the order (the code is not an equality it knows across branches).
 */
function termBranches(tokens: string, terms: readonly TokenTerm[], d: string, inOrder: string, q: SqlParams): string {
  return terms.map((t, k) => `(SELECT *, ${k} AS k FROM ${tokens} ${d} WHERE ${typeModules.token.condition(t, d, q)}${inOrder})`).join(' UNION ALL ');
}

/**
 * The alias and WHERE of the rows that make driving row `d` a repeat of its resource, so that
 * each resource is listed once; undefined when no term can repeat one. Extraction keeps one row
 * per (param, system|code) per resource, so a single system|code never repeats; a bare code can,
 * when two codings share it under two systems (a category coded twice), and a resource with rows
 * of two listed codes would be found by each. Only its first row drives: of the earliest term it
 * matches, the lowest hash. Every driving row of a resource carries the same date copy, so the
 * order is the same whichever row drives.
 */
function repeatedRowCondition(terms: readonly TokenTerm[], d: string, x: string, q: SqlParams): string | undefined {
  const same = `${x}.id = ${d}.id AND ${x}.param = ${d}.param AND ${x}.drives`;
  if (terms.length === 1) return terms[0]!.kind === 'code' ? `${x} WHERE ${same} AND ${x}.code_hash = ${d}.code_hash AND ${x}.hash < ${d}.hash` : undefined;
  const earlier = terms.map((t, k) => {
    const before = t.kind === 'code' ? `(${k} < ${d}.k OR (${k} = ${d}.k AND ${x}.hash < ${d}.hash))` : `${k} < ${d}.k`;
    return `(${typeModules.token.condition(t, x, q)} AND ${before})`;
  });
  return `${x} WHERE ${same} AND (${earlier.join(' OR ')})`;
}

/** A filter on the type's `date` parameter that the driving row's date copy can decide. */
function isDateFilter(f: Filter): f is ParamFilter {
  return f.kind === 'param' && f.param.code === DENORMALISED_DATE && f.param.type === 'date' && f.param.storage.kind === 'indexed' && f.missing === undefined && f.modifier === undefined && !f.negate;
}

function isDateSort(sort: readonly SortKey[]): boolean {
  return sort.length === 1 && sort[0].param.code === DENORMALISED_DATE && sort[0].param.type === 'date';
}

/**
 * Whether a patient's search with no code to drive it is driven by the patient's key rows,
 * newest first: when it sorts or filters by `date` (the rows' order and copy decide them), or
 * pins nothing else. Not when another filter narrows it (`patient=X&identifier=…`,
 * `…&_lastUpdated=gt…`): scanning the patient's rows newest first and checking each could read
 * them all where that filter's own index finds a few.
 */
function patientDriven(filters: readonly Filter[], keyFilter: Filter | undefined, sort: readonly SortKey[]): boolean {
  return (sort.length === 0 || isDateSort(sort)) && filters.every((f) => f === keyFilter || isDateFilter(f));
}
