import { readLimits } from '../access/enforce';
import type { GrantStandings } from '../access/grant';
import { withConsents } from '../access/consent';
import { type AccessPolicy, policyFromScopes } from '../access/policy';
import { OperationOutcomeError } from '../kernel/outcome';
import { patientsOf, scanAsOf, withinLimits } from '../search';
import type { Db } from '../store/db';
import { versionsAsOf } from '../store/history';
import { grantEnded } from './grant';
import { appendChunk, checkpoint, type ExportSpec, type Job, type Progress } from './jobs';

/** The error file's name in the chunks table and the manifest's `error` entry type. */
export const ERROR_FILE = 'OperationOutcome';

export interface RunOptions {
  worker: string;
  leaseMs: number;
  /** Resources per batch: one keyset query, one chunk, one checkpoint. */
  batchSize: number;
  /** Asked to stop (server shutdown): the job is left at its last checkpoint for any worker to resume. */
  stopping(): boolean;
  /** Stop after this many batches (tests of resumption). */
  maxBatches?: number;
  /** Whether the grant behind a job still stands (the authorization server's, decision 032). */
  grants: GrantStandings;
}

/**
 * How a run ended: done (every type written), let go (stopped, cancelled, lease lost), or failed
 * because the grant it ran under ended (`failed` says how; nothing more was written).
 */
export type RunResult = 'done' | 'released' | { failed: string };

/**
 * Runs a claimed job from its checkpoint: for each type, keyset batches of the resources as they
 * stood at transactionTime, each batch written as one chunk of NDJSON with the progress that
 * follows it, in one short transaction. A crash between batches loses nothing and repeats
 * nothing; memory holds two batches (the one written, the next being read). The job's grant is
 * asked after before the first read and in each batch's transaction, before its chunks: a grant
 * that has ended stops the export with nothing more written.
 */
export async function runJob(db: Db, job: Job, options: RunOptions): Promise<RunResult> {
  const ended = await grantEnded(db, options.grants, job);
  if (ended !== undefined) return { failed: ended };
  // The kick-off token's scopes, under the Consents and caregiver links as they stand now
  // (decision 015): what a search by that token would show, never more.
  const policy = await withConsents(db, policyFromScopes(job.scopes, job.grant), { fresh: true });
  const progress: Progress = structuredClone(job.progress);
  const { types } = job.spec;
  const read = (at: Progress) => readBatch(db, job, policy, types[at.typeIndex]!, at.afterId, options.batchSize);
  // The next batch is read while the current one is written: on PostgreSQL the scan and the
  // chunk's write (its WAL) overlap on two connections. Two batches in memory at most.
  let pending: Promise<Batch> | undefined = progress.typeIndex < types.length ? read(progress) : undefined;
  let batches = 0;
  let checkpointedAt = Date.now();
  try {
    while (pending) {
      if (options.stopping() || (options.maxBatches !== undefined && batches >= options.maxBatches)) return 'released';
      const type = types[progress.typeIndex]!;
      const batch = await pending;
      const next: Progress = { ...progress, counts: { ...progress.counts } };
      if (batch.lastId === undefined || batch.scanned < options.batchSize) {
        next.typeIndex += 1;
        delete next.afterId;
      } else {
        next.afterId = batch.lastId;
      }
      pending = next.typeIndex < types.length ? read(next) : undefined;
      // A type with nothing (more) to write moves on without a transaction: a system export
      // crosses 143 types, most of them empty, and repeating an empty scan after a crash costs
      // nothing. The lease is still renewed in time.
      if (batch.lines.length === 0 && batch.errors.length === 0 && Date.now() - checkpointedAt < options.leaseMs / 3) {
        Object.assign(progress, next);
        continue;
      }
      const written = await writeBatch(db, job, options, type, batch, next);
      if (written !== true) return written;
      checkpointedAt = Date.now();
      Object.assign(progress, next);
      batches++;
    }
    return 'done';
  } finally {
    // A read still under way when the run ends is not wanted; its failure is not news.
    pending?.catch(() => undefined);
  }
}

/**
 * The batch's chunks and the progress after it, in one transaction, while the job's grant stands;
 * 'released' when the job is no longer this worker's, `failed` when its grant has ended.
 */
