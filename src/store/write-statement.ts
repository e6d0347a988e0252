import { SqlParams } from '../kernel/sql-params';
import type { Queryable, Transaction } from './db';

/**
 * One statement that several writers fill with data-modifying CTEs (`WITH … SELECT …`), their
 * bind values numbered in one sequence, and the values it answers with. The unit of work writes a
 * type's versions (src/store/repository.ts) and their search index rows (src/search) in one, so
 * a create is one round trip fewer (docs/decisions/022-statement-cost.md, "Versions and index
 * rows in one statement"). PostgreSQL allows a data-modifying statement only in a top-level WITH,
 * so each writer adds CTEs here rather than a statement of its own; every CTE runs on the
 * statement's one snapshot, which the writers rely on (a replaced version is read as it was).
 */
export class WriteStatement {
  private readonly ctes: string[] = [];
  private readonly answers: string[] = [];
  private readonly params = new SqlParams();

  /** A bind value, as its placeholder cast to `type`. */
  bind(value: unknown, type: string): string {
    return this.params.bind(value, type);
  }

  /**
   * A column of values for `unnest`, as an expression of type `elementType[]`. When no value
   * holds a line feed or U+0001 (and none is an empty string, which would make a one-value column
   * an empty array), the values travel as one text, one per line, U+0001 for NULL, split by
   * PostgreSQL (`string_to_array`); otherwise as an array literal. Measured reason
   * (docs/decisions/022-statement-cost.md, "Columns as lines"): node-postgres quotes every
   * element of an array literal and escapes its quotes with two regular expressions, and
   * PostgreSQL unescapes them again; a version's JSON is full of quotes. That quoting was the
   * largest part of the server's own CPU in a 100-entry transaction.
   */
  column(values: readonly unknown[], elementType: string): string {
    const lines = asLines(values);
    if (lines === undefined) return this.bind(values, `${elementType}[]`);
    const split = `string_to_array(${this.bind(lines, 'text')}, E'\\n', E'\\x01')`;
    return elementType === 'text' ? split : `${split}::${elementType}[]`;
  }

  /** A CTE (`name AS (…)`); names are the writers' own (`v_…` for versions, `i_…`/`d_…` for index rows). */
  with(cte: string): void {
    this.ctes.push(cte);
  }

  /** An expression the statement answers with, under `name` (a count a writer checks). */
  answer(name: string, expression: string): void {
    this.answers.push(`${expression} AS ${name}`);
  }

  get empty(): boolean {
    return this.ctes.length === 0;
  }

  /** Runs it; the answers' row (empty when nothing was added). */
  async run(tx: Queryable): Promise<Record<string, unknown>> {
    if (this.empty) return {};
    const { rows } = await tx.query<Record<string, unknown>>(this.text(), this.params.values);
    return rows[0] ?? {};
  }

  /**
   * Queues it to travel with the transaction's next statement or COMMIT (`Transaction.later`):
   * for writes whose answers nobody checks. `onError` maps its failure.
   */
  runLater(tx: Transaction, onError?: (err: unknown) => unknown): void {
    if (this.answers.length) throw new Error('a statement with answers must be run, not queued');
    if (!this.empty) tx.later(this.text(), this.params.values, onError);
  }

  private text(): string {
    return `WITH ${this.ctes.join(',\n')} SELECT ${this.answers.length ? this.answers.join(', ') : '1'}`;
  }
}

const NULL_LINE = '\x01';

/** The values one per line, NULL as U+0001, or undefined when a value could not be told apart that way. */
function asLines(values: readonly unknown[]): string | undefined {
  if (values.length === 0) return undefined;
  const lines: string[] = new Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || v === undefined) lines[i] = NULL_LINE;
    else if (typeof v === 'string') {
      if (v === '' || v.includes('\n') || v.includes(NULL_LINE)) return undefined;
      lines[i] = v;
    } else if ((typeof v === 'number' && Number.isFinite(v)) || typeof v === 'boolean') lines[i] = String(v);
    else return undefined;
  }
  return lines.join('\n');
}
