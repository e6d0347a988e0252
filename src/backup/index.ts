import { createHmac, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { Readable } from 'node:stream';
import { chainHead, linkHashAt, verifyChain } from '../audit';
import { type Db, openDb, type Queryable } from '../store/db';
import { dumpPgliteDataDir, loadPgliteDataDir } from '../store/pglite';
import { decryptFromFile, drain, encryptToFile, keyId, sha256OfFile } from './encryption';
import { pgDump, pgRestore } from './postgres';

/**
 * Backups of the whole database: every resource, version, index row and the audit trail with its
 * hash chain, as one consistent snapshot (pg_dump's single transaction; PGlite's data directory
 * with the server stopped), encrypted with AES-256-GCM (./encryption.ts) beside a manifest that
 * lists each file's size and sha256 and is itself authenticated with the key (HMAC). A restore
 * goes into a fresh database only and checks the audit chain before it reports success.
 * Operator procedure: docs/decisions/020-alert-channels-and-backups.md.
 */

export const MANIFEST = 'manifest.json';
const FORMAT = 'rpm-backup/1';

export interface ManifestFile {
  name: string;
  bytes: number;
  sha256: string;
  contents: 'pg_dump custom format' | 'PGlite data directory (tar.gz)';
}

export interface AuditHead {
  seq: string;
  hash: string;
}

export interface Manifest {
  format: typeof FORMAT;
  createdAt: string;
  engine: 'postgres' | 'pglite';
  /** The database name or data directory name; never a credential. */
  source: string;
  serverVersion: string;
  encryption: { algorithm: 'aes-256-gcm'; keyId: string };
  files: ManifestFile[];
  /** The audit chain's head when the backup began: the restored chain must hold this link. */
  auditHead: AuditHead | null;
  /** HMAC-SHA256 of the rest under the backup key: a manifest edited to match altered files is caught. */
  mac: string;
}

export interface Target {
  /** DATABASE_URL: postgres://… for PostgreSQL, otherwise the embedded database in dataDir. */
  databaseUrl: string;
  dataDir: string;
}

const isPostgres = (t: Target) => /^postgres(ql)?:\/\//.test(t.databaseUrl);

function pgliteDir(t: Target): string {
  if (t.databaseUrl === 'pglite://memory') throw new Error('an in-memory database has nothing to back up or restore into');
  return t.databaseUrl.startsWith('pglite://') ? t.databaseUrl.slice('pglite://'.length) : t.dataDir;
}

function macOf(manifest: Omit<Manifest, 'mac'>, key: Buffer): string {
  return createHmac('sha256', key).update(JSON.stringify({ ...manifest, mac: undefined })).digest('hex');
}

async function auditHeadOf(q: Queryable): Promise<AuditHead | null> {
  const { rows: [table] } = await q.query<{ t: string | null }>(`SELECT to_regclass('audit_chain_head')::text AS t`);
  if (!table?.t) throw new Error('this database holds no tables of this server (no audit_chain_head): check DATABASE_URL / DATA_DIR');
  return (await chainHead(q)) ?? null;
}

async function serverVersionOf(q: Queryable): Promise<string> {
  return (await q.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]!.v;
}

/** A new backup set in a new folder under `backupDir`; answers its folder and manifest. */
export async function createBackup(target: Target, backupDir: string, key: Buffer, now = new Date()): Promise<{ dir: string; manifest: Manifest }> {
  const engine = isPostgres(target) ? 'postgres' : 'pglite';
  const name = `${now.toISOString().replace(/[:.]/g, '-')}-${engine}`;
  const dir = join(backupDir, name);
  // Written under a temporary name and renamed when complete: a half-written set is never taken for a backup.
  const partial = `${dir}.partial`;
  mkdirSync(partial, { recursive: true, mode: 0o700 });
  try {
    let file: ManifestFile;
    let auditHead: AuditHead | null;
    let serverVersion: string;
    let source: string;
    if (engine === 'postgres') {
      const db = await openDb(target.databaseUrl, '');
      try {
        // Read before the dump starts: the dump's snapshot is later, so it holds this link.
        auditHead = await auditHeadOf(db);
        serverVersion = await serverVersionOf(db);
      } finally {
        await db.close();
      }
      source = new URL(target.databaseUrl).pathname.replace(/^\//, '');
      let written = { bytes: 0, sha256: '' };
      await pgDump(target.databaseUrl, async (dump) => (written = await encryptToFile(dump, join(partial, 'database.dump.enc'), key)));
      file = { name: 'database.dump.enc', ...written, contents: 'pg_dump custom format' };
    } else {
      const dataDir = pgliteDir(target);
      const facts: { auditHead: AuditHead | null; serverVersion: string } = { auditHead: null, serverVersion: '' };
      const tarball = await dumpPgliteDataDir(dataDir, async (q) => {
        facts.auditHead = await auditHeadOf(q);
        facts.serverVersion = await serverVersionOf(q);
      });
      ({ auditHead, serverVersion } = facts);
      source = basename(dataDir);
      const written = await encryptToFile(Readable.fromWeb(tarball.stream() as never), join(partial, 'datadir.tar.gz.enc'), key);
      file = { name: 'datadir.tar.gz.enc', ...written, contents: 'PGlite data directory (tar.gz)' };
    }
    const body: Omit<Manifest, 'mac'> = {
      format: FORMAT, createdAt: now.toISOString(), engine, source, serverVersion,
      encryption: { algorithm: 'aes-256-gcm', keyId: keyId(key) }, files: [file], auditHead,
    };
    const manifest: Manifest = { ...body, mac: macOf(body, key) };
    writeFileSync(join(partial, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600 });
    renameSync(partial, dir);
    return { dir, manifest };
  } catch (err) {
    rmSync(partial, { recursive: true, force: true });
    throw err;
  }
}

/** The manifest of a backup set, its MAC checked with `key`. */
export function readManifest(dir: string, key: Buffer): Manifest {
  const path = join(dir, MANIFEST);
  if (!existsSync(path)) throw new Error(`${dir} holds no ${MANIFEST}: not a backup set`);
  const manifest = JSON.parse(readFileSync(path, 'utf8')) as Manifest;
  if (manifest.format !== FORMAT) throw new Error(`${path}: unknown format ${String(manifest.format)}`);
  if (manifest.encryption?.keyId !== keyId(key)) throw new Error(`${dir} was encrypted with another key (key id ${manifest.encryption?.keyId}); this BACKUP_KEY has id ${keyId(key)}`);
  const { mac, ...body } = manifest;
  const expected = Buffer.from(macOf(body, key), 'hex');
  if (typeof mac !== 'string' || mac.length !== expected.length * 2 || !timingSafeEqual(Buffer.from(mac, 'hex'), expected)) {
    throw new Error(`${path} has been altered (its MAC does not match)`);
  }
  return manifest;
}

/** What is wrong with a backup set: each file's size and sha256 against the manifest, and each decrypts (GCM tag). Empty when sound. */
export async function verifyBackup(dir: string, key: Buffer): Promise<string[]> {
  let manifest: Manifest;
  try {
    manifest = readManifest(dir, key);
  } catch (err) {
    return [(err as Error).message];
  }
  const problems: string[] = [];
  for (const f of manifest.files) {
    const path = join(dir, f.name);
    if (!existsSync(path)) {
      problems.push(`${f.name}: missing`);
      continue;
    }
    const sha256 = await sha256OfFile(path);
    if (sha256 !== f.sha256) {
      problems.push(`${f.name}: sha256 ${sha256} is not the manifest's ${f.sha256}`);
      continue;
    }
    try {
      await drain(decryptFromFile(path, key));
    } catch (err) {
      problems.push(`${f.name}: does not decrypt: ${(err as Error).message}`);
    }
  }
  return problems;
}

/**
 * Restores a verified backup set into `target`, which must be a fresh database (PostgreSQL: one
 * that exists and has no tables; embedded: a data directory that does not exist or is empty), then
 * verifies the audit chain: intact, and holding the head recorded when the backup began.
 */
export async function restoreBackup(dir: string, target: Target, key: Buffer): Promise<{ auditRows: number; auditHead: AuditHead }> {
  const problems = await verifyBackup(dir, key);
  if (problems.length) throw new Error(`the backup set in ${dir} is not sound:\n  ${problems.join('\n  ')}`);
  const manifest = readManifest(dir, key);
  const file = join(dir, manifest.files[0]!.name);
  if (manifest.engine === 'postgres') {
    if (!isPostgres(target)) throw new Error('this is a PostgreSQL backup: set DATABASE_URL=postgres://… to a fresh database');
    const db = await openDb(target.databaseUrl, '');
    try {
      const { rows } = await db.query<{ n: string }>(`SELECT count(*)::text AS n FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')`);
      if (rows[0]!.n !== '0') throw new Error('the target database is not empty: restore into a fresh one (createdb)');
    } finally {
      await db.close();
    }
    await pgRestore(target.databaseUrl, decryptFromFile(file, key));
  } else {
    if (isPostgres(target)) throw new Error('this is an embedded (PGlite) backup: unset DATABASE_URL and set DATA_DIR to a fresh directory');
    const chunks: Buffer[] = [];
    for await (const c of decryptFromFile(file, key)) chunks.push(c as Buffer);
    await loadPgliteDataDir(pgliteDir(target), new Blob(chunks));
  }
  const db: Db = await openDb(target.databaseUrl, target.dataDir);
  try {
    return await checkRestoredChain(db, manifest.auditHead);
  } finally {
    await db.close();
  }
}

async function checkRestoredChain(db: Db, recorded: AuditHead | null): Promise<{ auditRows: number; auditHead: AuditHead }> {
  const result = await verifyChain(db);
  if (result.problems.length) throw new Error(`the restored audit chain is broken: ${result.problems.slice(0, 3).map((p) => `row ${p.seq}: ${p.problem}`).join('; ')}`);
  if (recorded && recorded.seq !== '0') {
    if ((await linkHashAt(db, recorded.seq)) !== recorded.hash) throw new Error(`the restored audit chain does not hold the link ${recorded.seq} recorded at backup time`);
  }
  return { auditRows: result.rows, auditHead: { seq: result.head.seq, hash: result.head.hash } };
}
