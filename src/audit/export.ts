import type { Queryable } from '../store/db';
import { chainHead, chainRows, type ChainProblem, type ChainRow, verifyRows, type VerifyResult } from './chain';
import { renderRecordText } from './event';

/**
 * Off-site copies (ASVS 16.4.3): the chain as NDJSON, one line per row —
 * `{"seq":"1","hash":"…","record":<the stored record, byte for byte>,"resource":<its AuditEvent>}`,
 * or for a row stored before records (migration 052) `{"seq":"1","hash":"…","resource":<the
 * stored AuditEvent, byte for byte>}` — then a last line `{"head":{"seq":"…","hash":"…"}}`. A
 * copy verifies on its own (verifyExport), and its head, kept apart from the server, reveals
 * rows removed from the newest end later.
 */
export async function* exportChain(db: Queryable): AsyncGenerator<string> {
  const head = await chainHead(db);
  for await (const row of chainRows(db)) {
    if (head && BigInt(row.seq) > BigInt(head.seq)) break;
    const stored = row.record ? `"record":${row.text},"resource":${renderRecordText(row.text, row.seq)}` : `"resource":${row.text}`;
    yield `{"seq":${JSON.stringify(row.seq)},"hash":${JSON.stringify(row.hash)},${stored}}\n`;
  }
  yield `${JSON.stringify({ head })}\n`;
}

/**
 * Verifies an export's lines (as exportChain wrote them): the chain over the stored texts, and
 * that each resource is what its record renders (an edited resource beside an intact record is
 * a changed row too). A record is JSON without a "resource" key, and a JSON string cannot hold
 * an unescaped quote, so the first `,"resource":` ends it.
 */
export function verifyExport(lines: Iterable<string>): VerifyResult {
  const rows: ChainRow[] = [];
  const rendered: ChainProblem[] = [];
  let head: { seq: string; hash: string } | undefined;
  for (const line of lines) {
    if (line.trim() === '') continue;
    if (line.startsWith('{"head"')) {
      head = (JSON.parse(line) as { head: { seq: string; hash: string } }).head;
      continue;
    }
    const m = /^\{"seq":"(\d+)","hash":"([0-9a-f]{64})",(?:"record":(.*?),)?"resource":(.*)\}$/.exec(line);
    if (!m) throw new Error(`not an audit export line: ${line.slice(0, 60)}`);
    const [, seq, hash, record, resource] = m as unknown as [string, string, string, string | undefined, string];
    rows.push({ seq, hash, text: record ?? resource, record: record !== undefined });
    if (record !== undefined && !rendersAs(record, resource, seq)) rendered.push({ seq, problem: 'changed', detail: 'its resource is not what its record renders' });
  }
  const { last: _last, ...result } = verifyRows(rows, head);
  return { ...result, problems: [...result.problems, ...rendered] };
}

function rendersAs(record: string, resource: string, seq: string): boolean {
  try {
    return renderRecordText(record, seq) === resource;
  } catch {
    return false;
  }
}
