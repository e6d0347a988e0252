import { keptNumberText } from '../kernel/json-decimals';
import { badRequest } from '../kernel/outcome';
import { UNCONFIRMED_SUBJECT_TAG } from '../kernel/reading-attribution';
import { TIME_ZONE } from '../search/date-range';
import { translate } from '../terminology/conceptmap';
import { decodeBle } from './ble';
import { MAX_DECIMAL_EXPONENT, parseDecimal, scaleDecimal } from './decimal';
import type { Payload, PayloadEntry } from './ingest';
import {
  type DoseDraft, type Draft, type Measurement, type ReadingDraft, ReadingError, WITHINGS_ATTRIB_SYSTEM, WITHINGS_DEVICE_SYSTEM, WITHINGS_MEASTYPE_SYSTEM,
} from './reading';

/** A BLE reading's zone, as R4 writes a dateTime's (±14:00 at most). */
const UTC_OFFSET = new RegExp(`^(${TIME_ZONE})$`);

/**
 * The request bodies of the three ingest doors, parsed into payloads of reading drafts. A body
 * that is not the format at all is a 400 for the whole request; a bad reading inside a good body
 * becomes that reading's error entry.
 */
type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

function deviceSpec(body: Json): { identifier: fhir4.Identifier; create: boolean } {
  const device = body.device;
  const identifier = isObject(device) ? device.identifier : undefined;
  if (!isObject(identifier) || typeof identifier.system !== 'string' || typeof identifier.value !== 'string' || !identifier.value) {
    throw badRequest('device.identifier {system, value} is required', ['device.identifier']);
  }
  return { identifier: { system: identifier.system, value: identifier.value }, create: isObject(device) && device.create === true };
}

function explicitPatient(body: Json, query?: URLSearchParams): string | undefined {
  const p = body.patient;
  if (isObject(p) && typeof p.reference === 'string') return p.reference;
  if (p !== undefined && !isObject(p)) throw badRequest('patient must be a Reference {reference: "Patient/id"}', ['patient']);
  return query?.get('patient') ?? undefined;
}

function readingsArray(body: Json): unknown[] {
  if (!Array.isArray(body.readings)) throw badRequest('readings must be an array', ['readings']);
  if (body.readings.length === 0) throw badRequest('readings is empty', ['readings']);
  return body.readings;
}

function entry(fn: () => Draft[]): PayloadEntry {
  try {
    return { drafts: fn() };
  } catch (err) {
    if (err instanceof ReadingError) return { error: err };
    throw err;
  }
}

// ---- POST /ingest/readings ----------------------------------------------------------------

function coding(raw: unknown, where: string): fhir4.Coding {
  if (!isObject(raw) || typeof raw.code !== 'string' || (raw.system !== undefined && typeof raw.system !== 'string')) {
    throw new ReadingError(400, `${where}: code {system, code} is required`, 'required');
  }
  return { system: raw.system as string | undefined, code: raw.code, ...(typeof raw.display === 'string' ? { display: raw.display } : {}) };
}

const ABSENT = new Set(['not-a-number', 'error', 'positive-infinity', 'negative-infinity', 'unknown', 'not-performed', 'masked']);

function normalisedMeasurement(raw: Json, where: string): Measurement {
  const source = coding(raw.code, where);
  // An MDC-coded reading may carry its MDC unit code (MDC_DIM_*): the mapping stage makes it UCUM.
  const unit = typeof raw.unit === 'string' ? raw.unit : undefined;
  if (raw.value === undefined || raw.value === null) {
    const reason = raw.dataAbsentReason;
    if (typeof reason === 'string' && ABSENT.has(reason)) return { source, absent: reason as Measurement['absent'], unit };
    return { source, unit };
  }
  // A number keeps the text the gateway wrote it with (36.60 is not 36.6: R4 datatypes.html#decimal).
  const value = parseDecimal(typeof raw.value === 'number' ? (keptNumberText(raw, 'value') ?? raw.value) : raw.value);
  if (!value) throw new ReadingError(400, `${where}: value ${JSON.stringify(raw.value)} is not a decimal number with an exponent of at most ±${MAX_DECIMAL_EXPONENT}`, 'value');
  return { source, value, unit };
}

