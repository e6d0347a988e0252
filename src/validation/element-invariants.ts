import { keptNumberText } from '../kernel/json-decimals';
import { literalReferenceType } from '../kernel/id';
import { fhirpathEngine } from './fhirpath-engine';

/**
 * The R4 error invariants that sit on an element rather than on a resource's root or on the few
 * datatypes of ./core-invariants.ts, checked by its walk wherever the element occurs: datatype
 * invariants (Quantity qty-3, Range rng-2, Ratio rat-1, ContactPoint cpt-2, Attachment att-1,
 * Timing.repeat tim-1..tim-10, the profiles of Quantity: sqty-1, age-1, cnt-3, dis-1, drt-1) and
 * those of the resource types a monitoring server stores (Observation obs-3, obs-6, obs-7,
 * Patient pat-1, CarePlan cpl-3, CareTeam ctm-1, ...). They were stored when
 * broken (an Observation reference range with no bound, a Timing with an offset but no event)
 * unless a profile the resource declared repeated them.
 *
 * Each is keyed by the schema definition the walk knows a node by (`Timing_Repeat`,
 * `Observation_ReferenceRange`, `Quantity`) and holds the official key, expression and text
 * (test/validation/core-invariants.test.ts compares them with the StructureDefinitions and each
 * check with fhirpath on real data). A check is a few property reads: the walk's budget is a
 * few µs per resource (./core-invariants.ts). Only rng-2 between two different UCUM units,
 * which needs unit conversion, is left to the fhirpath library.
 *
 * `breach` answers where the node breaks the invariant: undefined when it holds, '' for the
 * element itself, or the child to name (`durationUnit`, `address[1]`).
 */
type Json = Record<string, unknown>;

export interface ElementInvariant {
  key: string;
  /** The StructureDefinition that states it, and the element it sits on there. */
  on: string;
  path: string;
  expression: string;
  human: string;
  /** The schema definitions of the nodes it applies to (a profile of Quantity such as Age is its own definition). */
  definitions: string[];
  breach(node: Json): string | undefined;
}

const UCUM = 'http://unitsofmeasure.org';

/** `name.exists()`: a primitive is present as its value or as its `_name` companion alone (json.html#primitive). */
const has = (o: Json, name: string): boolean => o[name] !== undefined || o[`_${name}`] !== undefined;

/** `value.exists()` of a choice: any `valueX` or `_valueX`. */
function hasChoice(o: Json, base: string): boolean {
  for (const key in o) {
    const at = key.startsWith(base) ? base.length : key.startsWith(`_${base}`) ? base.length + 1 : -1;
    if (at > 0 && key.length > at && key[at]! >= 'A' && key[at]! <= 'Z') return true;
  }
  return false;
}

const list = (v: unknown): Json[] => (Array.isArray(v) ? (v as Json[]) : v === undefined || v === null ? [] : [v as Json]);
const holdsIf = (holds: boolean, element = ''): string | undefined => (holds ? undefined : element);

/** FHIRPath `=` on complex values: same properties, equal values (order of keys irrelevant). */
function equal(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a as Json);
  const kb = Object.keys(b as Json);
  return ka.length === kb.length && ka.every((k) => equal((a as Json)[k], (b as Json)[k]));
}

const codedAs = (concept: unknown, system: string, codes: readonly string[]): boolean =>
  list((concept as Json | undefined)?.coding).some((c) => c.system === system && codes.includes(c.code as string));

/** Meal codes an offset cannot follow (tim-9): "at a meal" has no before or after. */
const NO_OFFSET = ['C', 'CM', 'CD', 'CV'];

/** The first of a list's items `bad` holds for, as `name[i]`. */
function firstItem(o: Json, name: string, bad: (item: Json) => boolean): string | undefined {
  const items = list(o[name]);
  const i = items.findIndex(bad);
  return i < 0 ? undefined : Array.isArray(o[name]) ? `${name}[${i}]` : name;
}

let rangeFallback: ((range: unknown, env: unknown) => unknown[]) | undefined;

/**
 * rng-2's `low <= high` as fhirpath answers it: a FHIR Quantity becomes a FHIRPath Quantity
 * only with UCUM units, and a comparator, a missing value or a FHIRPath error leave it unknown
 * (an unknown invariant holds). Two UCUM Quantities of one code compare by value; two different
 * UCUM codes (mg against g) need unit conversion, left to the library: rare, and it loads it.
 */
