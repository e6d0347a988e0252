import { scaleDecimal, shiftDecimal, type ExactDecimal } from './decimal';
import { decodeFloat, decodeSfloat, type DeviceNumber } from './ieee-float';
import { BLE_FIELD_SYSTEM, type Measurement, type ReadingDraft, ReadingError, statusExtension, BASE } from './reading';

/**
 * Bluetooth GATT health characteristics (layouts: Bluetooth SIG GATT XML, device-facts.md §4),
 * decoded into readings. All multi-byte fields are little-endian. A malformed payload throws
 * ReadingError 400; control-solution glucose results are refused as not patient data.
 */
export interface BlePayload {
  characteristic: string;
  data: Buffer;
  receivedAt: string;
  /** Offset of the device clock (GATT Date Time has none); `Z` unless the gateway says. */
  utcOffset: string;
}

class Bytes {
  private at = 0;
  constructor(
    private readonly data: Buffer,
    readonly characteristic: string,
  ) {}
  need(n: number, field: string): void {
    if (this.at + n > this.data.length) {
      throw new ReadingError(400, `characteristic ${this.characteristic}: ${this.data.length} bytes end before ${field} (byte ${this.at}, needs ${n})`, 'structure');
    }
  }
  u8(field: string): number {
    this.need(1, field);
    return this.data.readUInt8(this.at++);
  }
  u16(field: string): number {
    this.need(2, field);
    const v = this.data.readUInt16LE(this.at);
    this.at += 2;
    return v;
  }
  s16(field: string): number {
    this.need(2, field);
    const v = this.data.readInt16LE(this.at);
    this.at += 2;
    return v;
  }
  u24(field: string): number {
    this.need(3, field);
    const v = this.data.readUIntLE(this.at, 3);
    this.at += 3;
    return v;
  }
  u32(field: string): number {
    this.need(4, field);
    const v = this.data.readUInt32LE(this.at);
    this.at += 4;
    return v;
  }
  sfloat(field: string): DeviceNumber {
    return decodeSfloat(this.u16(field));
  }
  float(field: string): DeviceNumber {
    return decodeFloat(this.u32(field));
  }
  remaining(): number {
    return this.data.length - this.at;
  }
  /** GATT Date Time (0x2A08): undefined when the device does not know the date (year/month/day 0). */
  dateTime(field: string, utcOffset: string): string | undefined {
    const year = this.u16(field);
    const month = this.u8(field);
    const day = this.u8(field);
    const hours = this.u8(field);
    const minutes = this.u8(field);
    const seconds = this.u8(field);
    if (year === 0 || month === 0 || day === 0) return undefined;
    if (month > 12 || day > 31 || hours > 23 || minutes > 59 || seconds > 59) {
      throw new ReadingError(400, `characteristic ${this.characteristic}: ${field} ${year}-${month}-${day} ${hours}:${minutes}:${seconds} is not a date`, 'structure');
    }
    const p = (n: number, w = 2) => String(n).padStart(w, '0');
    return `${p(year, 4)}-${p(month)}-${p(day)}T${p(hours)}:${p(minutes)}:${p(seconds)}${utcOffset}`;
  }
}

function measurement(field: string, n: DeviceNumber, unit: string): Measurement {
  const source = { system: BLE_FIELD_SYSTEM, code: field };
  return n.kind === 'value' ? { source, value: n.decimal, unit } : { source, absent: n.reason, unit };
}

function bits(value: number, names: Record<number, string>): string[] {
  return Object.entries(names)
    .filter(([bit]) => (value >> Number(bit)) & 1)
    .map(([, name]) => name);
}

