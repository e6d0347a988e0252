import { createHash } from 'node:crypto';
import { translate } from '../terminology/conceptmap';
import { convertUnit, roundTo } from '../terminology/convert';
import { type ObservationRule, terminology } from '../terminology/load';
import { isUcumCode } from '../terminology/ucum';
import { shiftDecimal } from './decimal';
import {
  BLE_FIELD_SYSTEM, LOINC_SYSTEM, MDC_SYSTEM, type Measurement, READING_ID_SYSTEM, type ReadingDraft, ReadingError, UCUM_SYSTEM, WITHINGS_MEASTYPE_SYSTEM,
} from './reading';

/** Which ConceptMap (terminology/conceptmaps) maps a source code system to LOINC. */
const MAP_OF_SYSTEM: Record<string, string> = {
  [MDC_SYSTEM]: 'mdc-to-loinc',
  [WITHINGS_MEASTYPE_SYSTEM]: 'withings-meastype-to-loinc',
  [BLE_FIELD_SYSTEM]: 'ble-gatt-to-loinc',
};

const DATA_ABSENT_SYSTEM = 'http://terminology.hl7.org/CodeSystem/data-absent-reason';
const DATA_ABSENT_DISPLAY: Record<string, string> = {
  'not-a-number': 'Not a Number (NaN)',
  error: 'Error',
  'positive-infinity': 'Positive Infinity (PINF)',
  'negative-infinity': 'Negative Infinity (NINF)',
};
/** 1900 is the floor the issue sets; a small clock skew of gateways is tolerated. */
const EARLIEST = Date.parse('1900-01-01T00:00:00Z');
const CLOCK_SKEW_MS = 5 * 60_000;
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;

export interface MappedCode {
  coding: fhir4.Coding[];
  text: string;
  loinc?: string;
  rule?: ObservationRule;
}

/**
 * LOINC for a source code through the ConceptMaps. A source code whose map has no verified
 * LOINC keeps its own coding only, with text: never a guessed LOINC. A code no map knows is 422.
 */
export function mapCode(source: fhir4.Coding): MappedCode {
  const rules = terminology().rules;
  if (source.system === LOINC_SYSTEM && source.code) {
    const rule = rules.get(source.code);
    return { coding: [{ system: LOINC_SYSTEM, code: source.code, display: rule?.display ?? source.display }], text: rule?.display ?? source.display ?? source.code, loinc: source.code, rule };
  }
  const mapId = source.system ? MAP_OF_SYSTEM[source.system] : undefined;
  const targets = mapId && source.code ? translate(mapId, source.system!, source.code) : undefined;
  if (!targets) {
    if (source.system && source.code && mapId === undefined && !source.system.startsWith('http://loinc')) {
      // A source system of the integrator's own: kept as is, not coded to LOINC.
      return { coding: [source], text: source.display ?? source.code };
    }
    throw new ReadingError(422, `code ${source.system ?? ''}|${source.code ?? ''} is not known to the ${mapId ?? 'device'} mapping`, 'code-invalid');
  }
  const own = { ...source, display: source.display ?? sourceDisplay(mapId!, source.code!) };
  const target = targets.find((t) => t.code);
  if (!target) return { coding: [own], text: own.display ?? source.code! };
  const rule = rules.get(target.code!);
  const display = rule?.display ?? target.display ?? target.code!;
  return { coding: [{ system: LOINC_SYSTEM, code: target.code, display }, own], text: display, loinc: target.code, rule };
}

function sourceDisplay(mapId: string, code: string): string | undefined {
  const cm = terminology().conceptMaps.get(mapId);
  return cm?.group?.flatMap((g) => g.element).find((e) => e.code === code)?.display;
}

/** The source unit of a source code, when its ConceptMap names it (Withings sends SI units). */
export function sourceUnit(source: fhir4.Coding): string | undefined {
  const mapId = source.system ? MAP_OF_SYSTEM[source.system] : undefined;
  return mapId && source.code ? translate(mapId, source.system!, source.code)?.[0]?.sourceUnit : undefined;
}

