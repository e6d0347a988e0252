import type { PlanLimits } from './judge';
import { plansFingerprint, type PlansRead } from './plans';

/** Beyond this many patients the cache starts again empty: a bound on memory, not a policy. */
const MAX_PATIENTS = 20_000;

/**
 * This server's copy of each patient's active plans with limits, so that judging an Observation
 * need not read them before its write (issue 16: a create in one round trip instead of two).
 * The copy is only a guess: the write it is used for carries the check of `plansUnchanged`, which
 * rolls the unit back when any of its patients' plans changed since (on this node or another),
 * and the unit is replayed with a fresh read (decision 022, "A create in one round trip").
 */
export class PlanCache {
  private readonly entries = new Map<string, { revisions: readonly string[]; plans: readonly PlanLimits[] }>();

  /** The cached plans of all of `patients` and the fingerprint to check them by, or undefined if any is missing. */
  lookup(patients: readonly string[]): { plans: PlanLimits[]; fingerprint: string } | undefined {
    const plans: PlanLimits[] = [];
    const revisions = new Map<string, readonly string[]>();
    for (const p of patients) {
      const entry = this.entries.get(p);
      if (!entry) return undefined;
      revisions.set(p, entry.revisions);
      plans.push(...entry.plans);
    }
    return { plans, fingerprint: plansFingerprint(revisions) };
  }

  remember(read: PlansRead): void {
    if (this.entries.size + read.revisions.size > MAX_PATIENTS) this.entries.clear();
    for (const [patient, revisions] of read.revisions) {
      this.entries.set(patient, { revisions, plans: read.plans.filter((p) => p.patient === patient) });
    }
  }

  forget(patients: readonly string[]): void {
    for (const p of patients) this.entries.delete(p);
  }

  clear(): void {
    this.entries.clear();
  }
}
