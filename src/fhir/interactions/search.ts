import { searchResources } from '../../search';
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
  const limits = readLimits(req.policy, req.type, 's');
  let compartmentId = req.compartmentOf;
  if (limits.compartmentPatientId !== undefined) {
    if (compartmentId !== undefined && compartmentId !== limits.compartmentPatientId) {
      // Another patient's compartment is, for this token, a patient that does not exist.
      throw notFound(`Patient/${compartmentId} is not known`);
    }
    compartmentId = limits.compartmentPatientId;
  }
  const params = new URLSearchParams(req.query);
  for (const [key, value] of limits.constraint ?? []) params.append(key, value);
  return searchResources(ctx, {
    resourceType: req.type,
    params,
    compartment: compartmentId !== undefined ? { resourceType: 'Patient', id: compartmentId } : undefined,
    preferLenient: req.lenient,
    requestUrl: req.url,
    reach: policyReach(req.policy),
  });
}
