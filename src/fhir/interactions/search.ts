import { type Reach, searchResources } from '../../search';
import { policyReach, readLimits } from '../../access/enforce';
import type { FhirContext, InteractionResult } from '../context';
import { notFound } from '../../kernel/outcome';
import type { RestRequest } from '../rest-request';

/**
 * search (and compartment search, `/Patient/{compartmentOf}/{type}`), within what the token
 * may see: a patient-scoped token searches its patient's compartment, a granular scope's
 * parameters are ANDed to the client's, and chains, _has and includes need the right to the
 * types they reach. All of it ends up as conditions of the one SQL query.
 */
export async function search(ctx: FhirContext, req: RestRequest & { compartmentOf?: string }): Promise<InteractionResult> {
  const scope = searchScope(req, req.query);
  return searchResources(ctx, {
    resourceType: req.type,
    params: scope.params,
    compartment: scope.compartmentId !== undefined ? { resourceType: 'Patient', id: scope.compartmentId } : undefined,
    preferLenient: req.lenient,
    requestUrl: req.url,
    reach: scope.reach,
  });
}

/** What a search of `req.type` with `query` covers for this token (also Observation/$lastn's). */
export interface SearchScope {
  /** The query with the token's granular constraints ANDed. */
  params: URLSearchParams;
  /** The patient compartment the search is confined to: the one named in the path or the token's patient. */
  compartmentId?: string;
  /** What the caller may see of the types the search reaches. */
  reach: Reach;
}

export function searchScope(req: RestRequest & { compartmentOf?: string }, query: URLSearchParams): SearchScope {
  const limits = readLimits(req.policy, req.type, 's');
  let compartmentId = req.compartmentOf;
  if (limits.compartmentPatientId !== undefined) {
    if (compartmentId !== undefined && compartmentId !== limits.compartmentPatientId) {
      // Another patient's compartment is, for this token, a patient that does not exist.
      throw notFound(`Patient/${compartmentId} is not known`);
    }
    compartmentId = limits.compartmentPatientId;
  }
  const params = new URLSearchParams(query);
  for (const [key, value] of limits.constraint ?? []) params.append(key, value);
  return { params, ...(compartmentId !== undefined ? { compartmentId } : {}), reach: policyReach(req.policy) };
}
