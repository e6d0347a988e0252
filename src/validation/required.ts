import type { Issue } from '../kernel/outcome';
import { structureElements } from '../kernel/structure-definitions';
import { schemaDefinitions } from './schema';

/**
 * The required elements (min ≥ 1 in the official R4 StructureDefinitions) that the JSON schema
 * cannot require: a primitive may be present as its value or as its `_name` companion alone
 * (json.html#primitive: an extension such as data-absent-reason in place of the value), and a
 * choice (`medication[x]`) as any one of its typed names. So the shipped schema requires
 * `Observation.code` but not `Observation.status`, and an Observation without a status was
 * stored. Complex elements the schema already requires are left to it (one issue, not two).
 *
 * The instance is walked along the schema's definitions (which property holds which backbone
 * element or datatype), with each definition's rules read from the StructureDefinition of its
 * element path once. The walk stops at a resource nested in another: `contained` resources are
 * validated as resources of their own (./resource.ts), and so is each entry of a batch or
 * transaction by the write pipeline, and the entries of a Bundle stored as such and a
 * Parameters' resources by resource.ts (heldRequiredIssues).
 */
interface Rule {
  /** The element's name as the definition writes it (`status`, `medication[x]`). */
  element: string;
  /** The JSON names any one of which makes it present. */
  names: string[];
}

interface DefinitionRules {
  rules: Rule[];
  /** Property name → the rules of the complex child it holds (a backbone element or datatype), resolved on first use. */
  children: Map<string, Child>;
}

interface Child {
  definition: string;
  /** Its element path in its StructureDefinition. */
  path: string;
  rules?: DefinitionRules;
}

const rulesByDefinition = new Map<string, DefinitionRules>();

/** The rules of `definition` at `path` (`Observation`, `Observation.component`, `Quantity`). */
function rulesOf(definition: string, path: string): DefinitionRules {
  const key = `${definition}@${path}`;
  let found = rulesByDefinition.get(key);
  if (found) return found;
  found = { rules: [], children: new Map() };
  rulesByDefinition.set(key, found);
  const schema = schemaDefinitions()[definition];
  const elements = structureElements(path.split('.')[0]!);
  if (!schema?.properties || !elements) return found;
  const properties = Object.keys(schema.properties);
  const alreadyRequired = new Set(schema.required ?? []);
  for (const e of elements) {
    if (!e.path.startsWith(`${path}.`) || e.path.indexOf('.', path.length + 1) !== -1 || (e.min ?? 0) < 1) continue;
    const element = e.path.slice(path.length + 1);
    const names = element.endsWith('[x]')
      ? properties.filter((p) => isChoiceOf(p, element.slice(0, -3)))
      : properties.filter((p) => p === element || p === `_${element}`);
    if (names.length && !names.some((n) => alreadyRequired.has(n))) found.rules.push({ element, names });
  }
  for (const [property, spec] of Object.entries(schema.properties)) {
    if (property.startsWith('_')) continue;
    const target = (spec.$ref ?? spec.items?.$ref)?.split('/').pop();
    if (!target || !/^[A-Z]/.test(target) || target === 'ResourceList' || target === 'Resource') continue;
    if (target.includes('_')) {
      // A backbone element of the same resource; one that reuses another's definition
      // (contentReference, Questionnaire.item.item) takes that element's rules.
      const childPath = `${path}.${property}`;
      const reference = elements.find((x) => x.path === childPath)?.contentReference;
      found.children.set(property, { definition: target, path: reference ? reference.replace(/^.*#/, '') : childPath });
    } else {
      found.children.set(property, { definition: target, path: target });
    }
  }
  return found;
}

/** `valueQuantity` and `_valueString` are choices of `value`; `valueSet` is not. */
function isChoiceOf(property: string, base: string): boolean {
  const name = property.startsWith('_') ? property.slice(1) : property;
  return name.length > base.length && name.startsWith(base) && /[A-Z]/.test(name[base.length]!);
}

/** Every required element missing from `resource` (a resource of a known type), at any depth. */
export function missingRequiredIssues(resource: Record<string, unknown>, resourceType: string): Issue[] {
  const issues: Issue[] = [];
  walk(resource, rulesOf(resourceType, resourceType), [resourceType], issues);
  return issues;
}

/**
 * Checks `node` against `rules`; `at` is its location as segments (`Observation`, `.component`,
 * `[0]`), joined only when an element is missing: on a valid resource the walk builds no string.
 */
function walk(node: unknown, rules: DefinitionRules, at: string[], issues: Issue[]): void {
  if (Array.isArray(node)) {
    for (let i = 0; i < node.length; i++) {
      at.push(`[${i}]`);
      walk(node[i], rules, at, issues);
      at.pop();
    }
    return;
  }
  if (node === null || typeof node !== 'object') return;
  const record = node as Record<string, unknown>;
  for (const rule of rules.rules) {
    if (!rule.names.some((n) => record[n] !== undefined)) {
      const expression = `${at.join('')}.${rule.element}`;
      issues.push({ code: 'required', diagnostics: `${expression}: missing required element '${rule.element}'`, expression: [expression] });
    }
  }
  if (rules.children.size === 0) return;
  for (const property in record) {
    const child = rules.children.get(property);
    if (!child) continue;
    child.rules ??= rulesOf(child.definition, child.path);
    at.push(`.${property}`);
    walk(record[property], child.rules, at, issues);
    at.pop();
  }
}
