import { type Issue, OperationOutcomeError } from '../kernel/outcome';
import { schemaIssues, validatorFor } from './schema';

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

/** Every `reference` string of Reference elements anywhere in the resource, with its path. */
function referenceIssues(node: unknown, path: string, issues: Issue[], inBundle: boolean): void {
  if (Array.isArray(node)) {
    node.forEach((item, i) => referenceIssues(item, `${path}[${i}]`, issues, inBundle));
    return;
  }
  if (node === null || typeof node !== 'object') return;
  for (const [key, value] of Object.entries(node)) {
    const childPath = `${path}.${key}`;
    if (key === 'reference' && typeof value === 'string') {
      if (!REFERENCE.test(value) && !(inBundle && IN_BUNDLE_REFERENCE.test(value))) {
        issues.push({
          code: 'value',
          diagnostics: `${childPath}: '${value}' is not a valid reference (expected Type/id, an absolute URL or #id)`,
          expression: [childPath],
        });
      }
    } else if (typeof value === 'object') {
      referenceIssues(value, childPath, issues, inBundle);
    }
  }
}

/**
 * Structural validation of one resource: the R4 JSON schema of its type, each contained
 * resource against its own type's schema (the root schema's oneOf over every type would bury
 * one real error under a hundred), and reference syntax. Returns every issue, not the first.
 */
export function validationIssues(resource: unknown): Issue[] {
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
  const issues: Issue[] = [];
  if (!validate({ resourceType, ...rest })) {
    issues.push(...schemaIssues(resourceType, validate.errors ?? []));
  }
  if (contained !== undefined) {
    if (!Array.isArray(contained)) {
      issues.push({ code: 'structure', diagnostics: `${resourceType}.contained must be an array`, expression: [`${resourceType}.contained`] });
    } else {
      contained.forEach((inner, i) => {
        for (const issue of validationIssues(inner)) {
          issues.push(prefixIssue(issue, `${resourceType}.contained[${i}]`));
        }
      });
    }
  }
  referenceIssues(rest, resourceType, issues, resourceType === 'Bundle');
  return issues;
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
