import { type AccessPolicy, unrestricted } from '../access/policy';
import { conflict, OperationOutcomeError } from '../kernel/outcome';
import { parseStoredJson } from '../kernel/input-limits';
import { carryKeptDecimals, sameJson, stringifyKeepingDecimals } from '../kernel/json-decimals';
import { addSearchIndexWrites } from '../search';
import type { Transaction } from '../store/db';
import { addVersionWrites, type CurrentVersion, lockCurrent, type NewVersion, ReplayUnitError, runVersionWrites } from '../store/repository';
import { WriteStatement } from '../store/write-statement';
import { conformanceError } from './conform';
import type { PipelineContext } from './context';
import { forOp, type ResolvedOp, type WriteOp, WriteOpError, type WriteOutcome } from './ops';
import { plan, type Planned, statusOf } from './plan';
import { resolveTarget, targetKey } from './resolve';
import type { CommittedWrite, PendingWrite, UnwrittenOp } from './stages';

/**
 * The one unit of work of the write pipeline (docs/DESIGN.md "Data flow"). Every door writes
 * through it: REST interactions and batch entries (`executeWrites`), transaction Bundles (with a
 * reference-rewrite seam), device payloads (per entry), and the server's own writes — Flags the
 * rules raise, `$evaluate`, the adherence check — which join the unit of the change that caused
 * them (`uow.apply` from a rules hook), so every committed write reaches the after-commit stage.
 */

export interface ApplyOptions {
  /** Who asks; the server's own writes (Flags) run unrestricted. */
  policy?: AccessPolicy;
  /**
   * Runs once every op's target is resolved (ids assigned, conditions searched) and before any
   * is planned: a transaction rewrites `urn:uuid:` and conditional references between its
   * entries here. Throw an OperationOutcomeError naming the entry to refuse.
   */
  beforePlan?: (uow: UnitOfWork, resolved: readonly ResolvedOp[]) => Promise<void>;
  /** The references of a resource `beforePlan` will still rewrite: conditions cannot judge them before. */
  pendingReferences?: (resource: unknown) => string[];
  /**
   * How a refusal names another op it collides with (a transaction: that op's Bundle.entry, since
   * it reorders its entries and op indices mean nothing to its client).
   */
  nameOp?: (opIndex: number) => string;
}

/** Per-entry units answer each op with its outcome or its refusal. */
export type EntryResult = WriteOutcome | OperationOutcomeError;

/** How often a unit is run (a lost create race, plans changed under a cached copy) before the client gets 409. */
const REPLAYS = 3;

export class UnitOfWork {
  /** Every version this unit has written so far, nested writes included, in write order. */
  readonly committed: CommittedWrite[] = [];
  /**
   * Ops that succeeded without writing a version: an update or patch that changed nothing
   * (unchangedVersion), a create matched to what exists, a delete of nothing. Audited like
   * writes, seen by no rule.
   */
  readonly unwritten: UnwrittenOp[] = [];
  private savepoints = 0;

  constructor(
    readonly ctx: PipelineContext,
    readonly tx: Transaction,
  ) {}

  /** All or nothing: the outcomes in op order, or a WriteOpError naming the first refused op. */
  async apply(ops: readonly WriteOp[], options: ApplyOptions = {}): Promise<WriteOutcome[]> {
    return (await this.run(ops, options, false)) as WriteOutcome[];
  }

  /**
   * Per entry (batch entries, device readings): each op succeeds or fails alone. The ops are
   * written together, set-based, with refusals of single ops (validation, rights, a stage's
   * verdict) set aside; if that fails as a whole, each op is replayed under a SAVEPOINT of its
   * own. Ops that share a target run in waves (the first op of each target, then the second, …),
   * so that each sees the one before it, as separate requests would: one reading a gateway sent
   * twice no longer makes the whole payload run entry by entry.
   */
  async applyEach(ops: readonly WriteOp[], options: ApplyOptions = {}, fresh: (i: number) => WriteOp = replayable(ops)): Promise<EntryResult[]> {
    const results: EntryResult[] = new Array(ops.length);
    for (const wave of wavesByTarget(ops)) {
      const answered = await this.applyWave(
        wave.map((i) => ops[i]!),
        options,
        (k) => fresh(wave[k]!),
      );
      wave.forEach((i, k) => (results[i] = answered[k]!));
    }
    return results;
  }

