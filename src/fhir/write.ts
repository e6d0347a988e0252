import { randomUUID } from 'node:crypto';
import { applyPatch, JsonPatchError, type Operation } from 'fast-json-patch';
import { findMatchingIds } from '../search';
import { writeSearchIndex } from '../search/index-writer';
import type { Queryable } from '../store/db';
import { ConcurrentCreateError, type CurrentVersion, lockCurrent, type NewVersion, writeVersions } from '../store/repository';
import { assertValidResource } from '../validation/resource';
import { type AccessPolicy, unrestricted } from '../auth/policy';
import { requireAction, requireWritable } from './access';
import type { FhirContext } from './context';
import { badRequest, conflict, gone, notFound, OperationOutcomeError, preconditionFailed, unprocessable } from './outcome';
import type { CommittedWrite, PendingWrite } from './write-hooks';

/**
 * One write, whatever door it came through (REST, a bundle entry, device ingest). Conditional
 * forms name a search instead of an id: `ifNoneExist` for create, `match` for update/delete.
 */
export type WriteOp =
  | {
      kind: 'create';
      type: string;
      resource: unknown;
      id?: string;
      ifNoneExist?: URLSearchParams;
      /**
       * With a deterministic `id` (device readings): when a resource already has that id, write
       * nothing and answer 200 with it, so a gateway's retry creates nothing new. Set-based: the
       * ids of a transaction are looked up together with the rows it replaces.
       */
      onExistingId?: 'match';
    }
  | { kind: 'update'; type: string; id?: string; match?: URLSearchParams; resource: unknown; ifMatch?: number }
  | { kind: 'patch'; type: string; id?: string; match?: URLSearchParams; patch: unknown; ifMatch?: number }
  | { kind: 'delete'; type: string; id?: string; match?: URLSearchParams; ifMatch?: number };

export interface WriteOutcome {
  /** 201 created, 200 updated or matched an existing resource, 204 nothing to delete. */
  status: 200 | 201 | 204;
  type: string;
  id?: string;
  versionId?: number;
  lastUpdated?: string;
  resource?: fhir4.FhirResource;
}

/** How often a transaction that lost a create race is replayed before the client gets 409. */
const CREATE_RACE_RETRIES = 3;

/** Runs the ops in one database transaction, then the after-commit hooks. */
export async function executeWrites(ctx: FhirContext, ops: readonly WriteOp[], policy: AccessPolicy = unrestricted): Promise<WriteOutcome[]> {
  try {
    const { outcomes, committed } = await retryingCreateRaces(() => ctx.db.transaction((tx) => applyWrites(ctx, tx, ops, policy)));
    await runAfterCommit(ctx, committed);
    return outcomes;
  } catch (err) {
    throw err instanceof WriteOpError && ops.length === 1 ? err.cause : err;
  }
}

/**
 * Two requests that create the same new id (PUT to an unused id) both find no row to lock;
 * the loser's insert conflicts. Its whole transaction is replayed, and then it finds the
 * winner's row and queues on it; after a few lost races the client gets 409.
 */
export async function retryingCreateRaces<T>(transaction: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await transaction();
    } catch (err) {
      if (!(err instanceof ConcurrentCreateError)) throw err;
      if (attempt >= CREATE_RACE_RETRIES) throw conflict(`${err.message}; retry the request`);
    }
  }
}

export async function runAfterCommit(ctx: FhirContext, committed: readonly CommittedWrite[]): Promise<void> {
  for (const hook of ctx.writeHooks.afterCommit) {
    try {
      await hook(ctx, committed);
    } catch (err) {
      ctx.log.error({ err }, 'after-commit hook failed');
    }
  }
}

interface Planned {
  op: WriteOp;
  outcome: WriteOutcome;
  pending?: PendingWrite & { method: NewVersion['method']; previousVersion: number };
}

/** An op whose target is known: the id it writes, or the existing resource a conditional create matched. */
export interface ResolvedOp {
  op: WriteOp;
  id: string | undefined;
  existingMatch?: boolean;
}