async function writeBatch(db: Db, job: Job, options: RunOptions, type: string, batch: Batch, next: Progress): Promise<true | Exclude<RunResult, 'done'>> {
  const chunks: Array<[string, string[]]> = [[type, batch.lines], [ERROR_FILE, batch.errors]];
  return db
    .transaction(async (tx): Promise<true | Exclude<RunResult, 'done'>> => {
      const ended = await grantEnded(tx, options.grants, job);
      if (ended !== undefined) return { failed: ended };
      for (const [file, lines] of chunks) {
        if (lines.length === 0) continue;
        await appendChunk(tx, job.id, file, next.seq++, lines.length, `${lines.join('\n')}\n`);
        next.counts[file] = (next.counts[file] ?? 0) + lines.length;
      }
      // Last, so that a cancelled job (deleted) rolls the chunks back rather than orphaning them.
      if (!(await checkpoint(tx, job.id, options.worker, options.leaseMs, next))) throw new LostJob();
      return true;
    })
    .catch((err: unknown) => {
      if (err instanceof LostJob) return 'released' as const;
      throw err;
    });
}

class LostJob extends Error {}

interface Batch {
  /** NDJSON lines of the type's file. */
  lines: string[];
  /** NDJSON OperationOutcome lines for the error file. */
  errors: string[];
  /** Rows the scan returned (kept or not), and the last id: the keyset position. */
  scanned: number;
  lastId?: string;
}

async function readBatch(db: Db, job: Job, policy: AccessPolicy, type: string, afterId: string | undefined, limit: number): Promise<Batch> {
  // A Consent given or withdrawn since the kick-off may hide a whole type (a caregiver's): none of it, then.
  if (!policy.allows(type, 's')) return { lines: [], errors: [], scanned: 0 };
  const limits = readLimits(policy, type, 's');
  const typeFilters = (job.spec.typeFilters[type] ?? []).map((q) => new URLSearchParams(q));
  // The granular scope's parameters join every filter (AND); alone, they are the filter.
  const withGrant = (params: URLSearchParams) => {
    const merged = new URLSearchParams(params);
    for (const [k, v] of limits.constraint ?? []) merged.append(k, v);
    return merged;
  };
  const filters = typeFilters.length ? typeFilters.map(withGrant) : limits.constraint ? [withGrant(new URLSearchParams())] : [];
  const rows = await scanAsOf(db, {
    resourceType: type,
    filters,
    ...(limits.compartmentPatientId !== undefined ? { compartmentPatientId: limits.compartmentPatientId } : {}),
    ...(job.spec.patients !== undefined ? { patients: job.spec.patients } : {}),
    reach: (t, action) => readLimits(policy, t, action),
    asOf: job.transactionTime,
    ...(job.spec.since !== undefined ? { since: job.spec.since } : {}),
    ...(afterId !== undefined ? { afterId } : {}),
    limit,
  });
  const lines: string[] = [];
  const errors: string[] = [];
  const changed = rows.filter((r) => r.json === null).map((r) => r.id);
  const earlier = new Map((await versionsAsOf(db, type, changed, job.transactionTime)).map((v) => [v.id, v]));
  for (const row of rows) {
    if (row.json !== null) {
      lines.push(row.json);
      continue;
    }
    const version = earlier.get(row.id);
    if (!version?.json) continue; // created after transactionTime, or deleted at it
    const verdict = judgePastVersion(job.spec, type, JSON.parse(version.json) as fhir4.FhirResource, version.lastUpdated, limits, typeFilters);
    if (verdict === true) lines.push(version.json);
    else if (typeof verdict === 'string') errors.push(errorLine(`${type}/${row.id}: ${verdict}`));
  }
  return { lines, errors, scanned: rows.length, ...(rows.length ? { lastId: rows[rows.length - 1]!.id } : {}) };
}

/**
 * Whether the version of a resource that was current at transactionTime, but has changed since,
 * belongs in the export. The search index describes only the current version, so the export's
 * conditions are judged on the version itself: the caller's limits and the Patient compartment
 * as on write, `_typeFilter` by token parameters (src/search withinLimits). What cannot be judged
 * is left out and reported in the error file: never exported on a guess.
 */
function judgePastVersion(spec: ExportSpec, type: string, resource: fhir4.FhirResource, lastUpdated: string, limits: ReturnType<typeof readLimits>, typeFilters: URLSearchParams[]): boolean | string {
  if (spec.since !== undefined && lastUpdated < spec.since) return false;
  if (spec.patients !== undefined) {
    const members = patientsOf(type, resource);
    if (spec.patients === 'any' ? members.length === 0 : !members.some((p) => spec.patients!.includes(p))) return false;
  }
  try {
    if (!withinLimits(type, resource, limits)) return false;
    if (typeFilters.length && !typeFilters.some((constraint) => withinLimits(type, resource, { constraint }))) return false;
  } catch (err) {
    if (err instanceof OperationOutcomeError) {
      return 'changed after transactionTime, and the version current then could not be judged against the export\'s filters or the access token\'s limits; left out';
    }
    throw err;
  }
  return true;
}

function errorLine(diagnostics: string): string {
  return JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'processing', diagnostics }] });
}
