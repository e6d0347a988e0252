import { OperationOutcomeError } from '../kernel/outcome';
import { eachWrite, type PendingWrite } from '../pipeline';
import { type Translation, translate } from '../terminology/conceptmap';
import { convertUnit, roundTo } from '../terminology/convert';
import { type ObservationRule, terminology } from '../terminology/load';
import { isUcumCode } from '../terminology/ucum';
import { issuesAgainst } from '../validation/profile';
import { BLE_FIELD_SYSTEM, DOOR_SOURCE_PREFIX, LOINC_SYSTEM, MDC_SYSTEM, UCUM_SYSTEM, WITHINGS_MEASTYPE_SYSTEM } from './reading';

/**
 * The one device-mapping stage (pipeline stage `enrich`): every Observation, whatever door it
 * came through (a device door, REST, a bundle entry), is mapped here, so the same reading becomes
 * the same Observation everywhere. Decision record: docs/decisions/004-device-mapping.md.
 *
 * - Codes: a measurement coded only in a device nomenclature (IEEE 11073 MDC, Withings meastype,
 *   Bluetooth GATT field) gets its LOINC code from the ConceptMaps (terminology/conceptmaps) as
 *   the first coding. MDC codings stay beside it (the PHD IG wants both); proprietary device
 *   codes are provenance, not clinical content, and move to meta.tag. No verified LOINC: the
 *   source coding is kept alone — never a guessed LOINC.
 * - Units: MDC units become UCUM; a unit the LOINC's rule does not allow is converted to its
 *   unit (terminology/observation-rules.json); the value must then lie in the physiological
 *   range of the rule, else the write is refused (422): a 400 mm[Hg] is a device or mapping
 *   error whichever door it came through.
 * - Category and profile: added for readings the server mapped. A device door's reading
 *   declares its vital-signs profile outright (the conform stage then holds it to it); a REST
 *   write mapped from MDC declares it only when it conforms, and a LOINC-coded REST write keeps
 *   what its sender declared.
 */

/** Which ConceptMap maps a device code system to LOINC. */
const MAP_OF_SYSTEM: Record<string, string> = {
  [MDC_SYSTEM]: 'mdc-to-loinc',
  [WITHINGS_MEASTYPE_SYSTEM]: 'withings-meastype-to-loinc',
  [BLE_FIELD_SYSTEM]: 'ble-gatt-to-loinc',
};

/** Device codes that identify a vendor's field, not a measurement concept: kept as provenance (meta.tag). */
const PROVENANCE_SYSTEMS = new Set([WITHINGS_MEASTYPE_SYSTEM, BLE_FIELD_SYSTEM]);

type Element = { code: fhir4.CodeableConcept; valueQuantity?: fhir4.Quantity };

interface Context {
  /** A device door's reading: mapped strictly (unknown codes and units are refused). */
  fromDoor: boolean;
  /** Whether device codes of this element are mapped to LOINC (else only a LOINC it has counts). */
  mapCodes: boolean;
  path: string;
  tags: fhir4.Coding[];
  /**
   * Whether the value must lie in the physiological range: not for a reading its sender marks
   * wrong or never made (`entered-in-error`, `cancelled`). Refusing those would stop an EHR from
   * recording that a value is wrong, and no rule judges them (monitoring skips both statuses).
   */
  rangeChecked: boolean;
}

export async function mapObservations(writes: readonly PendingWrite[]): Promise<void> {
  await eachWrite(writes, (w) => {
    if (w.type !== 'Observation' || !w.resource) return;
    if (mapObservation(w.resource as fhir4.Observation)) w.changed = true;
  });
}

/** Maps one Observation in place; true when it changed. Throws 422 for what cannot be a reading. */
export function mapObservation(obs: fhir4.Observation): boolean {
  const fromDoor = obs.meta?.source?.startsWith(DOOR_SOURCE_PREFIX) === true;
  const tags: fhir4.Coding[] = [];
  const rangeChecked = obs.status !== 'entered-in-error' && obs.status !== 'cancelled';
  const main = mapElement(obs, { fromDoor, mapCodes: true, path: 'Observation', tags, rangeChecked });
  let changed = main.changed;
  // A LOINC-coded REST write is its sender's business: its components' device codes stay as sent
  // (the PHD IG's compound Observations carry MDC-only components under a LOINC panel).
  const mapCodes = fromDoor || main.mapped;
  for (const [i, component] of (obs.component ?? []).entries()) {
    if (mapElement(component, { fromDoor, mapCodes, path: `Observation.component[${i}]`, tags, rangeChecked }).changed) changed = true;
  }
  const newTags = tags.filter((t, i) => !obs.meta?.tag?.some((x) => x.system === t.system && x.code === t.code) && tags.findIndex((x) => x.system === t.system && x.code === t.code) === i);
  if (newTags.length) obs.meta = { ...obs.meta, tag: [...(obs.meta?.tag ?? []), ...newTags] };
  if (!main.mapped && !fromDoor) return changed;
  const rule = main.rule;
  if (!rule) return changed;
  if (addCategory(obs, rule)) changed = true;
  if (rule.profile && !obs.meta?.profile?.includes(rule.profile)) {
    const meta = { ...obs.meta, profile: [...(obs.meta?.profile ?? []), rule.profile] };
    // A door's reading is held to its profile by the conform stage; a REST write mapped from MDC
    // declares it only when true (an upload missing, say, its subject is stored as sent).
    if (fromDoor || issuesAgainst(rule.profile, { ...obs, meta })?.length === 0) {
      obs.meta = meta;
      changed = true;
    }
  }
  return changed;
}