function lowAboveHigh(low: Json, high: Json): boolean {
  if (low.system !== UCUM || high.system !== UCUM || low.comparator !== undefined || high.comparator !== undefined) return false;
  if (typeof low.value !== 'number' || typeof high.value !== 'number' || typeof low.code !== 'string' || typeof high.code !== 'string') return false;
  if (low.code === high.code) return low.value > high.value;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  rangeFallback ??= fhirpathEngine().compile({ base: 'Range', expression: 'low <= high' } as never, require('fhirpath/fhir-context/r4') as never) as never;
  try {
    const result = rangeFallback!({ low, high }, { ucum: UCUM });
    return result.length === 1 && result[0] === false;
  } catch {
    return false;
  }
}

const QUANTITIES = ['Quantity', 'Age', 'Count', 'Distance', 'Duration'];

/**
 * The elements the R4 StructureDefinitions type as SimpleQuantity (type Quantity, profile
 * http://hl7.org/fhir/StructureDefinition/SimpleQuantity), by the schema definition that holds
 * them and their JSON names. The JSON schema types them as Quantity, so the walk cannot tell
 * them from the others; test/validation/core-invariants.test.ts derives this table from the
 * StructureDefinitions and compares. Range.low and .high make every Range's bounds one.
 */
export const SIMPLE_QUANTITIES: Readonly<Record<string, readonly string[]>> = {
  ActivityDefinition: ['quantity'],
  CarePlan_Detail: ['dailyAmount', 'quantity'],
  ClaimResponse_AddItem: ['quantity'],
  ClaimResponse_Detail1: ['quantity'],
  ClaimResponse_SubDetail1: ['quantity'],
  Claim_Detail: ['quantity'],
  Claim_Item: ['quantity'],
  Claim_SubDetail: ['quantity'],
  Contract_ValuedItem: ['quantity'],
  CoverageEligibilityRequest_Item: ['quantity'],
  Coverage_CostToBeneficiary: ['valueQuantity'],
  Dosage: ['maxDosePerAdministration', 'maxDosePerLifetime'],
  Dosage_DoseAndRate: ['doseQuantity', 'rateQuantity'],
  ExplanationOfBenefit_AddItem: ['quantity'],
  ExplanationOfBenefit_Detail: ['quantity'],
  ExplanationOfBenefit_Detail1: ['quantity'],
  ExplanationOfBenefit_Item: ['quantity'],
  ExplanationOfBenefit_SubDetail: ['quantity'],
  ExplanationOfBenefit_SubDetail1: ['quantity'],
  Immunization: ['doseQuantity'],
  MedicationAdministration_Dosage: ['dose', 'rateQuantity'],
  MedicationDispense: ['quantity', 'daysSupply'],
  MedicationKnowledge: ['amount'],
  MedicationKnowledge_DrugCharacteristic: ['valueQuantity'],
  MedicationKnowledge_Kinetics: ['areaUnderCurve', 'lethalDose50'],
  MedicationKnowledge_MaxDispense: ['quantity'],
  MedicationKnowledge_Packaging: ['quantity'],
  MedicationKnowledge_PatientCharacteristics: ['characteristicQuantity'],
  MedicationRequest_DispenseRequest: ['quantity'],
  MedicationRequest_InitialFill: ['quantity'],
  NutritionOrder_Administration: ['quantity', 'rateQuantity'],
  NutritionOrder_EnteralFormula: ['caloricDensity', 'maxVolumeToDeliver'],
  NutritionOrder_Nutrient: ['amount'],
  NutritionOrder_Supplement: ['quantity'],
  Observation_ReferenceRange: ['low', 'high'],
  Range: ['low', 'high'],
  SampledData: ['origin'],
  SpecimenDefinition_Container: ['capacity', 'minimumVolumeQuantity'],
  Specimen_Collection: ['quantity'],
  Specimen_Container: ['capacity', 'specimenQuantity'],
  Substance_Instance: ['quantity'],
  SupplyDelivery_SuppliedItem: ['quantity'],
  VisionPrescription_LensSpecification: ['duration'],
};

/** `system.empty() or system = %ucum` is false: a system other than UCUM (one present only as `_system` leaves `=` empty). */
const notUcum = (o: Json): boolean => typeof o.system === 'string' && o.system !== UCUM;
/** `code.exists() or value.empty()` is false: a value without a unit code. */
const valueWithoutCode = (o: Json): boolean => has(o, 'value') && !has(o, 'code');

