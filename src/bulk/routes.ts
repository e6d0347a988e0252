import { Readable } from 'node:stream';
import type { Plugin, Request, ResponseToolkit } from '@hapi/hapi';
import type { GrantStandings } from '../access/grant';
import type { AccessPolicy } from '../access/policy';
import { policyOf } from '../access/request';
import type { FhirContext } from '../fhir/context';
import { checkBodyType, parseJsonBody, preferences, responseType } from '../fhir/negotiation';
import { httpDate } from '../kernel/etag';
import { isValidId } from '../kernel/id';
import { informationOutcome, notFound, OperationOutcomeError } from '../kernel/outcome';
import { patientsInNdjson } from '../audit';
import { ERROR_FILE } from './export';
import { grantEnded } from './grant';
import { createJob, deleteJob, findJob, type Job, readChunks } from './jobs';
import { type KickOff, parametersOfBody, planExport } from './kickoff';
import type { ExportWorker } from './worker';
import { rawQueryOf } from '../kernel/request-target';

/**
 * The Bulk Data Access v2.0.0 endpoints (export.md): kick-off at system, Patient and Group
 * level (GET, or POST with a Parameters body), the status URL a client polls and may DELETE to
 * cancel, and the output files. Status, cancel and files answer only a token of the client, user
 * and patient context that started the job, with its scopes (`ownedBy`); to any other the job
 * does not exist (404), so job ids cannot be probed.
 */
export const STATUS_PATH = '/fhir/bulk-status';
export const FILES_PATH = '/fhir/bulk-files';
/** Seconds a client should wait between polls while a job runs. */
const RETRY_AFTER = '1';
/** Seconds a client refused a kick-off (too many exports of its own under way) should wait. */
const BUSY_RETRY_AFTER = '30';
/** Chunks read per database round trip while a file streams out. */
const CHUNKS_PER_READ = 4;

export const bulkRoutes: Plugin<{ ctx: FhirContext; worker: ExportWorker; grants: GrantStandings }> = {
  name: 'bulk-export',
  register(server, { ctx, worker, grants }) {
    const payload = { parse: false, output: 'data' as const, maxBytes: ctx.config.maxBodyBytes };
    const kickOff = (level: KickOff['level']) => async (request: Request, h: ResponseToolkit) => {
      const policy = policyOf(request);
      const query = request.query as Record<string, string | string[] | undefined>;
      const headers = request.headers as Record<string, string | undefined>;
      responseType(query._format, headers.accept);
      const raw = rawQueryOf(request);
      const params = new URLSearchParams(raw);
      const fromBody = request.method === 'post' && request.payload !== null && (request.payload as Buffer).length > 0;
      let posted: URLSearchParams | undefined;
      if (fromBody) {
        checkBodyType(headers['content-type'], { allowPatch: false });
        posted = parametersOfBody(parseJsonBody(request.payload, ctx.config.inputLimits));
        for (const [k, v] of posted) params.append(k, v);
      }
      const groupId = (request.params as { id?: string }).id;
      if (groupId !== undefined && !isValidId(groupId)) throw notFound(`Group/${groupId.slice(0, 64)} is not known`);
      const prefer = headers.prefer;
      const spec = await planExport(ctx.db, policy, { level, params, ...(posted ? { posted } : {}), prefer, lenient: preferences(prefer).lenient, ...(groupId !== undefined ? { groupId } : {}) });
      const id = await createJob(ctx.db, {
        clientId: policy.clientId,
        // The kick-off as sent; a POST's parameters, merged from its body, as a query.
        request: `${ctx.baseUrl}${request.path.replace(/^\/fhir/, '')}${fromBody && params.size > 0 ? `?${params}` : raw ? `?${raw}` : ''}`,
        spec,
        scopes: policy.scopes,
        grant: {
          clientId: policy.clientId,
          ...(policy.subject !== undefined ? { subject: policy.subject } : {}),
          ...(policy.patient !== undefined ? { patient: policy.patient } : {}),
          ...(policy.fhirUser !== undefined ? { fhirUser: policy.fhirUser } : {}),
        },
        // Its standing bounds the job's (./grant.ts); the server's own access has none.
        ...(policy.grant !== undefined ? { token: policy.grant } : {}),
        transactionTime: new Date().toISOString(),
      }, ctx.config.bulk.maxActiveJobs);
      if (id === undefined) {
        // Bulk Data v2.0.0 export.md allows 429 on kick-off; the client may poll or cancel its own.
        const outcome = { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'throttled', diagnostics: `this client already has ${ctx.config.bulk.maxActiveJobs} exports queued or running (BULK_MAX_ACTIVE_JOBS); wait for one to finish, or cancel one (DELETE its status URL)` }] };
        return h.response(JSON.stringify(outcome)).type('application/fhir+json; charset=utf-8').code(429).header('retry-after', BUSY_RETRY_AFTER);
      }
      worker.kick();
      return h
        .response(JSON.stringify(informationOutcome(`export ${id} accepted; poll the Content-Location`)))
        .type('application/fhir+json; charset=utf-8')
        .code(202)
        .header('content-location', `${ctx.baseUrl}${STATUS_PATH.slice('/fhir'.length)}/${id}`);
    };
    for (const method of ['GET', 'POST'] as const) {
      const options = method === 'POST' ? { payload } : {};
      server.route({ method, path: '/fhir/$export', options, handler: kickOff('system') });
      server.route({ method, path: '/fhir/Patient/$export', options, handler: kickOff('patient') });
      server.route({ method, path: '/fhir/Group/{id}/$export', options, handler: kickOff('group') });
    }

    /** The job, when it exists and is the asker's (`ownedBy`); to anyone else, the same 404 as an unknown job. */
    const ownJob = async (request: Request): Promise<Job> => {
      const id = (request.params as { job: string }).job;
      const job = /^[0-9a-f-]{36}$/.test(id) ? await findJob(ctx.db, id) : undefined;
      if (!job || !ownedBy(job, policyOf(request))) throw notFound(`no export ${id.slice(0, 64)} is known to this requester (cancelled, expired, or never started)`);
      return job;
    };

    server.route({
      method: 'GET',
      path: `${STATUS_PATH}/{job}`,
      handler: async (request, h) => {
        const job = await ownJob(request);
        // A job whose grant has ended polls as the failed job the worker makes of it (or has made),
        // whatever it had got to: no manifest of files produced under a grant that no longer stands.
        const error = job.status === 'failed' ? (job.error ?? 'the export failed') : await grantEnded(ctx.db, grants, job);
        if (error !== undefined) throw new OperationOutcomeError(500, { code: 'exception', diagnostics: error });
        if (job.status !== 'completed') {
          return h.response().code(202).header('x-progress', progressText(job)).header('retry-after', RETRY_AFTER);
        }
        const response = h.response(JSON.stringify(manifest(ctx.baseUrl, job))).type('application/json; charset=utf-8');
        if (job.expiresAt) response.header('expires', httpDate(job.expiresAt));
        return response;
      },
    });

    server.route({
      method: 'DELETE',
      path: `${STATUS_PATH}/{job}`,
      handler: async (request, h) => {
        // Its owner may cancel a job whose grant has ended: deleting a copy is never wider than a grant.
        const job = await ownJob(request);
        await deleteJob(ctx.db, job.id);
        return h.response(JSON.stringify(informationOutcome(`export ${job.id} cancelled; its files are deleted`))).type('application/fhir+json; charset=utf-8').code(202);
      },
    });

    server.route({
      method: 'GET',
      path: `${FILES_PATH}/{job}/{file}`,
      handler: async (request, h) => {
        const job = await ownJob(request);
        const file = /^([A-Za-z]+)\.ndjson$/.exec((request.params as { file: string }).file)?.[1];
        if (job.status !== 'completed' || file === undefined || !job.progress.counts[file]) {
          throw notFound(`export ${job.id} has no file ${(request.params as { file: string }).file.slice(0, 80)}`);
        }
        // Files produced before the grant ended are not served after it.
        const ended = await grantEnded(ctx.db, grants, job);
        if (ended !== undefined) throw notFound(`the files of export ${job.id} are withdrawn: ${ended}`);
        return h.response(chunkStream(ctx, job.id, file, request)).type('application/fhir+ndjson');
      },
    });
  },
};

