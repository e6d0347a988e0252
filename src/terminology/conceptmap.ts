import { terminology } from './load';

export const MAPPING_VERIFICATION = 'http://rpm.example.org/fhir/StructureDefinition/mapping-verification';

export interface Translation {
  /** Undefined when the source code is known but has no verified target (equivalence unmatched). */
  code?: string;
  display?: string;
  system: string;
  equivalence: string;
  verification?: string;
  comment?: string;
  /** The UCUM unit the source sends the value in, when the map says (product source-unit). */
  sourceUnit?: string;
  /**
   * The target holds only for a value whose unit is commensurable with this UCUM unit (dependsOn
   * value-unit): one source code, one target per unit dimension (mass or moles of glucose).
   */
  valueUnit?: string;
}

interface Index {
  bySource: Map<string, Translation[]>;
}

const indexes = new Map<string, Index>();

function index(mapId: string): Index | undefined {
  let idx = indexes.get(mapId);
  if (idx) return idx;
  const cm = terminology().conceptMaps.get(mapId);
  if (!cm) return undefined;
  idx = { bySource: new Map() };
  for (const group of cm.group ?? []) {
    for (const element of group.element) {
      const translations: Translation[] = (element.target ?? []).map((t) => ({
        code: t.code,
        display: t.display,
        system: group.target ?? '',
        equivalence: t.equivalence,
        verification: t.extension?.find((e) => e.url === MAPPING_VERIFICATION)?.valueCode,
        comment: t.comment,
        sourceUnit: t.product?.find((p) => p.property.endsWith('/source-unit'))?.value,
        valueUnit: t.dependsOn?.find((d) => d.property.endsWith('/value-unit'))?.value,
      }));
      idx.bySource.set(`${group.source ?? ''}|${element.code}`, translations);
    }
  }
  indexes.set(mapId, idx);
  return idx;
}

/**
 * The targets of system|code in the ConceptMap `mapId`: undefined when the map does not know the
 * code at all, an empty-coded translation when it knows it has no verified target.
 */
export function translate(mapId: string, system: string, code: string): Translation[] | undefined {
  return index(mapId)?.bySource.get(`${system}|${code}`);
}

/** The first target that carries a code. */
export function translateCode(mapId: string, system: string, code: string): Translation | undefined {
  return translate(mapId, system, code)?.find((t) => t.code !== undefined);
}

/** Every map that has system|code as a source (for $translate without a map named). */
export function mapsWithSource(system: string, code: string): string[] {
  return [...terminology().conceptMaps.keys()].filter((id) => translate(id, system, code) !== undefined);
}