  /** Ops with distinct targets: set-based first, then one by one if that failed as a whole. */
  private async applyWave(ops: readonly WriteOp[], options: ApplyOptions, fresh: (i: number) => WriteOp): Promise<EntryResult[]> {
    const whole = await this.savepoint();
    try {
      const results = await this.run(ops, options, true);
      await this.release(whole);
      return results;
    } catch (err) {
      if (err instanceof ReplayUnitError) throw err;
      await this.rollbackTo(whole);
      this.ctx.log.debug({ err }, 'per-entry unit failed as a whole; replaying entry by entry');
    }
    const results: EntryResult[] = [];
    for (const i of ops.keys()) {
      const mark = await this.savepoint();
      try {
        const [outcome] = await this.run([fresh(i)], options, false);
        await this.release(mark);
        results.push(outcome!);
      } catch (err) {
        if (err instanceof ReplayUnitError) throw err;
        await this.rollbackTo(mark);
        if (err instanceof WriteOpError) results.push(err.cause);
        else if (err instanceof OperationOutcomeError) results.push(err);
        else throw err;
      }
    }
    return results;
  }

  private async savepoint(): Promise<{ name: string; committed: number; unwritten: number }> {
    const name = `uow_${++this.savepoints}`;
    await this.tx.query(`SAVEPOINT ${name}`);
    return { name, committed: this.committed.length, unwritten: this.unwritten.length };
  }

  private async release(mark: { name: string }): Promise<void> {
    await this.tx.query(`RELEASE SAVEPOINT ${mark.name}`);
  }

  /** Undoes everything since the savepoint, including what it had recorded as committed. */
  private async rollbackTo(mark: { name: string; committed: number; unwritten: number }): Promise<void> {
    await this.tx.query(`ROLLBACK TO SAVEPOINT ${mark.name}`);
    this.committed.length = mark.committed;
    this.unwritten.length = mark.unwritten;
  }

