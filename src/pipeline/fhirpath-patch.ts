import r4Model from 'fhirpath/fhir-context/r4';
import { containsKeptDecimals, keepNumberText, keptNumberText } from '../kernel/json-decimals';
import { badRequest } from '../kernel/outcome';
import { fhirpathEngine } from '../validation/fhirpath-engine';
import { checkOperationCount, ElementBudget } from './patch-limits';

/**
 * FHIRPath Patch (R4 fhirpatch.html): a Parameters resource of `operation`s (add, insert,
 * delete, replace, move), each naming its target by a FHIRPath expression. It is the patch
 * format FHIR itself defines, and the one a transaction carries without wrapping it in a Binary.
 * The targets are found by the fhirpath engine, whose nodes know their parent, property and
 * index; the operations change a copy, which then goes through the same checks as any write.
 */
interface PatchOperation {
  type: 'add' | 'insert' | 'delete' | 'replace' | 'move';
  path: string;
  name?: string;
  value?: PatchValue;
  index?: number;
  source?: number;
  destination?: number;
}

/** A value to place: its JSON, the FHIR type a `value[x]` named (for choice elements), and where its number text is kept. */
interface PatchValue {
  json: unknown;
  type?: string;
  holder?: { part: object; key: string };
}

interface FhirNode {
  data: unknown;
  path: string | null;
  propName: string | null;
  index: number | null;
  parentResNode: FhirNode | null;
}

const model = r4Model as unknown as { path2Repeating: Record<string, boolean>; choiceTypePaths: Record<string, string[]> };

const TYPES = new Set(['add', 'insert', 'delete', 'replace', 'move']);

/** Whether a PATCH body is a FHIRPath Patch (a JSON Patch is an array). */
export function isFhirPathPatch(body: unknown): body is fhir4.Parameters {
  return typeof body === 'object' && body !== null && (body as { resourceType?: unknown }).resourceType === 'Parameters';
}

/** Applies `patch` to `document` in place (a copy the caller made); a malformed or inapplicable operation is a 400 naming it. */
export function applyFhirPathPatch(document: Record<string, unknown>, patch: fhir4.Parameters): void {
  const operations = operationsOf(patch);
  // Every value an operation places comes from the body, but the size of the result is known
  // after each operation all the same (./patch-limits.ts), as for a JSON Patch.
  const budget = new ElementBudget(() => document);
  operations.forEach((op, i) => {
    const where = `FHIRPath Patch operation ${i + 1} (${op.type} ${op.path.slice(0, 80)})`;
    try {
      applyOne(document, op);
    } catch (err) {
      if (err instanceof PatchError) throw badRequest(`${where}: ${err.message}`, [`Parameters.parameter[${i}]`]);
      throw err;
    }
    if (op.value) budget.placed(op.value.json, `FHIRPath Patch operation ${i + 1}`);
  });
}

class PatchError extends Error {}

function operationsOf(patch: fhir4.Parameters): PatchOperation[] {
  const parameters = parametersOf(patch.parameter, 'Parameters.parameter');
  if (parameters.length === 0) throw badRequest('a FHIRPath Patch holds at least one operation parameter');
  checkOperationCount(parameters.length, 'FHIRPath Patch');
  const tally: PathTally = { characters: 0, operators: 0 };
  return parameters.map((p, i) => {
    const where = `Parameters.parameter[${i}]`;
    if (p.name !== 'operation') throw badRequest(`${where}: a FHIRPath Patch holds only parameters named 'operation', not '${String(p.name).slice(0, 40)}'`, [where]);
    const parts = new Map<string, fhir4.ParametersParameter>();
    for (const part of parametersOf(p.part, `${where}.part`)) {
      if (parts.has(part.name)) throw badRequest(`${where}: '${part.name.slice(0, 40)}' is given twice`, [where]);
      parts.set(part.name, part);
    }
    const type = parts.get('type')?.valueCode;
    if (type === undefined || !TYPES.has(type)) throw badRequest(`${where}: type must be add, insert, delete, replace or move`, [where]);
    const path = parts.get('path')?.valueString;
    if (!path) throw badRequest(`${where}: path (valueString) is required`, [where]);
    const refused = pathRefusal(path, tally);
    if (refused) throw badRequest(`FHIRPath Patch operation ${i + 1} (${type}): ${refused}`, [where]);
    const integer = (name: string) => {
      const part = parts.get(name);
      const n = part?.valueInteger;
      if (part && (n === undefined || !Number.isInteger(n) || n < 0)) throw badRequest(`${where}: ${name} must be a valueInteger of 0 or more`, [where]);
      return n;
    };
    const op: PatchOperation = { type: type as PatchOperation['type'], path, name: parts.get('name')?.valueString, index: integer('index'), source: integer('source'), destination: integer('destination') };
    const value = parts.get('value');
    if (value) op.value = valueOf(value, where);
    const needs: Record<PatchOperation['type'], Array<keyof PatchOperation>> = {
      add: ['name', 'value'], insert: ['index', 'value'], delete: [], replace: ['value'], move: ['source', 'destination'],
    };
    for (const key of needs[op.type]) if (op[key] === undefined) throw badRequest(`${where}: ${op.type} needs ${key}`, [where]);
    return op;
  });
}

