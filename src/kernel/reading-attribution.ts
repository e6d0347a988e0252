/**
 * A reading filed under a patient whom nobody has yet confirmed took it: a cuff or scale shared at
 * home measured someone and could not tell whom (Withings attrib 1, "measured by a device, but the
 * user is ambiguous"). The device door tags it so and stores it `preliminary`; the monitoring rules
 * do not judge a preliminary reading with this tag against the patient's limits (a spouse's
 * 180 mm[Hg] is no alert for the patient) until it is confirmed as `final` (decisions 004, 005).
 *
 * In the kernel because the door that writes it (devices) and the rules that read it (monitoring)
 * are one layer and never import each other.
 */
export const UNCONFIRMED_SUBJECT_TAG: Readonly<fhir4.Coding> = Object.freeze({
  system: 'http://rpm.example.org/fhir/CodeSystem/reading-attribution',
  code: 'unconfirmed-subject',
  display: 'Measured by a shared device; whose reading it is is not confirmed yet',
});

/** Whether the resource carries UNCONFIRMED_SUBJECT_TAG. */
export function hasUnconfirmedSubject(resource: { meta?: fhir4.Meta }): boolean {
  return resource.meta?.tag?.some((t) => t.system === UNCONFIRMED_SUBJECT_TAG.system && t.code === UNCONFIRMED_SUBJECT_TAG.code) ?? false;
}