  /**
   * resolve → authorize → validate → enrich → judge → conform → write → rules. With `perEntry`,
   * a refused op is reported in its slot and the others go on; else the first refusal throws.
   */
  private async run(ops: readonly WriteOp[], options: ApplyOptions, perEntry: boolean): Promise<EntryResult[]> {
    const policy = options.policy ?? unrestricted;
    const refused = new Map<number, OperationOutcomeError>();
    const refuse = (i: number, err: OperationOutcomeError) => {
      if (!perEntry) throw new WriteOpError(i, err);
      if (!refused.has(i)) refused.set(i, err);
    };
    const attempt = async <T>(i: number, fn: () => Promise<T> | T): Promise<T | undefined> => {
      try {
        return await forOp(i, fn);
      } catch (err) {
        if (!(err instanceof WriteOpError) || !perEntry) throw err;
        refuse(i, err.cause);
        return undefined;
      }
    };

    // resolve
    const resolved: Array<ResolvedOp | undefined> = [];
    // In an atomic unit each condition sees the ops before it; a per-entry unit's ops stand alone
    // (those sharing a condition are replayed one by one, each after the other's write).
    for (const [i, op] of ops.entries()) {
      const unit = perEntry ? undefined : { before: resolved.slice() as ResolvedOp[], pendingReferences: options.pendingReferences };
      resolved.push(await attempt(i, () => resolveTarget(this.tx, op, policy, unit)));
    }
    if (!perEntry) checkOnceEach(resolved as ResolvedOp[], options.nameOp ?? ((i) => `op ${i}`));
    if (options.beforePlan) await options.beforePlan(this, resolved as ResolvedOp[]);

    // Lock the rows being replaced (and read the ones matched), then plan each op: authorize,
    // preconditions, patch, schema.
    const current = await this.lockTargets(resolved);
    const lastUpdated = new Date().toISOString();
    const planned: Array<Planned | undefined> = [];
    for (const [i, r] of resolved.entries()) {
      if (!r) {
        planned.push(undefined);
        continue;
      }
      const row = current.get(`${r.op.type}/${r.id}`);
      const existingMatch = r.existingMatch === true || (r.op.kind === 'create' && r.op.onExistingId === 'match' && row !== undefined);
      const p = await attempt(i, () => plan(r.op, r.id, { existingMatch, createOnly: r.createOnly }, row, lastUpdated, policy));
      // A condition that matched what an earlier create of this unit writes answers with that version.
      const writer = existingMatch && !row ? planned.find((q) => q?.write && q.write.type === r.op.type && q.write.id === r.id) : undefined;
      if (p && writer) Object.assign(p.outcome, { versionId: writer.outcome.versionId, lastUpdated });
      planned.push(p);
    }

    // validate, enrich, judge: the capabilities' stages see every write of this apply at once.
    const pending = new Map<number, PendingWrite>();
    for (const [i, p] of planned.entries()) {
      if (!p?.write) continue;
      const { type, id, resource, previous, resend } = p.write;
      pending.set(i, { type, id, resource, previous, policy, reject: (err) => refuse(i, err), resend });
    }
    for (const stage of ['validate', 'enrich', 'judge'] as const) {
      if (stage === 'judge') {
        // A completion (plan.ts) changes the status alone: compared as mapped, before the judge
        // adds its judgement of the new version (which the unjudged preliminary one lacks).
        for (const [i, w] of pending) {
          if (refused.has(i) || !planned[i]!.write!.completes || sameButForStatus(w.resource!, w.previous!)) continue;
          refuse(i, otherContent(resolved[i]!.op, w));
        }
      }
      for (const { hook } of this.ctx.stages.of(stage)) {
        const live = [...pending].filter(([i]) => !refused.has(i)).map(([, w]) => w);
        if (live.length) await hook(this, live);
      }
    }

    // An update that changes nothing is answered by the version it would replace; then conform,
    // and stamp the server's meta (R4 resource.html#Meta: versionId and lastUpdated are the server's).
    for (const [i, w] of pending) {
      if (refused.has(i) || !w.resource) continue;
      if (planned[i]!.write!.resend) {
        // A create of an id that exists writes nothing either way: the same reading is answered
        // by the stored version, a different one is refused (ops.ts, onExistingId). A final
        // version re-sent as preliminary is the same, where completions are allowed (ops.ts).
        const op = resolved[i]!.op;
        const demoted = op.kind === 'create' && op.completesPreliminary === true && statusOf(w.previous!) === 'final' && statusOf(w.resource) === 'preliminary';
        const same = demoted ? sameButForStatus(w.resource, w.previous!) : sameJson(withoutMeta(w.resource), withoutMeta(w.previous!));
        if (same) planned[i] = { outcome: planned[i]!.outcome };
        else refuse(i, otherContent(op, w));
        pending.delete(i);
        continue;
      }
      const unchanged = unchangedVersion(w, planned[i]!);
      if (unchanged) {
        planned[i] = unchanged;
        pending.delete(i);
        continue;
      }
      const error = conformanceError(w.type, w.id, w.resource, w.changed === true);
      if (error) {
        refuse(i, error);
        continue;
      }
      const p = planned[i]!;
      w.resource.meta = { ...w.resource.meta, versionId: String(p.write!.previousVersion + 1), lastUpdated };
      p.outcome.resource = w.resource;
    }

    // What succeeded without a write (unchanged, a matched create, a delete of nothing) is kept
    // for the commit stage, which audits it like a write.
    for (const [i, r] of resolved.entries()) {
      const p = planned[i];
      if (!r || !p || p.write || refused.has(i)) continue;
      const row = current.get(`${r.op.type}/${r.id}`);
      const resource = p.outcome.resource ?? (row?.deleted ? undefined : row?.resource);
      p.outcome.unwritten = true;
      this.unwritten.push({ type: r.op.type, id: p.outcome.id, versionId: p.outcome.versionId, method: METHOD[r.op.kind], resource, policy });
    }

    // write: every version, history row and index row of a type in set-based statements.
    const written = await this.write(planned, pending, refused, lastUpdated, policy);

    // rules: in this transaction; nested writes (Flags) go through this unit again.
    for (const { hook } of this.ctx.stages.of('rules')) {
      if (written.length) await hook(this, written);
    }
    return planned.map((p, i) => refused.get(i) ?? p!.outcome);
  }

