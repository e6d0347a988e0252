import { createHash } from 'node:crypto';
import type { Db, Queryable } from '../store/db';

/**
 * The audit trail's storage: an append-only table whose rows are hash-chained (research note
 * "Tamper evidence": `hash = sha256(prev_hash ‖ canonical(event))`). The canonical form is the
 * stored JSON text itself, so what is verified is exactly what is served and exported.
 *
 * Appends are serialised by the row lock on the chain head (`FOR UPDATE`, which in READ
 * COMMITTED waits and then reads the head its predecessor committed). A write unit takes it in
 * its last statements (the pipeline's commit stage), so the lock is held only for the insert
 * and the commit itself.
 */

/** One AuditEvent as it is stored: the resource and the search keys derived from it. */
export interface AuditRecord {
  event: fhir4.AuditEvent & { id: string };
  /** Patient ids the event is about (entity[patient]). */
  patients: string[];
  /** `Practitioner/1` for a FHIR user, `client|<id>` for a client, `server|<base>` for the server. */
  agents: string[];
  /** References of entity.what (`Observation/5`, `Observation/5/_history/2`). */
  entities: string[];
}

export interface ChainRow {
  seq: string;
  json: string;
  hash: string;
}

const GENESIS = '0'.repeat(64);

/** The hash that links row `seq` (its stored `json`) to the row before it. */
export function link(previousHash: string, seq: bigint | string, json: string): string {
  return createHash('sha256').update(`${previousHash}\n${seq}\n${json}`).digest('hex');
}

/** An AuditEvent as it is stored: the JSON text and the search keys beside it. */
interface StoredAudit {
  id: string;
  recorded: string;
  type: string | null;
  subtype: string | null;
  action: string | null;
  outcome: string;
  patients: string[];
  agents: string[];
  entities: string[];
  json: string;
}

function stored(r: AuditRecord): StoredAudit {
  const code = (c: fhir4.Coding | undefined) => c?.code ?? null;
  return {
    id: r.event.id, recorded: r.event.recorded, type: code(r.event.type), subtype: code(r.event.subtype?.[0]),
    action: r.event.action ?? null, outcome: r.event.outcome ?? '0', patients: r.patients, agents: r.agents, entities: r.entities, json: JSON.stringify(r.event),
  };
}

/**
 * Stages `records` in this transaction (they commit or roll back with it): one INSERT into
 * audit_pending, no lock shared with other transactions. The chainer links them into the chain
 * after commit (chainStaged). Measured reason (decision 014): taking the chain head in every write
 * transaction made concurrent commits queue on one row (+39 % CPU per create at 16 clients).
 */
export async function stageRecords(tx: Queryable, records: readonly AuditRecord[]): Promise<void> {
  if (records.length === 0) return;
  await tx.query(
    `INSERT INTO audit_pending (id, recorded, type, subtype, action, outcome, patients, agents, entities, json)
     SELECT r->>'id', (r->>'recorded')::timestamptz, r->>'type', r->>'subtype', r->>'action', r->>'outcome',
            ARRAY(SELECT jsonb_array_elements_text(r->'patients')), ARRAY(SELECT jsonb_array_elements_text(r->'agents')),
            ARRAY(SELECT jsonb_array_elements_text(r->'entities')), r->>'json'
       FROM jsonb_array_elements($1::jsonb) AS r`,
    [JSON.stringify(records.map(stored))],
  );
}

/**
 * Moves up to `limit` staged rows, oldest first, into the chain, in one transaction of three
 * statements whatever the batch size; answers how many. Chainers of several server processes
 * queue on the head's row lock, and each sees what the one before it moved.
 */
export async function chainStaged(db: Db, limit: number): Promise<number> {
  return db.transaction(async (tx) => {
    const head = await lockHead(tx);
    const moved = (await tx.query<StoredAudit & { queued: string }>(
      `DELETE FROM audit_pending WHERE queued IN (SELECT queued FROM audit_pending ORDER BY queued LIMIT $1)
       RETURNING queued::text AS queued, id, recorded, type, subtype, action, outcome, patients, agents, entities, json`,
      [limit],
    )).rows;
    if (moved.length === 0) return 0;
    moved.sort((a, b) => (BigInt(a.queued) < BigInt(b.queued) ? -1 : 1));
    await append(tx, head, moved.map((m) => ({ ...m, recorded: new Date(m.recorded).toISOString() })));
    return moved.length;
  });
}

/** Whether any staged row waits to be chained. */
export async function hasStaged(db: Queryable): Promise<boolean> {
  return (await db.query<{ waiting: boolean }>('SELECT EXISTS (SELECT 1 FROM audit_pending) AS waiting')).rows[0]!.waiting;
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

async function append(tx: Queryable, head: { seq: string; hash: string }, records: readonly StoredAudit[]): Promise<void> {
  let seq = BigInt(head.seq);
  let hash = head.hash;
  const rows = records.map((r) => {
    seq += 1n;
    hash = link(hash, seq, r.json);
    return { ...r, seq: seq.toString(), hash };
  });
  // One statement for the rows and the head: an append is two round trips whatever its size.
  await tx.query(
    `WITH added AS (
       INSERT INTO audit_event (seq, id, recorded, type, subtype, action, outcome, patients, agents, entities, json, hash)
       SELECT (r->>'seq')::bigint, r->>'id', (r->>'recorded')::timestamptz, r->>'type', r->>'subtype', r->>'action', r->>'outcome',
              ARRAY(SELECT jsonb_array_elements_text(r->'patients')), ARRAY(SELECT jsonb_array_elements_text(r->'agents')),
              ARRAY(SELECT jsonb_array_elements_text(r->'entities')), r->>'json', r->>'hash'
         FROM jsonb_array_elements($1::jsonb) AS r
       RETURNING 1)
     UPDATE audit_chain_head SET seq = $2::bigint, hash = $3 WHERE one`,
    [JSON.stringify(rows), seq.toString(), hash],
  );
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
    if (link(previous, seq, row.json) !== row.hash) {
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
    const page = await db.query<ChainRow>('SELECT seq::text AS seq, json, hash FROM audit_event WHERE seq > $1::bigint ORDER BY audit_event.seq LIMIT $2', [after, PAGE]);
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
export async function verifyChain(db: Queryable): Promise<VerifyResult> {
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
