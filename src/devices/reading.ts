import type { ExactDecimal } from './decimal';
import type { DataAbsentReason } from './ieee-float';

/**
 * What every door's adapter produces before mapping: a measurement as the source names it
 * (LOINC, MDC, a Withings meastype, a GATT field), with its value in exact decimal and its UCUM
 * (or MDC) unit, or the reason it has no value. src/devices/draft.ts states it as an Observation.
 */
export interface Measurement {
  source: fhir4.Coding;
  value?: ExactDecimal;
  /** The true value is beyond `value`, the edge of what the device measures (a meter's HI or LO). */
  comparator?: '<' | '>';
  absent?: DataAbsentReason;
  unit?: string;
}

export interface ReadingDraft extends Measurement {
  /** Effective time (FHIR dateTime with offset). */
  time: string;
  /** Distinguishes readings of one device at one time (GATT field, Withings group id): part of the deterministic id. */
  sourceKey: string;
  components?: Measurement[];
  extension?: fhir4.Extension[];
  bodySite?: fhir4.CodeableConcept;
  note?: string;
  /** Withings attrib 2/4: entered by hand, not measured by the device. */
  manual?: boolean;
  /** The device of this reading when it is not the payload's (a Withings group's deviceid). */
  device?: fhir4.Identifier;
  /** Explicit patient reference for this reading, if any. */
  patient?: string;
  /** Provenance that is not clinical content (Withings attrib), kept as meta.tag. */
  tags?: fhir4.Coding[];
  /** `preliminary` when the device says the value is not yet (or not surely) the result; else final. */
  status?: 'preliminary';
  /**
   * Which of a shared device's users took it, as the device numbers them (a BLE cuff's or
   * scale's User ID; 255 = unknown user). Kept as the DEVICE_USER_EXTENSION; it picks the patient
   * among assignments that name users (src/devices/assignment.ts).
   */
  user?: number;
}

export const BASE = 'http://rpm.example.org/fhir';
export const DEVICE_STATUS_EXTENSION = `${BASE}/StructureDefinition/device-measurement-status`;
export const DEVICE_STATUS_SYSTEM = `${BASE}/CodeSystem/device-measurement-status`;
/** A device's user index: on an Observation, who took the reading; on a DeviceUseStatement, which user the patient is. */
export const DEVICE_USER_EXTENSION = `${BASE}/StructureDefinition/device-user-index`;
/** The user index devices send when they do not know who is measuring (GATT 2A35/2A9D User ID). */
export const UNKNOWN_DEVICE_USER = 255;
export const SOURCE_EXTENSION = `${BASE}/StructureDefinition/device-reading-source`;
export const READING_ID_SYSTEM = `${BASE}/NamingSystem/device-reading`;
export const MDC_SYSTEM = 'urn:iso:std:iso:11073:10101';
export const LOINC_SYSTEM = 'http://loinc.org';
export const UCUM_SYSTEM = 'http://unitsofmeasure.org';
export const WITHINGS_MEASTYPE_SYSTEM = 'https://withings.com/meastype';
export const WITHINGS_DEVICE_SYSTEM = 'https://withings.com/deviceid';
export const BLE_FIELD_SYSTEM = `${BASE}/CodeSystem/ble-gatt-field`;
export const WITHINGS_ATTRIB_SYSTEM = 'https://withings.com/attrib';
/** meta.source of an Observation a device door decoded: `urn:rpm:ingest:withings`. */
export const DOOR_SOURCE_PREFIX = 'urn:rpm:ingest:';

/**
 * A dose taken (or refused) as a smart pill box or the home tablet reports it: when, and which
 * order it was for (the MedicationRequest, or the medication code that names the patient's one
 * active order for it). src/devices/dose.ts states it as a MedicationAdministration.
 */
export interface DoseDraft {
  kind: 'dose';
  time: string;
  sourceKey: string;
  /** `MedicationRequest/id`. */
  request?: string;
  medication?: fhir4.Coding;
  /** R4 medication-admin-status: the box saw the dose taken, or the patient declined it. */
  status: 'completed' | 'not-done';
  note?: string;
  device?: fhir4.Identifier;
  patient?: string;
}

export type Draft = ReadingDraft | DoseDraft;
export const isDose = (d: Draft): d is DoseDraft => 'kind' in d && d.kind === 'dose';

/** A refused reading: the status and what was wrong, for its batch-response entry. */
export class ReadingError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: fhir4.OperationOutcomeIssue['code'] = status === 400 ? 'invalid' : 'business-rule',
  ) {
    super(message);
  }
}

export function statusExtension(codes: string[]): fhir4.Extension[] {
  return codes.map((code) => ({ url: DEVICE_STATUS_EXTENSION, valueCoding: { system: DEVICE_STATUS_SYSTEM, code } }));
}