  private async lockTargets(resolved: ReadonlyArray<ResolvedOp | undefined>): Promise<Map<string, CurrentVersion>> {
    const idsByType = new Map<string, string[]>();
    for (const r of resolved) {
      // Matched conditional creates and idempotent creates too: their answer carries the existing version.
      if (r?.id && (r.op.kind !== 'create' || r.existingMatch || r.op.onExistingId === 'match')) {
        idsByType.set(r.op.type, [...(idsByType.get(r.op.type) ?? []), r.id]);
      }
    }
    const current = new Map<string, CurrentVersion>();
    for (const [type, ids] of idsByType) {
      // A deleted resource's last content decides who may recreate or patch it (plan.ts).
      for (const [id, row] of await lockCurrent(this.tx, type, ids, { lastLive: true })) current.set(`${type}/${id}`, row);
    }
    return current;
  }

  private async write(
    planned: ReadonlyArray<Planned | undefined>,
    pending: ReadonlyMap<number, PendingWrite>,
    refused: ReadonlyMap<number, OperationOutcomeError>,
    lastUpdated: string,
    policy: AccessPolicy,
  ): Promise<CommittedWrite[]> {
    const byType = new Map<string, Array<{ p: Planned; w: PendingWrite }>>();
    for (const [i, w] of pending) {
      if (refused.has(i)) continue;
      byType.set(w.type, [...(byType.get(w.type) ?? []), { p: planned[i]!, w }]);
    }
    const written: CommittedWrite[] = [];
    for (const [type, group] of byType) {
      const versions: NewVersion[] = group.map(({ p, w }) => ({
        id: w.id,
        versionId: p.write!.previousVersion + 1,
        lastUpdated,
        method: p.write!.method,
        resource: w.resource,
      }));
      // The versions and their index rows in one statement: one round trip per type.
      const statement = new WriteStatement();
      const versionWrites = addVersionWrites(statement, type, versions);
      addSearchIndexWrites(statement, type, versions.map((v) => ({ id: v.id, resource: v.resource, isNew: v.versionId === 1 })));
      await runVersionWrites(this.tx, statement, versionWrites);
      for (const [k, { w }] of group.entries()) {
        const v = versions[k]!;
        written.push({ type, id: w.id, versionId: v.versionId, lastUpdated, method: v.method, resource: w.resource, previous: w.previous, policy });
      }
    }
    this.committed.push(...written);
    return written;
  }
}

/**
 * The stored version a PUT or PATCH leaves as it is, once the stages have had their say: the
 * same JSON but for meta.versionId and meta.lastUpdated, which are the server's. R4 leaves it to
 * the server whether such an update makes a version; making one would put a copy in history,
 * judge the reading again and notify subscribers of a change that is not there (a gateway or
 * an EHR re-sending what it sent), so none is made, as HAPI FHIR and Medplum do too. The
 * version's author is part of its content (enrich stamps it): the same body from another
 * author is a new version saying who wrote it.
 */
function unchangedVersion(w: PendingWrite, p: Planned): Planned | undefined {
  const write = p.write!;
  if (!w.previous || (write.method !== 'PUT' && write.method !== 'PATCH')) return undefined;
  if (!sameJson(withoutServerMeta(w.resource!), withoutServerMeta(w.previous))) return undefined;
  const lastUpdated = w.previous.meta?.lastUpdated;
  if (lastUpdated === undefined) return undefined;
  return { outcome: { status: 200, type: w.type, id: w.id, versionId: write.previousVersion, lastUpdated, resource: w.previous } };
}

