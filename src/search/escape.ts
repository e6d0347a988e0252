import { badRequest } from '../kernel/outcome';

/**
 * FHIR search values escape their separators with a backslash (R4 search.html#escaping): `\,`
 * is a literal comma (not an OR), `\$` a literal dollar (not a composite split), `\|` a
 * literal bar.
 */
export function splitUnescaped(value: string, separator: ',' | '$' | '|'): string[] {
  const parts: string[] = [];
  let start = 0;
  for (let i = 0; i < value.length; i++) {
    if (value[i] === '\\') i++;
    else if (value[i] === separator) {
      parts.push(value.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(value.slice(start));
  return parts;
}

/** `value` as one search value: its separators escaped (the inverse of splitting and unescaping). */
export function escapeSearchValue(value: string): string {
  return value.replace(/[\\,$|]/g, (m) => `\\${m}`);
}

/**
 * Only `\\`, `\,`, `\$` and `\|` are escapes (search.html#escaping). Any other backslash was
 * read as a literal one, so `name=x\y` matched `x\y` where another server would refuse it or
 * read something else: a 400 naming the parameter, before the value is split or unescaped.
 */
export function checkEscapes(value: string, name: string): void {
  for (let i = 0; i < value.length; i++) {
    if (value[i] !== '\\') continue;
    const next = value[i + 1];
    if (next === undefined || !'\\,$|'.includes(next)) {
      const found = next === undefined ? 'a trailing backslash' : `'\\${next}'`;
      throw badRequest(`'${name}': ${found} is not an escape; R4 escapes only \\\\, \\,, \\$ and \\| (search.html#escaping), in '${value.slice(0, 60)}'`, [name]);
    }
    i++;
  }
}
