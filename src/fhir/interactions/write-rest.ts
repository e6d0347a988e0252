import type { FhirContext, InteractionResult } from '../context';
import { badRequest, OperationOutcomeError } from '../../kernel/outcome';
import { type RestRequest, writeResult } from '../rest-request';
import { parseIfNoneMatchOnUpdate } from '../../kernel/etag';
import { executeWrites, isFhirPathPatch, type WriteOp } from '../../pipeline';
import { read } from './read';

/**
 * The REST write interactions (create, update, patch, delete, and their conditional forms) as
 * one WriteOp each through the shared pipeline; only the mapping from HTTP differs.
 */
export async function create(ctx: FhirContext, req: RestRequest): Promise<InteractionResult> {
  const ifNoneExist = req.ifNoneExist !== undefined ? conditionFromHeader(req.ifNoneExist) : undefined;
  return run(ctx, req, { kind: 'create', type: req.type, resource: req.body, ifNoneExist });
}

export async function update(ctx: FhirContext, req: RestRequest): Promise<InteractionResult> {
  const match = req.id ? undefined : requireCondition(req.query, 'update');
  const ifNoneMatchAny = parseIfNoneMatchOnUpdate(req.ifNoneMatch, 'If-None-Match');
  return run(ctx, req, { kind: 'update', type: req.type, id: req.id, match, resource: req.body, ifMatch: req.ifMatch, ...(ifNoneMatchAny ? { ifNoneMatchAny } : {}) });
}

export async function patch(ctx: FhirContext, req: RestRequest): Promise<InteractionResult> {
  // A JSON Patch (application/json-patch+json) or a FHIRPath Patch: a Parameters resource sent as FHIR JSON.
  if (req.bodyKind !== 'json-patch' && !isFhirPathPatch(req.body)) {
    throw new OperationOutcomeError(415, {
      code: 'not-supported',
      diagnostics: 'PATCH takes a JSON Patch (Content-Type: application/json-patch+json) or a FHIRPath Patch (a Parameters resource, Content-Type: application/fhir+json)',
    });
  }
  const match = req.id ? undefined : requireCondition(req.query, 'patch');
  return run(ctx, req, { kind: 'patch', type: req.type, id: req.id, match, patch: req.body, ifMatch: req.ifMatch });
}

export async function remove(ctx: FhirContext, req: RestRequest): Promise<InteractionResult> {
  const match = req.id ? undefined : requireCondition(req.query, 'delete');
  return run(ctx, req, { kind: 'delete', type: req.type, id: req.id, match, ifMatch: req.ifMatch });
}

async function run(ctx: FhirContext, req: RestRequest, op: WriteOp): Promise<InteractionResult> {
  const [outcome] = await executeWrites(ctx, [op], { policy: req.policy });
  if (op.kind === 'create' && outcome!.status === 200 && !outcome!.resource && req.prefer === 'representation') {
    // If-None-Exist matched: answer with the existing resource, as R4 http.html#ccreate says, and
    // name it in Location as a create would. Asked for minimal or an OperationOutcome, the
    // outcome's version says it all (Location is how the client learns the id), read by no one.
    const existing = await read(ctx, { ...req, id: outcome!.id, prefer: 'representation' });
    return { ...existing, headers: { ...existing.headers, location: `${ctx.baseUrl}/${req.type}/${outcome!.id}/_history/${outcome!.versionId}` } };
  }
  return writeResult(ctx.baseUrl, outcome!, req.prefer);
}

/** If-None-Exist carries the query part of a search URL, with or without the leading `?`. */
function conditionFromHeader(value: string): URLSearchParams {
  const query = value.includes('?') ? value.slice(value.indexOf('?') + 1) : value;
  const params = new URLSearchParams(query);
  if ([...params.keys()].length === 0) throw badRequest('If-None-Exist must hold search parameters, e.g. identifier=http://x|1');
  return params;
}

function requireCondition(query: URLSearchParams, interaction: string): URLSearchParams {
  const params = new URLSearchParams([...query].filter(([k]) => !['_format', '_pretty'].includes(k)));
  if ([...params.keys()].length === 0) {
    throw badRequest(`a conditional ${interaction} needs search parameters (e.g. ?identifier=…); without them, name the id in the URL`);
  }
  return params;
}
