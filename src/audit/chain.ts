import { storableText } from '../kernel/storable-text';
import { hash } from 'node:crypto';
import type { Db, Queryable, Transaction } from '../store/db';
import { WriteStatement } from '../store/write-statement';
import { type AuditRecord, searchKeysOf } from './event';

/**
 * The audit trail's storage: an append-only table whose rows are hash-chained (research note
 * "Tamper evidence": `hash = sha256(prev_hash ‖ canonical(event))`). The canonical form is the
 * stored text itself: the record's JSON (src/audit/event.ts, AuditRecord) from migration 052 on,
 * the rendered AuditEvent JSON in the rows stored before it (column json). What is served and
 * exported is rendered from exactly the text that is verified.
 *
 * Appends are serialised by the row lock on the chain head (`FOR UPDATE`, which in READ
 * COMMITTED waits and then reads the head its predecessor committed). Only the read recorder's
 * batches and the chainer take it: write units stage their records (stageRecords) and never
 * wait for the head.
 */

export interface ChainRow {
  seq: string;
  /** The chained text: a record's JSON, or (rows stored before migration 052) the AuditEvent's. */
  text: string;
  hash: string;
  /** Whether text is a record (rendered when served) rather than the AuditEvent itself. */
  record: boolean;
}

const GENESIS = '0'.repeat(64);

/** The hash that links row `seq` (its stored text) to the row before it. */
export function link(previousHash: string, seq: bigint | string, text: string): string {
  // One-shot (Node 20.12+): no Hash object per event, 0.5 µs a link instead of 0.9.
  return hash('sha256', `${previousHash}\n${seq}\n${text}`, 'hex');
}

/**
 * The columns of audit_pending and audit_event beside seq and hash, in this order: the search
 * keys, the record's text, and the AuditEvent JSON of rows staged before migration 052 (null
 * otherwise: this server stages and appends records only; the chainer carries staged rows'
 * json over as it is). Passed to `unnest` (see unnestedSelect): no JSON to build and parse per row.
 */
const COLUMNS = ['id', 'recorded', 'type', 'subtype', 'action', 'outcome', 'patient', 'agent_user', 'agent_client', 'entity', 'record', 'json'] as const;
const COLUMN_TYPES = ['text', 'timestamptz', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'text'];
/** A record as it is written: its search keys and its text. */
type StoredAudit = Record<Exclude<(typeof COLUMNS)[number], 'record'>, string | null> & { record: string };

function stored(r: AuditRecord): StoredAudit {
  const keys = searchKeysOf(r);
  return {
    id: r.id ?? null, recorded: r.recorded, type: keys.type, subtype: keys.subtype, action: r.action, outcome: r.outcome,
    patient: keys.patient, agent_user: storable(keys.agentUser), agent_client: storable(keys.agentClient), entity: keys.entity, record: JSON.stringify(r), json: null,
  };
}

/**
 * The claimed client (or user) of a refused request is what the caller sent, whatever it holds: a NUL in
 * it failed the batch's statement, and the batch, put back, failed every batch after it, so the
 * trail stopped recording. (The record's JSON escapes a NUL; this search key is the raw text.)
 */
const storable = (text: string | null): string | null => (text === null ? null : storableText(text));

/**
 * `SELECT … FROM unnest(…)` over the `leading` columns and then COLUMNS, their values bound in
 * `statement` as columns (`WriteStatement.column`: one text, a value per line, where it can).
 * Measured reason (decision 021, "Third look"): as an array element a record has every quote
 * escaped by node-postgres and unescaped by PostgreSQL; 25–28 µs per event went to 19–20 µs
 * with the records sent as lines. A record is JSON.stringify's output, which never holds a line feed.
 */
function unnestedSelect(statement: WriteStatement, rows: readonly StoredAudit[], leading: ReadonlyArray<readonly [name: string, type: string, values: unknown[]]> = []): string {
  const names = [...leading.map(([name]) => name), ...COLUMNS];
  const args = [
    ...leading.map(([, type, values]) => statement.column(values, type)),
    ...COLUMNS.map((c, i) => statement.column(rows.map((r) => r[c]), COLUMN_TYPES[i]!)),
  ];
  return `SELECT ${names.join(', ')} FROM unnest(${args.join(', ')}) AS x(${names.join(', ')})`;
}

/**
 * Stages `records` in this transaction (they commit or roll back with it): one INSERT into
 * audit_pending, no lock shared with other transactions, queued to travel with the
 * transaction's next statement or COMMIT (nothing reads its answer: no round trip of its own).
 * The chainer links them into the chain after commit (chainStaged). Measured reason (decision
 * 014): taking the chain head in every write transaction made concurrent commits queue on one
 * row (+39 % CPU per create at 16 clients).
 */
export function stageRecords(tx: Transaction, records: readonly AuditRecord[]): void {
  if (records.length === 0) return;
  const statement = new WriteStatement();
  statement.with(`a_staged AS (INSERT INTO audit_pending (${COLUMNS.join(', ')}) ${unnestedSelect(statement, records.map(stored))})`);
  statement.runLater(tx);
}

