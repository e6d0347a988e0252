import type { TypedValue } from '../accessor';
import type { IndexKind, RowSink } from '../index-tables';
import type { SearchParameterDef } from '../registry';
import type { InputLimits } from '../../kernel/input-limits';
import type { SqlParams } from '../../kernel/sql-params';
import type { TerminologySource } from '../../terminology/valueset';

/**
 * One search parameter type: how its values are extracted into index rows at write time and
 * how a search term becomes a condition on those rows. Both live in one module so that they
 * cannot drift apart.
 */
export interface ParameterTypeModule<Term> {
  readonly kind: IndexKind;
  /** Modifiers accepted besides `:missing` (which every type supports). */
  readonly modifiers: readonly string[];
  extract(values: readonly TypedValue[], param: string, sink: RowSink): void;
  /**
   * Parses one (comma-separated) search value; throws a 400 OperationOutcomeError when malformed
   * or beyond `limits` (the search's; the defaults when not given). `terminology`: the stored
   * ValueSets and CodeSystems a token's `:in` may expand besides the shipped ones (the caller's).
   */
  parse(raw: string, modifier: string | undefined, param: SearchParameterDef, limits?: InputLimits, terminology?: TerminologySource): Term;
  /** A condition on the index row aliased `i` that holds when the row matches `term`. */
  condition(term: Term, i: string, q: SqlParams): string;
  /** The index column sorted on (min ascending, max descending), when the type is sortable. */
  readonly sortColumn?: { asc: string; desc: string; pgType: string };
}