/**
 * cnt-3's `value.toString().contains('.')`, on the decimal as written (decision 028: 2.0 keeps
 * its fraction, which JSON.parse drops), and any value that is not whole (1e-7 has no '.').
 */
function fractional(o: Json): boolean {
  if (typeof o.value !== 'number') return false;
  return !Number.isInteger(o.value) || (keptNumberText(o, 'value') ?? String(o.value)).includes('.');
}

/** The first element `checks` finds failing, in order: each conjunct of an `and` with the element it names. */
const firstFailing = (checks: Array<[boolean, string]>): string | undefined => checks.find(([fails]) => fails)?.[1];

/**
 * The type of the resource `member` resolves to, where this server can tell without a read: a
 * contained resource by its `#id`, else the type a literal reference names (what it resolves
 * to, if it resolves). An identifier-only reference, or a `urn:` one, resolves to nothing here.
 */
function resolvedType(member: unknown, resource: Json): string | undefined {
  const ref = (member as Json | undefined)?.reference;
  if (typeof ref !== 'string') return undefined;
  if (ref.startsWith('#')) {
    const target = list(resource.contained).find((c) => c.id === ref.slice(1));
    return typeof target?.resourceType === 'string' ? target.resourceType : undefined;
  }
  const type = literalReferenceType(ref);
  return type !== undefined && /^[A-Z][A-Za-z]+$/.test(type) ? type : undefined;
}

