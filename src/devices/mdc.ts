import type { FhirContext } from '../fhir/context';
import type { PendingWrite } from '../fhir/write-hooks';
import type { Queryable } from '../store/db';
import { translateCode } from '../terminology/conceptmap';
import { convertUnit, roundTo } from '../terminology/convert';
import { terminology } from '../terminology/load';
import { issuesAgainst } from '../validation/profile';
import { LOINC_SYSTEM, MDC_SYSTEM, UCUM_SYSTEM } from './reading';

/**
 * IEEE 11073 enrichment of Observations written by any door (REST, bundles): one coded only in
 * MDC (urn:iso:std:iso:11073:10101) gets the LOINC coding (mdc-to-loinc), its MDC units become
 * UCUM (mdc-unit-to-ucum) in the unit the profile wants, the vital-signs category is added, and
 * the profile is declared when the enriched Observation conforms to it (PHD IG: MDC plus LOINC
 * for vital signs). One that already has a LOINC coding is the sender's business: untouched.
 */
export async function enrichMdcObservations(_ctx: FhirContext, _tx: Queryable, writes: PendingWrite[]): Promise<void> {
  for (const w of writes) {
    if (w.type !== 'Observation' || !w.resource) continue;
    const obs = w.resource as fhir4.Observation;
    if (!isMdcOnly(obs.code)) continue;
    if (enrich(obs)) w.changed = true;
  }
}

function isMdcOnly(code: fhir4.CodeableConcept | undefined): boolean {
  const codings = code?.coding ?? [];
  return codings.some((c) => c.system === MDC_SYSTEM) && !codings.some((c) => c.system === LOINC_SYSTEM);
}

function addLoinc(code: fhir4.CodeableConcept): string | undefined {
  for (const c of code.coding ?? []) {
    if (c.system !== MDC_SYSTEM || !c.code) continue;
    const target = translateCode('mdc-to-loinc', MDC_SYSTEM, c.code);
    if (!target?.code) continue;
    const rule = terminology().rules.get(target.code);
    code.coding!.push({ system: LOINC_SYSTEM, code: target.code, display: rule?.display ?? target.display });
    return target.code;
  }
  return undefined;
}

/** MDC unit to UCUM, then to the unit the LOINC's rule allows; true when it changed. */
function mapQuantity(q: fhir4.Quantity | undefined, loinc: string | undefined): boolean {
  if (!q) return false;
  let changed = false;
  if (q.system === MDC_SYSTEM && q.code) {
    const ucum = translateCode('mdc-unit-to-ucum', MDC_SYSTEM, q.code)?.code;
    if (!ucum) return false;
    q.system = UCUM_SYSTEM;
    q.code = ucum;
    q.unit = q.unit ?? ucum;
    changed = true;
  }
  const rule = loinc ? terminology().rules.get(loinc) : undefined;
  if (rule?.units && rule.unit && q.system === UCUM_SYSTEM && q.code && !rule.units.includes(q.code) && typeof q.value === 'number') {
    const converted = convertUnit(q.value, q.code, rule.unit);
    if (converted !== undefined) {
      q.value = roundTo(converted, rule.decimals ?? 2);
      q.code = rule.unit;
      q.unit = rule.unitDisplay ?? rule.unit;
      changed = true;
    }
  }
  return changed;
}

function enrich(obs: fhir4.Observation): boolean {
  const loinc = addLoinc(obs.code);
  let changed = loinc !== undefined;
  if (mapQuantity(obs.valueQuantity, loinc)) changed = true;
  for (const component of obs.component ?? []) {
    const componentLoinc = isMdcOnly(component.code) ? addLoinc(component.code) : component.code.coding?.find((c) => c.system === LOINC_SYSTEM)?.code;
    if (componentLoinc && isMdcOnly(component.code) === false) changed = true;
    if (mapQuantity(component.valueQuantity, componentLoinc)) changed = true;
  }
  const rule = loinc ? terminology().rules.get(loinc) : undefined;
  if (!rule?.profile) return changed;
  const category = terminology().vitalSignsCategory;
  if (!obs.category?.some((cc) => cc.coding?.some((c) => c.system === category.system && c.code === category.code))) {
    obs.category = [...(obs.category ?? []), { coding: [category] }];
    changed = true;
  }
  const profiles = obs.meta?.profile ?? [];
  if (!profiles.includes(rule.profile)) {
    const candidate = { ...obs, meta: { ...obs.meta, profile: [...profiles, rule.profile] } };
    // Declared only when true: an MDC upload missing, say, its subject still stores as before.
    if (issuesAgainst(rule.profile, candidate)?.length === 0) {
      obs.meta = candidate.meta;
      changed = true;
    }
  }
  return changed;
}
