import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { migrateAll } from '../../src/schema';
import { type Db, openDb } from '../../src/store/db';
import { dumpOpenPglite, loadPgliteDataDir, openPglite } from '../../src/store/pglite';

/**
 * Creating the 144 types' tables takes seconds per database on an idle machine and minutes on a
 * loaded one (decision 010). The tests that need a migrated, empty embedded database (the shared
 * in-memory one, data folders for server and CLI processes, a development admin's first start)
 * test what is done with it, not the migration: a test process migrates one in memory and starts
 * the others from its tarball. The migration keeps its own tests (test/store/migrate.test.ts,
 * and the servers' first starts on truly empty folders).
 */
let migrated: Promise<{ tarball: Blob; db: Db | undefined }> | undefined;
function migratedMemory(): Promise<{ tarball: Blob; db: Db | undefined }> {
  migrated ??= (async () => {
    const db = await openDb('pglite://memory', '');
    await migrateAll(db);
    return { tarball: await dumpOpenPglite(db), db };
  })();
  return migrated;
}

/**
 * A migrated, empty in-memory embedded database. The first caller gets the one the tarball was
 * taken of (no copy to make), later callers a copy.
 */
export async function migratedMemoryDb(): Promise<Db> {
  const template = await migratedMemory();
  const db = template.db;
  template.db = undefined;
  return db ?? openPglite(undefined, template.tarball);
}

let templateDir: Promise<string> | undefined;

/**
 * An embedded (PGlite) data folder at `target` holding a migrated, empty database: a copy of one
 * made once per test run from the migrated tarball.
 */
export async function migratedDataDir(target: string): Promise<string> {
  templateDir ??= (async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'rpm-template-')), 'data');
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    await loadPgliteDataDir(dir, (await migratedMemory()).tarball);
    return dir;
  })();
  cpSync(await templateDir, target, { recursive: true });
  return target;
}
