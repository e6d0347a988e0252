import type { FhirContext, InteractionResult } from '../fhir/context';
import { everything } from '../fhir/interactions/everything';
import type { RestRequest } from '../fhir/rest-request';
import { OperationOutcomeError } from '../kernel/outcome';
import { PSEUDONYMISED, pseudonymiser } from './anonymize';

/**
 * `Patient/{id}/$anonymize` (GET or POST): the patient's record as `$everything` gives it to the
 * caller — the same rights, the same compartment, every page — pseudonymised (./anonymize.ts),
 * as a `collection` Bundle. Nothing stored changes: the copy is for research or handover, and
 * `$erase` is what removes the original.
 */
export async function anonymizeOperation(ctx: FhirContext, req: RestRequest): Promise<InteractionResult> {
  const key = ctx.config.pseudonymKey;
  if (key === undefined) {
    throw new OperationOutcomeError(501, { code: 'not-supported', diagnostics: '$anonymize needs a pseudonym key: set PSEUDONYM_KEY (at least 32 characters)' });
  }
  const patientId = req.id!;
  const anonymise = pseudonymiser(key, patientId);
  const entry: fhir4.BundleEntry[] = [];
  let query = new URLSearchParams({ _count: String(ctx.config.maxPageSize) });
  for (;;) {
    const page = (await everything(ctx, { ...req, query, body: undefined })).body as fhir4.Bundle;
    for (const e of page.entry ?? []) if (e.resource) entry.push({ resource: anonymise.resource(e.resource as fhir4.FhirResource) });
    const next = page.link?.find((l) => l.relation === 'next');
    if (!next) break;
    query = new URL(next.url).searchParams;
  }
  return { status: 200, body: { resourceType: 'Bundle', type: 'collection', meta: { security: [PSEUDONYMISED] }, entry } };
}