/**
 * A `parameter` or `part` list as R4's Parameters has it (an array of objects, each with a string
 * name), or a 400: the body is not yet validated as a Parameters resource when the operations are
 * read from it, and a null parameter or a part list that was no array made a 500.
 */
function parametersOf(list: unknown, where: string): fhir4.ParametersParameter[] {
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw badRequest(`${where} must be an array`, [where]);
  list.forEach((item: unknown, i) => {
    if (item === null || typeof item !== 'object' || Array.isArray(item) || typeof (item as { name?: unknown }).name !== 'string') {
      throw badRequest(`${where}[${i}] must be an object with a name`, [`${where}[${i}]`]);
    }
  });
  return list as fhir4.ParametersParameter[];
}

/** A `value` part: one `value[x]`, or parts that are the elements of a value with no type of its own (a backbone element). */
function valueOf(part: fhir4.ParametersParameter, where: string): PatchValue {
  const typed = Object.keys(part).filter((k) => /^value[A-Z]/.test(k));
  if (typed.length === 1) {
    const key = typed[0]!;
    return { json: (part as unknown as Record<string, unknown>)[key], type: key.slice('value'.length), holder: { part, key } };
  }
  if (typed.length > 1) throw badRequest(`${where}: value has more than one value[x]`, [where]);
  const children = parametersOf(part.part, `${where}.part`);
  if (!children.length) throw badRequest(`${where}: value needs a value[x] or parts`, [where]);
  const element: Record<string, unknown> = {};
  for (const child of children) {
    const json = valueOf(child, where).json;
    // A name given more than once is a repeating element's items, in order.
    if (child.name in element) element[child.name] = [...([] as unknown[]).concat(element[child.name]), json];
    else element[child.name] = json;
  }
  return { json: element };
}

/** Longest path a patch operation may give: the R4 examples' are under 60 characters. */
export const MAX_PATCH_PATH_LENGTH = 500;
/** Deepest nesting of function arguments in a path (`where(a.where(b.exists()))` is 3). */
const MAX_PATH_NESTING = 3;
/**
 * Deepest nesting of brackets, and most operators (`=`, `and`, `<=`…), in a path, counted on its
 * text before it is parsed: the parser's time grows faster than the text with either (499
 * characters of `(` took 140 ms to refuse, a chain of 250 `+` 120 ms; a patch may hold 1,000 paths).
 */
const MAX_PATH_BRACKETS = 8;
const MAX_PATH_OPERATORS = 16;
/**
 * Most path characters and operators in one patch, over all its operations: each path is parsed
 * twice (judged, evaluated), at up to 0.25 ms per operator, so 1,000 paths of the most allowed
 * each would take seconds. A patch of 1,000 operations with one comparison each fits.
 */
const MAX_PATCH_PATH_TEXT = 50_000;
const MAX_PATCH_PATH_OPERATORS = 1_000;
/** The path text and operators a patch's paths hold so far. */
export interface PathTally {
  characters: number;
  operators: number;
}
const OPERATOR_CHARS = new Set('=<>!~+-*/&|');
const OPERATOR_WORDS = new Set(['and', 'or', 'xor', 'implies', 'in', 'contains', 'div', 'mod', 'is', 'as']);

