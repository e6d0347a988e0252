import { readCurrent, readVersion, type StoredVersion } from '../../store/repository';
import { isValidId } from '../../kernel/id';
import { mayRead, mayReadDeleted, readLimits } from '../../access/enforce';
import type { AccessPolicy } from '../../access/policy';
import { isUnlimited, readSubsetMode, type SubsetMode, subsetJson, withinLimits } from '../../search';
import type { FhirContext, InteractionResult } from '../context';
import { gone, notFound } from '../../kernel/outcome';
import { etag, httpDate, parseVersionId } from '../../kernel/etag';
import type { RestRequest } from '../rest-request';

/** read: the current version, passed through as stored JSON text (or the subset `_summary`/`_elements` ask for). */
export async function read(ctx: FhirContext, req: RestRequest): Promise<InteractionResult> {
  const id = checkedId(req);
  const subset = readSubsetMode(req.query);
  await requireKnown(ctx, req.policy, req.type, id);
  const stored = await readCurrent(ctx.db, req.type, id);
  if (!stored) throw notFound(`${req.type}/${id} is not known`);
  if (stored.deleted) throw gone(`${req.type}/${id} was deleted (version ${stored.versionId})`, stored);
  if (notModified(req, stored)) return { status: 304, headers: versionHeaders(stored) };
  return answer(req.type, stored, subset);
}

/**
 * A conditional read (R4 http.html#cread) of the REST headers or a bundle entry's
 * `request.ifNoneMatch` and `request.ifModifiedSince`: the client's copy is current. An entity
 * tag, when given, decides alone (RFC 9110 13.1.3); a date is compared to the instant of the
 * version, so a date inside its second says modified (Hapi still answers a REST If-Modified-Since
 * at the second of Last-Modified).
 */
function notModified(req: RestRequest, stored: StoredVersion): boolean {
  // A list of tags, or `*` (any current version: RFC 9110 13.1.2), compared weakly.
  if (req.ifNoneMatch) return req.ifNoneMatch.split(',').some((tag) => ['*', `"${stored.versionId}"`].includes(tag.trim().replace(/^W\//, '')));
  const since = req.ifModifiedSince ? Date.parse(req.ifModifiedSince) : NaN;
  return !Number.isNaN(since) && Date.parse(stored.lastUpdated) <= since;
}

/**
 * vread: one version from history; the version of a delete is 410. The version itself must be
 * within the caller's limits, not only the current one: a version from before the resource
 * entered the caller's compartment is another patient's data (a deletion is judged as the
 * version it deleted).
 */
export async function vread(ctx: FhirContext, req: RestRequest): Promise<InteractionResult> {
  const id = checkedId(req);
  const subset = readSubsetMode(req.query);
  await requireKnown(ctx, req.policy, req.type, id);
  const vid = parseVersionId(req.versionId);
  if (vid === undefined) throw notFound(`${req.type}/${id} has no version '${String(req.versionId).slice(0, 20)}'`);
  const stored = await readVersion(ctx.db, req.type, id, vid);
  if (!stored) throw notFound(`${req.type}/${id} has no version ${vid}`);
  const limits = readLimits(req.policy, req.type, 'r');
  if (!isUnlimited(limits)) {
    const judged = stored.deleted ? await readVersion(ctx.db, req.type, id, vid - 1) : stored;
    if (!judged?.json || !withinLimits(req.type, JSON.parse(judged.json) as fhir4.FhirResource, limits)) throw notFound(`${req.type}/${id} has no version ${vid}`);
  }
  if (stored.deleted) throw gone(`version ${vid} of ${req.type}/${id} is its deletion`, stored);
  return answer(req.type, stored, subset);
}

/**
 * 404 unless the caller may know of `type/id`: it may read the current version, or the resource
 * is deleted and the caller could read the version its deletion removed. A search finds no
 * deleted resource, so without the second test a patient's own deleted resource was 404 to its
 * patient-scoped token, where R4 http.html#read says 410 (and its history and versions were
 * unreachable); another patient's stays 404, as an id never used is (decision 031).
 */
export async function requireKnown(ctx: FhirContext, policy: AccessPolicy, type: string, id: string): Promise<void> {
  if (await mayRead(ctx.db, type, id, readLimits(policy, type, 'r'))) return;
  const stored = await readCurrent(ctx.db, type, id);
  if (stored?.deleted) {
    const lastLive = await readVersion(ctx.db, type, id, stored.versionId - 1);
    if (lastLive?.json && mayReadDeleted(policy, type, JSON.parse(lastLive.json) as fhir4.FhirResource)) return;
  }
  throw notFound(`${type}/${id} is not known`);
}

function checkedId(req: RestRequest): string {
  // An id that cannot exist is not a different error from one that does not: 404 either way.
  if (!req.id || !isValidId(req.id)) throw notFound(`${req.type}/${req.id ?? ''} is not known`);
  return req.id;
}

/** A version as it is answered: the stored text as is, or the subset asked for with the patients it may no longer show. */
function answer(type: string, stored: StoredVersion, subset: SubsetMode | undefined): InteractionResult {
  if (!subset) return { status: 200, headers: versionHeaders(stored), body: { json: stored.json! } };
  const disclosed = new Set<string>();
  const json = subsetJson(type, stored.json!, subset, disclosed);
  return { status: 200, headers: versionHeaders(stored), body: { json }, disclosedPatients: [...disclosed] };
}

function versionHeaders(stored: StoredVersion): Record<string, string> {
  return { etag: etag(stored.versionId), 'last-modified': httpDate(stored.lastUpdated) };
}
