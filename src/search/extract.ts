import { emptySink, INDEX_COLUMNS, type IndexKind, type IndexRow, isIdentifierRowsCode, type RowSink } from './index-tables';
import { indexedParametersOf, patientCompartmentOf, type SearchParameterDef } from './registry';
import { extractComposite } from './types/composite';
import { typeModules } from './types';

/**
 * Write-time extraction: every indexed search parameter of a resource into index rows, plus
 * the two values copied onto rows — the patient compartment key (every row) and, on the rows
 * that drive the hot path (token rows with a code, and the patient key's reference row), the
 * resource's own `date` range. Pure and synchronous, so its cost is measurable alone
 * (`bench/search.ts`).
 */
export interface ExtractedIndex {
  /** The patient compartment key (a Patient id), null when the resource is in none. */
  patient: string | null;
  rows: RowSink;
}

/** The parameter whose range is copied onto driving rows: the type's `date` parameter, if stored (planDriver filters and sorts by it there). */
export const DENORMALISED_DATE = 'date';

interface TypePlan {
  params: SearchParameterDef[];
  keySource?: { code: string; targetType: string };
  hasDate: boolean;
}
const plans = new Map<string, TypePlan>();

function planOf(resourceType: string): TypePlan {
  let plan = plans.get(resourceType);
  if (!plan) {
    const params = indexedParametersOf(resourceType);
    plan = {
      params,
      keySource: patientCompartmentOf(resourceType).keySource,
      hasDate: params.some((p) => p.code === DENORMALISED_DATE && p.type === 'date'),
    };
    plans.set(resourceType, plan);
  }
  return plan;
}

/** Where a driving row's date_low, date_high, date_multi and drives columns start (INDEX_COLUMNS order). */
function drivingColumnsAt(kind: IndexKind): number {
  const at = INDEX_COLUMNS[kind].findIndex(([name]) => name === 'date_low');
  if (INDEX_COLUMNS[kind][at + 3]?.[0] !== 'drives') throw new Error(`${kind} rows lack the driving columns`);
  return at;
}
const TOKEN_DRIVING = drivingColumnsAt('token');
const REFERENCE_DRIVING = drivingColumnsAt('reference');

/** Orders timestamptz texts (ISO instants and the infinities) the way PostgreSQL does. */
function timeKey(text: string): string {
  return text === '-infinity' ? '' : text === 'infinity' ? '\uffff' : text;
}

/** The envelope [min low, max high] of the `date` ranges, and whether there were several. */
function dateEnvelope(rows: RowSink['date']): { low: string; high: string; multi: boolean } | undefined {
  let low: string | undefined;
  let high: string | undefined;
  let count = 0;
  for (const { param, row } of rows) {
    if (param !== DENORMALISED_DATE) continue;
    const [l, h] = row as [string, string];
    count++;
    if (low === undefined || timeKey(l) < timeKey(low)) low = l;
    if (high === undefined || timeKey(h) > timeKey(high)) high = h;
  }
  return low === undefined || high === undefined ? undefined : { low, high, multi: count > 1 };
}

/**
 * Whether a parameter's token rows drive the hot path: with a code, of a resource with a
 * patient key, they carry the resource's date range and are in the token table's patient index
 * (`(patient, param, code_hash, date_high DESC, id) WHERE drives`), which `planDriver`
 * (src/search/sql.ts) drives a patient's search of one code from. Rows without a code (a
 * CodeableConcept's text, an identifier's type) never drive: they serve `:text` and `:of-type`,
 * and the hot path pins a code. `identifier` never drives: an identifier names one resource,
 * which the code index `(param, code_hash, hash)` finds without the patient; on a vital sign it
 * was one of the patient index's five entries (issue 16: storage per Observation). Nor does a
 * reference's identifier (`subject:identifier`, decision 035), for the same reason: it is
 * searched through a derived parameter, which never drives.
 * An Observation's `status` never drives either: a patient's readings are all but always
 * `final`, so its rows drove nothing the key row (every resource's row in the reference table's
 * patient index) does not, and were a quarter of that index (100,000 of 380,000 entries on the
 * bench's vital signs). Elsewhere a status is what selects (`Flag?patient=&status=active` among
 * a patient's resolved breaches) and keeps driving.
 */
export function drivesByPatient(resourceType: string, param: string): boolean {
  return param !== 'identifier' && !isIdentifierRowsCode(param) && !(param === 'status' && resourceType === 'Observation');
}

/** Drops repeated token rows (the same coding twice), so a match yields one row per resource. */
function dedupeTokens(rows: RowSink['token']): RowSink['token'] {
  if (rows.length < 2) return rows;
  const seen = new Set<string>();
  const unique = rows.filter(({ param, row }) => {
    const key = `${param}\u0000${row[2]}\u0000${row[4]}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  // A CodeableConcept.text row (no code) is only there for `:text`. When a coding row of the
  // same parameter already carries the same normalised text (the usual display = text), it
  // matches nothing more: dropping it removes 2 of a vital sign's 6-8 token rows (category and
  // code), and token rows are 71% of the index write time of an ingest.
  const codedText = new Set(unique.filter(({ row }) => row[2] !== null && row[4] !== null).map(({ param, row }) => `${param}\u0000${row[4]}`));
  return unique.filter(({ param, row }) => row[2] !== null || row[4] === null || !codedText.has(`${param}\u0000${row[4]}`));
}

export function extractIndex(resourceType: string, resource: fhir4.FhirResource): ExtractedIndex {
  const plan = planOf(resourceType);
  const rows = emptySink();
  const root = { value: resource, type: resourceType };
  for (const param of plan.params) {
    if (param.storage.kind !== 'indexed') continue;
    const values = param.storage.accessor(root);
    if (values.length === 0) continue;
    if (param.storage.components) extractComposite(values, param.storage.components, param.code, rows);
    else typeModules[param.type].extract(values, param.code, rows);
  }

  let patient: string | null = null;
  let keyRow: IndexRow | undefined;
  if (resourceType === 'Patient') {
    patient = resource.id ?? null;
  } else if (plan.keySource) {
    const { code, targetType } = plan.keySource;
    keyRow = rows.reference.find((r) => r.param === code && r.row[0] === targetType)?.row;
    patient = keyRow ? (keyRow[1] as string) : null;
  }

  rows.token = dedupeTokens(rows.token);
  if (patient !== null) {
    const envelope = plan.hasDate ? dateEnvelope(rows.date) : undefined;
    const drive = (row: IndexRow, at: number) => {
      if (envelope) {
        row[at] = envelope.low;
        row[at + 1] = envelope.high;
        row[at + 2] = envelope.multi;
      }
      row[at + 3] = true;
    };
    for (const t of rows.token) {
      if (t.row[3] === null || !drivesByPatient(resourceType, t.param)) continue; // row[3]: code_hash
      drive(t.row, TOKEN_DRIVING);
    }
    // The resource's one row in the reference table's patient index, for a patient's searches
    // that pin no code (planDriver); the key row, which every resource with a key has.
    if (keyRow) drive(keyRow, REFERENCE_DRIVING);
  }
  return { patient, rows };
}
