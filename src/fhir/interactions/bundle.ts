import { processBatch } from '../bundle/batch';
import { parseBundle } from '../bundle/entries';
import { processTransaction } from '../bundle/transaction';
import type { FailedEntry, FhirContext, InteractionResult } from '../context';
import type { RestRequest } from '../rest-request';

/** `POST /fhir` with a transaction or batch Bundle. */
export async function bundle(ctx: FhirContext, req: RestRequest): Promise<InteractionResult> {
  const { type, entries } = parseBundle(req.body, ctx.config.maxBundleEntries);
  // Bundles answer minimal unless representation is asked for: a 1,000-entry upload should not
  // echo 1,000 resources back.
  const prefer = req.preferExplicit ? req.prefer : 'minimal';
  const { bundle: answer, disclosedPatients } = type === 'transaction' ? await processTransaction(ctx, entries, prefer, req.policy) : await processBatch(ctx, entries, prefer, req.policy);
  return { status: 200, body: answer, disclosedPatients, failedEntries: failedEntries(entries, answer) };
}

/** The entries answered with an error, with the request each made, for the audit trail. */
function failedEntries(entries: readonly unknown[], answer: fhir4.Bundle): FailedEntry[] {
  const failed: FailedEntry[] = [];
  answer.entry?.forEach((e, index) => {
    const status = Number.parseInt(e.response?.status ?? '', 10);
    if (!(status >= 400)) return;
    const request = (entries[index] as { request?: { method?: unknown; url?: unknown } } | null)?.request;
    failed.push({
      index,
      method: typeof request?.method === 'string' ? request.method.toUpperCase() : '',
      url: typeof request?.url === 'string' ? request.url : '',
      status,
      diagnostics: e.response?.outcome?.resourceType === 'OperationOutcome' ? (e.response.outcome as fhir4.OperationOutcome).issue[0]?.diagnostics : undefined,
    });
  });
  return failed;
}