/**
 * Moves up to `limit` staged rows, oldest first, into the chain, in one transaction of three
 * statements whatever the batch size; answers how many. Chainers of several server processes
 * queue on the head's row lock, and each sees what the one before it moved (only chainers delete
 * staged rows, and each holds the lock from its read to its commit).
 *
 * Only the chained texts come to this process, for their links; the rows move from audit_pending
 * to audit_event inside PostgreSQL, beside their positions and hashes. Measured reason: fetching
 * every column and sending it back cost each write audit a second decoding and encoding.
 */
export async function chainStaged(db: Db, limit: number): Promise<number> {
  return db.transaction(async (tx) => {
    commitWithoutFlushWait(tx);
    const head = await lockHead(tx);
    // Ordered by the column, not by the text of the same name in the select list: that sorted
    // '100' before '98' and read the whole queue table to sort it (11 ms a batch, measured).
    const staged = (await tx.query<{ queued: string; text: string }>(
      'SELECT queued::text AS queued, coalesce(record, json) AS text FROM audit_pending ORDER BY audit_pending.queued LIMIT $1',
      [limit],
    )).rows;
    if (staged.length === 0) return 0;
    const links = linksAfter(head, staged.map((r) => r.text));
    const headMoved = await tx.query(
      `WITH links AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS l(queued, seq, hash)),
            moved AS (DELETE FROM audit_pending WHERE queued = ANY($1::bigint[]) RETURNING *),
            added AS (
              INSERT INTO audit_event (seq, hash, ${COLUMNS.join(', ')})
              SELECT l.seq, l.hash, ${COLUMNS.map((c) => `m.${c}`).join(', ')} FROM moved m JOIN links l USING (queued)
              RETURNING 1)
       UPDATE audit_chain_head SET seq = $4::bigint, hash = $5 WHERE one AND (SELECT count(*) FROM added) = $6`,
      [staged.map((r) => r.queued), links.seqs, links.hashes, links.last.seq, links.last.hash, staged.length],
    );
    if (headMoved.rowCount !== 1) throw new Error('audit rows staged for the chain changed while it held the head');
    return staged.length;
  });
}

/** The positions and hashes of `texts` appended in order after `head`. */
function linksAfter(head: { seq: string; hash: string }, texts: readonly string[]): { seqs: string[]; hashes: string[]; last: { seq: string; hash: string } } {
  let seq = BigInt(head.seq);
  let hash = head.hash;
  const seqs: string[] = [];
  const hashes: string[] = [];
  for (const text of texts) {
    seq += 1n;
    hash = link(hash, seq, text);
    seqs.push(seq.toString());
    hashes.push(hash);
  }
  return { seqs, hashes, last: { seq: seq.toString(), hash } };
}

/**
 * Whether any staged row waits to be chained: the oldest by the primary key, which skips the
 * entries of moved rows once marked dead. `EXISTS` over the table read every dead row the moves
 * left until vacuum (8.8 ms a poll, measured).
 */
export async function hasStaged(db: Queryable): Promise<boolean> {
  return (await db.query('SELECT queued FROM audit_pending ORDER BY queued LIMIT 1')).rows.length > 0;
}

/**
 * Lets the chaining's COMMIT return before its WAL is on disk (`synchronous_commit` off for this
 * transaction alone; PostgreSQL's WAL writer flushes within 3 × wal_writer_delay). Safe because
 * the rows it moves are durable in audit_pending: a crash that loses the commit loses the whole
 * move, and the next poll chains them again. Never for a write's own transaction, whose audit
 * commits with it; nor for the read recorder's batch, where it was measured not to help
 * (docs/decisions/021-audit-storage.md, "Eighth look").
 */
function commitWithoutFlushWait(tx: Transaction): void {
  tx.later('SET LOCAL synchronous_commit TO off');
}

/** Appends `records` to the chain directly, in this transaction (it takes the chain head's lock until commit). */
export async function appendToChain(tx: Queryable, records: readonly AuditRecord[]): Promise<void> {
  if (records.length === 0) return;
  await append(tx, await lockHead(tx), records.map(stored));
}

async function lockHead(tx: Queryable): Promise<{ seq: string; hash: string }> {
  const head = (await tx.query<{ seq: string; hash: string }>('SELECT seq::text AS seq, hash FROM audit_chain_head WHERE one FOR UPDATE')).rows[0];
  if (!head) throw new Error('audit_chain_head is missing its row: the audit migration did not run');
  return head;
}

async function append(tx: Queryable, head: { seq: string; hash: string }, rows: readonly StoredAudit[]): Promise<void> {
  const { seqs, hashes, last } = linksAfter(head, rows.map((r) => r.record));
  // One statement for the rows and the head: an append is two round trips whatever its size.
  const statement = new WriteStatement();
  const select = unnestedSelect(statement, rows, [['seq', 'bigint', seqs], ['hash', 'text', hashes]]);
  statement.with(`a_added AS (INSERT INTO audit_event (seq, hash, ${COLUMNS.join(', ')}) ${select})`);
  statement.with(`a_head AS (UPDATE audit_chain_head SET seq = ${statement.bind(last.seq, 'bigint')}, hash = ${statement.bind(last.hash, 'text')} WHERE one)`);
  await statement.run(tx);
}