const BPM_STATUS: Record<number, string> = { 0: 'body-movement', 1: 'cuff-too-loose', 2: 'irregular-pulse', 5: 'improper-position' };
const PLX_MEASUREMENT_STATUS: Record<number, string> = {
  5: 'measurement-ongoing', 6: 'early-estimated-data', 7: 'validated-data', 8: 'fully-qualified-data', 9: 'data-from-measurement-storage',
  10: 'data-for-demonstration', 11: 'data-for-testing', 12: 'calibration-ongoing', 13: 'measurement-unavailable', 14: 'questionable-measurement', 15: 'invalid-measurement',
};
const PLX_SENSOR_STATUS: Record<number, string> = {
  0: 'extended-display-update-ongoing', 1: 'equipment-malfunction', 2: 'signal-processing-irregularity', 3: 'inadequate-signal', 4: 'poor-signal',
  5: 'low-perfusion', 6: 'erratic-signal', 7: 'nonpulsatile-signal', 8: 'questionable-pulse', 9: 'signal-analysis-ongoing', 10: 'sensor-interference',
  11: 'sensor-unconnected-to-user', 12: 'unknown-sensor-connected', 13: 'sensor-displaced', 14: 'sensor-malfunctioning', 15: 'sensor-disconnected',
};
const GLUCOSE_SENSOR_STATUS: Record<number, string> = {
  0: 'device-battery-low', 1: 'sensor-malfunction', 2: 'sample-size-insufficient', 3: 'strip-insertion-error', 4: 'strip-type-incorrect',
  5: 'result-above-device-range', 6: 'result-below-device-range', 7: 'temperature-too-high', 8: 'temperature-too-low', 9: 'strip-pulled-too-soon',
  10: 'general-device-fault', 11: 'time-fault',
};
/** Temperature Type (0x2A1D) → SNOMED CT body sites; only sites with a plain SNOMED concept. */
const TEMPERATURE_SITES: Record<number, { code: string; display: string }> = {
  1: { code: '91470000', display: 'Axillary region' },
  3: { code: '117590005', display: 'Ear structure' },
  4: { code: '7569003', display: 'Finger structure' },
  6: { code: '123851003', display: 'Mouth region' },
  7: { code: '34402009', display: 'Rectum structure' },
  8: { code: '29707007', display: 'Toe structure' },
  9: { code: '42859004', display: 'Tympanic membrane structure' },
};

/** The Bluetooth Base UUID with a 16-bit assigned number in it (Core spec Vol 3 Part B §2.5.1). */
const BASE_UUID = /^0000([0-9A-F]{4})-0000-1000-8000-00805F9B34FB$/;

/**
 * A characteristic's 16-bit assigned number: `2A35`, `0x2A35`, or the 128-bit form in which
 * gateways' BLE stacks report it (Android's getUuid(): `00002a35-0000-1000-8000-00805f9b34fb`).
 */
function assignedNumber(characteristic: string): string {
  const c = characteristic.trim().toUpperCase().replace(/^0X/, '');
  return BASE_UUID.exec(c)?.[1] ?? c;
}

export function decodeBle(p: BlePayload): ReadingDraft[] {
  const c = assignedNumber(p.characteristic);
  const r = new Bytes(p.data, c);
  switch (c) {
    case '2A35':
      return bloodPressure(r, p);
    case '2A37':
      return heartRate(r, p);
    case '2A1C':
      return temperature(r, p);
    case '2A9D':
      return weight(r, p);
    case '2A18':
      return glucose(r, p);
    case '2A5E':
      return plxSpotCheck(r, p);
    case '2A5F':
      return plxContinuous(r, p);
    default:
      throw new ReadingError(422, `characteristic ${p.characteristic} is not one this server decodes (2A35, 2A37, 2A1C, 2A9D, 2A18, 2A5E, 2A5F)`, 'not-supported');
  }
}