/** A reading's `user`: the shared device's user index that took it, an integer 0–255 (255: unknown), as BLE devices number them. */
function deviceUser(raw: unknown, where: string): number | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < 0 || raw > 255) throw new ReadingError(400, `${where}.user must be an integer from 0 to 255 (the device's user index)`, 'value');
  return raw;
}

export function parseReadingsBody(body: unknown): Payload {
  if (!isObject(body)) throw badRequest('the body must be a JSON object {device, readings}');
  const { identifier, create } = deviceSpec(body);
  const entries = readingsArray(body).map((raw, i) =>
    entry(() => {
      const where = `readings[${i}]`;
      if (!isObject(raw)) throw new ReadingError(400, `${where} is not an object`, 'structure');
      if (typeof raw.time !== 'string') throw new ReadingError(400, `${where}.time is required`, 'required');
      const main = normalisedMeasurement(raw, where);
      let components: Measurement[] | undefined;
      if (raw.components !== undefined) {
        if (!Array.isArray(raw.components)) throw new ReadingError(400, `${where}.components must be an array`, 'structure');
        components = raw.components.map((c, k) => {
          if (!isObject(c)) throw new ReadingError(400, `${where}.components[${k}] is not an object`, 'structure');
          return normalisedMeasurement(c, `${where}.components[${k}]`);
        });
      }
      const sourceId = typeof raw.id === 'string' ? raw.id : typeof raw.sourceId === 'string' ? raw.sourceId : '';
      const user = deviceUser(raw.user, where);
      return [{ ...main, time: raw.time, sourceKey: sourceId, ...(components ? { components } : {}), ...(user === undefined ? {} : { user }) }];
    }),
  );
  return { door: 'readings', device: identifier, createDevice: create, patient: explicitPatient(body), entries };
}

// ---- POST /ingest/doses ----------------------------------------------------------------------

const DOSE_STATUS = new Set(['completed', 'not-done']);

/**
 * A pill box's or the home tablet's dose reports: `{device, patient?, doses: [{id?, time,
 * request: {reference} | medication: {system, code}, status?, note?}]}`. `status` is `completed`
 * (taken, the default) or `not-done` (declined).
 */
export function parseDosesBody(body: unknown): Payload {
  if (!isObject(body)) throw badRequest('the body must be a JSON object {device, doses}');
  const { identifier, create } = deviceSpec(body);
  if (!Array.isArray(body.doses) || body.doses.length === 0) throw badRequest('doses must be a non-empty array', ['doses']);
  const entries = body.doses.map((raw, i) =>
    entry((): DoseDraft[] => {
      const where = `doses[${i}]`;
      if (!isObject(raw)) throw new ReadingError(400, `${where} is not an object`, 'structure');
      if (typeof raw.time !== 'string') throw new ReadingError(400, `${where}.time is required`, 'required');
      const status = raw.status ?? 'completed';
      if (typeof status !== 'string' || !DOSE_STATUS.has(status)) throw new ReadingError(400, `${where}.status must be completed or not-done`, 'value');
      const request = raw.request;
      if (request !== undefined && !(isObject(request) && typeof request.reference === 'string')) {
        throw new ReadingError(400, `${where}.request must be a Reference {reference: "MedicationRequest/id"}`, 'structure');
      }
      const medication = raw.medication === undefined ? undefined : coding(raw.medication, `${where}.medication`);
      if (!request && !medication) throw new ReadingError(400, `${where}: request or medication is required`, 'required');
      if (raw.note !== undefined && typeof raw.note !== 'string') throw new ReadingError(400, `${where}.note must be a string`, 'value');
      const sourceKey = typeof raw.id === 'string' ? raw.id : '';
      return [{
        kind: 'dose', time: raw.time, sourceKey, status: status as DoseDraft['status'],
        ...(request ? { request: (request as Json).reference as string } : {}),
        ...(medication ? { medication } : {}),
        ...(typeof raw.note === 'string' ? { note: raw.note } : {}),
      }];
    }),
  );
  return { door: 'doses', device: identifier, createDevice: create, patient: explicitPatient(body), entries };
}

