/**
 * Walks every `reference` string of a resource (nested elements, extensions' valueReference,
 * contained resources) and replaces it by what `replace` returns; also rewrites the same
 * placeholders where the narrative links to them (R4 bundle.html#references).
 */
export function rewriteReferences(resource: Record<string, unknown>, replace: (reference: string) => string | undefined, placeholders: ReadonlyMap<string, string>): void {
  walk(resource, replace);
  const text = resource.text as { div?: unknown } | undefined;
  if (text && typeof text.div === 'string' && text.div.includes('urn:')) {
    let div = text.div;
    for (const [from, to] of placeholders) {
      if (div.includes(from)) div = div.replaceAll(from, to);
    }
    text.div = div;
  }
}

function walk(node: unknown, replace: (reference: string) => string | undefined): void {
  if (Array.isArray(node)) {
    for (const item of node) walk(item, replace);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  const obj = node as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    const value = obj[key];
    if (key === 'reference' && typeof value === 'string') {
      const replacement = replace(value);
      if (replacement !== undefined) obj[key] = replacement;
    } else if (typeof value === 'object') {
      walk(value, replace);
    }
  }
}

/** Every `reference` string of a resource, for resolving conditional references up front. */
export function collectReferences(resource: Record<string, unknown>): string[] {
  const found: string[] = [];
  walk(resource, (r) => {
    found.push(r);
    return undefined;
  });
  return found;
}

export const isPlaceholder = (reference: string) => reference.startsWith('urn:uuid:') || reference.startsWith('urn:oid:');

/** `Patient?identifier=x|1`: a search in place of an id, allowed in transactions (R4 http.html#trules). */
export const isConditionalReference = (reference: string) => /^[A-Z][A-Za-z]+\?/.test(reference);
