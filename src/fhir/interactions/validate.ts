import { readCurrent } from '../../store/repository';
import { isKnownProfile, profileIssues } from '../../validation/profile';
import { validationIssues } from '../../validation/resource';
import type { FhirContext, InteractionResult } from '../context';
import { badRequest, informationOutcome, notFound, operationOutcome } from '../../kernel/outcome';
import type { RestRequest } from '../rest-request';
import { stringParameter } from '../operation-params';

/**
 * `$validate` at type or instance level (R4 resource-operation-validate): the R4 schema, then
 * every profile the resource declares that this server holds, and the one the `profile`
 * parameter names (in the query or the Parameters body) by the same profile checks as a write
 * declaring it. The body is the resource or a Parameters resource with a `resource` parameter.
 * The answer is always 200 with an OperationOutcome; whether the resource is valid is in its
 * issues, not the status.
 */
export async function validateOperation(ctx: FhirContext, req: RestRequest): Promise<InteractionResult> {
  let resource = req.body as { resourceType?: string; parameter?: Array<{ name: string; resource?: unknown; valueCode?: string }> } | undefined;
  let mode: string | undefined = req.query.get('mode') ?? undefined;
  if (resource?.resourceType === 'Parameters') {
    mode = resource.parameter?.find((p) => p.name === 'mode')?.valueCode ?? mode;
    resource = resource.parameter?.find((p) => p.name === 'resource')?.resource as typeof resource;
  }
  if (req.id !== undefined && !(await readCurrent(ctx.db, req.type, req.id))) {
    throw notFound(`${req.type}/${req.id} is not known`);
  }
  if (mode === 'delete') {
    return { status: 200, body: informationOutcome(`${req.type}/${req.id} may be deleted`) };
  }
  if (!resource) throw badRequest('$validate needs a resource in the body, or a Parameters resource with a resource parameter');
  const issues = validationIssues(resource);
  const profile = stringParameter(req, 'profile');
  // A profile it was not checked against must not read as conformance to it.
  if (profile !== undefined && !isKnownProfile(profile)) {
    issues.push({ code: 'not-supported', diagnostics: `profile '${profile}' is not known to this server, so the resource was not validated against it` });
  }
  // The profiles it declares too, as the write pipeline's conform stage would hold it to them.
  if (issues.length === 0) issues.push(...profileIssues(resource as fhir4.FhirResource, profile === undefined ? [] : [profile]));
  if (resource.resourceType !== req.type) {
    issues.unshift({ code: 'invalid', diagnostics: `resourceType '${String(resource.resourceType)}' is not ${req.type}`, expression: ['resourceType'] });
  }
  const id = (resource as { id?: string }).id;
  if (req.id !== undefined && mode === 'update' && id !== req.id) {
    issues.push({ code: 'invalid', diagnostics: `the resource id '${id ?? ''}' does not match the URL id '${req.id}'`, expression: ['id'] });
  }
  return { status: 200, body: issues.length > 0 ? operationOutcome(issues) : informationOutcome('the resource is valid') };
}
