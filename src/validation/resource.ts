import { type Issue, OperationOutcomeError } from '../kernel/outcome';
import { exceedsElements } from '../kernel/input-limits';
import { carryKeptDecimals } from '../kernel/json-decimals';
import { schemaIssues, validatorFor } from './schema';
import { missingRequiredIssues } from './required';
import { coreInvariantIssues } from './core-invariants';
import { isPlaceholderNull, withoutPlaceholderErrors } from './placeholders';

/**
 * The reference forms a stored resource may hold: relative `Type/id` (optionally versioned),
 * absolute URLs, internal `#fragments`. `urn:uuid:`/`urn:oid:` and conditional references
 * (`Patient?identifier=…`) are only meaningful inside a transaction, which resolves them before
 * validation runs (FHIR R4 http.html#trules and bundle.html#references). A stored Bundle
 * (document, collection, message) is the exception: its entries refer to each other by the
 * `urn:uuid:`/`urn:oid:` fullUrls the Bundle itself carries.
 */
const REFERENCE = /^(#[A-Za-z0-9\-.]*|[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64}(\/_history\/[A-Za-z0-9\-.]{1,64})?|[a-z][a-z0-9+.-]*:\/\/\S+)$/;
const IN_BUNDLE_REFERENCE = /^urn:(uuid:[0-9a-fA-F-]{36}|oid:[0-2](\.(0|[1-9][0-9]*))+)$/;

/**
 * What the schema cannot say, in one walk: every `reference` string of Reference elements has a
 * valid form, no number is infinite, no element is `null` (the R4 schema's object definitions let null through,
 * and every later stage would trip on it; R4 json.html allows null only as a placeholder in
 * arrays of primitives, which the schema's own string types already refuse), and no element is
 * empty: R4 json.html, "arrays are never empty", and ele-1, every element "must have a @value or
 * children" (an empty object or array is stored and served as sent, and strict parsers refuse it).
 */
function elementIssues(node: unknown, path: string, issues: Issue[], inBundle: boolean, root = false): void {
  if (Array.isArray(node)) {
    node.forEach((item, i) => elementIssues(item, `${path}[${i}]`, issues, inBundle));
    return;
  }
  if (node === null || typeof node !== 'object') return;
  const record = node as Record<string, unknown>;
  let empty = true;
  // Keys by `for…in` and each path built only where it is used (an issue, or a walk below): an
  // entries array per object and a path per element made this walk allocate 5.7 kB per vital
  // sign, 2.5 kB without them (allocation profile of 100-entry transactions, 2026-12-06).
  for (const key in record) {
    if (!Object.hasOwn(record, key)) continue;
    empty = false;
    const value = record[key];
    if (typeof value === 'string') {
      if (key === 'reference' && !REFERENCE.test(value) && !(inBundle && IN_BUNDLE_REFERENCE.test(value))) {
        const childPath = `${path}.${key}`;
        issues.push({
          code: 'value',
          diagnostics: `${childPath}: '${value}' is not a valid reference (expected Type/id, an absolute URL or #id)`,
          expression: [childPath],
        });
      }
    } else if (typeof value === 'number') {
      if (!Number.isFinite(value)) issues.push(beyondRange(`${path}.${key}`));
    } else if (value === null) {
      const childPath = `${path}.${key}`;
      issues.push({ code: 'structure', diagnostics: `${childPath}: null is not a value (leave the element out)`, expression: [childPath] });
    } else if (typeof value === 'object') {
      const childPath = `${path}.${key}`;
      if (Array.isArray(value) && value.some((v) => typeof v === 'number' && !Number.isFinite(v))) {
        issues.push(beyondRange(childPath));
      } else if (Array.isArray(value) && value.includes(null)) {
        value.forEach((item, i) => {
          if (item !== null) elementIssues(item, `${childPath}[${i}]`, issues, inBundle);
          else if (!isPlaceholderNull(record, key, i)) {
            issues.push({ code: 'structure', diagnostics: `${childPath}[${i}]: null is not a value (a null only holds the place of an item whose id or extensions are in the _ array beside it)`, expression: [`${childPath}[${i}]`] });
          }
        });
      } else if (Array.isArray(value) && value.length === 0) {
        issues.push({ code: 'structure', diagnostics: `${childPath}: an array is never empty in FHIR JSON (leave the element out)`, expression: [childPath] });
      } else {
        elementIssues(value, childPath, issues, inBundle);
      }
    }
  }
  // A resource of no elements but its type is valid; an element of none is not.
  if (empty && !root) issues.push({ code: 'structure', diagnostics: `${path}: an element has a value or children (ele-1; leave it out)`, expression: [path] });
}

/**
 * A JSON number too large for a double (`1e400`) parses to ±Infinity, which the schema's
 * `number` accepts and JSON.stringify writes as null: the value would be stored changed.
 */
function beyondRange(path: string): Issue {
  return { code: 'value', diagnostics: `${path}: the number is beyond any FHIR integer or decimal`, expression: [path] };
}

/**
 * Most values one resource may hold. Validation, index extraction and profile checks each walk
 * every element: a 7 MB Patient of 180,000 names held the event loop for 18 s. 20,000 is ten
 * times the largest resource in the R4 examples a monitoring server stores (a Bundle's entries
 * are resources of their own).
 */
export const MAX_RESOURCE_ELEMENTS = 20_000;

/**
 * Structural validation of one resource: the R4 JSON schema of its type, each contained
 * resource against its own type's schema (the root schema's oneOf over every type would bury
 * one real error under a hundred), and reference syntax; then, on what is well formed, the
 * core invariants (./core-invariants.ts). Returns every issue, not the first.
 */
export function validationIssues(resource: unknown): Issue[] {
  const issues = structuralIssues(resource);
  // Once for the whole resource: a contained resource's invariants read its container.
  return issues.length > 0 ? issues : coreInvariantIssues(resource as Record<string, unknown>);
}

function structuralIssues(resource: unknown): Issue[] {
  if (resource === null || typeof resource !== 'object' || Array.isArray(resource)) {
    return [{ code: 'structure', diagnostics: 'the body is not a JSON object' }];
  }
  const { resourceType, contained, ...rest } = resource as { resourceType?: unknown; contained?: unknown };
  if (typeof resourceType !== 'string') {
    return [{ code: 'required', diagnostics: 'resourceType is missing', expression: ['resourceType'] }];
  }
  const validate = validatorFor(resourceType);
  if (!validate) {
    return [{ code: 'not-supported', diagnostics: `'${resourceType}' is not an R4 resource type`, expression: ['resourceType'] }];
  }
  if (exceedsElements(resource, MAX_RESOURCE_ELEMENTS)) {
    return [{ code: 'too-costly', diagnostics: `${resourceType} holds more than ${MAX_RESOURCE_ELEMENTS} values; split it` }];
  }
  const issues: Issue[] = [];
  const own = { resourceType, ...rest };
  // The integer check reads the text a number was written with (./schema.ts, validInteger): the
  // copy must say the texts of the resource's own elements too.
  carryKeptDecimals(resource, own);
  if (!validate(own)) {
    issues.push(...schemaIssues(resourceType, withoutPlaceholderErrors(validate.errors ?? [], own)));
  }
  if (contained !== undefined) {
    if (!Array.isArray(contained)) {
      issues.push({ code: 'structure', diagnostics: `${resourceType}.contained must be an array`, expression: [`${resourceType}.contained`] });
    } else {
      contained.forEach((inner, i) => {
        for (const issue of structuralIssues(inner)) {
          issues.push(prefixIssue(issue, `${resourceType}.contained[${i}]`));
        }
      });
    }
  }
  elementIssues(rest, resourceType, issues, resourceType === 'Bundle', true);
  issues.push(...missingRequiredIssues(rest, resourceType), ...heldIssues(rest, resourceType));
  return issues;
}

/**
 * The issues of the resources a stored Bundle's entries and a Parameters' parameters hold, each
 * checked against its own type as a top-level resource is: its schema and contained resources,
 * its required elements (./required.ts: a Bundle stored with an Observation without status in it
 * held what a POST of that Observation refuses). The schema leaves them as plain objects
 * (./schema.ts). Their references and empty elements were checked by the holder's walk
 * (elementIssues), where a document's `urn:uuid:` references are allowed.
 */
function heldIssues(fields: Record<string, unknown>, resourceType: string): Issue[] {
  const issues: Issue[] = [];
  for (const { held, path } of heldResources(fields, resourceType)) {
    // Not an object: the holder's schema said so (`resource` must be an object).
    if (held === null || typeof held !== 'object' || Array.isArray(held)) continue;
    const { resourceType: type, contained, ...rest } = held as { resourceType?: unknown; contained?: unknown };
    const validate = typeof type === 'string' ? validatorFor(type) : undefined;
    if (!validate) {
      issues.push({ code: 'invalid', diagnostics: `${path}.resourceType: '${String(type).slice(0, 64)}' is not an R4 resource type`, expression: [`${path}.resourceType`] });
      continue;
    }
    const own = { resourceType: type, ...rest };
    carryKeptDecimals(held, own);
    const inner = validate(own) ? [] : schemaIssues(type as string, withoutPlaceholderErrors(validate.errors ?? [], own));
    if (Array.isArray(contained)) {
      contained.forEach((c, i) => inner.push(...structuralIssues(c).map((issue) => prefixIssue(issue, `${type as string}.contained[${i}]`))));
    }
    inner.push(...missingRequiredIssues(rest, type as string), ...heldIssues(rest, type as string));
    for (const issue of inner) issues.push(prefixIssue(issue, path));
  }
  return issues;
}

/** The resources a Bundle's entries or a Parameters' parameters (and their parts) hold, with their paths. */
function heldResources(fields: Record<string, unknown>, resourceType: string): Array<{ held: unknown; path: string }> {
  const found: Array<{ held: unknown; path: string }> = [];
  const each = (list: unknown, visit: (item: Record<string, unknown>, i: number) => void) => {
    if (Array.isArray(list)) list.forEach((item, i) => item !== null && typeof item === 'object' && visit(item as Record<string, unknown>, i));
  };
  if (resourceType === 'Bundle') {
    each(fields.entry, (entry, i) => entry.resource !== undefined && found.push({ held: entry.resource, path: `Bundle.entry[${i}].resource` }));
  }
  if (resourceType === 'Parameters') {
    const parameters = (list: unknown, path: string): void =>
      each(list, (parameter, i) => {
        if (parameter.resource !== undefined) found.push({ held: parameter.resource, path: `${path}[${i}].resource` });
        parameters(parameter.part, `${path}[${i}].part`);
      });
    parameters(fields.parameter, 'Parameters.parameter');
  }
  return found;
}

function prefixIssue(issue: Issue, prefix: string): Issue {
  // Inner expressions start with the contained resource's own type name; replace it with the path.
  const rebase = (e: string) => prefix + e.replace(/^[A-Za-z]+/, '');
  return {
    ...issue,
    diagnostics: issue.expression ? issue.diagnostics.replace(issue.expression[0], rebase(issue.expression[0])) : `${prefix}: ${issue.diagnostics}`,
    expression: issue.expression?.map(rebase),
  };
}

/** Throws 400 with every issue when the resource is not valid R4 JSON of the expected type. */
export function assertValidResource(resource: unknown, expectedType?: string): asserts resource is fhir4.FhirResource {
  const issues = validationIssues(resource);
  const actualType = (resource as { resourceType?: unknown } | null)?.resourceType;
  if (expectedType && typeof actualType === 'string' && actualType !== expectedType) {
    issues.unshift({
      code: 'invalid',
      diagnostics: `resourceType '${actualType}' does not match the type in the URL, '${expectedType}'`,
      expression: ['resourceType'],
    });
  }
  if (issues.length > 0) {
    throw new OperationOutcomeError(400, issues);
  }
}
