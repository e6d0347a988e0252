import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { officialDefinitionsDir } from './paths';

/** What this server reads of an element definition: its path, cardinality, summary flag and content reference. */
export interface ElementDefinitionFacts {
  path: string;
  min?: number;
  isSummary?: boolean;
  contentReference?: string;
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
      ? ((JSON.parse(readFileSync(file, 'utf8')) as { snapshot?: { element?: ElementDefinitionFacts[] } }).snapshot?.element ?? []).map(
          ({ path, min, isSummary, contentReference }) => ({ path, min, isSummary, contentReference }),
        )
      : null;
    elementsOf.set(name, elements);
  }
  return elements;
}
