import type { AccessPolicy } from '../../auth/policy';
import type { FhirContext } from '../context';
import type { ReturnPreference } from '../negotiation';
import { OperationOutcomeError } from '../outcome';
import { executeWrites } from '../write';
import { parseEntry } from './entries';
import { readEntry } from './read-entry';
import { errorEntry, readEntryResponse, writeEntry } from './response';
import { inEntry } from './transaction';

/**
 * A batch: each entry on its own, in its own transaction, through the same write pipeline as a
 * REST call. One entry's failure is an OperationOutcome in its response entry; the others go
 * on. References between entries are not resolved (R4 http.html#brules), so an entry that
 * points at another's `urn:uuid:` fails alone.
 */
export async function processBatch(ctx: FhirContext, rawEntries: readonly unknown[], prefer: ReturnPreference, policy: AccessPolicy): Promise<fhir4.Bundle> {
  const response: fhir4.BundleEntry[] = [];
  for (const [index, raw] of rawEntries.entries()) {
    try {
      const entry = parseEntry(raw, index, ctx.baseUrl);
      if (entry.write) {
        const [outcome] = await executeWrites(ctx, [entry.write], policy);
        response.push(writeEntry(ctx.baseUrl, outcome!, prefer));
      } else {
        response.push(readEntryResponse(await readEntry(ctx, entry.url, {}, policy)));
      }
    } catch (err) {
      if (!(err instanceof OperationOutcomeError)) {
        ctx.log.error({ err, entry: index }, 'batch entry failed');
        response.push(errorEntry(new OperationOutcomeError(500, { severity: 'fatal', code: 'exception', diagnostics: `Bundle.entry[${index}]: internal error` })));
        continue;
      }
      const named = err.issues.some((i) => i.diagnostics.startsWith('Bundle.entry[')) ? err : inEntry(index, err);
      response.push(errorEntry(named));
    }
  }
  return { resourceType: 'Bundle', type: 'batch-response', entry: response };
}
