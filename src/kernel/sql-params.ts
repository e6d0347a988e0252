/**
 * Bound parameters of one SQL statement, numbered in the order they are bound: the search SQL
 * builder's and the write statement's (src/store/write-statement.ts). Values only ever reach SQL
 * through `bind`, never as text: the statement holds `$n` placeholders and the values travel
 * separately.
 */
export class SqlParams {
  readonly values: unknown[] = [];
  private aliases = 0;

  /** Adds a value and returns its placeholder, with a cast when the type is not inferable. */
  bind(value: unknown, cast?: string): string {
    this.values.push(value);
    return cast ? `$${this.values.length}::${cast}` : `$${this.values.length}`;
  }

  /** A fresh table alias for a nested sub-query (`i1`, `i2`, …). */
  alias(prefix: string): string {
    this.aliases += 1;
    return `${prefix}${this.aliases}`;
  }
}
