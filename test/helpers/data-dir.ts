import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { migrateAll } from '../../src/schema';
import { openDb } from '../../src/store/db';

let template: Promise<string> | undefined;

/**
 * An embedded (PGlite) data folder at `target` holding a migrated, empty database: a copy of one
 * built once per test run. Creating the 144 types' tables takes seconds per process (decision
 * 010), and the tests that start server and CLI processes test what they do with a database, not
 * the first start; the first start keeps its own tests on truly empty folders.
 */
export async function migratedDataDir(target: string): Promise<string> {
  template ??= (async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'rpm-template-')), 'data');
    const db = await openDb('', dir);
    try {
      await migrateAll(db);
    } finally {
      await db.close();
    }
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    return dir;
  })();
  cpSync(await template, target, { recursive: true });
  return target;
}
