import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { migratedDataDir, migratedMemoryDb } from '../helpers/data-dir';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { addUser, ensureDevelopmentAdmin, findUser, hashPassword, verifyPassword } from '../../src/auth/users';
import { migrateAll } from '../../src/schema';
import { testDb, unique } from '../helpers/server';
import { embeddedPassOnly } from '../helpers/pass';

export const lab = Lab.script();
const { describe, it } = lab;
const run = promisify(execFile);

describe('local users', () => {
  it('keeps passwords as salted scrypt hashes with their parameters', async () => {
    const a = await hashPassword('a long password');
    const b = await hashPassword('a long password');
    expect(a).to.match(/^scrypt\$32768\$8\$1\$[\w-]+\$[\w-]+$/);
    expect(a).to.not.equal(b);
    expect(await verifyPassword('a long password', a)).to.be.true();
    expect(await verifyPassword('a long passwore', a)).to.be.false();
    expect(await verifyPassword('a long password', undefined)).to.be.false();
  });

  it('refuses weak input: short passwords, odd usernames, fhirUser other than Patient/ or Practitioner/, duplicates', async () => {
    const db = await testDb();
    await migrateAll(db);
    const name = unique('u');
    await expect(addUser(db, { username: name, password: 'short' })).to.reject(/at least 8/);
    await expect(addUser(db, { username: 'bad name!', password: 'long enough' })).to.reject(/username/);
    await expect(addUser(db, { username: name, password: 'long enough', fhirUser: 'Organization/1' })).to.reject(/fhir-user/);
    await addUser(db, { username: name, password: 'long enough', fhirUser: 'Patient/p1' });
    await expect(addUser(db, { username: name, password: 'long enough' })).to.reject(/exists/);
    expect((await findUser(db, name))!.fhirUser).to.equal('Patient/p1');
  });

  it('creates a development admin on the first start of an empty embedded database only', embeddedPassOnly, async () => {
    const db = await migratedMemoryDb();
    try {
      expect(await ensureDevelopmentAdmin(db, false)).to.be.undefined();
      const admin = await ensureDevelopmentAdmin(db, true);
      expect(admin!.username).to.equal('admin');
      const user = await findUser(db, 'admin');
      expect(await verifyPassword(admin!.password, user!.passwordHash)).to.be.true();
      expect(await ensureDevelopmentAdmin(db, true)).to.be.undefined();
    } finally {
      await db.close();
    }
  });

  it('npm run user -- add / list / remove works on the embedded database', { ...embeddedPassOnly, timeout: 120_000 }, async () => {
    const dir = await migratedDataDir(join(mkdtempSync(join(tmpdir(), 'users-cli-')), 'data'));
    const script = join(__dirname, '..', '..', 'scripts', 'user.js');
    const env = { ...process.env, DATA_DIR: dir, DATABASE_URL: '', LOG_LEVEL: 'silent' };
    try {
      const added = await run(process.execPath, [script, 'add', '--username', 'nurse', '--password', 'a good password', '--fhir-user', 'Practitioner/n1'], { env });
      expect(added.stdout).to.include('added nurse (Practitioner/n1)');
      expect((await run(process.execPath, [script, 'list'], { env })).stdout).to.include('nurse\tPractitioner/n1');
      const refused = await run(process.execPath, [script, 'add', '--username', 'x', '--password', 'short'], { env }).catch((e: { code: number; stderr: string }) => e);
      expect((refused as { code: number }).code).to.equal(1);
      expect((await run(process.execPath, [script, 'remove', 'nurse'], { env })).stdout).to.include('removed nurse');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