function bloodPressure(r: Bytes, p: BlePayload): ReadingDraft[] {
  const flags = r.u8('Flags');
  const unit = flags & 0x01 ? 'kPa' : 'mm[Hg]';
  const systolic = measurement('2A35.systolic', r.sfloat('Systolic'), unit);
  const diastolic = measurement('2A35.diastolic', r.sfloat('Diastolic'), unit);
  const mean = measurement('2A35.mean', r.sfloat('Mean Arterial Pressure'), unit);
  const time = (flags & 0x02 ? r.dateTime('Time Stamp', p.utcOffset) : undefined) ?? p.receivedAt;
  const pulse = flags & 0x04 ? r.sfloat('Pulse Rate') : undefined;
  const userId = flags & 0x08 ? r.u8('User ID') : undefined;
  const status = flags & 0x10 ? r.u16('Measurement Status') : 0;
  const codes = bits(status, BPM_STATUS);
  const range = (status >> 3) & 0x03;
  if (range === 1) codes.push('pulse-rate-exceeds-upper-limit');
  if (range === 2) codes.push('pulse-rate-below-lower-limit');
  const extension = statusExtension(codes);
  const user = userId === undefined ? {} : { user: userId };
  const drafts: ReadingDraft[] = [
    {
      source: { system: BLE_FIELD_SYSTEM, code: '2A35.panel' },
      time,
      sourceKey: '2A35.panel',
      components: [systolic, diastolic, mean],
      extension,
      ...user,
    },
  ];
  if (pulse) drafts.push({ ...measurement('2A35.pulse-rate', pulse, '/min'), time, sourceKey: '2A35.pulse-rate', extension, ...user });
  return drafts;
}


function heartRate(r: Bytes, p: BlePayload): ReadingDraft[] {
  const flags = r.u8('Flags');
  const hr = flags & 0x01 ? r.u16('Heart Rate') : r.u8('Heart Rate');
  const contact = (flags >> 1) & 0x03;
  const extension: fhir4.Extension[] = statusExtension(contact === 2 ? ['sensor-contact-not-detected'] : contact === 3 ? ['sensor-contact-detected'] : []);
  if (flags & 0x08) {
    extension.push({ url: `${BASE}/StructureDefinition/energy-expended`, valueQuantity: { value: r.u16('Energy Expended'), unit: 'kJ', system: 'http://unitsofmeasure.org', code: 'kJ' } });
  }
  if (flags & 0x10) {
    if (r.remaining() % 2 !== 0 || r.remaining() === 0) throw new ReadingError(400, 'characteristic 2A37: RR-Interval bytes are not whole uint16 values', 'structure');
    while (r.remaining() > 0) {
      const rr = r.u16('RR-Interval');
      // Resolution 1/1024 s: kept exact in ms to 4 places (1000/1024 = 0.9765625).
      const ms = scaleDecimal(BigInt(rr) * 9765625n, -7);
      extension.push({ url: `${BASE}/StructureDefinition/rr-interval`, valueQuantity: { value: Number(Number(ms.text).toFixed(4)), unit: 'ms', system: 'http://unitsofmeasure.org', code: 'ms' } });
    }
  }
  return [{ source: { system: BLE_FIELD_SYSTEM, code: '2A37.heart-rate' }, value: scaleDecimal(hr, 0), unit: '/min', time: p.receivedAt, sourceKey: '2A37.heart-rate', extension }];
}

function temperature(r: Bytes, p: BlePayload): ReadingDraft[] {
  const flags = r.u8('Flags');
  const value = r.float('Temperature Measurement Value');
  const time = (flags & 0x02 ? r.dateTime('Time Stamp', p.utcOffset) : undefined) ?? p.receivedAt;
  const type = flags & 0x04 ? r.u8('Temperature Type') : undefined;
  const site = type !== undefined ? TEMPERATURE_SITES[type] : undefined;
  return [
    {
      ...measurement('2A1C.temperature', value, flags & 0x01 ? '[degF]' : 'Cel'),
      time,
      sourceKey: '2A1C.temperature',
      ...(site ? { bodySite: { coding: [{ system: 'http://snomed.info/sct', ...site }] } } : {}),
    },
  ];
}

