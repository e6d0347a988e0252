import type { VersionCondition } from '../kernel/etag';
import { OperationOutcomeError } from '../kernel/outcome';

/**
 * One write, whatever door it came through (REST, a bundle entry, a device reading, a Flag the
 * rules raise). Conditional forms name a search instead of an id: `ifNoneExist` for create,
 * `match` for update/patch/delete.
 */
export type WriteOp =
  | {
      kind: 'create';
      type: string;
      resource: unknown;
      id?: string;
      ifNoneExist?: URLSearchParams;
      /**
       * With a deterministic `id` (device readings): when a resource already has that id and is,
       * once the stages have mapped and judged the new one, the same but for its meta, write
       * nothing and answer 200 with it, so a gateway's retry creates nothing new. When it differs,
       * the id names another resource: 409, never a 200 that loses the new content. When it was
       * deleted: 410 (a retry must not undo a deletion). Set-based: the ids of a unit are looked
       * up together with the rows it replaces.
       */
      onExistingId?: 'match';
      /** The 409's diagnostics when the stored resource of that id differs (how to tell the two apart). */
      onConflict?: string;
      /**
       * With `onExistingId`, the one change a re-sent resource may make to the stored one: a
       * stored `preliminary` resource that this one repeats with `status: final` is completed,
       * written as its next version like any update (the caller needs the right to update, and
       * every stage judges the new version); what else differs is still the 409. A stored final
       * one that this one repeats as `preliminary` is the same resource (200): nothing goes back.
       */
      completesPreliminary?: true;
    }
  | {
      kind: 'update'; type: string; id?: string; match?: URLSearchParams; resource: unknown; ifMatch?: VersionCondition;
      /** `If-None-Match: *` (RFC 9110 13.1.2): only if the resource does not exist, so a create that never overwrites. */
      ifNoneMatchAny?: boolean;
    }
  | { kind: 'patch'; type: string; id?: string; match?: URLSearchParams; patch: unknown; ifMatch?: VersionCondition }
  | { kind: 'delete'; type: string; id?: string; match?: URLSearchParams; ifMatch?: VersionCondition };

export interface WriteOutcome {
  /** 201 created, 200 updated or matched an existing resource, 204 deleted (or nothing to delete). */
  status: 200 | 201 | 204;
  type: string;
  id?: string;
  versionId?: number;
  lastUpdated?: string;
  resource?: fhir4.FhirResource;
  /** Succeeded without writing (an unchanged update, a matched create, a delete of nothing): `versionId` is the stored one. */
  unwritten?: true;
}

/** An op whose target is known: the id it writes, or the existing resource a conditional create matched. */
export interface ResolvedOp {
  op: WriteOp;
  id: string | undefined;
  existingMatch?: boolean;
  /**
   * A conditional update whose condition matched nothing, at the id its body names: R4
   * http.html#cond-update makes that an update as create, so the id may only be created. A
   * resource living there did not match the condition and is not the caller's to overwrite.
   */
  createOnly?: true;
}

/**
 * A failure of one op of several, so a bundle or a device payload can say which of its entries
 * failed. `cause` keeps the status and issues of the original error.
 */
export class WriteOpError extends Error {
  constructor(
    readonly opIndex: number,
    override readonly cause: OperationOutcomeError,
  ) {
    super(cause.message);
  }
}

/** Runs `fn`, restating an OperationOutcomeError as the failure of op `opIndex`. */
export async function forOp<T>(opIndex: number, fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw err instanceof OperationOutcomeError ? new WriteOpError(opIndex, err) : err;
  }
}
