import { hasUnconfirmedSubject } from '../kernel/reading-attribution';
import { parseDateRange } from '../search/date-range';
import { convertUnit } from '../terminology/convert';
import { LOINC, type Limit } from './plan';

/**
 * Judging one Observation against the limits of its patient's plans: the observation's own
 * code and each component's (a blood-pressure panel is judged on systolic and diastolic), the
 * value converted to the limit's unit. Pure: the hooks load the plans and write the Flags.
 */
export const INTERPRETATION_SYSTEM = 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation';
/** Marks what this server added (interpretation, referenceRange), so a re-judged version replaces it. */
export const LIMIT_SOURCE_URL = 'http://rpm.example.org/fhir/StructureDefinition/monitoring-limit-source';

export interface PlanLimits {
  careplanId: string;
  patient: string;
  /** Epoch ms; undefined = open. */
  periodStart?: number;
  periodEnd?: number;
  limits: Limit[];
}

export type Direction = 'high' | 'low';

export interface Breach {
  patient: string;
  careplanId: string;
  measure: string;
  display: string;
  direction: Direction;
  critical: boolean;
  observationId: string;
  /** The observation time, Flag.period.start. */
  time: string;
  text: string;
}

const NOT_JUDGED = new Set(['entered-in-error', 'cancelled']);

const INTERPRETATION: Record<string, string> = { H: 'High', L: 'Low', HH: 'Critical high', LL: 'Critical low' };

/**
 * The patient id of a judged Observation, or undefined when it is not judged at all. A
 * preliminary reading is judged (a questionable SpO2 may be real), unless nobody has confirmed
 * whose it is (UNCONFIRMED_SUBJECT_TAG: a shared cuff's reading may be another person's): it is
 * judged once it is final, as a new version.
 */
export function judgedPatient(obs: fhir4.Observation): string | undefined {
  return isJudged(obs) ? subjectPatient(obs) : undefined;
}

/**
 * Whether the rules judge a reading of this status and tags, whoever's it is: the one rule for
 * its limits and for whether it counts as a measurement taken (./adherence.ts).
 */
export function isJudged(obs: Pick<fhir4.Observation, 'status' | 'meta'>): boolean {
  if (NOT_JUDGED.has(obs.status)) return false;
  return !(obs.status === 'preliminary' && hasUnconfirmedSubject(obs));
}

/** The id of the Patient the Observation's subject names, whether it is judged or not. */
export function subjectPatient(obs: fhir4.Observation): string | undefined {
  return /^Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(obs.subject?.reference ?? '')?.[1];
}

/** When the reading was taken: effective[x], else issued. */
export function observationTime(obs: fhir4.Observation): { iso: string; ms: number } | undefined {
  const text = obs.effectiveDateTime ?? obs.effectiveInstant ?? obs.effectivePeriod?.start ?? obs.effectivePeriod?.end ?? obs.issued;
  const range = text ? parseDateRange(text) : undefined;
  return range && text ? { iso: text, ms: range.low } : undefined;
}

interface Element {
  node: { interpretation?: fhir4.CodeableConcept[]; referenceRange?: fhir4.ObservationReferenceRange[] };
  codes: string[];
  quantity?: fhir4.Quantity;
}

function elementsOf(obs: fhir4.Observation): Element[] {
  const loinc = (cc: fhir4.CodeableConcept | undefined) => (cc?.coding ?? []).filter((c) => c.system === LOINC && c.code).map((c) => c.code!);
  const elements: Element[] = [{ node: obs, codes: loinc(obs.code), quantity: obs.valueQuantity }];
  for (const component of obs.component ?? []) elements.push({ node: component, codes: loinc(component.code), quantity: component.valueQuantity });
  return elements;
}

const isOurs = (x: { extension?: fhir4.Extension[] }) => x.extension?.some((e) => e.url === LIMIT_SOURCE_URL) ?? false;
/**
 * A re-sent reading (a create of an id that exists, never written) is compared with the stored
 * version to tell a retry from another reading. The judgement is the server's, made against the
 * plans of its day: the stored version's is carried onto the re-sent copy, element by element,
 * in place of any of ours it holds, so that a retry after the physician changed the limits is
 * still the same reading.
 */
export function carryJudgement(from: fhir4.Observation, to: fhir4.Observation): void {
  const stored = elementsOf(from);
  for (const [i, { node }] of elementsOf(to).entries()) {
    const interpretation = [...(node.interpretation ?? []).filter((x) => !isOurs(x)), ...(stored[i]?.node.interpretation ?? []).filter(isOurs)];
    const referenceRange = [...(node.referenceRange ?? []).filter((x) => !isOurs(x)), ...(stored[i]?.node.referenceRange ?? []).filter(isOurs)];
    if (interpretation.length) node.interpretation = interpretation;
    else delete node.interpretation;
    if (referenceRange.length) node.referenceRange = referenceRange;
    else delete node.referenceRange;
  }
}

const fmt = (n: number) => String(Number(n.toPrecision(6)));

/**
 * Which of a limit's bounds a value breaks, read with its comparator (R4 Quantity.comparator: the
 * true value is beyond the one stated, as a meter's HI or LO reading is): `> 600 mg/dL` breaks a
 * high limit of 600, and says nothing of a low one it is not above; `< 20` the converse. `<=` and
 * `>=` bound the value the same way, without the edge itself.
 */
