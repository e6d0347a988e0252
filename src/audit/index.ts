import type { Request, Server } from '@hapi/hapi';
import { type AccessPolicy, unrestricted } from '../access/policy';
import type { FhirContext } from '../fhir/context';
import { stampAuthors } from './authorship';
import { contributeAuditEvent } from './capability';
import { recordErasure } from './erasure';
import { auditRecords, type Observer } from './event';
import { AuditChainer } from './chainer';
import { auditOfRequest, disclosedPatients } from './http';
import { AuditRecorder } from './recorder';
import { eraseQueryKey, QuerySealer } from './sealed-query';
import { auditWrites } from './writes';

export { noteClaimedActor, patientsInNdjson } from './http';
export { auditRoutes } from './search';
export { chainHead, linkHashAt, verifyChain, type VerifyResult } from './chain';
export { VERSION_AUTHOR_URL } from './authorship';
export { ERASED_PATIENT_SYSTEM } from './erasure';

/**
 * The audit trail (docs/decisions/013-audit-trail.md): who did what, when, from where.
 * - commit stage: every version a unit of work writes gets its AuditEvent in the same transaction;
 * - every finished request that read, searched, ran an operation, asked for a token, logged in,
 *   or was refused: an AuditEvent written after the response, in batches (AuditRecorder).
 * AUDIT=false registers nothing (for measuring the cost only).
 */
export interface AuditTrail {
  /** Stores the read audits still waiting and chains every staged write audit (tests, shutdown). */
  flush(): Promise<void>;
  stop(): Promise<void>;
}

export function registerAudit(ctx: FhirContext, server: Server): AuditTrail {
  // Authorship is part of the data, not of the trail: it stays when AUDIT=false.
  ctx.stages.use('enrich', 'audit.authorship', async (_uow, writes) => stampAuthors(writes, ctx.baseUrl));
  contributeAuditEvent();
  const sealer = new QuerySealer(ctx.db);
  ctx.stages.use('erase', 'audit.query-key', async (uow, erased) => {
    await eraseQueryKey(uow.tx, erased.patientId);
    sealer.forget(erased.patientId);
  });
  if (!ctx.config.audit.enabled) return { flush: async () => {}, stop: async () => {} };
  const observer: Observer = { get baseUrl() { return ctx.baseUrl; } };
  const recorder = new AuditRecorder(ctx.db, ctx.log, ctx.config.audit, sealer);
  const chainer = new AuditChainer(ctx.db, ctx.log);
  chainer.start();

  // Staged in the write's transaction, chained right after its commit (decision 014).
  ctx.stages.use('commit', 'audit.writes', async (uow) => auditWrites(uow, observer));
  ctx.stages.use('after-commit', 'audit.chain', async () => chainer.kick());
  ctx.stages.use('erase', 'audit.erasure', (uow, erased) => recordErasure(uow, erased, observer, ctx.config.pseudonymKey));

  server.events.on('response', (request: Request) => {
    let audit;
    try {
      audit = auditOfRequest(request, requestPolicy, observer.baseUrl);
    } catch (err) {
      ctx.log.error({ err: { message: (err as Error).message } }, 'audit of a request failed');
      return;
    }
    if (!audit) return;
    const { fact, disclosed, named, failedEntries } = audit;
    // The records are built now, after the response is sent, so that only their strings wait
    // for the batch: holding the body until then (a searchset is tens of kB) made it outlive the
    // young generation, and its copying and old-space collection cost a search a third of its
    // server CPU (docs/decisions/021-audit-storage.md, "Bodies not kept"); the request's access
    // policy and facts, kept by a closure, cost it ~50 µs more ("Third look").
    const patients = disclosed ? disclosedPatients(disclosed) : [];
    recorder.record(auditRecords(fact, observer, patients.length ? patients : named));
    for (const failed of failedEntries ?? []) recorder.record(auditRecords(failed.fact, observer, failed.named));
  });

  return {
    flush: async () => {
      await recorder.flush();
      await chainer.drain();
    },
    stop: async () => {
      await recorder.stop();
      await chainer.stop();
    },
  };
}

/** The policy a request held, if it got as far as authentication. */
function requestPolicy(request: Request): AccessPolicy | undefined {
  return request.auth.credentials?.policy ?? (request.server.app.servesWithoutTokens ? unrestricted : undefined);
}
