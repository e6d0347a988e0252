import { findVisibleAmong } from '../access/enforce';
import type { AccessPolicy } from '../access/policy';
import type { Queryable } from '../store/db';
import type { RaisedFlag } from './flags';

/**
 * What a `$check-adherence` (CarePlan's missed measurements, MedicationRequest's missed doses)
 * tells its caller: of the Flags the check raised, those the caller may find, and the missed
 * windows they hold. The check itself judges with the server's view, since what it records is
 * shared (a window is judged once, for everyone); but an answer that counted every window told a
 * caller who may read the plan, and not the readings or doses, whether those existed, window by
 * window (an authorization probe stepped `now` through a hidden patient's readings that way).
 */
export async function flagsShownTo(db: Queryable, policy: AccessPolicy, raised: readonly RaisedFlag[]): Promise<{ missed: number; flags: RaisedFlag[] }> {
  // A caller that may not search Flags is shown none (the check it ran has committed its Flags
  // by now: the answer must not turn into a 403 after the work).
  if (raised.length === 0 || !policy.allows('Flag', 's')) return { missed: 0, flags: [] };
  // A type-level check can raise hundreds: asked in slices a search takes.
  const visible = await findVisibleAmong(db, policy, 'Flag', raised.map((f) => f.id));
  const flags = raised.filter((f) => visible.has(f.id));
  return { missed: flags.reduce((n, f) => n + f.events, 0), flags };
}
