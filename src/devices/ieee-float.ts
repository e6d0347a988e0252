import { type ExactDecimal, scaleDecimal } from './decimal';

/**
 * IEEE 11073-20601 SFLOAT (16-bit) and FLOAT (32-bit) as Bluetooth health profiles send them
 * (little-endian). Special values are not numbers: the PHD IG maps them to dataAbsentReason
 * (device-facts.md §4.1, PHD FLOATS.md).
 */
export type DeviceNumber = { kind: 'value'; decimal: ExactDecimal } | { kind: 'absent'; reason: DataAbsentReason };
export type DataAbsentReason = 'not-a-number' | 'error' | 'positive-infinity' | 'negative-infinity';

const SFLOAT_SPECIAL: Record<number, DataAbsentReason> = {
  0x07ff: 'not-a-number',
  0x0800: 'error', // NRes: not at this resolution
  0x07fe: 'positive-infinity',
  0x0802: 'negative-infinity',
  0x0801: 'error', // reserved for future use
};
const FLOAT_SPECIAL: Record<number, DataAbsentReason> = {
  0x7fffff: 'not-a-number',
  0x800000: 'error',
  0x7ffffe: 'positive-infinity',
  0x800002: 'negative-infinity',
  0x800001: 'error',
};

export function decodeSfloat(raw: number): DeviceNumber {
  const mantissaBits = raw & 0x0fff;
  let exponent = raw >> 12;
  // Specials are defined for exponent 0 only.
  if (exponent === 0 && SFLOAT_SPECIAL[mantissaBits]) return { kind: 'absent', reason: SFLOAT_SPECIAL[mantissaBits]! };
  if (exponent >= 0x8) exponent -= 0x10;
  const mantissa = mantissaBits >= 0x800 ? mantissaBits - 0x1000 : mantissaBits;
  return { kind: 'value', decimal: scaleDecimal(mantissa, exponent) };
}

export function decodeFloat(raw: number): DeviceNumber {
  const mantissaBits = raw & 0xffffff;
  let exponent = (raw >>> 24) & 0xff;
  if (exponent === 0 && FLOAT_SPECIAL[mantissaBits]) return { kind: 'absent', reason: FLOAT_SPECIAL[mantissaBits]! };
  if (exponent >= 0x80) exponent -= 0x100;
  const mantissa = mantissaBits >= 0x800000 ? mantissaBits - 0x1000000 : mantissaBits;
  return { kind: 'value', decimal: scaleDecimal(mantissa, exponent) };
}
