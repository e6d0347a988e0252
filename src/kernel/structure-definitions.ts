import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { officialDefinitionsDir } from './paths';

/** What this server reads of an element definition: its path, cardinality, summary flag, content reference and type codes. */
export interface ElementDefinitionFacts {
  path: string;
  min?: number;
  isSummary?: boolean;
  contentReference?: string;
  types?: string[];
}

const elementsOf = new Map<string, ElementDefinitionFacts[] | null>();

/**
 * The snapshot elements of the official R4 StructureDefinition named `name` (a resource or a
 * datatype: `Observation`, `Quantity`), from HL7's own package (hl7.fhir.r4.examples), or null
 * when it has none. Read on first use, one file per name, and kept: the validator's required
 * elements and `_summary` both read them, so both follow the same definitions.
 */
export function structureElements(name: string): ElementDefinitionFacts[] | null {
  let elements = elementsOf.get(name);
  if (elements === undefined) {
    const file = join(officialDefinitionsDir(), `StructureDefinition-${name}.json`);
    elements = existsSync(file)
      ? ((JSON.parse(readFileSync(file, 'utf8')) as { snapshot?: { element?: Array<ElementDefinitionFacts & { type?: Array<{ code: string }> }> } }).snapshot?.element ?? []).map(
          ({ path, min, isSummary, contentReference, type }) => ({ path, min, isSummary, contentReference, types: type?.map((t) => t.code) }),
        )
      : null;
    elementsOf.set(name, elements);
  }
  return elements;
}

/** Per type (resource or datatype): element path → its type codes or content reference. */
const byPath = new Map<string, Map<string, ElementDefinitionFacts> | null>();
function elementsByPath(name: string): Map<string, ElementDefinitionFacts> | null {
  let map = byPath.get(name);
  if (map === undefined) {
    const elements = structureElements(name);
    map = elements && new Map(elements.map((e) => [e.path, e]));
    byPath.set(name, map);
  }
  return map;
}

/** Type codes that only structure their children, which stay on the type's own paths. */
const BACKBONE = new Set(['BackboneElement', 'Element']);

/**
 * The type code of the element a JSON property path names inside a resource (`['content',
 * 'attachment', 'url']` of DocumentReference → `url`), through datatypes, backbone elements,
 * content references (`Questionnaire.item.item`) and choices (`valueUri` of `value[x]` → `uri`);
 * undefined when the path names no element of the R4 definitions. Array positions are not
 * part of the path; a contained resource starts a path of its own.
 */
export function elementTypeAt(resourceType: string, keys: readonly string[]): string | undefined {
  let type = resourceType;
  let path = resourceType;
  let code: string | undefined;
  for (const key of keys) {
    const elements = elementsByPath(type);
    if (!elements) return undefined;
    const element = elements.get(`${path}.${key}`);
    if (element?.contentReference) {
      code = undefined;
      path = element.contentReference.slice(element.contentReference.indexOf('#') + 1);
      continue;
    }
    code = element ? (element.types?.length === 1 ? element.types[0] : undefined) : choiceType(elements, path, key);
    if (code === undefined) return undefined;
    if (BACKBONE.has(code)) path = `${path}.${key}`;
    else {
      type = code;
      path = code;
    }
  }
  return code;
}

/** `valueUri` of `Extension.value[x]` → `uri`: the choice element the key names, and the type its suffix names. */
function choiceType(elements: Map<string, ElementDefinitionFacts>, path: string, key: string): string | undefined {
  for (let cut = key.length - 1; cut > 0; cut--) {
    if (key[cut]! < 'A' || key[cut]! > 'Z') continue;
    const choice = elements.get(`${path}.${key.slice(0, cut)}[x]`);
    if (!choice) continue;
    const suffix = key.slice(cut);
    return choice.types?.find((t) => t === suffix || t === suffix[0]!.toLowerCase() + suffix.slice(1));
  }
  return undefined;
}