/**
 * A failure of one op of several, so a bundle can say which of its entries failed. `cause`
 * keeps the status and issues of the original error.
 */
export class WriteOpError extends Error {
  constructor(
    readonly opIndex: number,
    override readonly cause: OperationOutcomeError,
  ) {
    super(cause.message);
  }
}

/**
 * The write pipeline inside a transaction, for ops named by id or by condition. `policy` is the
 * requester's access (SMART scopes); the server's own writes (Flags of the monitoring rules)
 * run unrestricted.
 */
export async function applyWrites(
  ctx: FhirContext,
  tx: Queryable,
  ops: readonly WriteOp[],
  policy: AccessPolicy = unrestricted,
): Promise<{ outcomes: WriteOutcome[]; committed: CommittedWrite[] }> {
  const resolved: ResolvedOp[] = [];
  for (const [i, op] of ops.entries()) {
    resolved.push(await indexed(i, () => resolveTarget(tx, op, policy)));
  }
  return applyResolvedWrites(ctx, tx, resolved, policy);
}

/**
 * Lock the rows being replaced, check preconditions, validate, enrich, then write every
 * version, history row and index row of a type in set-based statements, then the
 * in-transaction rules. Errors of one op are thrown as WriteOpError with its index.
 */
export async function applyResolvedWrites(
  ctx: FhirContext,
  tx: Queryable,
  resolved: readonly ResolvedOp[],
  policy: AccessPolicy = unrestricted,
): Promise<{ outcomes: WriteOutcome[]; committed: CommittedWrite[] }> {
  const current = new Map<string, CurrentVersion>();
  const idsByType = new Map<string, string[]>();
  for (const r of resolved) {
    // Matched conditional creates and idempotent creates too: their answer carries the existing version.
    if ((r.op.kind !== 'create' || r.existingMatch || r.op.onExistingId === 'match') && r.id) {
      idsByType.set(r.op.type, [...(idsByType.get(r.op.type) ?? []), r.id]);
    }
  }
  for (const [type, ids] of idsByType) {
    for (const [id, row] of await lockCurrent(tx, type, ids)) current.set(`${type}/${id}`, row);
  }

  const lastUpdated = new Date().toISOString();
  const planned: Planned[] = [];
  for (const [i, r] of resolved.entries()) {
    const row = current.get(`${r.op.type}/${r.id}`);
    const existingMatch = r.existingMatch === true || (r.op.kind === 'create' && r.op.onExistingId === 'match' && row !== undefined);
    planned.push(await indexed(i, async () => authorized(policy, plan(r.op, r.id, existingMatch, row, lastUpdated))));
  }
  await enrichAndStamp(ctx, tx, planned, lastUpdated);

  const byType = new Map<string, Planned[]>();
  for (const p of planned) {
    if (p.pending) byType.set(p.op.type, [...(byType.get(p.op.type) ?? []), p]);
  }
  const committed: CommittedWrite[] = [];
  for (const [type, group] of byType) {
    const versions: NewVersion[] = group.map((p) => ({
      id: p.pending!.id,
      versionId: p.pending!.previousVersion + 1,
      lastUpdated,
      method: p.pending!.method,
      resource: p.pending!.resource,
    }));
    await writeVersions(tx, type, versions);
    await writeSearchIndex(tx, type, versions.map((v) => ({ id: v.id, resource: v.resource, isNew: v.versionId === 1 })));
    for (const p of group) {
      committed.push({ type, id: p.pending!.id, versionId: p.outcome.versionId!, resource: p.pending!.resource, previous: p.pending!.previous });
    }
  }
  for (const hook of ctx.writeHooks.inTransaction) {
    await hook(ctx, tx, committed);
  }
  return { outcomes: planned.map((p) => p.outcome), committed };
}

