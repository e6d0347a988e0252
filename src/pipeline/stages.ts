import type { AccessPolicy } from '../access/policy';
import { OperationOutcomeError } from '../kernel/outcome';
import type { UnitOfWork } from './unit-of-work';

/**
 * The stages of the one write pipeline (docs/DESIGN.md "Data flow"), in the order they run:
 *
 *   resolve → authorize → validate → enrich → judge → conform → write → rules → commit → after-commit
 *
 * resolve (targets, conditional searches, row locks), authorize (the caller's policy, before
 * any answer that depends on content), conform (schema again for what a stage changed, and
 * every declared profile) and write (versions, history, index rows) are the pipeline's
 * own. Capabilities plug into the others by name; the order is this list, never the order in
 * which server.ts happens to register them.
 */
export const PIPELINE = ['resolve', 'authorize', 'validate', 'enrich', 'judge', 'conform', 'write', 'rules', 'commit', 'after-commit'] as const;

/** A resource about to be written, after the schema check, before meta is assigned. */
export interface PendingWrite {
  type: string;
  id: string;
  /** Undefined for a delete. A hook may change it in place (then set `changed`). */
  resource?: fhir4.FhirResource;
  /** The version being replaced, if any. */
  previous?: fhir4.FhirResource;
  /** Set by a hook that changed `resource`: it is checked against the schema again before it is stored. */
  changed?: boolean;
  /**
   * A create of an id that exists (a re-sent device reading): never written, only compared with
   * `previous` after the stages. What a stage derives from the server's state rather than from
   * the request belongs to `previous` as it was stored.
   */
  readonly resend?: boolean;
  /** Who asks for this write (the server's own writes run unrestricted). */
  readonly policy: AccessPolicy;
  /**
   * Refuses this write alone: in an all-or-nothing unit the whole unit fails with this error,
   * in a per-entry unit (batch, device payload) only this entry does.
   */
  reject(error: OperationOutcomeError): void;
}

/** A version as written in this unit's transaction. */
export interface CommittedWrite {
  type: string;
  id: string;
  versionId: number;
  lastUpdated: string;
  method: 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  resource?: fhir4.FhirResource;
  previous?: fhir4.FhirResource;
  readonly policy: AccessPolicy;
}

/**
 * An op that succeeded without writing a version (UnitOfWork.unwritten): `versionId` is the
 * stored version it was answered with, if any (none for a delete of nothing); `resource` that
 * version's content, if live.
 */
export interface UnwrittenOp {
  type: string;
  id?: string;
  versionId?: number;
  method: CommittedWrite['method'];
  resource?: fhir4.FhirResource;
  readonly policy: AccessPolicy;
}

/** validate, enrich, judge: see (and may change or reject) the writes of one apply, all at once. */
export type ContentHook = (uow: UnitOfWork, writes: readonly PendingWrite[]) => Promise<void>;
/** rules: in the transaction, after the versions are written; a throw rolls the whole unit back. */
export type RuleHook = (uow: UnitOfWork, committed: readonly CommittedWrite[]) => Promise<void>;
/**
 * commit: the unit's last statements, in its transaction, once everything it writes is written
 * (`uow.committed`, nested writes too, without those a savepoint undid, and `uow.unwritten`, the
 * ops that succeeded without a write). For what must commit
 * with every write and hold a shared lock as briefly as possible: the audit trail's chain.
 * A throw rolls the whole unit back. A write nobody reads the answer of goes through
 * `uow.tx.later`: it travels with the COMMIT and costs no round trip of its own.
 */
export type CommitHook = (uow: UnitOfWork) => Promise<void>;
/** after-commit: every write the unit committed (nested ones too); failures are logged, never undo. */
export type AfterCommitHook = (committed: readonly CommittedWrite[]) => Promise<void>;

/** A Patient compartment being erased (GDPR Art. 17), as the erase hooks see it. */
export interface ErasedCompartment {
  readonly patientId: string;
  /** The resources erased whole (every version, every index row), ids by type; the Patient among them. */
  readonly resources: ReadonlyMap<string, readonly string[]>;
  /** Who erases (the erasure's own audit record names them). */
  readonly policy: AccessPolicy;
}
/**
 * erase: not a stage of a write but the pipeline's other way of changing data
 * (src/pipeline/erase.ts). Each capability forgets, in the erasing unit's transaction, what it
 * keeps about the compartment in its own tables (plans, Flags' keys, outbox rows, schedules,
 * device identities, grants), and the audit trail records the erasure. A throw rolls the whole
 * erasure back.
 */
export type EraseHook = (uow: UnitOfWork, erased: ErasedCompartment) => Promise<void>;

type Pluggable = 'validate' | 'enrich' | 'judge' | 'rules' | 'commit' | 'after-commit' | 'erase';
type HookOf<S extends Pluggable> = S extends 'rules' ? RuleHook : S extends 'commit' ? CommitHook : S extends 'after-commit' ? AfterCommitHook : S extends 'erase' ? EraseHook : ContentHook;

/**
 * The hooks capabilities plug into the pipeline, each under a name (for the log, the
 * architecture test and the next reader). Hooks of one stage must not depend on each other's
 * order; a hook that needs another's result belongs to a later stage.
 */
export class Stages {
  private readonly hooks: { [S in Pluggable]: Array<{ name: string; hook: HookOf<S> }> } = {
    validate: [],
    enrich: [],
    judge: [],
    rules: [],
    commit: [],
    'after-commit': [],
    erase: [],
  };

  /** Plugs `hook` into `stage`; returns what unplugs it (tests). */
  use<S extends Pluggable>(stage: S, name: string, hook: HookOf<S>): () => void {
    const list = this.hooks[stage] as Array<{ name: string; hook: HookOf<S> }>;
    if (list.some((h) => h.name === name)) throw new Error(`a hook named ${name} is already in stage ${stage}`);
    const entry = { name, hook };
    list.push(entry);
    return () => {
      const at = list.indexOf(entry);
      if (at >= 0) list.splice(at, 1);
    };
  }

  of<S extends Pluggable>(stage: S): ReadonlyArray<{ name: string; hook: HookOf<S> }> {
    return this.hooks[stage] as Array<{ name: string; hook: HookOf<S> }>;
  }

  /** `enrich: devices.mapping, …` per stage, for the start-up log. */
  describe(): Record<Pluggable, string[]> {
    return Object.fromEntries(Object.entries(this.hooks).map(([s, list]) => [s, list.map((h) => h.name)])) as Record<Pluggable, string[]>;
  }
}

/** Runs `check` on each write; an OperationOutcomeError it throws refuses that write alone. */
export async function eachWrite(writes: readonly PendingWrite[], check: (w: PendingWrite) => Promise<void> | void): Promise<void> {
  for (const w of writes) {
    try {
      await check(w);
    } catch (err) {
      if (!(err instanceof OperationOutcomeError)) throw err;
      w.reject(err);
    }
  }
}