/** The code and quantity of one element (the Observation or a component). */
function mapElement(element: Element, ctx: Context): { changed: boolean; mapped: boolean; rule?: ObservationRule } {
  const coded = mapCode(element.code, element.valueQuantity, ctx);
  const rule = coded.loinc ? terminology().rules.get(coded.loinc) : undefined;
  const unitChanged = mapQuantity(element.valueQuantity, rule, coded.loinc, ctx);
  return { changed: coded.changed || unitChanged, mapped: coded.mapped, rule };
}

/**
 * LOINC first: the element's own, or from the ConceptMaps when it has none (`mapped`). A door's
 * reading gets the canonical form either way (display and text from the rule), so the same
 * reading reads the same whichever door it came through. A device code whose LOINC depends on
 * the value's unit (MDC 160184 capillary glucose: 41653-7 in mass, 14743-9 in moles per volume)
 * gets the target whose unit the value's is commensurable with (see `byUnit`).
 */
function mapCode(code: fhir4.CodeableConcept, q: fhir4.Quantity | undefined, ctx: Context): { loinc?: string; changed: boolean; mapped: boolean } {
  const codings = code.coding ?? [];
  const own = codings.find((c) => c.system === LOINC_SYSTEM && c.code)?.code;
  if (own) {
    if (ctx.fromDoor) canonicalCode(code, own, codings.find((c) => c.code === own)?.display, ctx);
    return { loinc: own, changed: ctx.fromDoor, mapped: false };
  }
  if (!ctx.mapCodes) return { changed: false, mapped: false };
  for (const source of codings) {
    const mapId = source.system ? MAP_OF_SYSTEM[source.system] : undefined;
    if (!mapId || !source.code) continue;
    const targets = translate(mapId, source.system!, source.code);
    if (!targets) {
      if (ctx.fromDoor) throw refusal(`${ctx.path}.code: ${source.system}|${source.code} is not known to the ${mapId} mapping`, `${ctx.path}.code`, 'code-invalid');
      continue;
    }
    const coded = targets.filter((t) => t.code);
    const target = coded.some((t) => t.valueUnit) ? byUnit(coded, q, `${source.system}|${source.code}`, ctx) : coded[0];
    // Known, but with no verified LOINC (or none for this unit): the source coding stays alone, never a guessed LOINC.
    if (!target?.code) return { changed: false, mapped: false };
    canonicalCode(code, target.code, target.display, ctx);
    return { loinc: target.code, changed: true, mapped: true };
  }
  if (ctx.fromDoor && !codings.some((c) => c.system && c.code)) throw refusal(`${ctx.path}.code: a reading needs a code`, `${ctx.path}.code`, 'required');
  return { changed: false, mapped: false };
}

/**
 * The target of a unit-dependent mapping: the one whose value-unit the value's unit converts to
 * (mg/dL ← g/L, mmol/L ← mol/L; mass and moles never convert without a molar mass). A value in
 * neither dimension, or with no unit, has no LOINC: refused at a door, left unmapped over REST
 * (stored as sent, as a REST value in an unconvertible unit is).
 */
function byUnit(targets: Translation[], q: fhir4.Quantity | undefined, source: string, ctx: Context): Translation | undefined {
  const unit = ucumUnitOf(q);
  const target = unit === undefined ? undefined : targets.find((t) => t.valueUnit && convertUnit(1, unit, t.valueUnit) !== undefined);
  if (!target && ctx.fromDoor) {
    const where = q ? `${ctx.path}.valueQuantity` : `${ctx.path}.code`;
    const wanted = targets.map((t) => `${t.code} for ${t.valueUnit}`).join(', ');
    const sent = q ? `'${q.code ?? q.unit ?? ''}'` : 'a reading without a value';
    throw refusal(`${where}: the LOINC of ${source} depends on the unit of its value (${wanted}); ${sent} is of neither dimension`, where, 'code-invalid');
  }
  return target;
}

/** The UCUM code of a quantity's unit (an MDC unit through its ConceptMap), if it has one. */
function ucumUnitOf(q: fhir4.Quantity | undefined): string | undefined {
  if (!q?.code) return undefined;
  if (q.system === MDC_SYSTEM) return translate('mdc-unit-to-ucum', MDC_SYSTEM, q.code)?.find((t) => t.code)?.code;
  return q.system === UCUM_SYSTEM && isUcumCode(q.code) ? q.code : undefined;
}

