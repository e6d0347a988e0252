import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { codeHash, systemCodeHash } from '../../src/search/hash';
import { firstPageSql } from '../../src/search/search';
import { lastnMatchesSql } from '../../src/search/lastn';
import { type Db, openDb } from '../../src/store/db';
import { SCHEMA } from '../../src/schema';
import { migrate } from '../../src/store/migrate';
import { unique } from '../helpers/server';
import { onPostgres } from '../helpers/pass';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const url = process.env.DATABASE_URL ?? '';
const ROWS = 100_000;
const CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';
const PATIENTS = 1_000;
const CODES = ['8480-6', '8462-4', '29463-7', '8867-4'];

interface PlanNode {
  'Node Type': string;
  'Actual Loops'?: number;
  'Actual Rows'?: number;
  'Index Name'?: string;
  'Relation Name'?: string;
  Plans?: PlanNode[];
}

function nodes(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodes)];
}

/**
 * The hot monitoring searches are index-backed at 100k rows on real PostgreSQL (the planner's
 * choices on PGlite's tiny tables prove nothing). The rows live in a schema of this run, created
 * through the same migrations and dropped afterwards, so the shared `test` database is untouched.
 */
describe('EXPLAIN of the hot searches on PostgreSQL at 100k rows', { skip: !onPostgres }, () => {
  const schema = `search_explain_${unique('x').replace(/-/g, '_')}`;
  let admin: Db;
  let db: Db;

  before({ timeout: 120_000 }, async () => {
    admin = await openDb(url, '');
    await admin.query(`CREATE SCHEMA ${schema}`);
    const sep = url.includes('?') ? '&' : '?';
    db = await openDb(`${url}${sep}options=${encodeURIComponent(`-c search_path=${schema}`)}`, '');
    // The tables of the types the rows and the searches touch, through the same migrations: the
    // other 141 types' tables (a thousand, most of this file's time) play no part in these plans,
    // and a search that reached one would fail here for its missing table.
    await migrate(db, SCHEMA, { types: ['Patient', 'Observation', 'Flag'] });
    // Set-based raw SQL: 100k Observations of 4 codes over a year for 1,000 patients, with the
    // index rows the writer would produce for the parameters the queries use.
    const codeRows = CODES.map((c) => `('${c}', ${systemCodeHash('http://loinc.org', c)}, ${codeHash(c)})`).join(', ');
    await db.exec(`
      CREATE TEMP TABLE gen AS
        SELECT g, 'o' || g AS id, 'p' || ((g / ${CODES.length}) % ${PATIENTS}) AS patient, c.code, c.hash, c.code_hash,
               timestamptz '2025-06-01' + g * interval '5 minutes' AS at
        FROM generate_series(1, ${ROWS}) g
        JOIN (SELECT row_number() OVER () - 1 AS k, * FROM (VALUES ${codeRows}) v(code, hash, code_hash)) c ON c.k = g % ${CODES.length};
      INSERT INTO observation (id, version_id, last_updated, deleted, content)
        SELECT id, 1, at, false, jsonb_build_object('resourceType', 'Observation', 'id', id, 'status', 'final',
          'code', jsonb_build_object('coding', jsonb_build_array(jsonb_build_object('system', 'http://loinc.org', 'code', code))),
          'subject', jsonb_build_object('reference', 'Patient/' || patient), 'effectiveDateTime', at)
        FROM gen;
      INSERT INTO observation_token (id, param, patient, system, code, hash, code_hash, date_low, date_high, drives)
        SELECT id, 'code', patient, 'http://loinc.org', code, hash, code_hash, at, at, true FROM gen;
      INSERT INTO observation_token (id, param, patient, code, hash, code_hash)
        SELECT id, 'status', patient, 'final', ${systemCodeHash(undefined, 'final')}, ${codeHash('final')} FROM gen;
      INSERT INTO observation_token (id, param, patient, system, code, hash, code_hash)
        SELECT id, 'identifier', patient, 'urn:x', id, ${systemCodeHash('urn:x', 'x')} + g, g FROM gen;
      INSERT INTO observation_reference (id, param, patient, target_type, target_id, date_low, date_high, drives) SELECT id, 'subject', patient, 'Patient', patient, at, at, true FROM gen;
      INSERT INTO observation_date (id, param, patient, low, high) SELECT id, 'date', patient, at, at FROM gen;
      -- Every reading a pressure of 60-179 mm[Hg] (as a code-value-quantity pair): 1 in 3 over 140.
      INSERT INTO observation_composite (id, param, patient, hash, code_hash, v_value, v_system, v_code, v_unit, v_cvalue, v_cunit)
        SELECT id, 'code-value-quantity', patient, hash, code_hash, 60 + g % 120, 'http://unitsofmeasure.org', 'mm[Hg]', 'mm[Hg]', (60 + g % 120) * 133322, 'g.m-1.s-2' FROM gen;
      INSERT INTO flag (id, version_id, last_updated, deleted, content)
        SELECT 'f' || g, 1, at, false, jsonb_build_object('resourceType', 'Flag', 'id', 'f' || g) FROM gen;
      INSERT INTO flag_token (id, param, patient, code, hash, code_hash, drives)
        SELECT 'f' || g, 'status', patient, 'active', ${systemCodeHash(undefined, 'active')}, ${codeHash('active')}, true FROM gen WHERE g % 10 = 0;
      INSERT INTO flag_token (id, param, patient, code, hash, code_hash, drives)
        SELECT 'f' || g, 'status', patient, 'inactive', ${systemCodeHash(undefined, 'inactive')}, ${codeHash('inactive')}, true FROM gen WHERE g % 10 <> 0;
      INSERT INTO flag_reference (id, param, patient, target_type, target_id, drives) SELECT 'f' || g, 'subject', patient, 'Patient', patient, true FROM gen;
      -- One patient measured every 2 hours for a year: where the order of the index matters.
      CREATE TEMP TABLE heavy AS
        SELECT 'h' || g AS id, 'heavy' AS patient, timestamptz '2025-06-01' + g * interval '2 hours' AS at FROM generate_series(1, 4000) g;
      INSERT INTO observation (id, version_id, last_updated, deleted, content)
        SELECT id, 1, at, false, jsonb_build_object('resourceType', 'Observation', 'id', id) FROM heavy;
      -- Systolic and diastolic pressures in turn: a list of both codes merges two ranges.
      INSERT INTO observation_token (id, param, patient, system, code, hash, code_hash, date_low, date_high, drives)
        SELECT id, 'code', patient, 'http://loinc.org', '8480-6', ${systemCodeHash('http://loinc.org', '8480-6')}, ${codeHash('8480-6')}, at, at, true FROM heavy WHERE id ~ '[02468]$';
      INSERT INTO observation_token (id, param, patient, system, code, hash, code_hash, date_low, date_high, drives)
        SELECT id, 'code', patient, 'http://loinc.org', '8462-4', ${systemCodeHash('http://loinc.org', '8462-4')}, ${codeHash('8462-4')}, at, at, true FROM heavy WHERE id ~ '[13579]$';
      INSERT INTO observation_reference (id, param, patient, target_type, target_id, date_low, date_high, drives) SELECT id, 'subject', patient, 'Patient', patient, at, at, true FROM heavy;
      INSERT INTO observation_date (id, param, patient, low, high) SELECT id, 'date', patient, at, at FROM heavy;
      INSERT INTO observation_token (id, param, patient, system, code, hash, code_hash, date_low, date_high, drives)
        SELECT id, 'category', patient, '${CATEGORY}', 'vital-signs', ${systemCodeHash(CATEGORY, 'vital-signs')}, ${codeHash('vital-signs')}, at, at, true FROM heavy;
    `);
    // As autovacuum leaves a table: statistics and the visibility map (index-only scans).
    for (const table of ['observation', 'observation_token', 'observation_reference', 'observation_date', 'observation_composite', 'flag', 'flag_token', 'flag_reference']) {
      await db.query(`VACUUM ANALYZE ${table}`);
    }
  });

  after(async () => {
    await db?.close();
    await admin?.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin?.close();
  });

  async function explain(type: string, query: string, analyze = false, compartment?: string): Promise<PlanNode[]> {
    const { sql, values } = firstPageSql(type, new URLSearchParams(query), 50, compartment);
    return explainSql(`${compartment ? `Patient/${compartment}/` : ''}${type}?${query}`, sql, values, analyze);
  }

  async function explainSql(label: string, sql: string, values: unknown[], analyze: boolean): Promise<PlanNode[]> {
    if (process.env.SEARCH_EXPLAIN_PRINT) {
      const { rows } = await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`, values);
      console.log(`\n${label}\n${rows.map((r) => r['QUERY PLAN']).join('\n')}`);
    }
    const { rows } = await db.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(`EXPLAIN (${analyze ? 'ANALYZE, ' : ''}FORMAT JSON) ${sql}`, values);
    return nodes(rows[0]['QUERY PLAN'][0].Plan);
  }

  it('Observation?subject=&code=&date=ge&_sort=-date scans one index range, no table', async () => {
    const plan = await explain('Observation', 'subject=Patient/p7&code=http://loinc.org|8480-6&date=ge2026-01-01&_sort=-date&_count=50');
    expect(plan.filter((n) => n['Node Type'] === 'Seq Scan')).to.equal([]);
    expect(plan.map((n) => n['Index Name'])).to.include('observation_token_patient_idx');
    // Every relation is reached through an index (the resource rows by primary key).
    const scans = plan.filter((n) => n['Relation Name']);
    expect(scans.every((n) => /Index|Bitmap Heap/.test(n['Node Type'])), JSON.stringify(scans)).to.be.true();
  });

  it('the same search without _sort, as clients send it: one index range scan under the LIMIT, no sort', async () => {
    // The second time as a patient-scoped token sends it: within the same patient's compartment.
    for (const compartment of [undefined, 'heavy']) {
      const plan = await explain('Observation', 'subject=Patient/heavy&code=http://loinc.org|8480-6&date=ge2025-09-01', true, compartment);
      expect(plan[0]!['Node Type'], compartment).to.equal('Limit');
      expect(plan.filter((n) => n['Node Type'] === 'Sort' || n['Node Type'] === 'Incremental Sort'), compartment).to.equal([]);
      expect(plan.filter((n) => n['Node Type'] === 'Seq Scan'), compartment).to.equal([]);
      // The driving range scan runs once, index-only: the date filter is decided on its rows.
      const driver = plan.filter((n) => n['Index Name'] === 'observation_token_patient_idx');
      expect(driver, compartment).to.have.length(1);
      expect(driver[0]!['Node Type'], compartment).to.equal('Index Only Scan');
      expect(driver[0]!['Actual Loops'], compartment).to.equal(1);
      // What runs besides it is the primary-key fetch of each page row's JSON, nothing else: no
      // probe of observation_date (or of the compartment's references) re-checks what the
      // driving row already guarantees.
      const ran = plan.filter((n) => n['Relation Name'] && (n['Actual Loops'] ?? 0) > 0).map((n) => n['Index Name'] ?? n['Relation Name']);
      expect(ran.sort(), compartment).to.equal(['observation_pkey', 'observation_token_patient_idx']);
    }
  });

  it("a patient's composite search is driven by the patient's rows of its code, not every patient's pairs", async () => {
    const query = 'subject=Patient/p7&code-value-quantity=http://loinc.org|8480-6$gt170|http://unitsofmeasure.org|mm[Hg]';
    const plan = await explain('Observation', query, true);
    expect(plan.filter((n) => n['Node Type'] === 'Seq Scan')).to.equal([]);
    const driver = plan.filter((n) => n['Index Name'] === 'observation_token_patient_idx');
    expect(driver).to.have.length(1);
    expect(driver[0]!['Actual Loops']).to.equal(1);
    // The value is checked on the driven rows' own pairs, found by id: the code index of the
    // composite table (every patient's pairs of the code) is not read.
    expect(plan.map((n) => n['Index Name'])).to.not.include('observation_composite_code_idx');
    expect(plan.map((n) => n['Index Name'])).to.include('observation_composite_id_idx');
  });

  it("US Core's patient + category (a bare code of a repeating element) newest first is one range scan of the patient index", async () => {
    // 4,000 readings of one patient: before, the sort by date read them all (a sequential scan of
    // the table and a date probe per row, 43 ms); driven, the first page reads its 51 rows.
    const plan = await explain('Observation', 'patient=heavy&category=vital-signs&_sort=-date', true);
    expect(plan.filter((n) => n['Node Type'] === 'Seq Scan' || n['Node Type'] === 'Sort')).to.equal([]);
    const driver = plan.filter((n) => n['Index Name'] === 'observation_token_patient_idx');
    expect(driver).to.have.length(1);
    expect(driver[0]!['Actual Loops']).to.equal(1);
    expect(driver[0]!['Actual Rows']!).to.be.below(60);
  });

  it("a patient's search with no code (newest first, a date range, or nothing else) is one range scan of the patient's key rows", async () => {
    // 4,000 readings of one patient: before, each of these read them all, checked each and
    // sorted (59 ms for `_sort=-date` at 100k); driven, the first page reads its 51 rows.
    for (const query of ['patient=heavy&_sort=-date', 'patient=heavy', 'subject=Patient/heavy&date=ge2025-09-01', 'patient=heavy&date=ge2025-09-01&_sort=-date']) {
      const plan = await explain('Observation', query, true);
      expect(plan[0]!['Node Type'], query).to.equal('Limit');
      // (A date_multi resource's check may be planned as a hashed scan of observation_date; it never runs here.)
      expect(plan.filter((n) => ['Seq Scan', 'Sort', 'Incremental Sort'].includes(n['Node Type']) && (n['Actual Loops'] ?? 0) > 0), query).to.equal([]);
      const driver = plan.filter((n) => n['Index Name'] === 'observation_reference_patient_idx');
      expect(driver, query).to.have.length(1);
      expect(driver[0]!['Actual Loops'], query).to.equal(1);
      expect(driver[0]!['Actual Rows']!, query).to.be.below(60);
      // Nothing else is read but each page row's JSON: no date probe, no compartment probe.
      const ran = plan.filter((n) => n['Relation Name'] && (n['Actual Loops'] ?? 0) > 0).map((n) => n['Index Name'] ?? n['Relation Name']);
      expect(ran.sort(), query).to.equal(['observation_pkey', 'observation_reference_patient_idx']);
    }
  });

  it("a patient's compartment (`Patient/X/Observation?…`, no _sort or by date) is driven by the patient's key rows, not read whole", async () => {
    // 4,000 readings of one patient: before, every member was found through the reference
    // table, fetched and sorted (each row's JSON, for a page of 50).
    for (const query of ['', 'code=http://loinc.org|8480-6', 'category=vital-signs&date=ge2025-09-01', '_sort=-date', 'code=http://loinc.org|8480-6&_sort=date']) {
      const plan = await explain('Observation', query, true, 'heavy');
      const ran = plan.filter((n) => (n['Actual Loops'] ?? 0) > 0);
      expect(ran.filter((n) => n['Node Type'] === 'Seq Scan'), query).to.equal([]);
      const driver = ran.filter((n) => n['Index Name'] === (query.includes('code') || query.includes('category') ? 'observation_token_patient_idx' : 'observation_reference_patient_idx'));
      expect(driver, query).to.have.length(1);
      expect(driver[0]!['Actual Loops'], query).to.equal(1);
      // Oldest first reads the patient's rows of the code to sort them before the join, as `patient=` does.
      if (!query.includes('_sort=date')) expect(driver[0]!['Actual Rows']!, query).to.be.below(60);
      // A page of resources fetched, and the members the key misses looked up in one range of the
      // target index (none here): never the patient's 4,000 references.
      expect(ran.filter((n) => n['Index Name'] === 'observation_pkey').reduce((sum, n) => sum + n['Actual Loops']!, 0), query).to.be.below(60);
      const others = ran.filter((n) => n['Index Name'] === 'observation_reference_target_idx');
      expect(others.reduce((sum, n) => sum + n['Actual Rows']! * n['Actual Loops']!, 0), query).to.equal(0);
    }
  });

  it("a patient's list of codes (`code=a,b,c`), newest first or unsorted, is one range scan per code merged in date order", async () => {
    // As SMART apps ask for a chart's series (blood pressure, weight, heart rate) in one search.
    // Before, the patient's rows of every listed code were read and sorted (all 4,000 here, 78 ms).
    const codes = ['8480-6', '8462-4', '29463-7'].map((c) => `http://loinc.org|${c}`).join(',');
    for (const query of [`patient=heavy&code=${codes}&_sort=-date`, `patient=heavy&code=${codes}`, `subject=Patient/heavy&code=8480-6,8462-4&date=ge2025-09-01`]) {
      const plan = await explain('Observation', query, true);
      expect(plan[0]!['Node Type'], query).to.equal('Limit');
      expect(plan.map((n) => n['Node Type']), query).to.include('Merge Append');
      expect(plan.filter((n) => ['Seq Scan', 'Sort', 'Incremental Sort'].includes(n['Node Type']) && (n['Actual Loops'] ?? 0) > 0), query).to.equal([]);
      // One range scan per listed code, each run once, together reading about a page.
      const driver = plan.filter((n) => n['Index Name'] === 'observation_token_patient_idx');
      expect(driver.length, query).to.equal(query.includes('29463-7') ? 3 : 2);
      expect(driver.every((scan) => scan['Actual Loops'] === 1), query).to.be.true();
      expect(driver.filter((scan) => scan['Actual Rows']! > 0).length, query).to.equal(2);
      expect(driver.reduce((sum, scan) => sum + scan['Actual Rows']!, 0), query).to.be.below(60);
    }
  });

  it("a patient's $lastn reads the readings' codes from the patient index and the resources of the chosen few only", async () => {
    // 4,000 readings of one patient, two codes: before, every match's resource was fetched for its
    // code and date (4,000 primary-key probes); now the newest of each code are probed until `max` match.
    for (const query of ['patient=heavy&category=vital-signs', 'subject=Patient/heavy&code=8480-6,8462-4&date=ge2025-09-01']) {
      const { sql, values } = lastnMatchesSql(new URLSearchParams(query), undefined, 3);
      const ran = (await explainSql(`Observation/$lastn?${query}&max=3`, sql, values, true)).filter((n) => (n['Actual Loops'] ?? 0) > 0);
      expect(ran.filter((n) => n['Node Type'] === 'Seq Scan' && n['Relation Name']), query).to.equal([]);
      expect(ran.filter((n) => n['Index Name'] === 'observation_pkey').reduce((sum, n) => sum + n['Actual Loops']!, 0), query).to.be.within(6, 12);
    }
  });

  it('_sort=-_lastUpdated and -_id over the whole type read their indexes backwards, no sort', async () => {
    // Before, `last_updated DESC NULLS LAST, id ASC` matched no index: every row read and sorted (2.4 s at 1M).
    for (const [query, index] of [['_sort=-_lastUpdated', 'observation_last_updated_idx'], ['_sort=_lastUpdated', 'observation_last_updated_idx'], ['_sort=-_id', 'observation_pkey']]) {
      const plan = await explain('Observation', query!, true);
      expect(plan.filter((n) => ['Seq Scan', 'Sort', 'Incremental Sort'].includes(n['Node Type'])), query).to.equal([]);
      const scan = plan.find((n) => n['Index Name'] === index);
      expect(scan, query).to.exist();
      expect(scan!['Actual Rows']!, query).to.be.below(60);
    }
  });

  it('unsorted searches for recent data across patients read their date index from the bound: a page, no walk from the oldest id', async () => {
    // Ordered by id, `_lastUpdated=gt<a recent poll>` read `(last_updated, id)` from its start and
    // filtered (89,000 rows, 26 ms at 100k), and `code=…&date=ge<last week>` walked the primary key
    // from the oldest id: ids are time-ordered, and so are a deployment's readings (58 ms on such
    // data at 100k, against 1.2 ms as below). The last tenth of this data is from 2026-04-20 on.
    const queries: Array<[string, string]> = [
      ['_lastUpdated=gt2026-04-20', 'observation_last_updated_idx'],
      ['_lastUpdated=ge2026-04-20T10:00:00Z', 'observation_last_updated_idx'],
      ['code=http://loinc.org|8480-6&date=ge2026-04-20', 'observation_date_range_idx'],
      ['date=gt2026-04-20', 'observation_date_range_idx'],
    ];
    for (const [query, index] of queries) {
      const plan = await explain('Observation', query, true);
      const ran = plan.filter((n) => (n['Actual Loops'] ?? 0) > 0);
      expect(ran.filter((n) => ['Seq Scan', 'Bitmap Heap Scan', 'Sort'].includes(n['Node Type'])), query).to.equal([]);
      const scan = ran.filter((n) => n['Index Name'] === index);
      expect(scan.length, query).to.equal(1);
      expect(scan[0]!['Actual Rows']!, query).to.be.below(300);
      expect(ran.find((n) => n['Index Name'] === 'observation_pkey' && n['Node Type'] === 'Index Scan' && (n['Actual Rows'] ?? 0) > 300), query).to.not.exist();
    }
  });

  it('_sort=-date across patients reads the date index backwards for about a page; the undated are never read', async () => {
    // Before, every matching resource's latest date was computed by a subquery and all were sorted (1.0 s at 100k, 12.9 s at 1M).
    // The last week of the data (from 2026-05-07): its date filter, checked by a plain EXISTS, was
    // made a join over every reading of the week, which were then sorted (43-47 ms in the bench).
    const queries = ['_sort=-date', `code=http://loinc.org|8480-6&_sort=-date`, `code=http://loinc.org|8480-6&date=ge2026-01-01&_sort=-date`, `code=http://loinc.org|8480-6&date=ge2026-05-07&_sort=-date`, 'date=gt2026-05-07&_sort=-date'];
    for (const query of queries) {
      const plan = await explain('Observation', query, true);
      const ran = plan.filter((n) => (n['Actual Loops'] ?? 0) > 0);
      expect(ran.filter((n) => ['Seq Scan', 'Bitmap Heap Scan'].includes(n['Node Type'])), query).to.equal([]);
      const scan = ran.filter((n) => n['Index Name'] === 'observation_date_range_idx');
      expect(scan.length, query).to.equal(1);
      // A quarter of the readings are of the code: about four index rows a match.
      expect(scan[0]!['Actual Rows']!, query).to.be.below(300);
      // The undated (a scan of every resource against the date table) are read only for a page the dated do not fill.
      expect(plan.filter((n) => n['Node Type'] === 'Hash Anti Join' || (n['Relation Name'] === 'observation' && n['Node Type'] === 'Seq Scan')).every((n) => !n['Actual Loops']), query).to.be.true();
    }
  });

  it("a code across patients is estimated from the token table's extended statistics, so a recent date leads", async () => {
    // param, code_hash and hash taken for independent: 8,048 rows estimated for 400,000 at 1M,
    // and `code=…&date=ge<last week>` read every reading of the code (8.6 s there).
    const { rows } = await db.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode & { 'Plan Rows': number } }> }>(
      `EXPLAIN (FORMAT JSON) SELECT 1 FROM observation_token WHERE param = 'code' AND code_hash = $1 AND hash = $2`,
      [codeHash('8867-4'), systemCodeHash('http://loinc.org', '8867-4')],
    );
    const estimated = rows[0]!['QUERY PLAN'][0]!.Plan['Plan Rows'];
    expect(estimated).to.be.within(ROWS / CODES.length / 2, ROWS / CODES.length * 2);
    const plan = await explain('Observation', 'code=http://loinc.org|8867-4&date=ge2026-05-01', true);
    const tokenRows = plan.filter((n) => n['Relation Name'] === 'observation_token' || n['Index Name']?.startsWith('observation_token')).reduce((sum, n) => sum + (n['Actual Rows'] ?? 0) * (n['Actual Loops'] ?? 1), 0);
    expect(tokenRows).to.be.below(ROWS / CODES.length / 4);
  });

  it("a patient's readings oldest first fetch only a page of resources: the driving rows are sorted before the join", async () => {
    // The patient index runs newest first (by the range's end), so oldest first needs a sort;
    // before, all 4,000 resources were fetched and then sorted (15 ms).
    for (const query of ['patient=heavy&_sort=date', 'patient=heavy&code=http://loinc.org|8480-6&_sort=date', 'patient=heavy&category=vital-signs&date=ge2025-09-01&_sort=date']) {
      const plan = await explain('Observation', query, true);
      expect(plan[0]!['Node Type'], query).to.equal('Limit');
      const fetches = plan.filter((n) => n['Index Name'] === 'observation_pkey');
      expect(fetches, query).to.have.length(1);
      expect(fetches[0]!['Actual Loops']!, query).to.be.below(60);
    }
  });

  it('_sort by a token or a date oldest first across patients reads the index rows in one pass, not a subquery per match', async () => {
    // Before, each match's value was a correlated subquery (a SubPlan run for each of the 100,000
    // here) and every match's JSON was converted before the sort: 15 s for `_sort=code` at 20k on a loaded machine.
    for (const [query, rows] of [['_sort=code', 'observation_token'], ['_sort=-code', 'observation_token'], ['_sort=date', 'observation_date']] as const) {
      const plan = await explain('Observation', query, true);
      const ran = plan.filter((n) => (n['Actual Loops'] ?? 0) > 0);
      expect(ran.filter((n) => n['Relation Name'] === rows && n['Actual Loops']! > 1), query).to.equal([]);
      expect(ran.find((n) => n['Node Type'] === 'Limit')!['Actual Rows']!, query).to.be.below(52);
    }
    // A narrow filter: its match's rows are probed, not every resource's grouped.
    const plan = await explain('Observation', 'identifier=urn:x|o7&_sort=code', true);
    const tokenRows = plan.filter((n) => n['Relation Name'] === 'observation_token' || n['Index Name']?.startsWith('observation_token')).reduce((sum, n) => sum + (n['Actual Rows'] ?? 0) * (n['Actual Loops'] ?? 1), 0);
    expect(tokenRows).to.be.below(100);
  });

  it('code:in probes the code index once per code of the value set (decision 039)', async () => {
    // None of the weight units is a code here: found through the index, nothing is read.
    const none = await explain('Observation', 'code:in=http://hl7.org/fhir/ValueSet/ucum-bodyweight', true);
    expect(none.filter((n) => n['Node Type'] === 'Seq Scan'), 'ucum-bodyweight').to.equal([]);
    expect(none.map((n) => n['Index Name']), 'ucum-bodyweight').to.include('observation_token_code_idx');
    for (const query of ['code:in=http://hl7.org/fhir/ValueSet/observation-vitalsignresult', 'patient=p7&code:in=http://hl7.org/fhir/ValueSet/observation-vitalsignresult', 'patient=p7&code:not-in=http://hl7.org/fhir/ValueSet/observation-vitalsignresult']) {
      const plan = await explain('Observation', query);
      expect(plan.filter((n) => n['Node Type'] === 'Seq Scan'), query).to.equal([]);
    }
  });

  it('Flag?patient=&status=active uses indexes, no sequential scan', async () => {
    const plan = await explain('Flag', 'patient=p7&status=active');
    expect(plan.filter((n) => n['Node Type'] === 'Seq Scan')).to.equal([]);
    expect(plan.map((n) => n['Index Name'])).to.include('flag_token_patient_idx');
  });

  it('the generic shapes are index-backed too (patient only, code-value-quantity, identifier)', async () => {
    for (const [type, query] of [
      ['Observation', 'patient=p7&_sort=-date'],
      ['Observation', 'code-value-quantity=http://loinc.org|8480-6$gt170|http://unitsofmeasure.org|mm[Hg]'],
      ['Observation', 'identifier=urn:x|abc'],
    ]) {
      const plan = await explain(type, query);
      expect(plan.filter((n) => n['Node Type'] === 'Seq Scan' && ['observation', 'observation_token', 'observation_reference', 'observation_composite'].includes(n['Relation Name'] ?? '')), query).to.equal([]);
    }
  });
});