function weight(r: Bytes, p: BlePayload): ReadingDraft[] {
  const flags = r.u8('Flags');
  const imperial = (flags & 0x01) === 1;
  const raw = r.u16('Weight');
  const time = (flags & 0x02 ? r.dateTime('Time Stamp', p.utcOffset) : undefined) ?? p.receivedAt;
  const userId = flags & 0x04 ? r.u8('User ID') : undefined;
  const user = userId === undefined ? {} : { user: userId };
  const drafts: ReadingDraft[] = [];
  const source = (code: string) => ({ system: BLE_FIELD_SYSTEM, code });
  // 0xFFFF = measurement unsuccessful (GATT XML).
  const w: Measurement =
    raw === 0xffff
      ? { source: source('2A9D.weight'), absent: 'error', unit: imperial ? '[lb_av]' : 'kg' }
      : { source: source('2A9D.weight'), value: imperial ? scaleDecimal(raw, -2) : scaleDecimal(BigInt(raw) * 5n, -3), unit: imperial ? '[lb_av]' : 'kg' };
  drafts.push({ ...w, time, sourceKey: '2A9D.weight', ...user });
  if (flags & 0x08) {
    const bmi = r.u16('BMI');
    const height = r.u16('Height');
    drafts.push({ source: source('2A9D.bmi'), value: scaleDecimal(bmi, -1), unit: 'kg/m2', time, sourceKey: '2A9D.bmi', ...user });
    drafts.push({ source: source('2A9D.height'), value: imperial ? scaleDecimal(height, -1) : scaleDecimal(height, -3), unit: imperial ? '[in_i]' : 'm', time, sourceKey: '2A9D.height', ...user });
  }
  return drafts;
}

function glucose(r: Bytes, p: BlePayload): ReadingDraft[] {
  const flags = r.u8('Flags');
  const sequence = r.u16('Sequence Number');
  let time = r.dateTime('Base Time', p.utcOffset);
  if (flags & 0x01) {
    const offset = r.s16('Time Offset');
    if (time) time = addMinutes(time, offset, p.utcOffset);
  }
  if (!(flags & 0x02)) {
    throw new ReadingError(422, `characteristic 2A18: glucose record ${sequence} carries no concentration`, 'incomplete');
  }
  const concentration = r.sfloat('Glucose Concentration');
  const typeAndLocation = r.u8('Type-Sample Location');
  const type = typeAndLocation & 0x0f;
  const location = typeAndLocation >> 4;
  const status = flags & 0x08 ? r.u16('Sensor Status Annunciation') : 0;
  if (type === 10 || location === 4) {
    throw new ReadingError(422, `characteristic 2A18: glucose record ${sequence} is a control-solution test, not patient data`, 'business-rule');
  }
  const moles = (flags & 0x04) !== 0;
  const field = type === 9 ? '2A18.concentration-isf' : type === 1 || type === 2 ? (moles ? '2A18.concentration-moles' : '2A18.concentration-mass') : '2A18.concentration-other';
  let m: Measurement;
  if (concentration.kind === 'absent') {
    m = { source: { system: BLE_FIELD_SYSTEM, code: field }, absent: concentration.reason, unit: moles ? 'mmol/L' : 'mg/dL' };
  } else {
    // kg/L × 10^5 = mg/dL, mol/L × 10^3 = mmol/L: exact shifts of the decimal.
    m = { source: { system: BLE_FIELD_SYSTEM, code: field }, value: shiftDecimal(concentration.decimal, moles ? 3 : 5), unit: moles ? 'mmol/L' : 'mg/dL' };
  }
  // Sensor status bits 5 and 6: the meter shows HI or LO, the concentration is its range's edge,
  // and the true value lies beyond it (R4 Quantity.comparator), which the limits judge as such.
  if (m.value && status & 0x0020) m.comparator = '>';
  else if (m.value && status & 0x0040) m.comparator = '<';
  const extension = [...statusExtension(bits(status, GLUCOSE_SENSOR_STATUS)), { url: `${BASE}/StructureDefinition/glucose-sequence-number`, valueInteger: sequence }];
  return [{ ...m, time: time ?? p.receivedAt, sourceKey: `2A18.${sequence}`, extension }];
}

function addMinutes(time: string, minutes: number, utcOffset: string): string {
  const t = new Date(time.replace(/([+-]\d\d:\d\d|Z)$/, 'Z')).getTime() + minutes * 60_000;
  return new Date(t).toISOString().replace(/\.\d{3}Z$/, utcOffset);
}

/**
 * PLX Measurement Status (2A5E, 2A5F; device-facts.md §4.3). What the device says is no patient
 * measurement is refused, as a control-solution glucose result is: bit 15 invalid, bit 11 data
 * for testing, bit 10 data for demonstration (filed as final they raised critical Flags). What it
 * says is not yet, or not surely, the result is stored as `preliminary`: bit 14 questionable,
 * bit 5 measurement ongoing, bit 6 early estimated data. Those are still judged against the
 * patient's limits (monitoring/judge.ts judges preliminary readings): a low SpO2 estimate may be
 * real, and the Flag's reading says it is preliminary.
 */