/** The planned op, after checking the requester may do it (and, patient-scoped, on that patient's data). */
function authorized(policy: AccessPolicy, planned: Planned): Planned {
  if (policy === unrestricted) return planned;
  if (!planned.pending) {
    // Nothing to write (a delete of nothing, a matched conditional create): still the client's act.
    if (planned.op.kind === 'delete' || planned.op.kind === 'create') requireAction(policy, planned.op.type, planned.op.kind === 'delete' ? 'd' : 'c');
    return planned;
  }
  const { method, resource, previous, previousVersion } = planned.pending;
  const action = method === 'DELETE' ? 'd' : previousVersion === 0 ? 'c' : 'u';
  requireWritable(policy, planned.op.type, action, resource, previous);
  return planned;
}

async function indexed<T>(opIndex: number, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw err instanceof OperationOutcomeError ? new WriteOpError(opIndex, err) : err;
  }
}

/**
 * Finds the id an op acts on. Conditional forms search inside the transaction, under an
 * advisory lock on the search itself so that two identical conditional creates cannot both
 * find nothing and both create.
 */
export async function resolveTarget(tx: Queryable, op: WriteOp, policy: AccessPolicy = unrestricted): Promise<ResolvedOp> {
  const search = op.kind === 'create' ? op.ifNoneExist : op.match;
  if (!search) {
    return { op, id: op.kind === 'create' ? (op.id ?? randomUUID()) : op.id };
  }
  // A condition is a search: it needs the right to search, and a patient-scoped token searches
  // its own compartment only (else 200-versus-201 would reveal other patients' identifiers).
  requireAction(policy, op.type, 's');
  const compartment = policy.confinedToPatient(op.type, 's') ? policy.patient : undefined;
  await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`${op.type}?${search.toString()}`]);
  const matches = await findMatchingIds(tx, op.type, search, 2, compartment);
  if (matches.length > 1) {
    throw preconditionFailed(`the condition ${op.type}?${search.toString()} matches more than one resource`);
  }
  if (op.kind === 'create') {
    return matches.length === 1 ? { op, id: matches[0], existingMatch: true } : { op, id: op.id ?? randomUUID() };
  }
  if (op.kind === 'update' && matches.length === 0) {
    // FHIR R4 conditional update: no match creates, with the body's id if it has one.
    const bodyId = (op.resource as { id?: unknown } | null)?.id;
    return { op, id: typeof bodyId === 'string' ? bodyId : randomUUID() };
  }
  if (op.id && matches[0] && op.id !== matches[0]) {
    throw badRequest(`the resource id ${op.id} does not match the resource found by ${op.type}?${search.toString()}`);
  }
  return { op, id: matches[0] };
}

function plan(
  op: WriteOp,
  id: string | undefined,
  existingMatch: boolean,
  current: CurrentVersion | undefined,
  lastUpdated: string,
): Planned {
  const live = current && !current.deleted ? current : undefined;
  if (op.kind !== 'create' && op.ifMatch !== undefined) {
    if (!current) {
      throw preconditionFailed(`If-Match W/"${op.ifMatch}": ${op.type}/${id ?? ''} does not exist`);
    }
    if (current.versionId !== op.ifMatch) {
      throw preconditionFailed(`If-Match W/"${op.ifMatch}" does not match the current version ${current.versionId} of ${op.type}/${id}`);
    }
  }

  switch (op.kind) {
    case 'create': {
      if (existingMatch) {
        return { op, outcome: { status: 200, type: op.type, id, versionId: current?.versionId } };
      }
      const resource = prepare(op.type, id!, op.resource, { ignoreBodyId: true });
      return stage(op, 'POST', resource, undefined, 0, lastUpdated, 201);
    }
    case 'update': {
      // A conditional update's body id, if any, must be the matched resource's (R4 http.html#cond-update).
      const resource = prepare(op.type, id!, op.resource, { ignoreBodyId: false });
      return stage(op, 'PUT', resource, live?.resource, current?.versionId ?? 0, lastUpdated, live ? 200 : 201);
    }
    case 'patch': {
      if (!id || !current) throw notFound(`${op.type}/${id ?? '?'} is not known`);
      if (!live) throw gone(`${op.type}/${id} was deleted`);
      const patched = applyJsonPatch(live.resource!, op.patch);
      const resource = prepare(op.type, id, patched, { ignoreBodyId: false });
      return stage(op, 'PATCH', resource, live.resource, current.versionId, lastUpdated, 200);
    }
    case 'delete': {
      // Deleting what does not exist, or is already deleted, succeeds and writes nothing (R4 http.html#delete).
      if (!id || !live) return { op, outcome: { status: 204, type: op.type, id } };
      return {
        op,
        outcome: { status: 204, type: op.type, id, versionId: current!.versionId + 1, lastUpdated },
        pending: { type: op.type, id, previous: live.resource, method: 'DELETE', previousVersion: current!.versionId },
      };
    }
  }
}

