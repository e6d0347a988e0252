import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { terminologyDir } from '../kernel/paths';

/**
 * The terminology files (terminology/): ConceptMaps, ValueSets and the CodeSystems they include,
 * and the per-LOINC observation rules. Read once, on first use; they are data, not code, and
 * the server serves them read-only.
 */
export interface ObservationRule {
  display: string;
  profile?: string;
  /** BP: a panel whose value lives in components. */
  panel?: boolean;
  units?: string[];
  unit?: string;
  unitDisplay?: string;
  decimals?: number;
  /** Plausible [low, high] in `unit`. */
  range?: [number, number];
  category?: string;
  alsoCode?: fhir4.Coding;
}

export interface Terminology {
  conceptMaps: Map<string, fhir4.ConceptMap>;
  valueSets: Map<string, fhir4.ValueSet>;
  codeSystems: Map<string, fhir4.CodeSystem>;
  rules: Map<string, ObservationRule>;
  vitalSignsCategory: fhir4.Coding;
}

function readJsonDir<T>(dir: string): T[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as T);
}

let loaded: Terminology | undefined;

export function terminology(): Terminology {
  if (loaded) return loaded;
  const conceptMaps = new Map(readJsonDir<fhir4.ConceptMap>(join(terminologyDir, 'conceptmaps')).map((cm) => [cm.id!, cm]));
  const valueSets = new Map(readJsonDir<fhir4.ValueSet>(join(terminologyDir, 'valuesets')).map((vs) => [vs.url!, vs]));
  const codeSystems = new Map(readJsonDir<fhir4.CodeSystem>(join(terminologyDir, 'codesystems')).map((cs) => [cs.url!, cs]));
  const rulesFile = JSON.parse(readFileSync(join(terminologyDir, 'observation-rules.json'), 'utf8')) as {
    rules: Record<string, ObservationRule>;
    vitalSignsCategory: fhir4.Coding;
  };
  loaded = { conceptMaps, valueSets, codeSystems, rules: new Map(Object.entries(rulesFile.rules)), vitalSignsCategory: rulesFile.vitalSignsCategory };
  return loaded;
}
