import r4Model from 'fhirpath/fhir-context/r4';
import { literalReferenceType } from '../kernel/id';
import { fhirpathEngine } from '../validation/fhirpath-engine';

/**
 * SearchParameter expressions compiled once into plain JavaScript accessors.
 *
 * Evaluating FHIRPath through the `fhirpath` library costs tens of µs per expression; at 10,000
 * Observations/s with ~20 parameters each that alone would saturate a core. Nearly every R4
 * expression is one of a few path shapes (`A.b.c | A.d`, `.where(resolve() is Patient)`,
 * `(A.value as Quantity)`, `.as(dateTime)`, `ofType(X)`, `.where(system='email')`,
 * `.extension('url')`), which compile here to a few property reads. The rest go to `fhirpath`,
 * compiled once per expression.
 *
 * Every value comes out with its FHIR type (from the R4 model of the fhirpath package, not
 * retyped), because extraction depends on it: a ContactPoint and an Identifier both have
 * `system` and `value` but index differently.
 */
export interface TypedValue {
  value: unknown;
  /** FHIR type name (`Quantity`, `dateTime`, `CodeableConcept`, …); a backbone element's path. */
  type: string;
}

export type Accessor = (input: TypedValue) => TypedValue[];

interface R4Model {
  choiceTypePaths: Record<string, string[]>;
  path2Type: Record<string, string>;
  path2Repeating: Record<string, boolean>;
  /** Elements defined by contentReference (`Consent.provision.provision` is a `Consent.provision`). */
  pathsDefinedElsewhere: Record<string, string>;
}
const model = r4Model as unknown as R4Model;

type Step =
  | { kind: 'field'; name: string }
  | { kind: 'as'; type: string }
  | { kind: 'resolveIs'; type: string }
  | { kind: 'whereEquals'; field: string; literal: string }
  | { kind: 'extension'; url: string };

const PRIMITIVES = new Set([
  'boolean', 'integer', 'string', 'decimal', 'uri', 'url', 'canonical', 'base64Binary', 'instant', 'date',
  'dateTime', 'time', 'code', 'oid', 'id', 'markdown', 'unsignedInt', 'positiveInt', 'uuid', 'xhtml',
]);

/** `DateTime` (as the model spells choice suffixes) → `dateTime`; complex types keep their case. */
function fhirTypeName(choiceSuffix: string): string {
  const lower = choiceSuffix[0].toLowerCase() + choiceSuffix.slice(1);
  return PRIMITIVES.has(lower) ? lower : choiceSuffix;
}

/** The path the model knows a child of `parentType` by: datatypes start a new path, backbone elements continue theirs. */
function childPath(parentType: string, name: string): string {
  return `${parentType}.${name}`;
}

function typeOfPath(path: string): string {
  // A recursive element (nested provisions, items) is typed as the element it repeats.
  const elsewhere = model.pathsDefinedElsewhere[path];
  if (elsewhere) return elsewhere;
  const t = model.path2Type[path];
  if (t === undefined || t === 'BackboneElement' || t === 'Element') return path;
  return t;
}

export function isRepeatingPath(path: string): boolean {
  return model.path2Repeating[path] === true;
}

/** The FHIR type of a non-choice element path (`Observation.subject` → `Reference`). */
export function elementType(path: string): string | undefined {
  return model.path2Type[path];
}

/**
 * The type a Reference names, as `where(resolve() is T)` judges it: the literal reference's type
 * segment, else `Reference.type` (an identifier-only reference without it has none).
 */
export function referenceType(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const ref = value as fhir4.Reference;
  return (typeof ref.reference === 'string' ? literalReferenceType(ref.reference) : undefined) ?? ref.type;
}

function pushValues(out: TypedValue[], raw: unknown, type: string): void {
  if (raw === undefined || raw === null) return;
  if (Array.isArray(raw)) {
    for (const v of raw) if (v !== undefined && v !== null) out.push({ value: v, type });
  } else {
    out.push({ value: raw, type });
  }
}

/**
 * A step after static typing: a field read knows, for each input type, which JSON keys to read
 * and what type each yields (choice elements expand to `valueQuantity`, `valueString`, …, and an
 * `as` right after one narrows that list), so the per-resource work is a Map lookup and
 * property reads.
 */
type Op =
  | { kind: 'field'; byType: Map<string, Array<readonly [key: string, type: string]>> }
  | { kind: 'filter'; test: (node: TypedValue) => boolean }
  | { kind: 'extension'; url: string };

