import type { ErrorObject } from 'ajv';

/**
 * R4 json.html#primitive, repeating primitives: the values and their `_name` companion (ids and
 * extensions) are parallel arrays, and `null` holds the place of the half an item lacks:
 * `"given": ["Peter", null], "_given": [null, {"extension": […]}]` is a name of two given names,
 * the second known only by its extension. Such a null is valid where the other array has
 * something at the same index; a null with nothing beside it is no value at all.
 */
export function isPlaceholderNull(holder: Record<string, unknown>, key: string, index: number): boolean {
  const own = holder[key];
  if (!Array.isArray(own) || own[index] !== null) return false;
  const companion = holder[key.startsWith('_') ? key.slice(1) : `_${key}`];
  return Array.isArray(companion) && companion[index] !== null && companion[index] !== undefined;
}

/**
 * The schema's errors less those about placeholder nulls: the R4 schema types each item of a
 * repeating primitive (`string`, `Element`), so it calls every placeholder wrong. `data` is what
 * the validator was given; an error's instancePath (`/name/0/given/1`) is walked in it.
 */
export function withoutPlaceholderErrors(errors: ErrorObject[], data: unknown): ErrorObject[] {
  return errors.filter((e) => !atPlaceholder(data, e.instancePath));
}

function atPlaceholder(data: unknown, instancePath: string): boolean {
  const segments = instancePath.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (segments.length < 2 || !/^\d+$/.test(segments[segments.length - 1]!)) return false;
  let holder: unknown = data;
  for (const segment of segments.slice(0, -2)) {
    if (holder === null || typeof holder !== 'object') return false;
    holder = (holder as Record<string, unknown>)[segment];
  }
  if (holder === null || typeof holder !== 'object' || Array.isArray(holder)) return false;
  return isPlaceholderNull(holder as Record<string, unknown>, segments[segments.length - 2]!, Number(segments[segments.length - 1]));
}
