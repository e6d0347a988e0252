import { createHmac } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import pino from 'pino';
import { runBackup } from '../../scripts/backup';
import { verifyChain } from '../../src/audit';
import { verifyBackup } from '../../src/backup';
import { sha256OfFile } from '../../src/backup/encryption';
import { loadConfig } from '../../src/config';
import { type App, createServer } from '../../src/server';
import { type Db, openDb } from '../../src/store/db';
import { migratedDataDir } from '../helpers/data-dir';
import { embeddedPassOnly } from '../helpers/pass';
import { examplePlanFor } from '../helpers/monitoring-plan';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const KEY = 'a3f1c2d4e5b60718293a4b5c6d7e8f90112233445566778899aabbccddeeff00';
const OTHER_KEY = Buffer.alloc(32, 7).toString('base64');
const LOINC = 'http://loinc.org';

interface Target {
  DATABASE_URL: string;
  DATA_DIR: string;
}

/**
 * Every row of every table of the database (resources, history, index tables, monitoring and auth
 * tables, the audit trail and its head) as a count and a digest of its rows in a fixed order,
 * and every sequence's position: what a restore must bring back exactly.
 */
async function snapshot(db: Db): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const tables = await db.query<{ name: string }>(`SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1`);
  for (const { name } of tables.rows) {
    const { rows } = await db.query<{ n: string; d: string }>(`SELECT count(*)::text AS n, coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') AS d FROM "${name}" t`);
    out[name] = `${rows[0]!.n} ${rows[0]!.d}`;
  }
  const seqs = await db.query<{ name: string; v: string | null }>(`SELECT sequencename AS name, last_value::text AS v FROM pg_sequences WHERE schemaname = current_schema()`);
  for (const s of seqs.rows) out[`sequence ${s.name}`] = String(s.v);
  const chain = await verifyChain(db);
  out['audit chain'] = `${chain.rows} rows, head ${chain.head.seq} ${chain.head.hash}, ${chain.problems.length} problems`;
  return out;
}

async function snapshotOf(target: Target): Promise<Record<string, string>> {
  const db = await openDb(target.DATABASE_URL, target.DATA_DIR);
  try {
    return await snapshot(db);
  } finally {
    await db.close();
  }
}

/**
 * A day of monitoring through the server: patients, a plan, readings (breaches raise Flags), an
 * update, a delete, reads (audited). Answers the snapshot of what was there, taken once the
 * server has stopped (its last audit records flushed).
 */
async function loadData(target: Target): Promise<Record<string, string>> {
  const db = await openDb(target.DATABASE_URL, target.DATA_DIR);
  try {
    const app = await createServer(loadConfig({ ...target, PORT: '8080', HOST: '127.0.0.1', LOG_LEVEL: 'silent', AUTH_DISABLED: 'true' }), { db, logger: pino({ level: 'silent' }) });
    try {
      await exercise(app);
    } finally {
      await app.stop();
    }
    return await snapshot(db);
  } finally {
    await db.close();
  }
}

async function exercise(app: App): Promise<void> {
  const send = async (method: string, url: string, payload?: unknown) => {
    const res = await app.server.inject({ method, url, headers: { 'content-type': 'application/fhir+json' }, ...(payload ? { payload: JSON.stringify(payload) } : {}) });
    expect(res.statusCode, res.payload).to.be.below(300);
    return res.payload ? (JSON.parse(res.payload) as Record<string, any>) : {};
  };
  const patient = await send('POST', '/fhir/Patient', { resourceType: 'Patient', name: [{ family: 'Drill', given: ['Restore'] }], identifier: [{ system: 'urn:example:mrn', value: 'MRN-1' }] });
  await send('PUT', `/fhir/Patient/${patient.id}`, { ...patient, birthDate: '1940-02-03' });
  await send('POST', '/fhir/CarePlan', examplePlanFor(patient.id, new Date(Date.now() - 86_400_000).toISOString().slice(0, 10)));
  const ids: string[] = [];
  for (const systolic of [120, 150, 185, 85, 131]) {
    const obs = await send('POST', '/fhir/Observation', {
      resourceType: 'Observation', status: 'final', code: { coding: [{ system: LOINC, code: '85354-9' }] }, subject: { reference: `Patient/${patient.id}` },
      effectiveDateTime: new Date(Date.now() - ids.length * 60_000).toISOString(),
      component: [{ code: { coding: [{ system: LOINC, code: '8480-6' }] }, valueQuantity: { value: systolic, unit: 'mm[Hg]', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } }],
    });
    ids.push(obs.id);
  }
  await send('DELETE', `/fhir/Observation/${ids[0]}`);
  const flags = await send('GET', `/fhir/Flag?patient=${patient.id}`);
  expect((flags.entry as unknown[]).length).to.be.at.least(2);
  await send('GET', `/fhir/Patient/${patient.id}/_history`);
}