// ---- POST /ingest/ble -------------------------------------------------------------------------

export function parseBleBody(body: unknown): Payload {
  if (!isObject(body)) throw badRequest('the body must be a JSON object {device, readings}');
  const { identifier, create } = deviceSpec(body);
  const defaultOffset = typeof body.utcOffset === 'string' ? body.utcOffset : 'Z';
  const entries = readingsArray(body).map((raw, i) =>
    entry(() => {
      const where = `readings[${i}]`;
      if (!isObject(raw) || typeof raw.characteristic !== 'string' || typeof raw.data !== 'string') {
        throw new ReadingError(400, `${where}: characteristic and data are required`, 'required');
      }
      if (typeof raw.receivedAt !== 'string') throw new ReadingError(400, `${where}.receivedAt is required`, 'required');
      const encoding = raw.encoding ?? 'hex';
      let data: Buffer;
      if (encoding === 'hex') {
        const hex = raw.data.replace(/[\s:]/g, '');
        if (!/^([0-9a-fA-F]{2})+$/.test(hex)) throw new ReadingError(400, `${where}.data is not hex bytes`, 'structure');
        data = Buffer.from(hex, 'hex');
      } else if (encoding === 'base64') {
        if (!/^[A-Za-z0-9+/]+={0,2}$/.test(raw.data)) throw new ReadingError(400, `${where}.data is not base64`, 'structure');
        data = Buffer.from(raw.data, 'base64');
      } else {
        throw new ReadingError(400, `${where}.encoding must be hex or base64`, 'value');
      }
      const utcOffset = typeof raw.utcOffset === 'string' ? raw.utcOffset : defaultOffset;
      if (!UTC_OFFSET.test(utcOffset)) throw new ReadingError(400, `${where}.utcOffset must be Z or ±hh:mm within ±14:00`, 'value');
      const drafts = decodeBle({ characteristic: raw.characteristic, data, receivedAt: raw.receivedAt, utcOffset });
      // The bytes themselves disambiguate two readings of one field at the same second.
      return drafts.map((d) => ({ ...d, sourceKey: `${d.sourceKey}:${data.toString('hex')}` }));
    }),
  );
  return { door: 'ble', device: identifier, createDevice: create, patient: explicitPatient(body), entries };
}

// ---- POST /ingest/withings --------------------------------------------------------------------

const MANUAL_ATTRIB = new Set([2, 4]);
/**
 * attrib 1: measured by a device, but Withings could not tell which of its users it was (a shared
 * cuff or scale); the user says so later in the app, and the group comes again confirmed (0, 5,
 * 7 or 8), or no longer comes for this account (it was someone else's). Meanwhile it is stored
 * `preliminary` and tagged as unconfirmed, which the monitoring rules do not judge; the confirmed
 * group completes it (a new version, `final`, judged then: `completesPreliminary` below).
 */
const AMBIGUOUS_USER_ATTRIB = 1;

/** The unit a Withings meastype's value is in (the ConceptMap's source-unit product): Withings sends SI units. */
function sourceUnit(source: fhir4.Coding): string | undefined {
  return translate('withings-meastype-to-loinc', source.system!, source.code!)?.[0]?.sourceUnit;
}

function withingsGroups(body: Json): unknown[] {
  if (isObject(body.body) && Array.isArray(body.body.measuregrps)) {
    if (body.status !== undefined && body.status !== 0) throw badRequest(`the Withings response has status ${String(body.status)}, not 0 (success)`, ['status']);
    return body.body.measuregrps;
  }
  if (Array.isArray(body.measuregrps)) return body.measuregrps;
  if (Array.isArray(body.measures)) return [body];
  throw badRequest('not a Withings Measure-Getmeas response: body.measuregrps is missing');
}

function withingsMeasurement(type: number, raw: Json, where: string): Measurement {
  if (typeof raw.value !== 'number' || !Number.isInteger(raw.value) || typeof raw.unit !== 'number' || !Number.isInteger(raw.unit)) {
    throw new ReadingError(400, `${where}: value and unit must be integers (value × 10^unit)`, 'value');
  }
  // Real units are −3..0; a huge one would be written out digit by digit (decimal.ts).
  if (Math.abs(raw.unit) > MAX_DECIMAL_EXPONENT) throw new ReadingError(400, `${where}: unit ${raw.unit} is out of range (value × 10^unit, |unit| ≤ ${MAX_DECIMAL_EXPONENT})`, 'value');
  const source = { system: WITHINGS_MEASTYPE_SYSTEM, code: String(type) };
  const unit = sourceUnit(source);
  return { source, value: scaleDecimal(raw.value, raw.unit), unit };
}