/**
 * The functions a patch path may call: those that pick elements out of what navigation found
 * (R4 fhirpatch.html's paths are navigation, indexers and `where`), and the tests their criteria
 * need. None makes more items than it is given, so a path's work is bounded by the resource's
 * size; `select`, `repeat`, `descendants`, `aggregate`, `iif`, unions and arithmetic are not
 * here: `(1|…|10).select((1|…|10))…` grows tenfold per step (six steps, 300 characters, took
 * 2.2 s and 120 MB before any patch rule was reached).
 */
const PATH_FUNCTIONS = new Set(['where', 'exists', 'empty', 'not', 'ofType', 'first', 'last', 'tail', 'single', 'hasValue', 'count', 'extension', 'is', 'as']);

/** The expression kinds of the parser's tree (fhirpath's FHIRPath.g4) a patch path may hold, beyond function calls. */
const PATH_NODES = new Set([
  'EntireExpression', 'TermExpression', 'InvocationExpression', 'IndexerExpression', 'TypeExpression', 'InequalityExpression', 'AndExpression',
  'PolarityExpression', 'InvocationTerm', 'LiteralTerm', 'ParenthesizedTerm', 'MemberInvocation', 'ThisInvocation', 'Identifier', 'ParamList',
  'TypeSpecifier', 'QualifiedIdentifier', 'BooleanLiteral', 'StringLiteral', 'NumberLiteral', 'DateLiteral', 'DateTimeLiteral', 'TimeLiteral',
  'QuantityLiteral', 'Quantity', 'Unit', 'DateTimePrecision', 'PluralDateTimePrecision',
]);

/** What the parser's nodes name a construct a path may not use by, for the refusal. */
const CONSTRUCTS: Record<string, string> = {
  UnionExpression: "'|' (union)", MultiplicativeExpression: 'arithmetic', AdditiveExpression: "arithmetic or '&'", MembershipExpression: "'in' or 'contains'",
  ImpliesExpression: "'implies'", ExternalConstantTerm: 'an external constant (%…)', InstanceSelectorTerm: 'an instance selector', IndexInvocation: '$index',
  TotalInvocation: '$total', LongNumberLiteral: 'a long number', NullLiteral: "'{}'",
};

interface PathNode {
  type: string;
  text?: string;
  children?: PathNode[];
}

/**
 * Why a patch path is refused, or undefined if it is within the subset a patch may use:
 * navigation, indexers, type tests and the functions above, with simple comparisons in their
 * arguments, at most MAX_PATCH_PATH_LENGTH characters. Judged on the parser's tree, before any
 * evaluation, so that no client expression's work grows beyond the resource it reads.
 */
export function pathRefusal(path: string, tally: PathTally = { characters: 0, operators: 0 }): string | undefined {
  if (path.length > MAX_PATCH_PATH_LENGTH) return `the path is longer than ${MAX_PATCH_PATH_LENGTH} characters`;
  if ((tally.characters += path.length) > MAX_PATCH_PATH_TEXT) return `the patch's paths hold more than ${MAX_PATCH_PATH_TEXT} characters in all`;
  const lexical = textRefusal(path, tally);
  if (lexical) return lexical;
  let tree: PathNode;
  try {
    tree = fhirpathEngine().parse(path) as PathNode;
  } catch (err) {
    return `the path is not a FHIRPath expression this server can evaluate (${(err as Error).message.split('\n')[0]!.slice(0, 120)})`;
  }
  const stack: Array<[PathNode, number]> = [[tree, 0]];
  while (stack.length) {
    const [node, nesting] = stack.pop()!;
    let inner = nesting;
    if (node.type === 'FunctionInvocation') {
      const name = node.children?.[0]?.text ?? '';
      if (!PATH_FUNCTIONS.has(name)) return refusal(`${name.slice(0, 40)}()`);
      if (++inner > MAX_PATH_NESTING) return `the path nests function arguments deeper than ${MAX_PATH_NESTING} levels`;
    } else if (node.type === 'Functn' || (node.type === 'EqualityExpression' && (node.text === '=' || node.text === '!=')) || (node.type === 'OrExpression' && node.text === 'or')) {
      // the function's name and arguments, judged below; an (in)equality; 'or' (not 'xor')
    } else if (!PATH_NODES.has(node.type)) {
      return refusal(CONSTRUCTS[node.type] ?? (node.text ? `'${node.text.slice(0, 20)}'` : node.type));
    }
    for (const child of node.children ?? []) stack.push([child, inner]);
  }
  return undefined;
}