function fieldEntries(type: string, name: string): Array<readonly [string, string]> {
  const path = childPath(type, name);
  const choices = model.choiceTypePaths[path];
  if (choices) return choices.map((suffix) => [name + suffix, fhirTypeName(suffix)] as const);
  return [[name, typeOfPath(path)] as const];
}

/** Types each step into an Op, starting from the possible input types. */
function typeSteps(steps: Step[], rootTypes: readonly string[]): { ops: Op[]; outTypes: string[] } {
  const ops: Op[] = [];
  let types = new Set(rootTypes);
  for (const step of steps) {
    switch (step.kind) {
      case 'field': {
        const byType = new Map<string, Array<readonly [string, string]>>();
        const next = new Set<string>();
        for (const t of types) {
          const entries = fieldEntries(t, step.name);
          byType.set(t, entries);
          entries.forEach(([, type]) => next.add(type));
        }
        ops.push({ kind: 'field', byType });
        types = next;
        break;
      }
      case 'as': {
        // FHIRPath `as` compares type names; R4 writes `as dateTime` and `as(DateTime)` for the
        // same thing, so compare ignoring case.
        const wanted = step.type.toLowerCase();
        const last = ops[ops.length - 1];
        if (last?.kind === 'field') {
          for (const [t, entries] of last.byType) last.byType.set(t, entries.filter(([, type]) => type.toLowerCase() === wanted));
        } else {
          ops.push({ kind: 'filter', test: (n) => n.type.toLowerCase() === wanted });
        }
        types = new Set([...types].filter((t) => t.toLowerCase() === wanted));
        break;
      }
      case 'resolveIs': {
        const target = step.type;
        ops.push({ kind: 'filter', test: (n) => referenceType(n.value) === target });
        break;
      }
      case 'whereEquals': {
        const { field, literal } = step;
        ops.push({ kind: 'filter', test: (n) => typeof n.value === 'object' && n.value !== null && (n.value as Record<string, unknown>)[field] === literal });
        break;
      }
      case 'extension':
        ops.push({ kind: 'extension', url: step.url });
        types = new Set(['Extension']);
        break;
    }
  }
  return { ops, outTypes: [...types] };
}

function applyOp(op: Op, nodes: TypedValue[]): TypedValue[] {
  const out: TypedValue[] = [];
  switch (op.kind) {
    case 'field':
      for (const node of nodes) {
        const entries = op.byType.get(node.type);
        if (!entries || typeof node.value !== 'object' || node.value === null) continue;
        const obj = node.value as Record<string, unknown>;
        for (const [key, type] of entries) {
          const raw = obj[key];
          if (raw !== undefined) pushValues(out, raw, type);
        }
      }
      return out;
    case 'filter':
      return nodes.filter(op.test);
    case 'extension':
      for (const node of nodes) {
        const exts = (node.value as { extension?: fhir4.Extension[] } | null)?.extension;
        if (!Array.isArray(exts)) continue;
        for (const ext of exts) if (ext.url === op.url) out.push({ value: ext, type: 'Extension' });
      }
      return out;
  }
}

const IDENT = '[A-Za-z_][A-Za-z0-9_]*';
// Function forms before the plain field, or `where(` would parse as a field named `where`.
const STEP_PATTERNS: Array<[RegExp, (m: RegExpMatchArray) => Step]> = [
  [new RegExp(`^where\\(resolve\\(\\) is (${IDENT})\\)`), (m) => ({ kind: 'resolveIs', type: m[1] })],
  [new RegExp(`^where\\((${IDENT}) ?= ?'([^']*)'\\)`), (m) => ({ kind: 'whereEquals', field: m[1], literal: m[2] })],
  [new RegExp(`^(?:as|ofType)\\((${IDENT})\\)`), (m) => ({ kind: 'as', type: m[1] })],
  [/^extension\('([^']*)'\)/, (m) => ({ kind: 'extension', url: m[1] })],
  [new RegExp(`^(${IDENT})(?![A-Za-z0-9_(])`), (m) => ({ kind: 'field', name: m[1] })],
];

/** Parses `.b.where(...).c` after the root; undefined when the text is not a supported shape. */
function parseSteps(text: string): Step[] | undefined {
  const steps: Step[] = [];
  let rest = text;
  while (rest.length) {
    if (!rest.startsWith('.')) return undefined;
    rest = rest.slice(1);
    let matched = false;
    for (const [re, make] of STEP_PATTERNS) {
      const m = rest.match(re);
      if (m) {
        steps.push(make(m));
        rest = rest.slice(m[0].length);
        matched = true;
        break;
      }
    }
    if (!matched) return undefined;
  }
  return steps;
}

