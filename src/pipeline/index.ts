/**
 * The write pipeline's public surface: one unit of work (`executeWrites` for a door,
 * `withUnitOfWork` for an operation that reads and writes), the stages capabilities plug into,
 * and the shapes of ops and outcomes.
 */
export { executeWrites, type EntryResult, type ExecuteOptions, type ApplyOptions, UnitOfWork, withUnitOfWork } from './unit-of-work';
export { type ResolvedOp, type WriteOp, WriteOpError, type WriteOutcome } from './ops';
export { findConditionMatches, type UnitSoFar } from './resolve';
export { type CommitHook, type CommittedWrite, type ContentHook, eachWrite, type EraseHook, type ErasedCompartment, type PendingWrite, PIPELINE, type RuleHook, Stages, type UnwrittenOp } from './stages';
export type { PipelineContext } from './context';
export { eraseCompartment, type Erasure } from './erase';
export { isFhirPathPatch } from './fhirpath-patch';
