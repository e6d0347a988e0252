import type { AccessPolicy } from '../../access/policy';
import { OperationOutcomeError } from '../../kernel/outcome';
import { executeWrites, findConditionMatches, type ResolvedOp, type UnitOfWork, type UnitSoFar, WriteOpError } from '../../pipeline';
import { joiningTransaction, type Queryable } from '../../store/db';
import type { FhirContext } from '../context';
import type { ReturnPreference } from '../negotiation';
import { checkUniqueFullUrls, entryError, type ParsedEntry, parseEntry } from './entries';
import { committedWriteEntry, type RoutedRead, routeReadEntry } from './read-entry';
import { absoluteWhereAnEntryIsNamed, collectReferences, isConditionalReference, isPlaceholder, rewriteReferences } from './references';
import { type BundleAnswer, bundleAnswer, inEntry, inReadEntry, readEntryResponse } from './response';

/** R4 http.html#trules: deletes, then creates, then updates and patches, then reads. */
const ORDER: Record<ParsedEntry['method'], number> = { DELETE: 0, POST: 1, PUT: 2, PATCH: 2, GET: 3, HEAD: 3 };

/**
 * A transaction: every entry succeeds or nothing is written. One unit of work: it resolves every
 * target and assigns every id first, then (the reference seam) rewrites `urn:uuid:` placeholders
 * and conditional references everywhere, then writes the whole bundle set-based.
 */
export async function processTransaction(ctx: FhirContext, rawEntries: readonly unknown[], prefer: ReturnPreference, policy: AccessPolicy): Promise<BundleAnswer> {
  const entries = rawEntries.map((raw, i) => parseEntry(raw, i, ctx.baseUrl, ctx.config.inputLimits));
  // Stricter than bdl-7 (no two versions of one fullUrl): a transaction writes one version of a resource.
  checkUniqueFullUrls(entries);
  absoluteWhereAnEntryIsNamed(entries);
  const writes = entries.filter((e) => e.write).sort((a, b) => ORDER[a.method] - ORDER[b.method] || a.index - b.index);
  // Reads are routed before anything is written: an entry whose URL is no read fails the transaction whole.
  const reads = entries.filter((e) => !e.write).map((entry) => ({ entry, run: routed(entry, () => routeReadEntry(ctx, entry.url, entry.conditions, policy)) }));

  const response: fhir4.BundleEntry[] = new Array(entries.length);
  const disclosed: string[] = [];
  let outcomes;
  try {
    const pendingReferences = rewrittenLater(entries);
    outcomes = await executeWrites(ctx, writes.map((e) => e.write!), {
      policy,
      pendingReferences,
      nameOp: (i) => `Bundle.entry[${writes[i]!.index}]`,
      beforePlan: (uow, resolved) => rewriteBetweenEntries(uow, writes, resolved, policy, pendingReferences),
      // The reads see the state the transaction leaves, not what another writer commits after it
      // (a GET of what it just updated answering someone else's version).
      thenInUnit: async (uow) => {
        disclosed.length = 0;
        const at = { ...ctx, db: joiningTransaction(ctx.db, uow.tx), reads: undefined };
        for (const { entry, run } of reads) response[entry.index] = await readInUnit(at, entry, run, disclosed);
      },
    });
  } catch (err) {
    if (err instanceof WriteOpError) throw inEntry(writes[err.opIndex]!.index, err.cause);
    if (err instanceof OperationOutcomeError && writes.length === 1 && !err.issues.some((i) => i.diagnostics.startsWith('Bundle.entry['))) {
      throw inEntry(writes[0]!.index, err);
    }
    throw err;
  }
  for (const [i, entry] of writes.entries()) response[entry.index] = await committedWriteEntry(ctx, entry.write!, outcomes[i]!, prefer, policy, disclosed);
  return bundleAnswer('transaction-response', response, disclosed);
}

/**
 * A read of the transaction, in its database transaction. One that fails fails the transaction
 * (R4 http.html#transaction: accept all actions or reject all), its writes rolled back with it:
 * a 404 for a resource not there is the transaction's 404, naming the entry and its URL.
 */
async function readInUnit(at: FhirContext, entry: ParsedEntry, run: RoutedRead, disclosed: string[]): Promise<fhir4.BundleEntry> {
  try {
    return readEntryResponse(await run(at), disclosed, entry.method === 'HEAD' ? 'HEAD' : 'GET');
  } catch (err) {
    throw err instanceof OperationOutcomeError ? inReadEntry(entry.index, err) : err;
  }
}