/** The value as the profile wants it: allowed units kept, others converted; then the plausible range. */
function quantityOf(m: Measurement, mapped: MappedCode, where: string): fhir4.Quantity | undefined {
  if (!m.value) return undefined;
  const unit = m.unit;
  if (!unit) throw new ReadingError(422, `${where}: a value needs a unit`, 'required');
  if (!isUcumCode(unit)) throw new ReadingError(422, `${where}: '${unit}' is not a UCUM unit`, 'code-invalid');
  const rule = mapped.rule;
  let value = m.value.value;
  let code = unit;
  if (rule?.units && !rule.units.includes(unit)) {
    const target = rule.unit!;
    if (unit === 'm' && target === 'cm') {
      value = shiftDecimal(m.value, 2).value; // exact: metres to centimetres
    } else {
      const converted = convertUnit(value, unit, target);
      if (converted === undefined) throw new ReadingError(422, `${where}: unit ${unit} cannot be converted to ${target}, the unit of ${mapped.loinc}`, 'code-invalid');
      value = roundTo(converted, rule.decimals ?? 2);
    }
    code = target;
  }
  if (rule?.range) {
    const inRuleUnit = code === rule.unit ? value : convertUnit(value, code, rule.unit!);
    const [low, high] = rule.range;
    if (inRuleUnit === undefined || inRuleUnit < low || inRuleUnit > high) {
      throw new ReadingError(422, `${where}: ${m.value.text} ${unit} is outside the physiological range ${low}–${high} ${rule.unit} of ${mapped.loinc} (${rule.display})`, 'value');
    }
  }
  return { value, unit: code === rule?.unit && rule.unitDisplay ? rule.unitDisplay : code, system: UCUM_SYSTEM, code };
}

function absentReason(m: Measurement): fhir4.CodeableConcept | undefined {
  return m.absent ? { coding: [{ system: DATA_ABSENT_SYSTEM, code: m.absent, display: DATA_ABSENT_DISPLAY[m.absent] }], text: DATA_ABSENT_DISPLAY[m.absent] } : undefined;
}

export function checkTime(time: string, now = Date.now()): void {
  if (!DATE_TIME.test(time)) throw new ReadingError(400, `time '${time}' is not a FHIR dateTime with a time zone (e.g. 2026-11-02T08:00:00Z)`, 'value');
  const t = Date.parse(time);
  if (Number.isNaN(t)) throw new ReadingError(400, `time '${time}' is not a date`, 'value');
  if (t > now + CLOCK_SKEW_MS) throw new ReadingError(422, `time ${time} is in the future`, 'value');
  if (t < EARLIEST) throw new ReadingError(422, `time ${time} is before 1900`, 'value');
}

/**
 * The deterministic id of a reading: UUID-shaped hex of SHA-256 over device, code, time and
 * source key, so that a gateway's retry names the same resource (FHIR id syntax, 36 chars).
 */
export function readingId(device: fhir4.Identifier, code: string, time: string, sourceKey: string): string {
  const h = createHash('sha256').update(`${device.system ?? ''}|${device.value ?? ''}\n${code}\n${new Date(time).toISOString()}\n${sourceKey}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export interface ObservationContext {
  device: fhir4.Identifier;
  /** Undefined when the device is not known as a Device resource. */
  deviceRef?: string;
  patientRef: string;
  now?: number;
}

/** One draft as a LOINC-coded, UCUM-unit Observation with the profile its code calls for. */
export function draftToObservation(draft: ReadingDraft, ctx: ObservationContext): fhir4.Observation {
  checkTime(draft.time, ctx.now);
  const mapped = mapCode(draft.source);
  const rule = mapped.rule;
  const coding = [...mapped.coding];
  if (rule?.alsoCode && !coding.some((c) => c.system === rule.alsoCode!.system && c.code === rule.alsoCode!.code)) coding.splice(1, 0, rule.alsoCode);
  const id = readingId(ctx.device, `${draft.source.system}|${draft.source.code}`, draft.time, draft.sourceKey);
  const obs: fhir4.Observation = {
    resourceType: 'Observation',
    id,
    ...(rule?.profile ? { meta: { profile: [rule.profile] } } : {}),
    ...(draft.extension?.length ? { extension: draft.extension } : {}),
    identifier: [{ system: READING_ID_SYSTEM, value: id }],
    status: 'final',
    ...(rule?.profile ? { category: [{ coding: [terminology().vitalSignsCategory], text: 'Vital Signs' }] } : rule?.category ? { category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: rule.category }] }] } : {}),
    code: { coding, text: mapped.text },
    subject: { reference: ctx.patientRef },
    effectiveDateTime: draft.time,
  };
  if (draft.manual) obs.performer = [{ reference: ctx.patientRef }];
  if (draft.components) {
    obs.component = draft.components.map((c, i) => {
      const cm = mapCode(c.source);
      const q = quantityOf(c, cm, `component ${i + 1} (${cm.text})`);
      return { code: { coding: cm.coding, text: cm.text }, ...(q ? { valueQuantity: q } : {}), ...(c.absent ? { dataAbsentReason: absentReason(c) } : {}) };
    });
  } else {
    const q = quantityOf(draft, mapped, mapped.text);
    if (q) obs.valueQuantity = q;
    else if (draft.absent) obs.dataAbsentReason = absentReason(draft);
    else throw new ReadingError(422, `${mapped.text}: the reading has no value`, 'required');
  }
  if (draft.bodySite) obs.bodySite = draft.bodySite;
  if (draft.note) obs.note = [{ text: draft.note }];
  if (ctx.deviceRef) obs.device = { reference: ctx.deviceRef };
  return obs;
}
