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