async function backupCli(argv: string[], env: Record<string, string>): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await runBackup(argv, env, (t) => (out += t));
  return { code, out };
}

/** The drill of issue 22: load, back up, destroy, restore into a fresh database, compare everything. */
/** Answers the backup set it made. */
async function drill(source: Target, destroy: () => Promise<void>, fresh: Target, backupDir: string): Promise<string> {
  const before = await loadData(source);
  expect(before['audit chain']).to.endWith(', 0 problems');
  expect(Number(before['audit chain']!.split(' ')[0])).to.be.least(10);

  const created = await backupCli(['create'], { ...source, BACKUP_DIR: backupDir, BACKUP_KEY: KEY });
  expect(created.code, created.out).to.equal(0);
  const set = created.out.split(': ')[0]!;
  expect((await backupCli(['verify', set], { ...source, BACKUP_DIR: backupDir, BACKUP_KEY: KEY })).out).to.endWith(': sound\n');

  await destroy();
  const restored = await backupCli(['restore', set], { ...fresh, BACKUP_DIR: backupDir, BACKUP_KEY: KEY });
  expect(restored.code, restored.out).to.equal(0);
  expect(restored.out).to.contain('audit chain intact');
  const after = await snapshotOf(fresh);
  expect(Object.keys(after).length).to.be.least(300);
  expect(after).to.equal(before);

  // A second restore into the now populated database is refused: restores go into fresh ones only.
  await expect(backupCli(['restore', set], { ...fresh, BACKUP_DIR: backupDir, BACKUP_KEY: KEY })).to.reject(/not empty|fresh/);
  return set;
}

/**
 * A fresh database is a thousand tables and indexes (144 types): creating, dumping, restoring and
 * dropping them dominates the drill. Seconds on an idle machine, minutes on a shared and loaded one.
 */
const DRILL = { timeout: 300_000 };

