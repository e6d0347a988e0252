import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { runAudit } from '../../scripts/audit';
import { until } from '../helpers/hook';
import { startTestServer, type TestServer } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * Issue 14, tamper evidence: the audit table refuses UPDATE, DELETE and TRUNCATE, and the
 * verification command (`npm run audit -- verify`) finds a row changed or removed by someone
 * who got past that (here: the database owner, with the trigger switched off), in the table and
 * in an export. Every tampering is undone before the test ends: the chain is shared by the run.
 */
describe('audit chain', () => {
  let app: TestServer;
  const verify = async (argv: string[] = ['verify']) => {
    let out = '';
    const code = await runAudit(app.ctx.db, argv, (t) => (out += t));
    return { code, out };
  };
  /** Runs `tamper` as the owner with the append-only trigger off, then turns it back on. */
  const asOwner = async (tamper: string, params: unknown[] = []) => {
    await app.ctx.db.transaction(async (tx) => {
      await tx.query('ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only');
      await tx.query(tamper, params);
      await tx.query('ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only');
    });
  };

  before(async () => {
    app = await startTestServer();
    for (let i = 0; i < 3; i++) {
      const res = await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family: `Chain${i}` }] } });
      expect(res.statusCode).to.equal(201);
      await app.request({ method: 'GET', url: `/fhir/Patient/${res.json.id}` });
    }
    await app.audit.flush();
  });

  after(async () => {
    await app.stop();
  });

  it('is intact after ordinary use, and refuses UPDATE, DELETE and TRUNCATE', async () => {
    const { code, out } = await verify();
    expect(code, out).to.equal(0);
    expect(out).to.include('intact');
    const rows = Number((await app.ctx.db.query<{ n: string }>('SELECT count(*)::text AS n FROM audit_event')).rows[0]!.n);
    expect(rows).to.be.at.least(6);
    for (const sql of ["UPDATE audit_event SET outcome = '8'", 'DELETE FROM audit_event', 'TRUNCATE audit_event']) {
      await expect(app.ctx.db.query(sql)).to.reject(/append-only/);
    }
    expect((await verify()).code).to.equal(0);
  });

  it('finds a changed row and a removed row', async () => {
    // A successful event (outcome 0), so the edit below changes it: suites share the trail, and
    // the newest rows may be another suite's denials.
    const [victim] = (await app.ctx.db.query<{ seq: string; record: string; hash: string; id: string }>(`SELECT seq::text AS seq, record, hash, id FROM audit_event WHERE strpos(record, '"outcome":"0"') > 0 ORDER BY seq DESC OFFSET 2 LIMIT 1`)).rows;
    const row = victim!;
    try {
      await asOwner('UPDATE audit_event SET record = replace(record, \'"outcome":"0"\', \'"outcome":"4"\') WHERE seq = $1::bigint', [row.seq]);
      const changed = await verify();
      expect(changed.code).to.equal(1);
      expect(changed.out).to.include(`row ${row.seq}: changed`);
    } finally {
      await asOwner('UPDATE audit_event SET record = $2 WHERE seq = $1::bigint', [row.seq, row.record]);
    }
    expect((await verify()).code).to.equal(0);

    const full = (await app.ctx.db.query<Record<string, unknown>>('SELECT * FROM audit_event WHERE seq = $1::bigint', [row.seq])).rows[0]!;
    try {
      await asOwner('DELETE FROM audit_event WHERE seq = $1::bigint', [row.seq]);
      const removed = await verify();
      expect(removed.code).to.equal(1);
      expect(removed.out).to.include(`row ${row.seq}: missing`);
    } finally {
      const columns = Object.keys(full);
      await app.ctx.db.query(`INSERT INTO audit_event (${columns.join(', ')}) VALUES (${columns.map((_, i) => `$${i + 1}`).join(', ')})`, Object.values(full));
    }
    expect((await verify()).code).to.equal(0);
  });

  it('exports the chain so that a copy verifies on its own, and finds tampering in the copy', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'audit-export-'));
    try {
      const file = join(dir, 'audit.ndjson');
      expect(await runAudit(app.ctx.db, ['export', '--out', file], () => {})).to.equal(0);
      const lines = readFileSync(file, 'utf8').trim().split('\n');
      expect(JSON.parse(lines[lines.length - 1]!).head.seq).to.equal(String(lines.length - 1));
      expect(JSON.parse(lines[0]!).resource.resourceType).to.equal('AuditEvent');
      expect((await verify(['verify', '--file', file])).code).to.equal(0);

      // The resource beside an intact record edited in the copy: it no longer renders from the record.
      const newest = lines[lines.length - 2]!;
      expect(newest).to.include('"record":');
      const at = newest.lastIndexOf('"action":"') + '"action":"'.length;
      writeFileSync(file, [...lines.slice(0, -2), `${newest.slice(0, at)}Z${newest.slice(at + 1)}`, lines[lines.length - 1]].join('\n'));
      const edited = await verify(['verify', '--file', file]);
      expect(edited.code).to.equal(1);
      expect(edited.out).to.include(`row ${JSON.parse(newest).seq}: changed`);

      // Dropping the newest rows from the copy: the head it carries gives it away.
      writeFileSync(file, [...lines.slice(0, -3), lines[lines.length - 1]].join('\n'));
      const truncated = await verify(['verify', '--file', file]);
      expect(truncated.code).to.equal(1);
      expect(truncated.out).to.include('head');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('chains a write audit staged in its transaction soon after its commit, unasked', async () => {
    const res = await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family: 'Staged' }] } });
    expect(res.statusCode).to.equal(201);
    const chained = () => app.ctx.db.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_event WHERE patient = $1', [res.json.id]);
    // Kicked 100 ms after the commit; the poll (1 s) is the backstop. The bound here is generous for a loaded CI machine.
    await until('the create chained', async () => (await chained()).rows[0]!.n === 1, 5_000);
    const { code, out } = await verify();
    expect(code, out).to.equal(0);
  });

  it('answers a usage line and exit code 2 to an unknown command', async () => {
    const res = await verify(['bogus']);
    expect(res.code).to.equal(2);
    expect(res.out).to.include('verify');
  });
});