/**
 * Whether `policy` may see and cancel `job`: the token of the same client, for the same user and
 * patient context, holding every scope the job runs under. A SMART app's client id is shared by
 * all its users, so the client alone would let one user's (or patient's) token read another's
 * export; and a token with narrower scopes must not get files produced under wider ones.
 */
function ownedBy(job: Job, policy: AccessPolicy): boolean {
  return job.clientId === policy.clientId
    && job.grant.subject === policy.subject
    && job.grant.fhirUser === policy.fhirUser
    && job.grant.patient === policy.patient
    && job.scopes.every((s) => policy.scopes.includes(s));
}

/**
 * The file as a stream of its chunks, read a few at a time: memory holds a few chunks, whatever the
 * file's size. The patients of each chunk sent are noted for the download's audit (BALP: who saw
 * whose data), which is recorded when the response has ended, as for any read.
 */
function chunkStream(ctx: FhirContext, jobId: string, file: string, request: Request): Readable {
  const seen = new Set<string>();
  const disclosed: string[] = [];
  request.app.hiddenPatients = disclosed;
  async function* chunks(): AsyncGenerator<Buffer> {
    let after = -1;
    for (;;) {
      const rows = await readChunks(ctx.db, jobId, file, after, CHUNKS_PER_READ);
      if (rows.length === 0) return;
      for (const row of rows) {
        for (const p of patientsInNdjson(row.ndjson)) {
          if (seen.has(p)) continue;
          seen.add(p);
          disclosed.push(p);
        }
        yield Buffer.from(row.ndjson, 'utf8');
      }
      after = rows[rows.length - 1]!.seq;
    }
  }
  return Readable.from(chunks(), { objectMode: false });
}

function progressText(job: Job): string {
  if (job.status === 'queued') return 'queued';
  const written = Object.entries(job.progress.counts).filter(([f]) => f !== ERROR_FILE).reduce((n, [, c]) => n + c, 0);
  return `${job.progress.typeIndex} of ${job.spec.types.length} types done, ${written} resources written`;
}

/** The complete-status body (export.md "Response - Complete Status"). */
export function manifest(baseUrl: string, job: Job): Record<string, unknown> {
  const fileUrl = (file: string) => `${baseUrl}${FILES_PATH.slice('/fhir'.length)}/${job.id}/${file}.ndjson`;
  const entry = (file: string) => ({ type: file, url: fileUrl(file), count: job.progress.counts[file]! });
  return {
    transactionTime: job.transactionTime,
    request: job.request,
    requiresAccessToken: true,
    output: job.spec.types.filter((t) => job.progress.counts[t]).map(entry),
    error: job.progress.counts[ERROR_FILE] ? [entry(ERROR_FILE)] : [],
  };
}