export function parseWithingsBody(body: unknown, query: URLSearchParams): Payload {
  if (!isObject(body)) throw badRequest('the body must be a Withings Measure-Getmeas response');
  const entries: PayloadEntry[] = [];
  withingsGroups(body).forEach((g, gi) => {
    if (!isObject(g) || !Array.isArray(g.measures)) {
      entries.push({ error: new ReadingError(400, `measuregrps[${gi}] has no measures`, 'structure') });
      return;
    }
    if (g.category === 2) return; // user objectives, not measurements
    const grpid = String(g.grpid ?? gi);
    if (typeof g.date !== 'number') {
      entries.push({ error: new ReadingError(400, `measuregrps[${gi}].date (UNIX seconds) is required`, 'required') });
      return;
    }
    // A JavaScript Date holds ±8.64e12 s; past that (`1e20`) there is no time to file it under.
    if (!Number.isInteger(g.date) || Math.abs(g.date) > 8.64e12) {
      entries.push({ error: new ReadingError(400, `measuregrps[${gi}].date ${g.date} is not a time in UNIX seconds`, 'value') });
      return;
    }
    const time = new Date(g.date * 1000).toISOString().replace('.000Z', 'Z');
    const device = typeof g.deviceid === 'string' && g.deviceid ? { system: WITHINGS_DEVICE_SYSTEM, value: g.deviceid } : undefined;
    const attrib = typeof g.attrib === 'number' ? g.attrib : undefined;
    // attrib says how the value was taken (device, manual entry, …): provenance, kept as a tag.
    const tags: fhir4.Coding[] = attrib === undefined ? [] : [{ system: WITHINGS_ATTRIB_SYSTEM, code: String(attrib) }];
    const unconfirmed = attrib === AMBIGUOUS_USER_ATTRIB;
    if (unconfirmed) tags.push({ ...UNCONFIRMED_SUBJECT_TAG });
    const common = {
      time, tags, manual: attrib !== undefined && MANUAL_ATTRIB.has(attrib),
      ...(unconfirmed ? { status: 'preliminary' as const } : {}),
      ...(device ? { device } : {}),
    };
    const measures = g.measures as unknown[];
    const bp = measures.flatMap((m, mi) => (isObject(m) && (m.type === 9 || m.type === 10) ? [{ type: m.type, raw: m, mi }] : []));
    if (bp.length > 0) {
      // Types 10 (systolic) and 9 (diastolic) of one group: one blood-pressure panel; 11, the pulse, is its own Observation.
      entries.push(
        entry(() => {
          const components = [...bp].sort((a, b) => b.type - a.type).map(({ type, raw, mi }) => withingsMeasurement(type, raw, `measuregrps[${gi}].measures[${mi}]`));
          return [{ source: { system: 'http://loinc.org', code: '85354-9' }, ...common, components, sourceKey: `withings:${grpid}:bp` }];
        }),
      );
    }
    measures.forEach((m, mi) => {
      const where = `measuregrps[${gi}].measures[${mi}]`;
      if (!isObject(m) || typeof m.type !== 'number') {
        entries.push({ error: new ReadingError(400, `${where}: type is required`, 'required') });
        return;
      }
      if (m.type === 9 || m.type === 10) return;
      entries.push(
        entry(() => {
          const measurement = withingsMeasurement(m.type as number, m, where);
          const position = typeof m.position === 'number' ? `:position:${m.position}` : '';
          return [{ ...measurement, ...common, sourceKey: `withings:${grpid}:${String(m.type)}${position}` }];
        }),
      );
    });
  });
  return { door: 'withings', createDevice: query.get('createDevice') === 'true', patient: query.get('patient') ?? undefined, entries, completesPreliminary: true };
}