/** [LOINC, its also-code, MDC and other clinical codings as sent]; vendor field codes become tags. */
function canonicalCode(code: fhir4.CodeableConcept, loinc: string, fallbackDisplay: string | undefined, ctx: Context): void {
  const codings = code.coding ?? [];
  const rule = terminology().rules.get(loinc);
  // A code we hold no display for keeps the sender's, or has none: a display is the code's
  // meaning for a reader, and the code itself in its place says nothing (and is no display).
  const sent = codings.find((c) => c.system === LOINC_SYSTEM && c.code === loinc)?.display;
  const display = rule?.display ?? fallbackDisplay ?? sent;
  const first: fhir4.Coding[] = [{ system: LOINC_SYSTEM, code: loinc, ...(display !== undefined ? { display } : {}) }];
  if (rule?.alsoCode) first.push(rule.alsoCode);
  const isFirst = (c: fhir4.Coding) => first.some((f) => f.system === c.system && f.code === c.code);
  for (const c of codings) if (PROVENANCE_SYSTEMS.has(c.system ?? '')) ctx.tags.push({ system: c.system, code: c.code, ...(c.display ? { display: c.display } : {}) });
  code.coding = [...first, ...codings.filter((c) => !PROVENANCE_SYSTEMS.has(c.system ?? '') && !isFirst(c))];
  if (display !== undefined) code.text = display;
}

/** MDC units to UCUM, then to the unit the LOINC's rule wants; then the physiological range. */
function mapQuantity(q: fhir4.Quantity | undefined, rule: ObservationRule | undefined, loinc: string | undefined, ctx: Context): boolean {
  if (!q || typeof q.value !== 'number') return false;
  const where = `${ctx.path}.valueQuantity`;
  let changed = false;
  if (q.system === MDC_SYSTEM && q.code) {
    const ucum = translate('mdc-unit-to-ucum', MDC_SYSTEM, q.code)?.find((t) => t.code)?.code;
    if (!ucum) {
      if (ctx.fromDoor) throw refusal(`${where}: MDC unit ${q.code} has no UCUM mapping`, where, 'code-invalid');
      return false;
    }
    q.system = UCUM_SYSTEM;
    q.code = ucum;
    q.unit = q.unit ?? ucum;
    changed = true;
  }
  if (!rule?.unit || !rule.units) return changed;
  if (q.system !== UCUM_SYSTEM || !q.code || !isUcumCode(q.code)) {
    if (ctx.fromDoor) throw refusal(`${where}: '${q.code ?? q.unit ?? ''}' is not a UCUM unit`, where, 'code-invalid');
    return changed;
  }
  if (!rule.units.includes(q.code)) {
    const converted = convertUnit(q.value, q.code, rule.unit);
    if (converted === undefined) {
      if (ctx.fromDoor) throw refusal(`${where}: unit ${q.code} cannot be converted to ${rule.unit}, the unit of ${loinc} (${rule.display})`, where, 'code-invalid');
      return changed;
    }
    q.value = roundTo(converted, rule.decimals ?? 2);
    q.code = rule.unit;
    q.unit = rule.unitDisplay ?? rule.unit;
    changed = true;
  } else if ((ctx.fromDoor || changed) && q.unit !== (q.code === rule.unit ? (rule.unitDisplay ?? rule.unit) : q.code)) {
    // A reading the server mapped reads the same whichever door it came through, unit display included.
    q.unit = q.code === rule.unit ? (rule.unitDisplay ?? rule.unit) : q.code;
    changed = true;
  }
  if (rule.range && ctx.rangeChecked) {
    const value = q.code === rule.unit ? q.value : convertUnit(q.value, q.code, rule.unit);
    const [low, high] = rule.range;
    if (value === undefined || value < low || value > high) {
      throw refusal(`${where}: ${q.value} ${q.code} is outside the physiological range ${low}–${high} ${rule.unit} of ${loinc} (${rule.display}): a device or mapping error, not stored`, where, 'value');
    }
  }
  return changed;
}

function addCategory(obs: fhir4.Observation, rule: ObservationRule): boolean {
  const vital = terminology().vitalSignsCategory;
  const wanted = rule.profile ? vital : rule.category ? { system: vital.system, code: rule.category } : undefined;
  if (!wanted) return false;
  if (obs.category?.some((cc) => cc.coding?.some((c) => c.system === wanted.system && c.code === wanted.code))) return false;
  obs.category = [...(obs.category ?? []), rule.profile ? { coding: [vital], text: 'Vital Signs' } : { coding: [wanted] }];
  return true;
}

function refusal(diagnostics: string, expression: string, code: fhir4.OperationOutcomeIssue['code']): OperationOutcomeError {
  return new OperationOutcomeError(422, { code, diagnostics, expression: [expression] });
}