/** The seam: every target is resolved; now point each entry's references at the ids chosen. */
async function rewriteBetweenEntries(uow: UnitOfWork, writes: readonly ParsedEntry[], resolved: readonly ResolvedOp[], policy: AccessPolicy, pendingReferences: (resource: unknown) => string[]): Promise<void> {
  const placeholders = placeholderTargets(writes, resolved);
  const conditional = await resolveConditionalReferences(uow.tx, writes, { before: resolved, pendingReferences }, policy);
  for (const [i, entry] of writes.entries()) {
    const op = resolved[i]!.op;
    const resource = op.kind === 'create' || op.kind === 'update' ? op.resource : undefined;
    if (resource && typeof resource === 'object') {
      rewriteReferences(resource as Record<string, unknown>, (ref) => {
        if (placeholders.has(ref)) return placeholders.get(ref);
        if (isPlaceholder(ref)) throw entryError(entry.index, 400, `the reference ${ref} names no entry of this transaction`);
        return conditional.get(ref);
      }, placeholders);
    }
  }
}

/** fullUrl → `Type/id` for every entry that creates or updates a resource (placeholders and absolute fullUrls alike). */
function placeholderTargets(writes: readonly ParsedEntry[], resolved: readonly ResolvedOp[]): Map<string, string> {
  const map = new Map<string, string>();
  writes.forEach((entry, i) => {
    const r = resolved[i]!;
    if (entry.fullUrl && r.id && (r.op.kind === 'create' || r.op.kind === 'update')) map.set(entry.fullUrl, `${r.op.type}/${r.id}`);
  });
  return map;
}

/** The references of a resource this transaction rewrites once every target is resolved. */
function rewrittenLater(entries: readonly ParsedEntry[]): (resource: unknown) => string[] {
  const fullUrls = new Set(entries.flatMap((e) => (e.fullUrl ? [e.fullUrl] : [])));
  return (resource) => collectReferences(resource as Record<string, unknown>).filter((ref) => isPlaceholder(ref) || isConditionalReference(ref) || fullUrls.has(ref));
}

/**
 * Each distinct conditional reference must match exactly one resource, or the transaction fails.
 * It is resolved after every entry, as the transaction leaves things (`findConditionMatches`
 * with the whole unit before it): what the transaction creates or updates counts too, what it
 * deletes does not. A Patient created with `ifNoneExist=identifier=…` and Observations that
 * refer to it as `Patient?identifier=…` is how integrators upload a patient's readings, and the
 * search alone, on the database as it was before the transaction, found no such Patient
 * (HAPI FHIR resolves them the same way).
 */
async function resolveConditionalReferences(tx: Queryable, writes: readonly ParsedEntry[], unit: UnitSoFar, policy: AccessPolicy): Promise<Map<string, string>> {
  const resolvedRefs = new Map<string, string>();
  for (const entry of writes) {
    const resource = entry.resource;
    if (!resource || entry.method === 'PATCH') continue;
    for (const ref of collectReferences(resource)) {
      if (!isConditionalReference(ref) || resolvedRefs.has(ref)) continue;
      const type = ref.slice(0, ref.indexOf('?'));
      // Matched like every condition: what the caller's own search of the type would find.
      const ids = await forEntry(entry, () => findConditionMatches(tx, policy, type, new URLSearchParams(ref.slice(ref.indexOf('?') + 1)), unit));
      if (ids.length !== 1) {
        throw entryError(entry.index, 412, `the conditional reference ${ref} matches ${ids.length === 0 ? 'no resource' : 'more than one resource'}`);
      }
      resolvedRefs.set(ref, `${type}/${ids[0]}`);
    }
  }
  return resolvedRefs;
}

function routed<T>(entry: ParsedEntry, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof OperationOutcomeError) throw inEntry(entry.index, err);
    throw err;
  }
}

async function forEntry<T>(entry: ParsedEntry, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof WriteOpError) throw inEntry(entry.index, err.cause);
    if (err instanceof OperationOutcomeError && !err.issues.some((i) => i.diagnostics.startsWith('Bundle.entry['))) throw inEntry(entry.index, err);
    throw err;
  }
}
