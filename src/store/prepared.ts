/**
 * Which SQL texts run as named prepared statements on PostgreSQL.
 *
 * Measured reason (issue 16): the hot Observation search cost PostgreSQL ~750 µs of CPU as an
 * unnamed statement, parsed and planned on every call, and ~120 µs as a named one, whose plan
 * the backend keeps (bench on PostgreSQL 15, 100k Observations; the planner weighs the many
 * index paths of the search's CASE probe each time). The same holds, less dramatically, for
 * reads by id and the writer's statements.
 *
 * A text is prepared from its second use: the server's statements are built from templates
 * whose values are all bind parameters, so the texts that repeat are few (a search shape, a
 * type's read, a writer's column set), while a one-off text never costs a Parse of its own.
 * At most `MAX_NAMED` texts get names per process, so a backend's plan cache stays bounded
 * (beyond that, texts run unnamed as before).
 *
 * Off (DATABASE_PREPARED_STATEMENTS=false) behind a connection pooler in transaction mode that
 * does not track prepared statements (PgBouncer before 1.21): a session's statements would land
 * on backends that never saw their Parse.
 */
export const MAX_NAMED = 200;

/**
 * Leads a statement that must be planned for its values every time, so never gets a name: a
 * named statement is planned generically from its sixth run when PostgreSQL rates that plan no
 * dearer, and for a search no index drives (src/search/search.ts) the generic estimates can be
 * far off. Measured: `Observation?code=…|8867-4&date=ge<last week>` at 100k went from 10 ms to
 * 0.44–0.56 s at its seventh run (a generic plan that read every reading of the code).
 */
export const CUSTOM_PLAN = '/* custom plan */ ';
/** Texts counted but not (yet) named; the count is forgotten when this many are waiting. */
const MAX_COUNTED = 5_000;

export class PreparedNames {
  private readonly names = new Map<string, string>();
  private readonly counted = new Map<string, number>();

  /** The statement name for `text`, or undefined to run it unnamed this time. */
  nameOf(text: string): string | undefined {
    const name = this.names.get(text);
    if (name !== undefined) return name;
    if (text.startsWith(CUSTOM_PLAN)) return undefined;
    if (this.names.size >= MAX_NAMED) return undefined;
    const seen = (this.counted.get(text) ?? 0) + 1;
    if (seen < 2) {
      if (this.counted.size >= MAX_COUNTED) this.counted.clear();
      this.counted.set(text, seen);
      return undefined;
    }
    this.counted.delete(text);
    const named = `rpm_${this.names.size + 1}`;
    this.names.set(text, named);
    return named;
  }
}

/**
 * Errors after which a connection's prepared statements cannot be trusted: a cached plan whose
 * result type a migration changed (0A000), a statement the backend does not know (26000, e.g.
 * a connection pooler that moved the session). The connection is dropped and the statement
 * run once more, unnamed, on another.
 */
export function isStalePreparedStatement(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === '26000' || (code === '0A000' && /cached plan/.test((err as Error).message ?? ''));
}
