/**
 * The index tables of a resource type (created by `src/store/migrations/per-type/002_search_index.sql`,
 * see docs/decisions/002-search-index-layout.md). Every row starts with `id` (the resource),
 * `param` (the stored parameter code) and `patient` (the resource's patient compartment key);
 * the columns below follow. The writer and the predicates both read this one description.
 */
export type IndexKind = 'token' | 'string' | 'date' | 'quantity' | 'number' | 'uri' | 'reference' | 'composite';

export const INDEX_COLUMNS: Record<IndexKind, ReadonlyArray<readonly [name: string, pgType: string]>> = {
  // The hot path's columns, set on driving rows only (`drivesByPatient`, src/search/extract.ts):
  // date_low/date_high: the resource's own `date` parameter, copied so that "this patient's
  // readings of this code since D, newest first" is one range scan of the patient index;
  // date_multi: that parameter has several ranges (a Timing's events), so [date_low, date_high]
  // is only their envelope and a date filter must still be checked against {type}_date;
  // drives: the row is in the patient index (its predicate), so the hot path may start from it.
  token: [['system', 'text'], ['code', 'text'], ['hash', 'int8'], ['code_hash', 'int8'], ['text', 'text'], ['date_low', 'timestamptz'], ['date_high', 'timestamptz'], ['date_multi', 'bool'], ['drives', 'bool']],
  string: [['value', 'text'], ['exact', 'text']],
  date: [['low', 'timestamptz'], ['high', 'timestamptz']],
  quantity: [['value', 'numeric'], ['system', 'text'], ['code', 'text'], ['unit', 'text'], ['cvalue', 'numeric'], ['cunit', 'text']],
  number: [['value', 'numeric']],
  uri: [['value', 'text']],
  // The same hot-path columns on the one driving row of a resource with a patient key (its key
  // row): a patient's search with no code to drive it is one range scan of the patient's rows.
  reference: [['target_type', 'text'], ['target_id', 'text'], ['url', 'text'], ['date_low', 'timestamptz'], ['date_high', 'timestamptz'], ['date_multi', 'bool'], ['drives', 'bool']],
  composite: [
    ['hash', 'int8'], ['code_hash', 'int8'],
    ['v_hash', 'int8'], ['v_code_hash', 'int8'],
    ['v_low', 'timestamptz'], ['v_high', 'timestamptz'],
    ['v_value', 'numeric'], ['v_system', 'text'], ['v_code', 'text'], ['v_unit', 'text'], ['v_cvalue', 'numeric'], ['v_cunit', 'text'],
    ['v_string', 'text'],
  ],
};

export const INDEX_KINDS = Object.keys(INDEX_COLUMNS) as IndexKind[];

/**
 * The stored parameter code of a reference parameter's identifier rows (`subject:identifier`):
 * token rows of `Reference.identifier`, for the `:identifier` modifier (decision 035). No search
 * parameter's code has a colon, so it cannot be a real parameter's.
 */
export function identifierRowsCode(referenceParam: string): string {
  return `${referenceParam}:identifier`;
}

export function isIdentifierRowsCode(param: string): boolean {
  return param.endsWith(':identifier');
}

/**
 * The column naming a row's reference target type, which a derived parameter's `targetType`
 * (Observation `patient` = `subject` of a Patient) selects: target_type of a reference row; on a
 * reference's identifier rows (token kind) `text`, free there because `:text` is a token
 * modifier `:identifier` never combines with (decision 035). Its position in an IndexRow too.
 */
export function targetTypeColumn(kind: IndexKind): { name: string; at: number } {
  const name = kind === 'reference' ? 'target_type' : kind === 'token' ? 'text' : undefined;
  const at = INDEX_COLUMNS[kind].findIndex(([n]) => n === name);
  if (at < 0) throw new Error(`${kind} rows name no target type`);
  return { name: name!, at };
}

/** `observation_token`; `resourceTable` comes from `tableOf`, so it is safe SQL text. */
export function indexTableOf(resourceTable: string, kind: IndexKind): string {
  return `${resourceTable}_${kind}`;
}

/** One value's columns after (id, param, patient), in INDEX_COLUMNS order; null for absent. */
export type IndexRow = Array<string | number | boolean | null>;

/** The rows one resource yields, per table, each tagged with its parameter code. */
export type RowSink = Record<IndexKind, Array<{ param: string; row: IndexRow }>>;

export function emptySink(): RowSink {
  return { token: [], string: [], date: [], quantity: [], number: [], uri: [], reference: [], composite: [] };
}
