import { badRequest } from '../../kernel/outcome';
import { lastObservations } from '../../search';
import type { FhirContext, InteractionResult } from '../context';
import { operationQuery } from '../operation-params';
import type { RestRequest } from '../rest-request';
import { searchScope } from './search';

/**
 * `Observation/$lastn?patient=…&category=vital-signs[&max=3]` (R4 OperationDefinition
 * Observation-lastn): a patient's latest readings of each kind, as a chart or a SMART app asks
 * for them. The other parameters are Observation search parameters, held to what the token may
 * search exactly as a search is (./search.ts, searchScope).
 */
export async function lastn(ctx: FhirContext, req: RestRequest): Promise<InteractionResult> {
  const query = operationQuery(req);
  const max = maxOf(query.getAll('max'), ctx.config.maxPageSize);
  query.delete('max');
  const scope = searchScope(req, query);
  return lastObservations(ctx, {
    params: scope.params,
    max,
    ...(scope.compartmentId !== undefined ? { compartmentId: scope.compartmentId } : {}),
    reach: scope.reach,
    preferLenient: req.lenient,
    selfUrl: req.url,
  });
}

/** `max`: a positiveInt, 1 when absent; at most the page size limit, as a page of any search is. */
function maxOf(values: string[], limit: number): number {
  if (values.length === 0) return 1;
  if (values.length > 1) throw badRequest('max may be given once', ['max']);
  const text = values[0]!;
  if (!/^[1-9]\d{0,8}$/.test(text)) throw badRequest(`max must be a positive integer, got '${text.slice(0, 20)}'`, ['max']);
  const max = Number(text);
  if (max > limit) throw badRequest(`max may be at most ${limit}`, ['max']);
  return max;
}
