import { keepNumberText } from '../kernel/json-decimals';
import { DATE_TIME_WITH_ZONE } from '../search/date-range';
import type { ReadingIdentity } from './reading-identity';
import { DEVICE_USER_EXTENSION, DOOR_SOURCE_PREFIX, MDC_SYSTEM, type Measurement, READING_ID_SYSTEM, type ReadingDraft, ReadingError, UCUM_SYSTEM } from './reading';

/**
 * A decoded reading as the Observation it asserts, still in the device's own terms (its code
 * system, its unit): the doors only parse. The mapping stage of the write pipeline
 * (./mapping.ts) turns it into the LOINC-coded, UCUM-unit vital sign, as it does for every
 * Observation written through any door.
 */

const DATA_ABSENT_SYSTEM = 'http://terminology.hl7.org/CodeSystem/data-absent-reason';
const DATA_ABSENT_DISPLAY: Record<string, string> = {
  'not-a-number': 'Not a Number (NaN)',
  error: 'Error',
  'positive-infinity': 'Positive Infinity (PINF)',
  'negative-infinity': 'Negative Infinity (NINF)',
};
/** 1900 is the earliest plausible reading; a small clock skew of gateways is tolerated. */
const EARLIEST = Date.parse('1900-01-01T00:00:00Z');
/** How far ahead of the server's clock a reading's time may be (a device's clock runs fast). */
export const CLOCK_SKEW_MS = 5 * 60_000;

export function checkTime(time: string, now = Date.now()): void {
  if (!DATE_TIME_WITH_ZONE.test(time)) throw new ReadingError(400, `time '${time.slice(0, 40)}' is not a FHIR dateTime with a time zone (e.g. 2026-11-02T08:00:00Z)`, 'value');
  const t = Date.parse(time);
  if (Number.isNaN(t)) throw new ReadingError(400, `time '${time}' is not a date`, 'value');
  if (t > now + CLOCK_SKEW_MS) throw new ReadingError(422, `time ${time} is in the future`, 'value');
  if (t < EARLIEST) throw new ReadingError(422, `time ${time} is before 1900`, 'value');
}

/**
 * The value as the device sent it: an MDC unit code stays MDC (the mapping stage makes it UCUM).
 * The number keeps its decimal text in `obs`, so that it is stored with the precision the device
 * gave it (an SFLOAT of 3660 × 10^-2 is 36.60 °C; R4 datatypes.html#decimal: the precision of a
 * decimal has significance). A unit conversion later writes a new number, with its own.
 */
function sourceQuantity(obs: fhir4.Observation, m: Measurement, where: string): fhir4.Quantity | undefined {
  if (!m.value) return undefined;
  if (!m.unit) throw new ReadingError(422, `${where}: a value needs a unit`, 'required');
  const comparator = m.comparator ? { comparator: m.comparator } : {};
  const q: fhir4.Quantity = /^\d+$/.test(m.unit)
    ? { value: m.value.value, ...comparator, system: MDC_SYSTEM, code: m.unit }
    : { value: m.value.value, ...comparator, unit: m.unit, system: UCUM_SYSTEM, code: m.unit };
  keepNumberText(obs, q, 'value', m.value.text);
  return q;
}

function absentReason(m: Measurement): fhir4.CodeableConcept | undefined {
  return m.absent ? { coding: [{ system: DATA_ABSENT_SYSTEM, code: m.absent, display: DATA_ABSENT_DISPLAY[m.absent] }], text: DATA_ABSENT_DISPLAY[m.absent] } : undefined;
}

export interface DraftContext {
  /** `readings`, `ble`, `withings`: recorded in meta.source (urn:rpm:ingest:<door>). */
  door: string;
  device: fhir4.Identifier;
  /** Undefined when the device is not known as a Device resource. */
  deviceRef?: string;
  patientRef: string;
  now?: number;
  /** The database's reading ids (./reading-identity.ts). */
  identity: ReadingIdentity;
  /** The one patient the writer may file readings for (a patient's app): its readings' ids are its own. */
  confinedTo?: string;
}

/** One draft as its unmapped Observation, with the deterministic id of the reading. */
export function draftToObservation(draft: ReadingDraft, ctx: DraftContext): fhir4.Observation {
  checkTime(draft.time, ctx.now);
  const id = ctx.identity.id(ctx.device, `${draft.source.system}|${draft.source.code}`, draft.time, draft.sourceKey, ctx.confinedTo);
  const obs: fhir4.Observation = {
    resourceType: 'Observation',
    id,
    meta: { source: `${DOOR_SOURCE_PREFIX}${ctx.door}`, ...(draft.tags?.length ? { tag: draft.tags } : {}) },
    ...(extensionOf(draft).length ? { extension: extensionOf(draft) } : {}),
    identifier: [{ system: READING_ID_SYSTEM, value: id }],
    status: draft.status ?? 'final',
    code: { coding: [draft.source] },
    subject: { reference: ctx.patientRef },
    effectiveDateTime: draft.time,
  };
  if (draft.manual) obs.performer = [{ reference: ctx.patientRef }];
  if (draft.components) {
    obs.component = draft.components.map((c, i) => {
      const q = sourceQuantity(obs, c, `component ${i + 1}`);
      return { code: { coding: [c.source] }, ...(q ? { valueQuantity: q } : {}), ...(c.absent ? { dataAbsentReason: absentReason(c) } : {}) };
    });
  } else {
    const q = sourceQuantity(obs, draft, draft.source.code ?? 'reading');
    if (q) obs.valueQuantity = q;
    else if (draft.absent) obs.dataAbsentReason = absentReason(draft);
    else throw new ReadingError(422, `${draft.source.system ?? ''}|${draft.source.code ?? ''}: the reading has no value`, 'required');
  }
  if (draft.bodySite) obs.bodySite = draft.bodySite;
  if (draft.note) obs.note = [{ text: draft.note }];
  if (ctx.deviceRef) obs.device = { reference: ctx.deviceRef };
  return obs;
}

/** The door's extensions, then the user index that took the reading (decoded from the device, or named by the gateway). */
function extensionOf(draft: ReadingDraft): fhir4.Extension[] {
  return draft.user === undefined ? (draft.extension ?? []) : [...(draft.extension ?? []), { url: DEVICE_USER_EXTENSION, valueInteger: draft.user }];
}
