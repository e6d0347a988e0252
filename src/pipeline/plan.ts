import { applyFhirPathPatch, isFhirPathPatch } from './fhirpath-patch';
import { applyOperation, getValueByPointer, JsonPatchError, type Operation, unescapePathComponent } from 'fast-json-patch';
import { checkOperationCount, ElementBudget } from './patch-limits';
import { mayReadDeleted, requireActingOnReadable, requireAction, requireWritable } from '../access/enforce';
import type { AccessPolicy } from '../access/policy';
import { badRequest, gone, notFound, OperationOutcomeError, preconditionFailed, unprocessable } from '../kernel/outcome';
import { parseStoredJson } from '../kernel/input-limits';
import { containsKeptDecimals, keepNumberText, keptNumberText, stringifyKeepingDecimals } from '../kernel/json-decimals';
import type { CurrentVersion, NewVersion } from '../store/repository';
import { assertValidResource } from '../validation/resource';
import type { WriteOp, WriteOutcome } from './ops';
import { NO_VERSION, type VersionCondition } from '../kernel/etag';

/** What one op will write (nothing for a matched create or a delete of nothing) and will answer. */
export interface Planned {
  outcome: WriteOutcome;
  write?: {
    type: string;
    id: string;
    resource?: fhir4.FhirResource;
    previous?: fhir4.FhirResource;
    method: NewVersion['method'];
    previousVersion: number;
    /** A create of an id that exists (`onExistingId`): compared with `previous` after the stages, never written. */
    resend?: true;
    /**
     * A create of an id that exists whose stored version is `preliminary` and which says `final`
     * (ops.ts, `completesPreliminary`): written as the next version, if after mapping it is the
     * stored one but for its status (unit-of-work.ts); else refused as a resend that differs.
     */
    completes?: true;
  };
}

/**
 * Plans one op against the locked current row, in the order that keeps answers from leaking:
 * the caller's right to act on the resource as it is now (403) comes before If-Match (412), a
 * JSON Patch `test` (422) or any other check of content, so a refusal never says more about a
 * resource than the caller may read. Then the new content is validated and checked again
 * against the caller's compartment.
 */
export function plan(
  op: WriteOp,
  id: string | undefined,
  { existingMatch, createOnly }: { existingMatch: boolean; createOnly?: boolean },
  current: CurrentVersion | undefined,
  lastUpdated: string,
  policy: AccessPolicy,
): Planned {
  const live = current && !current.deleted ? current : undefined;
  switch (op.kind) {
    case 'create': {
      requireAction(policy, op.type, 'c');
      if (existingMatch) {
        // Matched by If-None-Exist (as the caller's own search finds it, resolve.ts) or by a device
        // reading's deterministic id: the caller must be able to see what it is told exists.
        if (live?.resource) requireWritable(policy, op.type, 'c', live.resource, undefined);
        if (op.onExistingId === 'match' && current && op.ifNoneExist === undefined) return resend(op, id!, current, lastUpdated, policy);
        return { outcome: { status: 200, type: op.type, id, versionId: current?.versionId, lastUpdated: live?.resource?.meta?.lastUpdated } };
      }
      const resource = prepare(op.type, id!, op.resource, { bodyId: 'ignored' });
      requireWritable(policy, op.type, 'c', resource, undefined);
      return staged(op.type, 'POST', resource, undefined, 0, lastUpdated, 201);
    }
    case 'update': {
      // Recreating a deleted id is judged by whose it was, as an update of it would be.
      const existing = live?.resource ?? current?.lastLive;
      requireWritable(policy, op.type, live ? 'u' : 'c', undefined, existing);
      if (existing) requireActingOnReadable(policy, op.type, id!, 'u', existing);
      checkIfMatch(op, id, current);
      if (op.ifNoneMatchAny && live) throw preconditionFailed(`If-None-Match *: ${op.type}/${id} exists (version ${current!.versionId})`);
      if (createOnly && live) {
        throw badRequest(`the condition ${op.type}?${op.match!.toString()} matches no resource, and the resource's id names ${op.type}/${id}, which it does not match; a conditional update creates at an id only if none lives there`, ['id']);
      }
      // An update's body says the id of the URL (R4 http.html#update: "SHALL contain an id element
      // with the same value"); a conditional update's may leave it out, and if it has one it must
      // be the matched resource's (R4 http.html#cond-update).
      const resource = prepare(op.type, id!, op.resource, { bodyId: op.match ? 'matching' : 'required' });
      requireWritable(policy, op.type, live ? 'u' : 'c', resource, existing);
      return staged(op.type, 'PUT', resource, live?.resource, current?.versionId ?? 0, lastUpdated, live ? 200 : 201);
    }
    case 'patch': {
      requireAction(policy, op.type, 'u');
      if (!id && op.match) throw notFound(`the condition ${op.type}?${op.match.toString()} matches no resource`);
      const known = knownTo(policy, op.type, current);
      if (!id || !known) throw notFound(`${op.type}/${id ?? '?'} is not known`);
      const existing = live?.resource ?? known.lastLive;
      // Unreadable is unknown to a PATCH (decision 031): 404 before the write checks' 403.
      if (existing) requireActingOnReadable(policy, op.type, id, 'patch', existing);
      requireWritable(policy, op.type, 'u', undefined, existing);
      checkIfMatch(op, id, known);
      if (!live) throw gone(`${op.type}/${id} was deleted`);
      const resource = prepare(op.type, id, applyPatchBody(live.resource!, op.patch), { bodyId: 'matching' });
      requireWritable(policy, op.type, 'u', resource, live.resource);
      return staged(op.type, 'PATCH', resource, live.resource, known.versionId, lastUpdated, 200);
    }
    case 'delete': {
      requireWritable(policy, op.type, 'd', undefined, live?.resource);
      if (live?.resource) requireActingOnReadable(policy, op.type, id!, 'd', live.resource);
      checkIfMatch(op, id, knownTo(policy, op.type, current));
      // Deleting what does not exist, or is already deleted, succeeds and writes nothing (R4 http.html#delete).
      if (!id || !live) return { outcome: { status: 204, type: op.type, id } };
      return {
        outcome: { status: 204, type: op.type, id, versionId: current!.versionId + 1, lastUpdated },
        write: { type: op.type, id, previous: live.resource, method: 'DELETE', previousVersion: current!.versionId },
      };
    }
  }
}