/**
 * One union member: `Root.path`, `(Root.path as T)`, `(Root.path as T).more`. `root` is the
 * type name the expression starts from; relative component expressions (`value.as(Quantity)`)
 * are passed with an empty root and start at the input node.
 */
function compileMember(member: string, root: string): Step[] | undefined {
  let text = member.trim();
  const asMatch = text.match(new RegExp(`^\\((.*) as (${IDENT})\\)(.*)$`));
  if (asMatch) {
    const inner = compileMember(asMatch[1], root);
    const tail = parseSteps(asMatch[3]);
    return inner && tail ? [...inner, { kind: 'as', type: asMatch[2] }, ...tail] : undefined;
  }
  if (root) {
    if (text === root) return [];
    if (!text.startsWith(`${root}.`)) return undefined;
    text = text.slice(root.length);
  } else {
    text = `.${text}`;
  }
  return parseSteps(text);
}

/** Splits on top-level `|` only (not inside parentheses or quotes). */
export function splitUnion(expression: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quoted = false;
  let start = 0;
  for (let i = 0; i < expression.length; i++) {
    const c = expression[i];
    if (c === "'") quoted = !quoted;
    else if (!quoted && c === '(') depth++;
    else if (!quoted && c === ')') depth--;
    else if (!quoted && depth === 0 && c === '|') {
      parts.push(expression.slice(start, i).trim());
      start = i + 1;
    }
  }
  parts.push(expression.slice(start).trim());
  return parts.filter((p) => p.length > 0);
}

/**
 * Parameters outside the path shapes above, evaluated here as FHIRPath would: `deceased` is
 * the one a monitoring server meets on every Patient. Keyed by the exact expression, as the
 * native invariants are (src/validation/invariants.ts).
 */
const NATIVE: Record<string, CompiledExpression> = {
  // `deceased.exists() and deceased != false`: deceasedBoolean true, or a deceasedDateTime. Like
  // fhirpath, a (malformed) Patient with both reads only deceasedBoolean, the model's first choice.
  'Patient.deceased.exists() and Patient.deceased != false': {
    accessor: (input) => {
      const patient = input.value as { deceasedBoolean?: unknown; deceasedDateTime?: unknown };
      const dead = patient.deceasedBoolean !== undefined ? patient.deceasedBoolean === true : patient.deceasedDateTime !== undefined;
      return [{ value: dead, type: 'Boolean' }];
    },
    fast: true,
    outTypes: ['Boolean'],
  },
};

/** A FHIRPath accessor compiled on its first use, so that building the registry loads no engine. */
function fhirpathFallback(expression: string): Accessor {
  let compiled: ((resource: unknown) => unknown[]) | undefined;
  return (input) => {
    const fhirpath = fhirpathEngine();
    compiled ??= fhirpath.compile(expression, r4Model, { resolveInternalTypes: false }) as (resource: unknown) => unknown[];
    const result = compiled(input.value);
    const types = fhirpath.types(result);
    const plain = fhirpath.resolveInternalTypes(result) as unknown[];
    return plain.map((value, i) => ({ value, type: (types[i] ?? '').replace(/^(FHIR|System)\./, '') }));
  };
}

export interface CompiledExpression {
  accessor: Accessor;
  /** True when the fast path compiled every member; false when `fhirpath` evaluates it. */
  fast: boolean;
  /** The FHIR types the accessor can yield (the input types of a composite's components). */
  outTypes: string[];
}

/**
 * Compiles `expression` into an accessor. `root` is the resource type the expression starts
 * from; relative expressions (a composite's components) pass '' and the types of the elements
 * they will be applied to as `inputTypes`.
 */
export function compileExpression(expression: string, root: string, inputTypes: readonly string[] = [root]): CompiledExpression {
  const members = splitUnion(expression);
  const compiled = members.map((m) => compileMember(m, root));
  if (compiled.every((s): s is Step[] => s !== undefined)) {
    const typed = compiled.map((steps) => typeSteps(steps, inputTypes));
    const programs = typed.map((t) => t.ops);
    const accessor: Accessor = (input) => {
      if (programs.length === 1) return run(programs[0], input);
      const out: TypedValue[] = [];
      for (const p of programs) for (const v of run(p, input)) out.push(v);
      return out;
    };
    return { accessor, fast: true, outTypes: [...new Set(typed.flatMap((t) => t.outTypes))] };
  }
  return NATIVE[expression] ?? { accessor: fhirpathFallback(expression), fast: false, outTypes: [] };
}

function run(ops: Op[], input: TypedValue): TypedValue[] {
  let nodes = [input];
  for (const op of ops) {
    nodes = applyOp(op, nodes);
    if (nodes.length === 0) break;
  }
  return nodes;
}
