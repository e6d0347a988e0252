import type { Issue } from '../kernel/outcome';
import { timingRepeatBreaches } from '../validation/element-invariants';

/**
 * What a timing the server is to schedule must be: the R4 invariants of Timing.repeat (tim-1,
 * tim-2, tim-4..tim-10; R4 has no tim-3), which the core validation holds every Timing to
 * (src/validation/element-invariants.ts, the one implementation: an order stored before it did
 * is recompiled), and the order of each range's ends, which R4 does not state. A schedule read
 * from a timing that breaks them would be a guess: an offset without an event to be after, a
 * countMax without the count it is the top of.
 */
export function repeatIssues(repeat: fhir4.TimingRepeat | undefined, path: string): Issue[] {
  if (!repeat) return [];
  const issues: Issue[] = [];
  const broken = (element: string, rule: string) => issues.push({ code: 'value', diagnostics: `${path}${element}: ${rule}`, expression: [`${path}${element}`] });
  for (const { invariant, element } of timingRepeatBreaches(repeat)) broken(element ? `.${element}` : '', `${invariant.human} (R4 ${invariant.key})`);
  // A range's top below its bottom reads as nothing at all ("3 to 2 times a day").
  const ordered = (low: number | undefined, high: number | undefined, element: string, lower: string) => {
    if (low !== undefined && high !== undefined && high < low) broken(`.${element}`, `must not be less than ${lower} (${low})`);
  };
  ordered(repeat.frequency ?? 1, repeat.frequencyMax, 'frequencyMax', 'frequency');
  ordered(repeat.period, repeat.periodMax, 'periodMax', 'period');
  ordered(repeat.count, repeat.countMax, 'countMax', 'count');
  ordered(repeat.duration, repeat.durationMax, 'durationMax', 'duration');
  return issues;
}
