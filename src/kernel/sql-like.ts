/** Escapes LIKE wildcards so that a value is matched literally (`\` is the default escape). */
export function escapeLike(value: string): string {
  return value.replace(/[\\%_]/g, (c) => `\\${c}`);
}
