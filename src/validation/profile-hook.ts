import type { FhirContext, InteractionResult } from '../fhir/context';
import { validateOperation } from '../fhir/interactions/validate';
import { OperationOutcomeError, operationOutcome } from '../fhir/outcome';
import type { RestRequest } from '../fhir/rest-request';
import type { PendingWrite } from '../fhir/write-hooks';
import type { Queryable } from '../store/db';
import { profileIssues } from './profile';

/**
 * Profile validation on write: every resource that declares a profile we hold must conform to
 * it, whatever door it came through. Registered as an enrich hook after the enrichers, so what
 * is checked is what is stored. 422 with every issue, naming the resource.
 */
export async function validateDeclaredProfiles(_ctx: FhirContext, _tx: Queryable, writes: PendingWrite[]): Promise<void> {
  for (const w of writes) {
    if (!w.resource?.meta?.profile?.length) continue;
    const issues = profileIssues(w.resource);
    if (issues.length > 0) {
      throw new OperationOutcomeError(
        422,
        issues.map((i) => ({ ...i, diagnostics: `${w.type}/${w.id}: ${i.diagnostics}` })),
      );
    }
  }
}

/** `$validate` answers profile conformance too: the built-in check plus the declared profiles. */
export async function validateWithProfiles(ctx: FhirContext, req: RestRequest): Promise<InteractionResult> {
  const result = await validateOperation(ctx, req);
  let resource = req.body as { resourceType?: string; parameter?: Array<{ name: string; resource?: unknown }> } | undefined;
  if (resource?.resourceType === 'Parameters') resource = resource.parameter?.find((p) => p.name === 'resource')?.resource as typeof resource;
  if (!resource || typeof resource !== 'object' || typeof resource.resourceType !== 'string') return result;
  const issues = profileIssues(resource as fhir4.FhirResource);
  if (issues.length === 0) return result;
  const outcome = result.body as fhir4.OperationOutcome;
  const earlier = outcome.issue.filter((i) => i.severity !== 'information');
  return { ...result, body: { ...operationOutcome(issues), issue: [...earlier, ...operationOutcome(issues).issue] } };
}
