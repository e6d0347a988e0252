import { randomUUID } from 'node:crypto';
import type { AccessPolicy } from '../access/policy';
import type { Db, Queryable } from '../store/db';

/**
 * The bulk export jobs table (migrations/): what a job asks for, whose grant it runs under,
 * where it stands. Every statement about jobs is here; the routes, the worker
 * and the expiry sweep call these.
 */

/** What to export, fixed at kick-off. */
export interface ExportSpec {
  level: 'system' | 'patient' | 'group';
  /** The types, in output order. */
  types: string[];
  /** `_since`, as an instant. */
  since?: string;
  /** `_typeFilter` queries per type (alternatives, OR). */
  typeFilters: Record<string, string[]>;
  /** Patient and Group level: the reference set (Group members as of kick-off, or every Patient), narrowed by `patient`. */
  patients?: string[] | 'any';
}

/** Whose job it is: the kick-off token's client, user and patient, rebuilt as a policy by the worker. */
export interface GrantContext {
  clientId: string;
  subject?: string;
  patient?: string;
  fhirUser?: string;
}

/** Where a running job stands: the type it is on and the last id written of it. */
export interface Progress {
  typeIndex: number;
  afterId?: string;
  /** Resources written per file (a type, or OperationOutcome for the error file). */
  counts: Record<string, number>;
  /** The next chunk number. */
  seq: number;
}

export type KickOffToken = NonNullable<AccessPolicy['grant']>;

export type JobStatus = 'queued' | 'running' | 'completed' | 'failed';

export interface Job {
  id: string;
  clientId: string;
  status: JobStatus;
  request: string;
  spec: ExportSpec;
  scopes: string[];
  grant: GrantContext;
  /**
   * The kick-off token's jti and authorization grant, whose standing bounds the job's (./grant.ts);
   * absent for the server's own access (AUTH_DISABLED) and for jobs recorded before they were.
   */
  token?: KickOffToken;
  transactionTime: string;
  progress: Progress;
  error?: string;
  expiresAt?: string;
}

interface JobRow {
  id: string;
  client_id: string;
  status: JobStatus;
  request: string;
  spec: ExportSpec;
  grant_scopes: string[];
  grant_context: GrantContext;
  grant_id: string | null;
  token_id: string | null;
  transaction_time: Date | string;
  progress: Partial<Progress>;
  error: string | null;
  expires_at: Date | string | null;
}

const COLUMNS = 'id, client_id, status, request, spec, grant_scopes, grant_context, grant_id, token_id, transaction_time, progress, error, expires_at';

function toJob(r: JobRow): Job {
  return {
    id: r.id,
    clientId: r.client_id,
    status: r.status,
    request: r.request,
    spec: r.spec,
    scopes: r.grant_scopes,
    grant: r.grant_context,
    ...(r.token_id !== null ? { token: { tokenId: r.token_id, ...(r.grant_id !== null ? { grantId: r.grant_id } : {}) } } : {}),
    transactionTime: new Date(r.transaction_time).toISOString(),
    progress: { typeIndex: 0, counts: {}, seq: 0, ...r.progress },
    ...(r.error !== null ? { error: r.error } : {}),
    ...(r.expires_at !== null ? { expiresAt: new Date(r.expires_at).toISOString() } : {}),
  };
}

/**
 * Records a queued job, unless its owner (the client, and the user and patient context of the
 * token: the grant context, as `ownedBy` in ./routes.ts judges) already has `maxActive` jobs
 * queued or running: then undefined, and nothing is written. Every kick-off costs the worker a
 * pass over the data (20 unfinished ones cost 18 s of CPU), so one client cannot queue without end.
 * The count and the insert run under a transaction lock on the owner, so two concurrent
 * kick-offs cannot both see room for one more (a lone INSERT … SELECT … WHERE count < n can:
 * each statement's snapshot misses the other's uncommitted row; the test of 8 concurrent
 * kick-offs let more than the cap through on PostgreSQL without the lock).
 */
