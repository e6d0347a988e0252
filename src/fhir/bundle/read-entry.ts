import type { AccessPolicy } from '../../access/policy';
import { search } from '../interactions/search';
import { metadata } from '../capability';
import type { FhirContext, InteractionResult } from '../context';
import { history } from '../interactions/history';
import { read, vread } from '../interactions/read';
import { notFound } from '../../kernel/outcome';
import { isSupportedType } from '../../kernel/resource-types';
import { isValidId } from '../../kernel/id';
import type { RestRequest } from '../rest-request';
import { splitRequestUrl } from './entries';
import type { ReturnPreference } from '../negotiation';
import type { WriteOp, WriteOutcome } from '../../pipeline';
import { readEntryResponse, writeEntry } from './response';
import { readDefinition, searchDefinitions, servedDefinitionsOf } from '../served-definitions';

/**
 * A GET entry of a batch or transaction, answered by the same interactions as the REST routes:
 * read, vread, search (also in a Patient compartment), history, metadata, and the server's own
 * definitions (served-definitions.ts).
 */
export async function readEntry(ctx: FhirContext, url: string, conditions: { ifNoneMatch?: string; ifModifiedSince?: string } | undefined, policy: AccessPolicy): Promise<InteractionResult> {
  return routeReadEntry(ctx, url, conditions, policy)(ctx);
}

/** A routed read, run later on the context given: a transaction's, inside its own database transaction. */
export type RoutedRead = (at: FhirContext) => Promise<InteractionResult>;

/**
 * The interaction a GET entry asks for, to be run later; what its URL alone shows is wrong (a
 * type this server does not serve, an id no resource can have, no such interaction) is thrown
 * now. A transaction routes its reads before it writes, so such an entry fails it with nothing
 * written.
 */
export function routeReadEntry(ctx: FhirContext, url: string, conditions: { ifNoneMatch?: string; ifModifiedSince?: string } | undefined, policy: AccessPolicy): RoutedRead {
  const { path, query } = splitRequestUrl(url, ctx.baseUrl);
  const [type, id, third, fourth] = path;
  const req = (t: string, extra: Partial<RestRequest> = {}): RestRequest => ({
    type: t, query, prefer: 'representation', lenient: false, url: `${ctx.baseUrl}/${url}`, ...conditions, policy, ...extra,
  });
  if (type === 'metadata' && path.length === 1) return async (at) => ({ status: 200, body: metadata(at, query) });
  if (type === '_history' && path.length === 1) return (at) => history(at, { ...req(''), type: undefined });
  // The server's own definitions (not stored): the answers of their REST routes.
  const served = type ? servedDefinitionsOf(type) : undefined;
  if (served && path.length === 1) return async (at) => searchDefinitions(at, served, query, false, req(type!).url);
  if (served && path.length === 2) return async (at) => readDefinition(at, served, id!);
  if (!type || !isSupportedType(type)) throw notFound(`${url}: '${type ?? ''}' is not a resource type this server supports`);
  // The same id grammar as the REST routes (src/fhir/routes.ts): no such resource can exist.
  if ((id !== undefined && id !== '_history' && !isValidId(id)) || (third === '_history' && fourth !== undefined && !isValidId(fourth))) {
    throw notFound(`${url.slice(0, 100)} is not known (not a FHIR id)`);
  }
  if (path.length === 1) return (at) => search(at, req(type));
  if (id === '_history' && path.length === 2) return (at) => history(at, req(type));
  if (path.length === 2) return (at) => read(at, req(type, { id }));
  if (third === '_history' && path.length === 3) return (at) => history(at, req(type, { id }));
  if (third === '_history' && path.length === 4) return (at) => vread(at, req(type, { id, versionId: fourth }));
  if (type === 'Patient' && path.length === 3 && isSupportedType(third!)) {
    return (at) => search(at, { ...req(third!), compartmentOf: id });
  }
  throw notFound(`${url} is not a read this server supports`);
}

/**
 * A committed write's response entry. A conditional create that matched wrote nothing, so its
 * outcome holds no resource; with return=representation its entry carries the matched version,
 * read as the caller may see it (the read a GET entry makes), as a create's entry carries what it
 * wrote (the REST create answers the same way, write-rest.ts).
 */
export async function committedWriteEntry(ctx: FhirContext, op: WriteOp, outcome: WriteOutcome, prefer: ReturnPreference, policy: AccessPolicy, disclosed: string[]): Promise<fhir4.BundleEntry> {
  const entry = writeEntry(ctx.baseUrl, outcome, prefer);
  if (prefer !== 'representation' || op.kind !== 'create' || outcome.status !== 200 || outcome.resource || !outcome.id || outcome.versionId === undefined) return entry;
  try {
    const matched = readEntryResponse(await readEntry(ctx, `${outcome.type}/${outcome.id}/_history/${outcome.versionId}`, undefined, policy), disclosed, 'GET');
    if (matched.resource) entry.resource = matched.resource;
  } catch (err) {
    // The write is committed: failing now would tell the client nothing was. The entry stays as
    // return=minimal gives it.
    ctx.log.error({ err, resource: `${outcome.type}/${outcome.id}` }, 'the resource a conditional create matched could not be read for its bundle entry');
  }
  return entry;
}