const refusal = (construct: string) => `the path may not use ${construct}: a patch path names elements by navigation, [n], where(), ofType(), first(), last() and the like (R4 fhirpatch.html)`;

/** What a path's text alone refuses, scanned once outside its string literals and delimited identifiers. */
function textRefusal(path: string, tally: PathTally): string | undefined {
  let brackets = 0;
  let operators = 0;
  for (let i = 0; i < path.length; i++) {
    const c = path[i]!;
    if (c === "'" || c === '`') {
      for (i++; i < path.length && path[i] !== c; i++) if (path[i] === '\\') i++;
    } else if (c === '(' || c === '[' || c === '{') {
      if (++brackets > MAX_PATH_BRACKETS) return `the path nests brackets deeper than ${MAX_PATH_BRACKETS} levels`;
    } else if (c === ')' || c === ']' || c === '}') {
      brackets--;
    } else if (c === '|') {
      return refusal("'|' (union)");
    } else if (OPERATOR_CHARS.has(c)) {
      if (++operators > MAX_PATH_OPERATORS) return `the path holds more than ${MAX_PATH_OPERATORS} operators`;
      if (++tally.operators > MAX_PATCH_PATH_OPERATORS) return `the patch's paths hold more than ${MAX_PATCH_PATH_OPERATORS} operators in all`;
    } else if (/[A-Za-z_]/.test(c)) {
      const start = i;
      while (/[A-Za-z0-9_]/.test(path[i + 1] ?? '')) i++;
      if (path[start - 1] !== '.' && OPERATOR_WORDS.has(path.slice(start, i + 1))) {
        if (++operators > MAX_PATH_OPERATORS) return `the path holds more than ${MAX_PATH_OPERATORS} operators`;
        if (++tally.operators > MAX_PATCH_PATH_OPERATORS) return `the patch's paths hold more than ${MAX_PATCH_PATH_OPERATORS} operators in all`;
      }
    }
  }
  return undefined;
}

/** Evaluates a path pathRefusal accepted (operationsOf judges every path a patch gives). */
function evaluate(document: object, path: string): FhirNode[] {
  try {
    return fhirpathEngine().evaluate(document, path, undefined, r4Model, { resolveInternalTypes: false }) as FhirNode[];
  } catch (err) {
    throw new PatchError(`the path is not a FHIRPath expression this server can evaluate (${(err as Error).message.split('\n')[0]!.slice(0, 120)})`);
  }
}

/** Where a node sits: the object or array that holds it and its key there; for a choice element, the key with its type. */
interface Place {
  holder: Record<string, unknown> | unknown[];
  key: string | number;
  parent: Record<string, unknown>;
  property: string;
}

function placeOf(node: FhirNode): Place {
  const parent = node.parentResNode?.data;
  if (!node.propName || parent === null || typeof parent !== 'object' || Array.isArray(parent)) throw new PatchError('the path names the resource itself or a value that is not an element');
  const record = parent as Record<string, unknown>;
  const property = record[node.propName] !== undefined ? node.propName : Object.keys(record).find((k) => k.startsWith(node.propName!) && /^[A-Z]/.test(k.slice(node.propName!.length)));
  if (property === undefined) throw new PatchError('the path names no element of the resource');
  if (node.index === null) return { holder: record, key: property, parent: record, property };
  const list = record[property];
  if (!Array.isArray(list)) throw new PatchError('the path names no element of the resource');
  return { holder: list, key: node.index, parent: record, property };
}

function single(nodes: FhirNode[]): FhirNode {
  if (nodes.length !== 1) throw new PatchError(`the path must name exactly one element; it names ${nodes.length}`);
  return nodes[0]!;
}

