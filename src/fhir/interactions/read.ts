import { readCurrent, readVersion, type StoredVersion } from '../../store/repository';
import { isValidId } from '../../kernel/id';
import { requireReadable } from '../../access/enforce';
import type { FhirContext, InteractionResult } from '../context';
import { gone, notFound } from '../../kernel/outcome';
import { etag, httpDate } from '../../kernel/etag';
import type { RestRequest } from '../rest-request';

/** read: the current version, passed through as stored JSON text. */
export async function read(ctx: FhirContext, req: RestRequest): Promise<InteractionResult> {
  const id = checkedId(req);
  await requireReadable(ctx.db, req.policy, req.type, id);
  const stored = await readCurrent(ctx.db, req.type, id);
  if (!stored) throw notFound(`${req.type}/${id} is not known`);
  if (stored.deleted) throw gone(`${req.type}/${id} was deleted (version ${stored.versionId})`, stored);
  if (req.ifNoneMatch && req.ifNoneMatch.replace(/^W\//, '') === `"${stored.versionId}"`) {
    return { status: 304, headers: versionHeaders(stored) };
  }
  return { status: 200, headers: versionHeaders(stored), body: { json: stored.json! } };
}

/** vread: one version from history; the version of a delete is 410. */
export async function vread(ctx: FhirContext, req: RestRequest): Promise<InteractionResult> {
  const id = checkedId(req);
  await requireReadable(ctx.db, req.policy, req.type, id);
  const vid = Number(req.versionId);
  if (!Number.isInteger(vid) || vid < 1) throw notFound(`${req.type}/${id} has no version '${req.versionId}'`);
  const stored = await readVersion(ctx.db, req.type, id, vid);
  if (!stored) throw notFound(`${req.type}/${id} has no version ${vid}`);
  if (stored.deleted) throw gone(`version ${vid} of ${req.type}/${id} is its deletion`, stored);
  return { status: 200, headers: versionHeaders(stored), body: { json: stored.json! } };
}

function checkedId(req: RestRequest): string {
  // An id that cannot exist is not a different error from one that does not: 404 either way.
  if (!req.id || !isValidId(req.id)) throw notFound(`${req.type}/${req.id ?? ''} is not known`);
  return req.id;
}

function versionHeaders(stored: StoredVersion): Record<string, string> {
  return { etag: etag(stored.versionId), 'last-modified': httpDate(stored.lastUpdated) };
}
