/**
 * The condition "`column` is one of `values`" for bind parameter `$n`, and the value to bind:
 * `column = $n` for one value, `column = ANY($n::text[])` for several.
 *
 * Measured reason (docs/decisions/022-statement-cost.md, "Plans made on every call"): for a
 * prepared `= ANY($1::text[])` PostgreSQL costs its generic plan for an array of ten, which is
 * dearer than the custom plan of the one-element array it is almost always given, so it never
 * keeps the generic plan and plans the statement again on every call. The plans lookup of every
 * Observation write spent 52–59 µs planning and 4–13 µs running. The two forms are two
 * statement texts, each prepared and planned once.
 */
export function oneOf(column: string, n: number, values: readonly string[]): { sql: string; value: string | readonly string[] } {
  return values.length === 1 ? { sql: `${column} = $${n}`, value: values[0]! } : { sql: `${column} = ANY($${n}::text[])`, value: values };
}