/**
 * A create naming an id that exists (a device reading's deterministic id): the new content goes
 * through the stages as a write would, so that unit-of-work.ts can compare the resource as it
 * would be written with the stored one; it is never written. An id whose resource was deleted is
 * 410: recreating it would let a gateway's retry undo a clinician's deletion (or an erasure),
 * and a 200 would point at a location that answers 410.
 */
function resend(op: WriteOp & { kind: 'create' }, id: string, current: CurrentVersion, lastUpdated: string, policy: AccessPolicy): Planned {
  if (current.deleted || !current.resource) {
    if (current.lastLive) requireWritable(policy, op.type, 'c', current.lastLive, undefined);
    throw gone(`${op.type}/${id} was stored and then deleted; it is not created again`);
  }
  const resource = prepare(op.type, id, op.resource, { bodyId: 'ignored' });
  requireWritable(policy, op.type, 'c', resource, undefined);
  if (op.completesPreliminary && statusOf(current.resource) === 'preliminary' && statusOf(resource) === 'final') {
    // It replaces the stored version: the rights an update of it needs.
    requireWritable(policy, op.type, 'u', resource, current.resource);
    requireActingOnReadable(policy, op.type, id, 'u', current.resource);
    const completion = staged(op.type, 'PUT', resource, current.resource, current.versionId, lastUpdated, 200);
    completion.write!.completes = true;
    return completion;
  }
  return {
    outcome: { status: 200, type: op.type, id, versionId: current.versionId, lastUpdated: current.resource.meta?.lastUpdated, resource: current.resource },
    write: { type: op.type, id, resource, previous: current.resource, method: 'POST', previousVersion: current.versionId, resend: true },
  };
}

/**
 * The stored row as the caller may know it: a deleted resource is judged by the version its
 * deletion removed, and one the caller could not read is, to it, one that never was. Its
 * version is then no answer to If-Match (412 "does not exist", as for an unknown id, never
 * "version 2 is current"), and a PATCH of it is 404, not 410 or 403.
 */
function knownTo(policy: AccessPolicy, type: string, current: CurrentVersion | undefined): CurrentVersion | undefined {
  if (!current?.deleted) return current;
  return mayReadDeleted(policy, type, current.lastLive) ? current : undefined;
}

/** A resource's `status`, whatever its type (a completion changes it alone: ops.ts `completesPreliminary`). */
export const statusOf = (resource: fhir4.FhirResource) => (resource as { status?: unknown }).status;

