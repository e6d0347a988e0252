import { badRequest } from '../../kernel/outcome';
import { supportedTypes } from '../../kernel/resource-types';
import { parseDateRange } from '../../search/date-range';
import { parameterOf, patientCompartmentOf } from '../../search/registry';
import type { FhirContext, InteractionResult } from '../context';
import type { RestRequest } from '../rest-request';
import { namedTypes, walkBundle, walkCountOf, walkPositionOf, walkTypes } from './type-walk';
import { operationQuery } from '../operation-params';

/**
 * `Patient/{id}/$everything` (R4 OperationDefinition Patient-everything; GDPR Art. 15 and 20):
 * the Patient and every resource of its compartment the caller may search, as a searchset
 * Bundle. Each type is an ordinary compartment search through the one access policy, so a
 * token sees here exactly what it could find type by type, nothing more; types it has no
 * right to search are left out, not refused.
 *
 * Parameters: start/end (care dates, on the types that have a `date` parameter), _since
 * (meta.lastUpdated), _type (which types), _count (page size). Paging walks the types in order;
 * the next link carries the type reached and that type's own search cursor.
 */
export async function everything(ctx: FhirContext, req: RestRequest): Promise<InteractionResult> {
  const patientId = req.id!;
  const given = operationQuery(req);
  const count = Math.max(walkCountOf(given, ctx.config.defaultPageSize, ctx.config.maxPageSize), 1);
  for (const name of ['start', 'end', '_since'] as const) {
    const value = given.get(name);
    if (value !== null && !parseDateRange(value)) throw badRequest(`${name}: '${value.slice(0, 40)}' is not a FHIR date`, [name]);
  }
  const types = typesOf(given.get('_type')).filter((t) => req.policy.allows(t, 's'));
  const page = await walkTypes(ctx, req, types, count, walkPositionOf(given), (type) => {
    const query = new URLSearchParams();
    if (type === 'Patient') query.set('_id', patientId);
    if (given.get('_since')) query.set('_lastUpdated', `ge${given.get('_since')}`);
    if (parameterOf(type, 'date')) {
      if (given.get('start')) query.append('date', `ge${given.get('start')}`);
      if (given.get('end')) query.append('date', `le${given.get('end')}`);
    }
    return type === 'Patient' ? { query } : { query, compartmentOf: patientId };
  });
  return { status: 200, body: walkBundle(`${ctx.baseUrl}/Patient/${patientId}/$everything`, given, page) };
}

/** The Patient first, then every type with a Patient compartment, or those `_type` names. */
function typesOf(requested: string | null): string[] {
  const all = ['Patient', ...supportedTypes.filter((t) => t !== 'Patient' && patientCompartmentOf(t).params.length > 0)];
  if (requested === null) return all;
  const asked = namedTypes([requested]);
  return all.filter((t) => asked.includes(t));
}
