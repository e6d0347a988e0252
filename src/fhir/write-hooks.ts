import type { Queryable } from '../store/db';
import type { FhirContext } from './context';

/** A resource about to be written, after validation, before meta is assigned. */
export interface PendingWrite {
  type: string;
  id: string;
  /** Undefined for a delete. An enrich hook may change it in place or replace it. */
  resource?: fhir4.FhirResource;
  /** The version being replaced, if any. */
  previous?: fhir4.FhirResource;
  /** Set by a hook that changed `resource`: it is validated again before it is stored. */
  changed?: boolean;
}

/** A version as committed. */
export interface CommittedWrite {
  type: string;
  id: string;
  versionId: number;
  resource?: fhir4.FhirResource;
  previous?: fhir4.FhirResource;
}

/**
 * The extension points of the one write pipeline (DESIGN.md "Data flow"). Later capabilities
 * (device mapping, CarePlan limits, audit, subscriptions) register here rather than growing a
 * second write path.
 */
export interface WriteHooks {
  /**
   * Adds to or rewrites resources before they are stored (e.g. LOINC codings, interpretation
   * against CarePlan limits). Called once per transaction with all its writes, so that data a
   * rule needs is loaded for the whole batch in one query, not per resource.
   */
  enrich: Array<(ctx: FhirContext, tx: Queryable, writes: PendingWrite[]) => Promise<void>>;
  /** Runs in the write transaction after the versions are written; a throw rolls everything back. */
  inTransaction: Array<(ctx: FhirContext, tx: Queryable, writes: readonly CommittedWrite[]) => Promise<void>>;
  /** Runs after commit; failures are logged, never undo the write. */
  afterCommit: Array<(ctx: FhirContext, writes: readonly CommittedWrite[]) => Promise<void>>;
}

export function emptyWriteHooks(): WriteHooks {
  return { enrich: [], inTransaction: [], afterCommit: [] };
}