export const ELEMENT_INVARIANTS: ElementInvariant[] = [
  {
    key: 'obs-3', on: 'Observation', path: 'Observation.referenceRange', definitions: ['Observation_ReferenceRange'],
    expression: 'low.exists() or high.exists() or text.exists()', human: 'Must have at least a low or a high or text',
    breach: (o) => holdsIf(has(o, 'low') || has(o, 'high') || has(o, 'text')),
  },
  {
    key: 'obs-6', on: 'Observation', path: 'Observation', definitions: ['Observation'],
    expression: 'dataAbsentReason.empty() or value.empty()', human: 'dataAbsentReason SHALL only be present if Observation.value[x] is not present',
    breach: (o) => holdsIf(!has(o, 'dataAbsentReason') || !hasChoice(o, 'value'), 'dataAbsentReason'),
  },
  {
    key: 'obs-7', on: 'Observation', path: 'Observation', definitions: ['Observation'],
    expression: 'value.empty() or component.code.where(coding.intersect(%resource.code.coding).exists()).empty()',
    human: 'If Observation.code is the same as an Observation.component.code then the value element associated with the code SHALL NOT be present',
    breach: (o) => {
      if (!hasChoice(o, 'value') || o.component === undefined) return undefined;
      const own = list((o.code as Json | undefined)?.coding);
      return firstItem(o, 'component', (c) => list((c.code as Json | undefined)?.coding).some((coding) => own.some((x) => equal(x, coding))));
    },
  },
  {
    key: 'pat-1', on: 'Patient', path: 'Patient.contact', definitions: ['Patient_Contact'],
    expression: 'name.exists() or telecom.exists() or address.exists() or organization.exists()',
    human: "SHALL at least contain a contact's details or a reference to an organization",
    breach: (o) => holdsIf(has(o, 'name') || has(o, 'telecom') || has(o, 'address') || has(o, 'organization')),
  },
  {
    key: 'cpl-3', on: 'CarePlan', path: 'CarePlan.activity', definitions: ['CarePlan_Activity'],
    expression: 'detail.empty() or reference.empty()', human: 'Provide a reference or detail, not both',
    breach: (o) => holdsIf(!has(o, 'detail') || !has(o, 'reference')),
  },
  {
    key: 'gol-1', on: 'Goal', path: 'Goal.target', definitions: ['Goal_Target'],
    expression: '(detail.exists() and measure.exists()) or detail.exists().not()', human: 'Goal.target.measure is required if Goal.target.detail is populated',
    breach: (o) => holdsIf(!hasChoice(o, 'detail') || has(o, 'measure'), 'measure'),
  },
  {
    key: 'mad-1', on: 'MedicationAdministration', path: 'MedicationAdministration.dosage', definitions: ['MedicationAdministration_Dosage'],
    expression: 'dose.exists() or rate.exists()', human: 'SHALL have at least one of dosage.dose or dosage.rate[x]',
    breach: (o) => holdsIf(has(o, 'dose') || hasChoice(o, 'rate')),
  },
  {
    key: 'con-1', on: 'Condition', path: 'Condition.stage', definitions: ['Condition_Stage'],
    expression: 'summary.exists() or assessment.exists()', human: 'Stage SHALL have summary or assessment',
    breach: (o) => holdsIf(has(o, 'summary') || has(o, 'assessment')),
  },
  {
    key: 'con-2', on: 'Condition', path: 'Condition.evidence', definitions: ['Condition_Evidence'],
    expression: 'code.exists() or detail.exists()', human: 'evidence SHALL have code or details',
    breach: (o) => holdsIf(has(o, 'code') || has(o, 'detail')),
  },
  {
    key: 'con-4', on: 'Condition', path: 'Condition', definitions: ['Condition'],
    expression: "abatement.empty() or clinicalStatus.coding.where(system='http://terminology.hl7.org/CodeSystem/condition-clinical' and (code='resolved' or code='remission' or code='inactive')).exists()",
    human: 'If condition is abated, then clinicalStatus must be either inactive, resolved, or remission',
    breach: (o) => holdsIf(!hasChoice(o, 'abatement') || codedAs(o.clinicalStatus, 'http://terminology.hl7.org/CodeSystem/condition-clinical', ['resolved', 'remission', 'inactive']), 'clinicalStatus'),
  },
  {
    key: 'con-5', on: 'Condition', path: 'Condition', definitions: ['Condition'],
    expression: "verificationStatus.coding.where(system='http://terminology.hl7.org/CodeSystem/condition-ver-status' and code='entered-in-error').empty() or clinicalStatus.empty()",
    human: 'Condition.clinicalStatus SHALL NOT be present if verification Status is entered-in-error',
    breach: (o) => holdsIf(!codedAs(o.verificationStatus, 'http://terminology.hl7.org/CodeSystem/condition-ver-status', ['entered-in-error']) || !has(o, 'clinicalStatus'), 'clinicalStatus'),
  },
  {
    key: 'grp-1', on: 'Group', path: 'Group', definitions: ['Group'],
    expression: 'member.empty() or (actual = true)', human: 'Can only have members if group is "actual"',
    breach: (o) => holdsIf(!has(o, 'member') || o.actual !== false, 'member'),
  },
  {
    key: 'org-1', on: 'Organization', path: 'Organization', definitions: ['Organization'],
    expression: '(identifier.count() + name.count()) > 0', human: 'The organization SHALL at least have a name or an identifier, and possibly more than one',
    breach: (o) => holdsIf(has(o, 'identifier') || has(o, 'name')),
  },
  // org-2 and org-3 sit on Organization.address and .telecom, whose nodes the walk knows only as
  // Address and ContactPoint: checked from the Organization, naming the item.
  {
    key: 'org-2', on: 'Organization', path: 'Organization.address', definitions: ['Organization'],
    expression: "where(use = 'home').empty()", human: "An address of an organization can never be of use 'home'",
    breach: (o) => firstItem(o, 'address', (a) => a.use === 'home'),
  },
  {
    key: 'org-3', on: 'Organization', path: 'Organization.telecom', definitions: ['Organization'],
    expression: "where(use = 'home').empty()", human: "The telecom of an organization can never be of use 'home'",
    breach: (o) => firstItem(o, 'telecom', (t) => t.use === 'home'),
  },
  {
    key: 'ppc-1', on: 'Consent', path: 'Consent', definitions: ['Consent'],
    expression: 'policy.exists() or policyRule.exists()', human: 'Either a Policy or PolicyRule',
    breach: (o) => holdsIf(has(o, 'policy') || has(o, 'policyRule')),
  },
  ...(['patient-privacy', 'research', 'adr', 'treatment'] as const).map((scope, i): ElementInvariant => ({
    key: `ppc-${i + 2}`, on: 'Consent', path: 'Consent', definitions: ['Consent'],
    // As R4 states them: the system is `something`, which no real coding has, so they hold for
    // every Consent of the consentscope codes (decision 040).
    expression: `patient.exists() or scope.coding.where(system='something' and code='${scope}').exists().not()`,
    human: `IF Scope=${scope === 'patient-privacy' ? 'privacy' : scope}, there must be a patient`,
    breach: (o) => holdsIf(has(o, 'patient') || !codedAs(o.scope, 'something', [scope]), 'patient'),
  })),
  // ctm-1 sits on CareTeam.participant; `resolve()` needs the CareTeam's contained resources, so
  // it is checked from the CareTeam, naming the participant's onBehalfOf.
  {
    key: 'ctm-1', on: 'CareTeam', path: 'CareTeam.participant', definitions: ['CareTeam'],
    expression: 'onBehalfOf.exists() implies (member.resolve().iif(empty(), true, ofType(Practitioner).exists()))',
    human: 'CareTeam.participant.onBehalfOf can only be populated when CareTeam.participant.member is a Practitioner',
    breach: (o) => {
      const at = firstItem(o, 'participant', (p) => has(p, 'onBehalfOf') && (resolvedType(p.member, o) ?? 'Practitioner') !== 'Practitioner');
      return at === undefined ? undefined : `${at}.onBehalfOf`;
    },
  },
  {
    key: 'qty-3', on: 'Quantity', path: 'Quantity', definitions: QUANTITIES,
    expression: 'code.empty() or system.exists()', human: 'If a code for the unit is present, the system SHALL also be present',
    breach: (o) => holdsIf(!has(o, 'code') || has(o, 'system'), 'system'),
  },
  ...Object.entries(SIMPLE_QUANTITIES).map(([definition, names]): ElementInvariant => ({
    key: 'sqty-1', on: 'SimpleQuantity', path: 'Quantity', definitions: [definition],
    expression: 'comparator.empty()', human: 'The comparator is not used on a SimpleQuantity',
    breach: (o) => {
      for (const name of names) {
        const at = firstItem(o, name, (q) => typeof q === 'object' && q !== null && has(q, 'comparator'));
        if (at !== undefined) return `${at}.comparator`;
      }
      return undefined;
    },
  })),
  {
    key: 'age-1', on: 'Age', path: 'Age', definitions: ['Age'],
    expression: '(code.exists() or value.empty()) and (system.empty() or system = %ucum) and (value.empty() or value.hasValue().not() or value > 0)',
    human: 'There SHALL be a code if there is a value and it SHALL be an expression of time.  If system is present, it SHALL be UCUM.  If value is present, it SHALL be positive.',
    breach: (o) => firstFailing([[valueWithoutCode(o), 'code'], [notUcum(o), 'system'], [typeof o.value === 'number' && o.value <= 0, 'value']]),
  },
  {
    key: 'cnt-3', on: 'Count', path: 'Count', definitions: ['Count'],
    expression: "(code.exists() or value.empty()) and (system.empty() or system = %ucum) and (code.empty() or code = '1') and (value.empty() or value.hasValue().not() or value.toString().contains('.').not())",
    human: 'There SHALL be a code with a value of "1" if there is a value. If system is present, it SHALL be UCUM.  If present, the value SHALL be a whole number.',
    breach: (o) => firstFailing([[valueWithoutCode(o), 'code'], [notUcum(o), 'system'], [typeof o.code === 'string' && o.code !== '1', 'code'], [fractional(o), 'value']]),
  },
  {
    key: 'dis-1', on: 'Distance', path: 'Distance', definitions: ['Distance'],
    expression: '(code.exists() or value.empty()) and (system.empty() or system = %ucum)',
    human: 'There SHALL be a code if there is a value and it SHALL be an expression of length.  If system is present, it SHALL be UCUM.',
    breach: (o) => firstFailing([[valueWithoutCode(o), 'code'], [notUcum(o), 'system']]),
  },
  {
    // With a code, `system = %ucum` is empty when there is no system: then only a missing value
    // makes it false (qty-3 refuses the code without a system).
    key: 'drt-1', on: 'Duration', path: 'Duration', definitions: ['Duration'],
    expression: 'code.exists() implies ((system = %ucum) and value.exists())',
    human: 'There SHALL be a code if there is a value and it SHALL be an expression of time.  If system is present, it SHALL be UCUM.',
    breach: (o) => (has(o, 'code') ? firstFailing([[notUcum(o), 'system'], [!has(o, 'value'), 'value']]) : undefined),
  },
  {
    key: 'rng-2', on: 'Range', path: 'Range', definitions: ['Range'],
    expression: 'low.empty() or high.empty() or (low <= high)', human: 'If present, low SHALL have a lower value than high',
    breach: (o) => holdsIf(!(typeof o.low === 'object' && typeof o.high === 'object' && lowAboveHigh(o.low as Json, o.high as Json))),
  },
  {
    key: 'rat-1', on: 'Ratio', path: 'Ratio', definitions: ['Ratio'],
    expression: '(numerator.empty() xor denominator.exists()) and (numerator.exists() or extension.exists())',
    human: 'Numerator and denominator SHALL both be present, or both are absent. If both are absent, there SHALL be some extension present',
    breach: (o) => holdsIf(has(o, 'numerator') === has(o, 'denominator') && (has(o, 'numerator') || has(o, 'extension'))),
  },
  {
    key: 'cpt-2', on: 'ContactPoint', path: 'ContactPoint', definitions: ['ContactPoint'],
    expression: 'value.empty() or system.exists()', human: 'A system is required if a value is provided.',
    breach: (o) => holdsIf(!has(o, 'value') || has(o, 'system'), 'system'),
  },
  {
    key: 'att-1', on: 'Attachment', path: 'Attachment', definitions: ['Attachment'],
    expression: 'data.empty() or contentType.exists()', human: 'If the Attachment has data, it SHALL have a contentType',
    breach: (o) => holdsIf(!has(o, 'data') || has(o, 'contentType'), 'contentType'),
  },
  ...timing([
    ['tim-1', 'duration.empty() or durationUnit.exists()', "if there's a duration, there needs to be duration units", (o) => holdsIf(!has(o, 'duration') || has(o, 'durationUnit'), 'durationUnit')],
    ['tim-2', 'period.empty() or periodUnit.exists()', "if there's a period, there needs to be period units", (o) => holdsIf(!has(o, 'period') || has(o, 'periodUnit'), 'periodUnit')],
    ['tim-4', 'duration.exists() implies duration >= 0', 'duration SHALL be a non-negative value', (o) => holdsIf(!((o.duration as number) < 0), 'duration')],
    ['tim-5', 'period.exists() implies period >= 0', 'period SHALL be a non-negative value', (o) => holdsIf(!((o.period as number) < 0), 'period')],
    ['tim-6', 'periodMax.empty() or period.exists()', "If there's a periodMax, there must be a period", (o) => holdsIf(!has(o, 'periodMax') || has(o, 'period'), 'periodMax')],
    ['tim-7', 'durationMax.empty() or duration.exists()', "If there's a durationMax, there must be a duration", (o) => holdsIf(!has(o, 'durationMax') || has(o, 'duration'), 'durationMax')],
    ['tim-8', 'countMax.empty() or count.exists()', "If there's a countMax, there must be a count", (o) => holdsIf(!has(o, 'countMax') || has(o, 'count'), 'countMax')],
    // Several `when` codes: fhirpath 5 raises an error on `in` (a list on its left), FHIRPath
    // leaves it undefined; read as meant, an offset from any meal code of the four is refused.
    ['tim-9', "offset.empty() or (when.exists() and ((when in ('C' | 'CM' | 'CD' | 'CV')).not()))", "If there's an offset, there must be a when (and not C, CM, CD, CV)",
      (o) => holdsIf(!has(o, 'offset') || (has(o, 'when') && !list(o.when).some((w) => NO_OFFSET.includes(w as never))), 'offset')],
    ['tim-10', 'timeOfDay.empty() or when.empty()', "If there's a timeOfDay, there cannot be a when, or vice versa", (o) => holdsIf(!has(o, 'timeOfDay') || !has(o, 'when'))],
  ]),
];