function checkIfMatch(op: WriteOp & { ifMatch?: VersionCondition }, id: string | undefined, current: CurrentVersion | undefined): void {
  if (op.ifMatch === undefined) return;
  if (op.ifMatch === '*') {
    if (!current || current.deleted) throw preconditionFailed(`If-Match *: ${op.type}/${id ?? ''} does not exist`);
    return;
  }
  const condition = op.ifMatch === NO_VERSION ? 'If-Match (a tag that names no version this server issues)' : `If-Match W/"${op.ifMatch}"`;
  if (!current) throw preconditionFailed(`${condition}: ${op.type}/${id ?? ''} does not exist`);
  if (current.versionId !== op.ifMatch) {
    throw preconditionFailed(`${condition} does not match the current version ${current.versionId} of ${op.type}/${id}`);
  }
}

function staged(
  type: string,
  method: NewVersion['method'],
  resource: fhir4.FhirResource,
  previous: fhir4.FhirResource | undefined,
  previousVersion: number,
  lastUpdated: string,
  status: 200 | 201,
): Planned {
  return {
    outcome: { status, type, id: resource.id, versionId: previousVersion + 1, lastUpdated, resource },
    write: { type, id: resource.id!, resource, previous, method, previousVersion },
  };
}

/**
 * Validation of a body about to become a version of `type/id`. Its own id is `ignored` (a
 * create: the server chooses), `matching` (if present, `id`) or `required` and `id`.
 */
function prepare(type: string, id: string, body: unknown, { bodyId }: { bodyId: 'ignored' | 'matching' | 'required' }): fhir4.FhirResource {
  assertValidResource(body, type);
  const resource = body;
  if (bodyId === 'required' && resource.id === undefined) {
    throw badRequest(`the resource has no id; an update's body must carry the id of the URL, '${id}'`, ['id']);
  }
  if (bodyId !== 'ignored' && resource.id !== undefined && resource.id !== id) {
    throw badRequest(`the resource id '${resource.id}' does not match the id in the URL, '${id}'`, ['id']);
  }
  resource.id = id;
  return resource;
}

/**
 * The decimals an `add` or `replace` put into the document keep the text the patch body wrote
 * them with: a number's kept text is known by the operation that held it (`value`), not by the
 * element it lands in. A value that is an object or array is placed as it is, with its own.
 */
function keepPatchedDecimals(document: object, ops: readonly Operation[]): void {
  for (const op of ops) {
    if (op.op !== 'add' && op.op !== 'replace') continue;
    if (typeof op.value === 'object' && op.value !== null) {
      containsKeptDecimals(document, [op.value]);
      continue;
    }
    const text = typeof op.value === 'number' ? keptNumberText(op, 'value') : undefined;
    if (text === undefined) continue;
    const cut = op.path.lastIndexOf('/');
    const parent: unknown = getValueByPointer(document, op.path.slice(0, cut));
    const last = unescapePathComponent(op.path.slice(cut + 1));
    if (parent === null || typeof parent !== 'object') continue;
    // `-` appends to an array: the value is its last element now.
    const key = Array.isArray(parent) && last === '-' ? String(parent.length - 1) : last;
    keepNumberText(document, parent, key, text);
  }
}

/** A PATCH body on a copy of the stored resource: a FHIRPath Patch (a Parameters resource) or a JSON Patch (an array). */
function applyPatchBody(resource: fhir4.FhirResource, patch: unknown): unknown {
  if (!isFhirPathPatch(patch)) return applyJsonPatch(resource, patch);
  const document = copyKeepingDecimals(resource);
  applyFhirPathPatch(document, patch);
  return document;
}

/** A copy through JSON text that keeps the stored decimals as written (src/kernel/json-decimals.ts), for a patch to change. */
function copyKeepingDecimals(resource: fhir4.FhirResource): Record<string, unknown> {
  return parseStoredJson(stringifyKeepingDecimals(resource)) as Record<string, unknown>;
}