const PLX_REFUSED_STATUS = [15, 11, 10];
const PLX_PRELIMINARY_STATUS = [14, 5, 6];

function plxMeasurementStatus(r: Bytes): { codes: string[]; status?: 'preliminary' } {
  const status = r.u16('Measurement Status');
  const refused = PLX_REFUSED_STATUS.filter((bit) => (status >> bit) & 1);
  if (refused.length > 0) {
    const names = refused.map((bit) => PLX_MEASUREMENT_STATUS[bit]).join(', ');
    throw new ReadingError(422, `characteristic ${r.characteristic}: the device marks this measurement ${names} (Measurement Status), not patient data`, 'business-rule');
  }
  const preliminary = PLX_PRELIMINARY_STATUS.some((bit) => (status >> bit) & 1);
  return { codes: bits(status, PLX_MEASUREMENT_STATUS), ...(preliminary ? { status: 'preliminary' as const } : {}) };
}

function plxSpotCheck(r: Bytes, p: BlePayload): ReadingDraft[] {
  const flags = r.u8('Flags');
  const spo2 = r.sfloat('SpO2');
  const pr = r.sfloat('PR');
  const stamped = flags & 0x01 ? r.dateTime('Timestamp', p.utcOffset) : undefined;
  // Flags bit 4, Device Clock Is Not Set: the timestamp counts from the device's reset (2000-01-01
  // or so), not the time of the reading; the gateway's receive time is the better one.
  const time = (flags & 0x10 ? undefined : stamped) ?? p.receivedAt;
  const codes: string[] = [];
  const measured = flags & 0x02 ? plxMeasurementStatus(r) : { codes: [] };
  codes.push(...measured.codes);
  if (flags & 0x04) codes.push(...bits(r.u24('Device and Sensor Status'), PLX_SENSOR_STATUS));
  if (flags & 0x08) r.sfloat('Pulse Amplitude Index');
  if (flags & 0x10) codes.push('device-clock-not-set');
  const extension = statusExtension(codes);
  const status = measured.status ? { status: measured.status } : {};
  return [
    { ...measurement('2A5E.spo2', spo2, '%'), time, sourceKey: '2A5E.spo2', extension, ...status },
    { ...measurement('2A5E.pulse-rate', pr, '/min'), time, sourceKey: '2A5E.pulse-rate', extension, ...status },
  ];
}

function plxContinuous(r: Bytes, p: BlePayload): ReadingDraft[] {
  const flags = r.u8('Flags');
  const spo2 = r.sfloat('SpO2PR-Normal SpO2');
  const pr = r.sfloat('SpO2PR-Normal PR');
  // Fast and slow averages are kept out: the normal pair is the reading.
  if (flags & 0x01) (r.sfloat('SpO2PR-Fast SpO2'), r.sfloat('SpO2PR-Fast PR'));
  if (flags & 0x02) (r.sfloat('SpO2PR-Slow SpO2'), r.sfloat('SpO2PR-Slow PR'));
  const measured = flags & 0x04 ? plxMeasurementStatus(r) : { codes: [] };
  const codes = [...measured.codes];
  if (flags & 0x08) codes.push(...bits(r.u24('Device and Sensor Status'), PLX_SENSOR_STATUS));
  if (flags & 0x10) r.sfloat('Pulse Amplitude Index');
  const extension = statusExtension(codes);
  const status = measured.status ? { status: measured.status } : {};
  // No timestamp in 2A5F: the gateway's receive time is the effective time.
  return [
    { ...measurement('2A5F.spo2', spo2, '%'), time: p.receivedAt, sourceKey: '2A5F.spo2', extension, ...status },
    { ...measurement('2A5F.pulse-rate', pr, '/min'), time: p.receivedAt, sourceKey: '2A5F.pulse-rate', extension, ...status },
  ];
}

export type { ExactDecimal };