function timing(rows: Array<[string, string, string, (o: Json) => string | undefined]>): ElementInvariant[] {
  return rows.map(([key, expression, human, breach]) => ({ key, on: 'Timing', path: 'Timing.repeat', definitions: ['Timing_Repeat'], expression, human, breach }));
}

/** The element invariants by schema definition, for the walk. */
export const ELEMENT_INVARIANTS_BY_DEFINITION: ReadonlyMap<string, ElementInvariant[]> = (() => {
  const by = new Map<string, ElementInvariant[]>();
  for (const inv of ELEMENT_INVARIANTS) for (const d of inv.definitions) by.set(d, [...(by.get(d) ?? []), inv]);
  return by;
})();

/** Every Timing.repeat invariant `repeat` breaks, with the element to name: the one check, shared by the core walk and medication schedules. */
export function timingRepeatBreaches(repeat: unknown): Array<{ invariant: ElementInvariant; element: string }> {
  if (typeof repeat !== 'object' || repeat === null) return [];
  const found: Array<{ invariant: ElementInvariant; element: string }> = [];
  for (const invariant of ELEMENT_INVARIANTS_BY_DEFINITION.get('Timing_Repeat')!) {
    const element = invariant.breach(repeat as Json);
    if (element !== undefined) found.push({ invariant, element });
  }
  return found;
}