function stage(
  op: WriteOp,
  method: NewVersion['method'],
  resource: fhir4.FhirResource,
  previous: fhir4.FhirResource | undefined,
  previousVersion: number,
  lastUpdated: string,
  status: 200 | 201,
): Planned {
  const versionId = previousVersion + 1;
  return {
    op,
    outcome: { status, type: op.type, id: resource.id, versionId, lastUpdated, resource },
    pending: { type: op.type, id: resource.id!, resource, previous, method, previousVersion },
  };
}

/** Validation of a body about to become a version of `type/id`. */
function prepare(type: string, id: string, body: unknown, { ignoreBodyId }: { ignoreBodyId: boolean }): fhir4.FhirResource {
  assertValidResource(body, type);
  const resource = body;
  if (!ignoreBodyId && resource.id !== undefined && resource.id !== id) {
    throw badRequest(`the resource id '${resource.id}' does not match the id in the URL, '${id}'`, ['id']);
  }
  resource.id = id;
  return resource;
}

/**
 * The enrich hooks see every write of the transaction at once, so that a rule needing data
 * (a patient's CarePlan limits) loads it for the whole batch in one query. A hook that changes
 * a resource sets `changed`, and what is stored must still be valid. Then the server's meta
 * (R4 resource.html#Meta: versionId and lastUpdated belong to the server) is set.
 */
async function enrichAndStamp(ctx: FhirContext, tx: Queryable, planned: readonly Planned[], lastUpdated: string): Promise<void> {
  const staged = planned.map((p, i) => ({ p, i })).filter(({ p }) => p.pending);
  if (ctx.writeHooks.enrich.length > 0 && staged.length > 0) {
    const writes = staged.map(({ p }) => p.pending!);
    for (const hook of ctx.writeHooks.enrich) await hook(ctx, tx, writes);
    for (const { p, i } of staged) {
      if (p.pending!.changed && p.pending!.resource) await indexed(i, async () => assertValidResource(p.pending!.resource, p.op.type));
    }
  }
  for (const { p } of staged) {
    const resource = p.pending!.resource;
    if (!resource) continue;
    resource.meta = { ...resource.meta, versionId: String(p.pending!.previousVersion + 1), lastUpdated };
    p.outcome.resource = resource;
  }
}

/** RFC 6902 JSON Patch on a copy of the stored resource; a failed `test` op is 422, a malformed patch 400. */
function applyJsonPatch(resource: fhir4.FhirResource, patch: unknown): unknown {
  if (!Array.isArray(patch)) {
    throw badRequest('a JSON Patch body must be an array of operations (RFC 6902)');
  }
  try {
    return applyPatch(structuredClone(resource), patch as Operation[], true, true, true).newDocument;
  } catch (err) {
    if (err instanceof JsonPatchError) {
      const where = `operation ${(err.index ?? 0) + 1}`;
      if (err.name === 'TEST_OPERATION_FAILED') {
        throw unprocessable(`JSON Patch ${where}: test failed`);
      }
      throw new OperationOutcomeError(err.name === 'OPERATION_PATH_UNRESOLVABLE' ? 422 : 400, {
        code: 'invalid',
        diagnostics: `JSON Patch ${where}: ${err.message.split('\n')[0]}`,
      });
    }
    throw err;
  }
}
