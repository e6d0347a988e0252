/**
 * Native checks for the FHIRPath invariants of the profiles we hold (R4 vital signs) that are
 * not the base definitions' (those, obs-3, obs-6, obs-7, are checked on every resource by
 * ./element-invariants.ts, and profile.ts skips them). The
 * fhirpath library costs 2-50 µs per invariant per resource (obs-7: 48 µs), nine of them on
 * every vital-sign write; these cost well under 1 µs together. Each is keyed by the invariant
 * key AND its exact expression, so a profile whose expression differs falls back to fhirpath.
 * test/validation/invariants.test.ts checks every one against fhirpath on real data.
 *
 * `holds` gets the resource and answers whether the invariant holds at its element (every
 * occurrence of the element, for element-level invariants).
 */
type Json = Record<string, unknown>;

const list = (v: unknown): Json[] => (Array.isArray(v) ? (v as Json[]) : v === undefined || v === null ? [] : [v as Json]);
const exists = (v: unknown): boolean => (Array.isArray(v) ? v.length > 0 : v !== undefined && v !== null);
/** `value` of a choice element: valueQuantity, valueString, … */
const hasValue = (o: Json): boolean => Object.keys(o).some((k) => k.length > 5 && k.startsWith('value') && k[5]! >= 'A' && k[5]! <= 'Z' && exists(o[k]));

interface NativeInvariant {
  expression: string;
  holds(resource: Json): boolean;
}

const NATIVE: Record<string, NativeInvariant> = {
  'dom-2@': {
    expression: 'contained.contained.empty()',
    holds: (r) => !list(r.contained).some((c) => exists(c.contained)),
  },
  'dom-4@': {
    expression: 'contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()',
    holds: (r) => !list(r.contained).some((c) => exists((c.meta as Json | undefined)?.versionId) || exists((c.meta as Json | undefined)?.lastUpdated)),
  },
  'dom-5@': {
    expression: 'contained.meta.security.empty()',
    holds: (r) => !list(r.contained).some((c) => exists((c.meta as Json | undefined)?.security)),
  },
  'vs-2@': {
    expression: '(component.empty() and hasMember.empty()) implies (dataAbsentReason.exists() or value.exists())',
    holds: (r) => exists(r.component) || exists(r.hasMember) || exists(r.dataAbsentReason) || hasValue(r),
  },
  // "If Observation.effective[x] is dateTime and has a value then that value shall be precise
  // to the day": a Period, or an instant, is not constrained. (Evaluated as
  // `effective.all(…)`, fhirpath yields false for a Period, refusing valid data.)
  'vs-1@effective': {
    expression: '($this as dateTime).toString().length() >= 8',
    holds: (r) => typeof r.effectiveDateTime !== 'string' || r.effectiveDateTime.length >= 8,
  },
  'vs-3@component': {
    expression: 'value.exists() or dataAbsentReason.exists()',
    holds: (r) => list(r.component).every((c) => hasValue(c) || exists(c.dataAbsentReason)),
  },
};

/** The native check of invariant `key` at `relativePath` (e.g. `effective`), if its expression is the one we implement. */
export function nativeInvariant(key: string, relativePath: string, expression: string): ((resource: unknown) => boolean) | undefined {
  const native = NATIVE[`${key}@${relativePath}`];
  return native && native.expression === expression ? (r) => native.holds(r as Json) : undefined;
}
