import type { Issue } from '../kernel/outcome';

/**
 * The R4 invariants of Timing.repeat (datatypes.html#Timing: tim-1, tim-2, tim-4..tim-10; R4 has
 * no tim-3) and the order of each range's ends, for a timing the server is to schedule. The core
 * validation holds every resource to a few datatype invariants only (src/validation/core-invariants.ts);
 * these are checked where a MedicationRequest is compiled, because a schedule read from a timing
 * that breaks them would be a guess: an offset without an event to be after, a countMax without
 * the count it is the top of.
 */

/** Meal codes an offset cannot follow (tim-9): "at a meal" has no before or after. */
const NO_OFFSET = new Set(['C', 'CM', 'CD', 'CV']);

export function repeatIssues(repeat: fhir4.TimingRepeat | undefined, path: string): Issue[] {
  if (!repeat) return [];
  const issues: Issue[] = [];
  const broken = (element: string, rule: string) => issues.push({ code: 'value', diagnostics: `${path}.${element}: ${rule}`, expression: [`${path}.${element}`] });
  if (repeat.duration !== undefined && !repeat.durationUnit) broken('durationUnit', 'a duration needs its durationUnit (R4 tim-1)');
  if (repeat.period !== undefined && !repeat.periodUnit) broken('periodUnit', 'a period needs its periodUnit (R4 tim-2)');
  if (repeat.duration !== undefined && repeat.duration < 0) broken('duration', 'must not be negative (R4 tim-4)');
  if (repeat.periodMax !== undefined && repeat.period === undefined) broken('periodMax', 'needs a period, the lower end of its range (R4 tim-6)');
  if (repeat.durationMax !== undefined && repeat.duration === undefined) broken('durationMax', 'needs a duration, the lower end of its range (R4 tim-7)');
  if (repeat.countMax !== undefined && repeat.count === undefined) broken('countMax', 'needs a count, the lower end of its range (R4 tim-8)');
  if (repeat.offset !== undefined && !(repeat.when?.length && !repeat.when.some((w) => NO_OFFSET.has(w)))) {
    broken('offset', `needs a when to be before or after, and none of ${[...NO_OFFSET].join(', ')} (R4 tim-9)`);
  }
  if (repeat.timeOfDay?.length && repeat.when?.length) {
    issues.push({ code: 'value', diagnostics: `${path}: timeOfDay and when cannot both be given (R4 tim-10)`, expression: [path] });
  }
  // A range's top below its bottom reads as nothing at all ("3 to 2 times a day").
  const ordered = (low: number | undefined, high: number | undefined, element: string, lower: string) => {
    if (low !== undefined && high !== undefined && high < low) broken(element, `must not be less than ${lower} (${low})`);
  };
  ordered(repeat.frequency ?? 1, repeat.frequencyMax, 'frequencyMax', 'frequency');
  ordered(repeat.period, repeat.periodMax, 'periodMax', 'period');
  ordered(repeat.count, repeat.countMax, 'countMax', 'count');
  ordered(repeat.duration, repeat.durationMax, 'durationMax', 'duration');
  return issues;
}
