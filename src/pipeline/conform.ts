import { type Issue, OperationOutcomeError } from '../kernel/outcome';
import { profileIssues } from '../validation/profile';
import { validationIssues } from '../validation/resource';

/**
 * The pipeline's last look before the write: a resource a stage changed is checked against the
 * R4 schema again, and every resource that declares a profile we hold must conform to it, so
 * that what is checked is what is stored, whatever door it came through. Undefined when it
 * conforms; else the 400 (schema) or 422 (profile) naming every issue.
 */
export function conformanceError(type: string, id: string, resource: fhir4.FhirResource, changed: boolean): OperationOutcomeError | undefined {
  if (changed) {
    const issues = validationIssues(resource);
    if (issues.length > 0) return new OperationOutcomeError(400, issues);
  }
  if (!resource.meta?.profile?.length) return undefined;
  const issues = profileIssues(resource);
  if (issues.length === 0) return undefined;
  return new OperationOutcomeError(422, issues.map((i: Issue) => ({ ...i, diagnostics: `${type}/${id}: ${i.diagnostics}` })));
}
