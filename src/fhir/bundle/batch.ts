import type { AccessPolicy } from '../../access/policy';
import { OperationOutcomeError } from '../../kernel/outcome';
import { executeWrites, type WriteOp } from '../../pipeline';
import type { FhirContext } from '../context';
import type { ReturnPreference } from '../negotiation';
import { checkUniqueFullUrls, type ParsedEntry, parseEntry } from './entries';
import { committedWriteEntry, readEntry } from './read-entry';
import { type BundleAnswer, bundleAnswer, failedEntry, readEntryResponse } from './response';

/**
 * A batch: each entry succeeds or fails on its own (R4 http.html#brules). Its writes are one
 * per-entry unit of work (set-based, each entry under its own SAVEPOINT when it must be
 * replayed alone); references between entries are not resolved, so an entry that points at
 * another's `urn:uuid:` fails alone. Reads are answered after the writes.
 */
export async function processBatch(ctx: FhirContext, rawEntries: readonly unknown[], prefer: ReturnPreference, policy: AccessPolicy): Promise<BundleAnswer> {
  const response: fhir4.BundleEntry[] = new Array(rawEntries.length);
  const writes: Array<{ entry: ParsedEntry; op: WriteOp }> = [];
  const reads: ParsedEntry[] = [];
  const disclosed: string[] = [];
  checkUniqueFullUrls(rawEntries.map((raw, index) => ({ index, ...sentIdentity(raw) })));
  for (const [index, raw] of rawEntries.entries()) {
    try {
      const entry = parseEntry(raw, index, ctx.baseUrl, ctx.config.inputLimits);
      if (entry.write) writes.push({ entry, op: entry.write });
      else reads.push(entry);
    } catch (err) {
      response[index] = failedEntry(ctx, index, err);
    }
  }
  if (writes.length) {
    const results = await executeWrites(ctx, writes.map((w) => w.op), { policy, mode: 'per-entry' });
    for (const [k, result] of results.entries()) {
      const { entry: { index }, op } = writes[k]!;
      response[index] = result instanceof OperationOutcomeError ? failedEntry(ctx, index, result) : await committedWriteEntry(ctx, op, result, prefer, policy, disclosed);
    }
  }
  for (const entry of reads) {
    try {
      response[entry.index] = readEntryResponse(await readEntry(ctx, entry.url, entry.conditions, policy), disclosed, entry.method === 'HEAD' ? 'HEAD' : 'GET');
    } catch (err) {
      response[entry.index] = failedEntry(ctx, entry.index, err);
    }
  }
  return bundleAnswer('batch-response', response, disclosed);
}

/** An entry's fullUrl and its resource's versionId as sent, before the entry is parsed (it may fail alone). */
function sentIdentity(raw: unknown): { fullUrl?: string; versionId?: string } {
  const entry = raw as { fullUrl?: unknown; resource?: { meta?: { versionId?: unknown } } } | null;
  const fullUrl = typeof entry?.fullUrl === 'string' ? entry.fullUrl : undefined;
  const versionId = entry?.resource?.meta?.versionId;
  return { ...(fullUrl ? { fullUrl } : {}), ...(typeof versionId === 'string' ? { versionId } : {}) };
}