/** The content without meta: who sent it through which door, and when it was stored, are not the reading. */
function withoutMeta(resource: fhir4.FhirResource): object {
  const { meta: _meta, ...content } = resource;
  carryKeptDecimals(resource, content);
  return content;
}

/** Whether `resource` is `other` but for meta and its status: all a completion may change (plan.ts). */
function sameButForStatus(resource: fhir4.FhirResource, other: fhir4.FhirResource): boolean {
  const content = withoutMeta(resource) as { status?: unknown };
  content.status = statusOf(other);
  return sameJson(content, withoutMeta(other));
}

/** A create of an id that exists, with content the stored resource does not have: not a retry of it. */
function otherContent(op: WriteOp, w: PendingWrite): OperationOutcomeError {
  return conflict(op.kind === 'create' && op.onConflict ? op.onConflict : `${w.type}/${w.id} exists with other content; a create of that id is not a retry of it`);
}

const METHOD: Record<WriteOp['kind'], CommittedWrite['method']> = { create: 'POST', update: 'PUT', patch: 'PATCH', delete: 'DELETE' };

function withoutServerMeta(resource: fhir4.FhirResource): object {
  const { versionId: _v, lastUpdated: _l, ...meta } = resource.meta ?? {};
  const copy = { ...resource, meta: Object.keys(meta).length > 0 ? meta : undefined };
  carryKeptDecimals(resource, copy);
  return copy;
}

/**
 * The stages change resources in place (ids, meta, mapped codes, interpretations, references a
 * transaction rewrote to the ids of its first attempt); a replay must start from the ops as sent.
 * Copies are taken as JSON text before the first attempt, which is cheaper than cloning objects
 * and is only parsed again when a replay happens. Every unit takes them: any unit can be
 * replayed, by a lost create race or by plans changed under a node's cached copy
 * (ReplayUnitError), even one of creates with server-assigned ids.
 */
function replayable(ops: readonly WriteOp[]): (i: number) => WriteOp {
  const pristine = ops.map((op) => ('resource' in op ? stringifyKeepingDecimals(op.resource) : undefined));
  return (i) => {
    const op = ops[i]!;
    return 'resource' in op && pristine[i] !== undefined ? { ...op, resource: parseStoredJson(pristine[i]!) } : op;
  };
}

/**
 * A transaction writes each resource once (R4 http.html#trules); the later entry is refused.
 * A conditional create that matched answers with the resource as it stands before the updates
 * and patches that follow it; one of them changing that resource too is the overlap of
 * resolved identities the same rule fails, never a silent success. (Matching what an earlier
 * create of the unit writes is the point of processing in order, and no overlap: both name it.)
 */
function checkOnceEach(resolved: readonly ResolvedOp[], nameOp: (opIndex: number) => string): void {
  const seen = new Map<string, number>();
  resolved.forEach((r, i) => {
    const key = targetKey(r);
    if (!key) return;
    const first = seen.get(key);
    if (first !== undefined) {
      throw new WriteOpError(i, new OperationOutcomeError(400, { code: 'invalid', diagnostics: `${key} is also written by ${nameOp(first)}; a transaction writes each resource once` }));
    }
    seen.set(key, i);
  });
  resolved.forEach((r, i) => {
    const writer = r.existingMatch && r.id ? seen.get(`${r.op.type}/${r.id}`) : undefined;
    if (writer === undefined || resolved[writer]!.op.kind === 'create') return;
    throw new WriteOpError(i, new OperationOutcomeError(400, {
      code: 'invalid', diagnostics: `the condition matched ${r.op.type}/${r.id}, which ${nameOp(writer)} changes; a transaction acts on each resource once`,
    }));
  });
}

/** Whether two ops name the same resource or the same condition (then they must run one after the other). */
/**
 * The ops' positions in waves: the n-th op naming a target (a condition, or a type and id) is in
 * wave n; ops naming none are in the first. Within a wave no two ops share a target.
 */