/** The list a path names (insert, move): its items' array, or an empty one made for `insert` when the path ends in an element name. */
function listOf(document: Record<string, unknown>, path: string, create: boolean): unknown[] {
  const nodes = evaluate(document, path);
  if (nodes.length) {
    const places = nodes.map(placeOf);
    const list = places[0]!.holder;
    if (!Array.isArray(list) || places.some((p) => p.holder !== list)) throw new PatchError('the path must name the items of one repeating element');
    return list;
  }
  const m = /^(.*)\.([a-z][A-Za-z0-9]*)$/.exec(path);
  if (!create || !m) throw new PatchError('the path names no list');
  // The container is a prefix of a judged path, not always an expression of the subset itself.
  const refused = pathRefusal(m[1]!);
  if (refused) throw new PatchError(refused);
  const container = single(evaluate(document, m[1]!));
  if (container.data === null || typeof container.data !== 'object' || !model.path2Repeating[`${container.path}.${m[2]}`]) throw new PatchError('the path names no repeating element');
  const list: unknown[] = [];
  (container.data as Record<string, unknown>)[m[2]!] = list;
  return list;
}

function applyOne(document: Record<string, unknown>, op: PatchOperation): void {
  switch (op.type) {
    case 'add': {
      const container = single(evaluate(document, op.path));
      if (container.data === null || typeof container.data !== 'object' || Array.isArray(container.data)) throw new PatchError('the path must name an element that can hold others');
      const record = container.data as Record<string, unknown>;
      const element = `${container.path}.${op.name}`;
      const key = model.choiceTypePaths[element] ? `${op.name}${op.value!.type ?? ''}` : op.name!;
      if (model.choiceTypePaths[element] && !model.choiceTypePaths[element]!.includes(op.value!.type ?? '')) throw new PatchError(`${op.name} takes one of the types ${model.choiceTypePaths[element]!.join(', ')}`);
      if (model.path2Repeating[element]) {
        const list = Array.isArray(record[key]) ? (record[key] as unknown[]) : (record[key] = []) as unknown[];
        list.push(op.value!.json);
        place(document, list, list.length - 1, op.value!);
      } else {
        if (record[key] !== undefined) throw new PatchError(`${op.name} already has a value; use replace`);
        record[key] = op.value!.json;
        place(document, record, key, op.value!);
      }
      return;
    }
    case 'insert': {
      const list = listOf(document, op.path, true);
      if (op.index! > list.length) throw new PatchError(`index ${op.index} is past the end of the list (${list.length} items)`);
      list.splice(op.index!, 0, op.value!.json);
      place(document, list, op.index!, op.value!);
      return;
    }
    case 'delete': {
      const nodes = evaluate(document, op.path);
      // Deleting what is not there changes nothing (R4 fhirpatch.html).
      if (nodes.length === 0) return;
      const at = placeOf(single(nodes));
      if (Array.isArray(at.holder)) {
        at.holder.splice(at.key as number, 1);
        if (at.holder.length === 0) delete at.parent[at.property];
      } else delete at.holder[at.key as string];
      return;
    }
    case 'replace': {
      const node = single(evaluate(document, op.path));
      const at = placeOf(node);
      if (Array.isArray(at.holder)) {
        at.holder[at.key as number] = op.value!.json;
        place(document, at.holder, at.key, op.value!);
        return;
      }
      // A choice element (found as `value` under `valueQuantity`) takes the key of the new
      // value's type; a type the element does not allow is then refused by validation.
      const choice = at.property !== node.propName && op.value!.type !== undefined;
      const key = choice ? `${node.propName}${op.value!.type}` : at.property;
      if (key !== at.property) delete at.parent[at.property];
      at.parent[key] = op.value!.json;
      place(document, at.parent, key, op.value!);
      return;
    }
    case 'move': {
      const list = listOf(document, op.path, false);
      if (op.source! >= list.length || op.destination! >= list.length) throw new PatchError(`source and destination must be within the list (${list.length} items)`);
      const [item] = list.splice(op.source!, 1);
      list.splice(op.destination!, 0, item);
      return;
    }
  }
}

/** Keeps the decimal text the patch body wrote for a placed number, or for the numbers inside a placed element. */
function place(document: object, holder: object, key: string | number, value: PatchValue): void {
  if (typeof value.json === 'object' && value.json !== null) {
    containsKeptDecimals(document, [value.json]);
    return;
  }
  const text = typeof value.json === 'number' && value.holder ? keptNumberText(value.holder.part, value.holder.key) : undefined;
  if (text !== undefined) keepNumberText(document, holder, String(key), text);
}
