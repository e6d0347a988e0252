import type { CommittedWrite, UnitOfWork, UnwrittenOp } from '../pipeline';
import { patientsOf } from '../search';
import { stageRecords } from './chain';
import { type AuditFact, type AuditRecord, auditRecords, type Observer } from './event';

const INTERACTION: Record<CommittedWrite['method'], { subtype: string; action: AuditFact['action'] }> = {
  POST: { subtype: 'create', action: 'C' },
  PUT: { subtype: 'update', action: 'U' },
  PATCH: { subtype: 'patch', action: 'U' },
  DELETE: { subtype: 'delete', action: 'D' },
};

/**
 * The pipeline's commit stage: one AuditEvent per version the unit wrote (every REST write,
 * bundle entry, device reading, Flag a rule raised), and one per op that succeeded without a
 * write (an update that changed nothing, a create matched to what exists: they name the version
 * they were answered with; a delete of nothing), staged in the unit's own transaction — no
 * audit without its write, no write without its audit — and linked into the chain after commit
 * by the chainer (src/audit/chainer.ts), so that commits do not queue on the chain's head.
 */
export function auditWrites(uow: UnitOfWork, observer: Observer): void {
  stageRecords(uow.tx, [...uow.committed, ...uow.unwritten].flatMap((w) => writeRecords(w, observer)));
}

export function writeRecords(w: CommittedWrite | UnwrittenOp, observer: Observer): AuditRecord[] {
  const { subtype, action } = INTERACTION[w.method];
  const content = w.resource ?? ('previous' in w ? w.previous : undefined);
  return auditRecords(
    {
      kind: 'rest',
      subtype,
      action,
      outcome: '0',
      actor: { policy: w.policy, origin: w.policy.origin },
      what: w.id === undefined ? undefined : w.versionId === undefined ? `${w.type}/${w.id}` : `${w.type}/${w.id}/_history/${w.versionId}`,
      patients: content ? patientsOf(w.type, content) : [],
    },
    observer,
  );
}