export async function createJob(
  db: Db,
  job: { clientId: string; request: string; spec: ExportSpec; scopes: readonly string[]; grant: GrantContext; token?: KickOffToken; transactionTime: string },
  maxActive: number,
): Promise<string | undefined> {
  const id = randomUUID();
  const owner = JSON.stringify([job.clientId, job.grant.subject ?? null, job.grant.patient ?? null, job.grant.fhirUser ?? null]);
  return db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`bulk-export-owner|${owner}`]);
    const { rowCount } = await tx.query(
      `INSERT INTO bulk_export_job (id, client_id, status, request, spec, grant_scopes, grant_context, grant_id, token_id, transaction_time)
       SELECT $1, $2, 'queued', $3, $4, $5, $6, $7, $8, $9
       WHERE (SELECT count(*) FROM bulk_export_job
               WHERE client_id = $2 AND status IN ('queued', 'running')
                 AND grant_context->>'subject' IS NOT DISTINCT FROM $11
                 AND grant_context->>'patient' IS NOT DISTINCT FROM $12
                 AND grant_context->>'fhirUser' IS NOT DISTINCT FROM $13) < $10`,
      [
        id, job.clientId, job.request, JSON.stringify(job.spec), job.scopes, JSON.stringify(job.grant), job.token?.grantId ?? null, job.token?.tokenId ?? null, job.transactionTime,
        maxActive, job.grant.subject ?? null, job.grant.patient ?? null, job.grant.fhirUser ?? null,
      ],
    );
    return rowCount > 0 ? id : undefined;
  });
}

/** A job that has not expired; undefined when unknown, cancelled or expired. */
export async function findJob(db: Queryable, id: string): Promise<Job | undefined> {
  const { rows } = await db.query<JobRow>(`SELECT ${COLUMNS} FROM bulk_export_job WHERE id = $1 AND (expires_at IS NULL OR expires_at > now())`, [id]);
  return rows[0] && toJob(rows[0]);
}

/** Cancels (deletes) a job and its files; false when there was none. */
export async function deleteJob(db: Queryable, id: string): Promise<boolean> {
  return (await db.query('DELETE FROM bulk_export_job WHERE id = $1', [id])).rowCount > 0;
}

/**
 * Claims the oldest job that is queued, or running under a lease that ran out (its worker
 * stopped or crashed): several server processes share the queue, and a restart resumes.
 */
export async function claimJob(db: Queryable, worker: string, leaseMs: number): Promise<Job | undefined> {
  const { rows } = await db.query<JobRow>(
    `UPDATE bulk_export_job SET status = 'running', worker = $1, lease_until = now() + make_interval(secs => $2)
      WHERE id = (SELECT id FROM bulk_export_job
                   WHERE status IN ('queued', 'running') AND (lease_until IS NULL OR lease_until < now())
                   ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
      RETURNING ${COLUMNS}`,
    [worker, leaseMs / 1000],
  );
  return rows[0] && toJob(rows[0]);
}

/**
 * Saves progress and renews the lease, on the caller's transaction with the chunks it wrote:
 * false when the job is no longer this worker's (cancelled, or its lease was taken over), and
 * the caller must roll back and let go.
 */
export async function checkpoint(tx: Queryable, id: string, worker: string, leaseMs: number, progress: Progress): Promise<boolean> {
  const { rowCount } = await tx.query(
    `UPDATE bulk_export_job SET progress = $3, lease_until = now() + make_interval(secs => $4)
      WHERE id = $1 AND worker = $2 AND status = 'running'`,
    [id, worker, JSON.stringify(progress), leaseMs / 1000],
  );
  return rowCount > 0;
}

export async function appendChunk(tx: Queryable, jobId: string, file: string, seq: number, count: number, ndjson: string): Promise<void> {
  await tx.query('INSERT INTO bulk_export_chunk (job_id, file, seq, count, ndjson) VALUES ($1, $2, $3, $4, $5)', [jobId, file, seq, count, ndjson]);
}

/** Marks the job finished (completed, or failed with a reason) and starts its files' time to live. */
export async function finishJob(db: Queryable, id: string, worker: string, outcome: { error?: string }, ttlMs: number): Promise<void> {
  await db.query(
    `UPDATE bulk_export_job SET status = $3, error = $4, completed_at = now(), lease_until = NULL,
            expires_at = now() + make_interval(secs => $5)
      WHERE id = $1 AND worker = $2 AND status = 'running'`,
    [id, worker, outcome.error === undefined ? 'completed' : 'failed', outcome.error ?? null, ttlMs / 1000],
  );
}

/** Deletes jobs (and their files) whose time to live is over; the number deleted. */
export async function deleteExpired(db: Queryable): Promise<number> {
  return (await db.query('DELETE FROM bulk_export_job WHERE expires_at <= now()')).rowCount;
}

/** The NDJSON chunks of one file in order, after chunk `afterSeq`, a few at a time (the download streams them). */
export async function readChunks(db: Queryable, jobId: string, file: string, afterSeq: number, limit: number): Promise<Array<{ seq: number; ndjson: string }>> {
  const { rows } = await db.query<{ seq: number; ndjson: string }>(
    'SELECT seq, ndjson FROM bulk_export_chunk WHERE job_id = $1 AND file = $2 AND seq > $3 ORDER BY seq LIMIT $4',
    [jobId, file, afterSeq, limit],
  );
  return rows;
}
