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