describe('backups: encrypted, checksummed, restorable', () => {
  let work: string;
  let drilledSet: string | undefined;
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'rpm-backup-'));
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  it('restore drill on the embedded database: every table, row, version, index row and the audit chain come back', { ...DRILL, ...embeddedPassOnly }, async () => {
    const source = { DATABASE_URL: '', DATA_DIR: await migratedDataDir(join(work, 'embedded')) };
    const fresh = { DATABASE_URL: '', DATA_DIR: join(work, 'embedded-restored') };
    drilledSet = await drill(source, async () => rmSync(source.DATA_DIR, { recursive: true, force: true }), fresh, join(work, 'sets-embedded'));
  });

  it('refuses a tampered file, an edited manifest, another key and a bad key (of the embedded drill\'s set); archives WAL segments encrypted, never overwriting one', embeddedPassOnly, async () => {
    // A copy of the embedded drill's set: tampering needs no database.
    expect(drilledSet, 'the drill made a set').to.be.a.string();
    const set = join(work, 'tampered');
    cpSync(drilledSet!, set, { recursive: true });
    const env = { DATABASE_URL: '', DATA_DIR: join(work, 'unused'), BACKUP_DIR: join(work, 'sets-small'), BACKUP_KEY: KEY };
    const manifestPath = join(set, 'manifest.json');
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
    expect(manifest.encryption.algorithm).to.equal('aes-256-gcm');
    expect(manifest.serverVersion).to.match(/^\d+\.\d+/);
    expect(manifest.files[0].sha256).to.match(/^[0-9a-f]{64}$/);

    expect((await verifyBackup(set, Buffer.from(OTHER_KEY, 'base64')))[0]).to.contain('another key');
    await expect(backupCli(['create'], { ...env, BACKUP_KEY: 'short' })).to.reject(/32 bytes/);

    writeFileSync(manifestPath, JSON.stringify({ ...manifest, createdAt: '2000-01-01T00:00:00.000Z' }));
    expect((await verifyBackup(set, Buffer.from(KEY, 'hex')))[0]).to.contain('altered');
    writeFileSync(manifestPath, JSON.stringify(manifest));

    const file = join(set, manifest.files[0].name);
    const bytes = readFileSync(file);
    bytes[bytes.length >> 1] ^= 1;
    writeFileSync(file, bytes);
    const problems = await verifyBackup(set, Buffer.from(KEY, 'hex'));
    expect(problems[0]).to.contain('sha256');
    const verify = await backupCli(['verify', set], env);
    expect(verify.code).to.equal(1);

    // A file whose manifest entry is made to match still fails GCM's tag.
    const forged = { ...manifest, files: [{ ...manifest.files[0], sha256: await sha256OfFile(file) }] };
    forged.mac = createHmac('sha256', Buffer.from(KEY, 'hex')).update(JSON.stringify({ ...forged, mac: undefined })).digest('hex');
    writeFileSync(manifestPath, JSON.stringify(forged));
    expect((await verifyBackup(set, Buffer.from(KEY, 'hex')))[0]).to.contain('does not decrypt');

    const segment = join(work, '000000010000000000000001');
    writeFileSync(segment, Buffer.alloc(64 * 1024, 3));
    expect((await backupCli(['archive-wal', segment, '000000010000000000000001'], env)).code).to.equal(0);
    expect(readFileSync(join(env.BACKUP_DIR, 'wal', '000000010000000000000001.enc')).includes(Buffer.alloc(64, 3))).to.be.false();
    expect((await backupCli(['archive-wal', segment, '000000010000000000000001'], env)).code).to.equal(1);
    expect((await backupCli(['restore-wal', '000000010000000000000001', join(work, 'back')], env)).code).to.equal(0);
    expect(readFileSync(join(work, 'back')).equals(readFileSync(segment))).to.be.true();
    expect((await backupCli(['restore-wal', '000000010000000000000002', join(work, 'none')], env)).code).to.equal(1);
  });

  // The PostgreSQL drill needs a PostgreSQL: it runs in the suite's PostgreSQL pass (DATABASE_URL=postgres://…).
  const pgUrl = process.env.DATABASE_URL;
  if (pgUrl?.startsWith('postgres')) {
    it('restore drill on PostgreSQL (pg_dump into a fresh database): every table, row, version, index row and the audit chain come back', DRILL, async () => {
      const name = `rpm_drill_${Date.now()}_${process.pid}`;
      const urlOf = (db: string) => {
        const u = new URL(pgUrl);
        u.pathname = `/${db}`;
        u.searchParams.delete('options');
        return u.toString();
      };
      const admin = await openDb(pgUrl, '');
      await admin.query(`CREATE DATABASE ${name}`);
      await admin.query(`CREATE DATABASE ${name}_restored`);
      try {
        await drill(
          { DATABASE_URL: urlOf(name), DATA_DIR: '' },
          () => admin.query(`DROP DATABASE ${name} WITH (FORCE)`).then(() => undefined),
          { DATABASE_URL: urlOf(`${name}_restored`), DATA_DIR: '' },
          join(work, 'sets-postgres'),
        );
      } finally {
        await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        await admin.query(`DROP DATABASE IF EXISTS ${name}_restored WITH (FORCE)`);
        await admin.close();
      }
    });
  }
});