function wavesByTarget(ops: readonly WriteOp[]): number[][] {
  const seen = new Map<string, number>();
  const waves: number[][] = [[]];
  for (const [i, op] of ops.entries()) {
    const condition = op.kind === 'create' ? op.ifNoneExist : op.match;
    const key = condition ? `${op.type}?${condition.toString()}` : op.id !== undefined ? `${op.type}/${op.id}` : undefined;
    const wave = key === undefined ? 0 : (seen.get(key) ?? 0);
    if (key !== undefined) seen.set(key, wave + 1);
    (waves[wave] ??= []).push(i);
  }
  return waves.filter((w) => w.length > 0);
}

/**
 * Runs `fn` in one unit of work: one database transaction, then the after-commit stage with
 * every write it committed. A unit that lost a create race (two requests creating one new id)
 * is replayed whole; `fn` must start from its inputs each time.
 */
export async function withUnitOfWork<T>(ctx: PipelineContext, fn: (uow: UnitOfWork, attempt: number) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    let uow: UnitOfWork | undefined;
    try {
      const value = await ctx.db.transaction(async (tx) => {
        uow = new UnitOfWork(ctx, tx);
        const result = await fn(uow, attempt);
        if (uow.committed.length || uow.unwritten.length) for (const { hook } of ctx.stages.of('commit')) await hook(uow);
        return result;
      });
      await runAfterCommit(ctx, uow!.committed);
      return value;
    } catch (err) {
      if (!(err instanceof ReplayUnitError)) throw err;
      if (attempt >= REPLAYS) throw conflict(`${err.message}; retry the request`);
    }
  }
}

async function runAfterCommit(ctx: PipelineContext, committed: readonly CommittedWrite[]): Promise<void> {
  if (committed.length === 0) return;
  for (const { name, hook } of ctx.stages.of('after-commit')) {
    try {
      await hook(committed);
    } catch (err) {
      ctx.log.error({ err, hook: name }, 'after-commit hook failed');
    }
  }
}

export interface ExecuteOptions extends ApplyOptions {
  /** `atomic` (default): all or nothing. `per-entry`: each op alone, answered in its slot. */
  mode?: 'atomic' | 'per-entry';
  /**
   * Atomic units: runs in the unit's transaction once every op is written, before the commit
   * stage (a transaction's reads, R4 http.html#trules, which then see its writes and nothing
   * another writer committed since). A throw rolls the unit back; a replay runs it again.
   */
  thenInUnit?: (uow: UnitOfWork) => Promise<void>;
}

/**
 * The write pipeline for a door: `ops` in one unit of work. Atomic: the outcomes in op order, or
 * the refusal (a WriteOpError naming the op when there are several, the op's own error when
 * there is one).
 */
export async function executeWrites(ctx: PipelineContext, ops: readonly WriteOp[], options?: ExecuteOptions & { mode?: 'atomic' }): Promise<WriteOutcome[]>;
export async function executeWrites(ctx: PipelineContext, ops: readonly WriteOp[], options: ExecuteOptions & { mode: 'per-entry' }): Promise<EntryResult[]>;
export async function executeWrites(ctx: PipelineContext, ops: readonly WriteOp[], options: ExecuteOptions = {}): Promise<EntryResult[]> {
  const fresh = replayable(ops);
  const attemptOps = (attempt: number) => (attempt === 1 ? ops : ops.map((_, i) => fresh(i)));
  if (options.mode === 'per-entry') return withUnitOfWork(ctx, (uow, attempt) => (attempt === 1 ? uow.applyEach(ops, options, fresh) : uow.applyEach(attemptOps(attempt), options)));
  try {
    return await withUnitOfWork(ctx, async (uow, attempt) => {
      const outcomes = await uow.apply(attemptOps(attempt), options);
      await options.thenInUnit?.(uow);
      return outcomes;
    });
  } catch (err) {
    throw err instanceof WriteOpError && ops.length === 1 ? err.cause : err;
  }
}