/** RFC 6902 JSON Patch on a copy of the stored resource; a failed `test` op is 422, a malformed patch 400. */
function applyJsonPatch(resource: fhir4.FhirResource, patch: unknown): unknown {
  if (!Array.isArray(patch)) {
    throw badRequest('a JSON Patch body must be an array of operations (RFC 6902)');
  }
  checkOperationCount(patch.length, 'JSON Patch');
  patch.forEach((op: unknown, i) => {
    // fast-json-patch refuses prototype paths with a TypeError (not its JsonPatchError): name
    // them here, with every other non-object operation, as the client's mistake.
    if (op === null || typeof op !== 'object' || Array.isArray(op)) throw badRequest(`JSON Patch operation ${i + 1} is not an object`);
    for (const key of ['path', 'from'] as const) {
      const pointer = (op as Record<string, unknown>)[key];
      if (typeof pointer === 'string' && /(^|\/)(__proto__|constructor|prototype)(\/|$)/.test(pointer)) {
        throw badRequest(`JSON Patch operation ${i + 1}: ${key} '${pointer}' names no FHIR element`);
      }
    }
  });
  // One operation at a time, the document's size checked after each that places a value: a
  // `copy` doubles what it copies, and the result's size is otherwise checked only at the end.
  let patched: unknown = copyKeepingDecimals(resource);
  const budget = new ElementBudget(() => patched);
  let i = 0;
  try {
    for (; i < patch.length; i++) {
      const op = patch[i] as Operation;
      const copied = op.op === 'copy' ? valueAt(patched, op.from) : undefined;
      checkArrayIndices(patched, op, i);
      if ((op.op === 'move' || op.op === 'copy') && typeof op.from === 'string') checkSource(patched, op, i);
      patched = applyOperation(patched, op, true, true, true, i).newDocument;
      if (op.op === 'add' || op.op === 'replace') budget.placed(op.value, `JSON Patch operation ${i + 1}`);
      else if (op.op === 'copy') budget.placed(copied, `JSON Patch operation ${i + 1}`);
    }
    if (patched !== null && typeof patched === 'object') keepPatchedDecimals(patched, patch as Operation[]);
    return patched;
  } catch (err) {
    if (err instanceof JsonPatchError) {
      // The library's own checks of an operation's form name operation 0 whichever it is.
      const where = `operation ${i + 1}`;
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

/** RFC 6901 §4: `array-index = %x30 / ( %x31-39 *(%x30-39) )`; `-` (past the end) is the library's to judge. */
const ARRAY_INDEX = /^(0|[1-9][0-9]*|-)$/;

/**
 * Every step of an operation's path and from that enters an array must be an array index as RFC
 * 6901 §4 writes one. fast-json-patch reads any digits: `add` at `/name/01` inserted at 1, and
 * `1e0` or `+1` were a 422 for some operations and a 400 for others. A malformed index is a 400,
 * as the library's own illegal index is (its OPERATION_PATH_ILLEGAL_ARRAY_INDEX).
 */
function checkArrayIndices(document: unknown, op: Operation, i: number): void {
  for (const key of ['path', 'from'] as const) {
    const pointer = (op as unknown as Record<string, unknown>)[key];
    if (typeof pointer !== 'string') continue;
    let at: unknown = document;
    for (const segment of pointer.split('/').slice(1).map(unescapePathComponent)) {
      if (Array.isArray(at)) {
        if (!ARRAY_INDEX.test(segment)) {
          throw badRequest(`JSON Patch operation ${i + 1}: ${key} '${pointer.slice(0, 80)}' has '${segment.slice(0, 20)}' for an array index, which is 0 or digits without a leading zero (RFC 6901 §4)`);
        }
        at = at[Number(segment)];
      } else if (at !== null && typeof at === 'object' && Object.prototype.hasOwnProperty.call(at, segment)) {
        at = (at as Record<string, unknown>)[segment];
      } else {
        break;
      }
    }
  }
}

/**
 * A `move` or `copy` whose source fast-json-patch would trip over with a TypeError (a 500): a
 * `move` into its own child (RFC 6902 §4.4: `from` MUST NOT be a proper prefix of `path`), and a
 * source that names no value (the library checks it only for some targets, not the root).
 */
function checkSource(document: unknown, op: { op: 'move' | 'copy'; from: string; path: string }, i: number): void {
  if (op.op === 'move' && op.path.startsWith(`${op.from}/`)) {
    throw badRequest(`JSON Patch operation ${i + 1}: a move's from ('${op.from.slice(0, 80)}') may not be a prefix of its path (RFC 6902 §4.4)`);
  }
  if (valueAt(document, op.from) === undefined) throw unprocessable(`JSON Patch operation ${i + 1}: from '${op.from.slice(0, 80)}' names no value`);
}

/** The value a `copy` will copy (its size is what the copy adds), or undefined if `from` names none (the operation then fails). */
function valueAt(document: unknown, pointer: unknown): unknown {
  if (typeof pointer !== 'string') return undefined;
  try {
    return getValueByPointer(document, pointer);
  } catch {
    return undefined;
  }
}
