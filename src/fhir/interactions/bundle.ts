import { processBatch } from '../bundle/batch';
import { parseBundle } from '../bundle/entries';
import { processTransaction } from '../bundle/transaction';
import type { FhirContext, InteractionResult } from '../context';
import type { RestRequest } from '../rest-request';

/** `POST /fhir` with a transaction or batch Bundle. */
export async function bundle(ctx: FhirContext, req: RestRequest): Promise<InteractionResult> {
  const { type, entries } = parseBundle(req.body, ctx.config.maxBundleEntries);
  // Bundles answer minimal unless representation is asked for: a 1,000-entry upload should not
  // echo 1,000 resources back.
  const prefer = req.preferExplicit ? req.prefer : 'minimal';
  const { bundle: answer, disclosedPatients } = type === 'transaction' ? await processTransaction(ctx, entries, prefer, req.policy) : await processBatch(ctx, entries, prefer, req.policy);
  return { status: 200, body: answer, disclosedPatients };
}