function breachOf(value: number, comparator: fhir4.Quantity['comparator'], limit: Limit): Direction | undefined {
  const above = comparator === '>' || comparator === '>=';
  const below = comparator === '<' || comparator === '<=';
  const strict = comparator === '>' || comparator === '<';
  if (limit.high !== undefined && !below && (value > limit.high || (strict && above && value === limit.high))) return 'high';
  if (limit.low !== undefined && !above && (value < limit.low || (strict && below && value === limit.low))) return 'low';
  return undefined;
}

function quantity(value: number, unit: string): fhir4.Quantity {
  return { value, unit, system: 'http://unitsofmeasure.org', code: unit };
}

/**
 * Judges `obs` against `plans` (already those of its patient). With `annotate`, the
 * observation or component that broke a limit gets `interpretation` and the broken limit as
 * `referenceRange`, and what an earlier judgement added is removed; returns whether the
 * resource changed, and the breaches. Readings in range are left as sent: measured on the
 * bench, annotating every judged reading grew its JSON by a third and cost more than the rules.
 */
export function judgeObservation(
  obs: fhir4.Observation,
  observationId: string,
  plans: readonly PlanLimits[],
  annotate: boolean,
): { breaches: Breach[]; changed: boolean } {
  const patient = judgedPatient(obs);
  const time = observationTime(obs);
  const breaches: Breach[] = [];
  let changed = false;
  if (!patient || !time) return { breaches, changed };
  const covering = plans.filter((p) => p.patient === patient && (p.periodStart === undefined || p.periodStart <= time.ms) && (p.periodEnd === undefined || time.ms <= p.periodEnd));

  for (const element of elementsOf(obs)) {
    const value = element.quantity?.value;
    const unit = element.quantity?.code ?? element.quantity?.unit;
    if (annotate && (element.node.interpretation?.some(isOurs) || element.node.referenceRange?.some(isOurs))) {
      element.node.interpretation = element.node.interpretation?.filter((i) => !isOurs(i));
      element.node.referenceRange = element.node.referenceRange?.filter((r) => !isOurs(r));
      if (!element.node.interpretation?.length) delete element.node.interpretation;
      if (!element.node.referenceRange?.length) delete element.node.referenceRange;
      changed = true;
    }
    if (typeof value !== 'number' || !unit || element.codes.length === 0) continue;
    let worst: { code: string; rank: number; careplanId: string } | undefined;
    const ranges: fhir4.ObservationReferenceRange[] = [];
    for (const plan of covering) {
      // Per measure and direction of this plan, the most severe limit broken.
      const found = new Map<string, { limit: Limit; converted: number; direction: Direction }>();
      for (const limit of plan.limits) {
        if (!element.codes.includes(limit.measure)) continue;
        const converted = convertUnit(value, unit, limit.unit);
        if (converted === undefined) continue;
        const direction = breachOf(converted, element.quantity!.comparator, limit);
        if (!direction) continue;
        const key = `${limit.measure}|${direction}`;
        const seen = found.get(key);
        if (!seen || (limit.critical && !seen.limit.critical)) found.set(key, { limit, converted, direction });
      }
      for (const { limit, converted, direction } of found.values()) {
        const bound = direction === 'high' ? limit.high! : limit.low!;
        const beyond = element.quantity!.comparator ? `${element.quantity!.comparator} ` : '';
        const shown = unit === limit.unit ? `${beyond}${fmt(value)} ${unit}` : `${beyond}${fmt(value)} ${unit} (${beyond}${fmt(converted)} ${limit.unit})`;
        breaches.push({
          patient,
          careplanId: plan.careplanId,
          measure: limit.measure,
          display: limit.display,
          direction,
          critical: limit.critical,
          observationId,
          time: time.iso,
          text: `${limit.display} ${shown} ${direction === 'high' ? 'above' : 'below'} ${limit.critical ? 'critical ' : ''}limit ${fmt(bound)} ${limit.unit}`,
        });
        // The limit broken, as the reference range the value is judged by.
        ranges.push({
          ...(limit.low !== undefined ? { low: quantity(limit.low, limit.unit) } : {}),
          ...(limit.high !== undefined ? { high: quantity(limit.high, limit.unit) } : {}),
          text: `${limit.critical ? 'Critical limit' : 'Limit'} of CarePlan/${plan.careplanId}`,
          extension: [{ url: LIMIT_SOURCE_URL, valueReference: { reference: `CarePlan/${plan.careplanId}` } }],
        });
        const code = `${direction === 'high' ? 'H' : 'L'}${limit.critical ? direction === 'high' ? 'H' : 'L' : ''}`;
        const rank = limit.critical ? 2 : 1;
        if (!worst || rank > worst.rank) worst = { code, rank, careplanId: plan.careplanId };
      }
    }
    if (!annotate) continue;
    if (ranges.length) {
      element.node.referenceRange = [...(element.node.referenceRange ?? []), ...ranges];
      changed = true;
    }
    if (worst) {
      element.node.interpretation = [
        ...(element.node.interpretation ?? []),
        {
          coding: [{ system: INTERPRETATION_SYSTEM, code: worst.code, display: INTERPRETATION[worst.code] }],
          extension: [{ url: LIMIT_SOURCE_URL, valueReference: { reference: `CarePlan/${worst.careplanId}` } }],
        },
      ];
      changed = true;
    }
  }
  return { breaches, changed };
}
