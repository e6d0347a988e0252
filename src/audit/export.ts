import type { Queryable } from '../store/db';
import { chainHead, chainRows, type ChainRow, verifyRows, type VerifyResult } from './chain';

/**
 * Off-site copies (ASVS 16.4.3): the chain as NDJSON, one line per row —
 * `{"seq":"1","hash":"…","resource":<the stored AuditEvent, byte for byte>}` — then a last line
 * `{"head":{"seq":"…","hash":"…"}}`. A copy verifies on its own (verifyExport), and its head,
 * kept apart from the server, reveals rows removed from the newest end later.
 */
export async function* exportChain(db: Queryable): AsyncGenerator<string> {
  const head = await chainHead(db);
  for await (const row of chainRows(db)) {
    if (head && BigInt(row.seq) > BigInt(head.seq)) break;
    yield `{"seq":${JSON.stringify(row.seq)},"hash":${JSON.stringify(row.hash)},"resource":${row.json}}\n`;
  }
  yield `${JSON.stringify({ head })}\n`;
}

/** Verifies an export's lines (as exportChain wrote them). */
export function verifyExport(lines: Iterable<string>): VerifyResult {
  const rows: ChainRow[] = [];
  let head: { seq: string; hash: string } | undefined;
  for (const line of lines) {
    if (line.trim() === '') continue;
    if (line.startsWith('{"head"')) {
      head = (JSON.parse(line) as { head: { seq: string; hash: string } }).head;
      continue;
    }
    const m = /^\{"seq":"(\d+)","hash":"([0-9a-f]{64})","resource":(.*)\}$/.exec(line);
    if (!m) throw new Error(`not an audit export line: ${line.slice(0, 60)}`);
    rows.push({ seq: m[1]!, hash: m[2]!, json: m[3]! });
  }
  const { last: _last, ...result } = verifyRows(rows, head);
  return result;
}