export interface ChainProblem {
  seq: string;
  problem: 'changed' | 'missing' | 'head';
  detail: string;
}

export interface VerifyResult {
  rows: number;
  /** Rows staged by committed writes and not chained yet (the chainer links them within about a second). */
  staged?: number;
  head: { seq: string; hash: string };
  problems: ChainProblem[];
}

/**
 * Walks `rows` (in seq order) and reports every row whose hash does not follow from the row
 * before it (changed), every gap in seq (removed), and a head that is not the last row (the
 * newest rows removed). A changed row is reported alone: the walk goes on from its stored hash.
 */
export function verifyRows(rows: Iterable<ChainRow>, head: { seq: string; hash: string } | undefined, start: { seq: bigint; hash: string } = { seq: 0n, hash: GENESIS }): VerifyResult & { last: { seq: bigint; hash: string } } {
  const problems: ChainProblem[] = [];
  let expectedSeq = start.seq + 1n;
  let previous = start.hash;
  let count = 0;
  for (const row of rows) {
    count++;
    const seq = BigInt(row.seq);
    if (seq !== expectedSeq) {
      problems.push({ seq: expectedSeq.toString(), problem: 'missing', detail: `rows ${expectedSeq}..${seq - 1n} are missing` });
    }
    if (link(previous, seq, row.text) !== row.hash) {
      problems.push({ seq: row.seq, problem: 'changed', detail: seq !== expectedSeq ? 'does not chain to the row before it' : 'its content or hash was changed' });
    }
    previous = row.hash;
    expectedSeq = seq + 1n;
  }
  const last = { seq: expectedSeq - 1n, hash: previous };
  if (head && (BigInt(head.seq) !== last.seq || head.hash !== last.hash)) {
    problems.push({ seq: head.seq, problem: 'head', detail: `the chain head names row ${head.seq}, the table ends at row ${last.seq}: newest rows removed or the head altered` });
  }
  return { rows: count, head: head ?? { seq: last.seq.toString(), hash: last.hash }, problems, last };
}

const PAGE = 2_000;

/** Reads the whole table in seq order, page by page. */
export async function* chainRows(db: Queryable): AsyncGenerator<ChainRow> {
  let after = '0';
  for (;;) {
    const page = await db.query<ChainRow>(
      'SELECT seq::text AS seq, coalesce(record, json) AS text, hash, record IS NOT NULL AS record FROM audit_event WHERE seq > $1::bigint ORDER BY audit_event.seq LIMIT $2',
      [after, PAGE],
    );
    for (const row of page.rows) yield row;
    if (page.rows.length < PAGE) return;
    after = page.rows[page.rows.length - 1]!.seq;
  }
}

/** The head of the stored chain (its last link); undefined before the audit migration's row exists. */
export async function chainHead(db: Queryable): Promise<{ seq: string; hash: string } | undefined> {
  return (await db.query<{ seq: string; hash: string }>('SELECT seq::text AS seq, hash FROM audit_chain_head WHERE one')).rows[0];
}

/** The hash of link `seq`, undefined when that row is not stored. */
export async function linkHashAt(db: Queryable, seq: string): Promise<string | undefined> {
  return (await db.query<{ hash: string }>('SELECT hash FROM audit_event WHERE seq = $1::bigint', [seq])).rows[0]?.hash;
}

/** Verifies the stored chain against itself and its head. */
export async function verifyChain(db: Db): Promise<VerifyResult> {
  // The head and every row in one snapshot: a node chaining meanwhile adds rows past a head read
  // a moment before, which would read as "newest rows removed or the head altered" (found by the
  // two-node test while both nodes wrote).
  return db.transaction(async (tx) => {
    await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    return verifyIn(tx);
  });
}

async function verifyIn(db: Queryable): Promise<VerifyResult> {
  const head = await chainHead(db);
  const problems: ChainProblem[] = [];
  let state = { seq: 0n, hash: GENESIS };
  let rows = 0;
  // Page by page, carrying the link across pages.
  let batch: ChainRow[] = [];
  const check = () => {
    const r = verifyRows(batch, undefined, state);
    problems.push(...r.problems);
    rows += r.rows;
    state = r.last;
    batch = [];
  };
  for await (const row of chainRows(db)) {
    batch.push(row);
    if (batch.length >= PAGE) check();
  }
  check();
  const end = verifyRows([], head, state);
  problems.push(...end.problems);
  const staged = Number((await db.query<{ n: string }>('SELECT count(*)::text AS n FROM audit_pending')).rows[0]!.n);
  return { rows, staged, head: head ?? { seq: '0', hash: GENESIS }, problems };
}
