import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { migratedDataDir } from '../helpers/data-dir';
import { embeddedPassOnly } from '../helpers/pass';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/paths';
import { openDb } from '../../src/store/db';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/** Runs a built CLI as `npm run <name>` does (node dist/scripts/<name>.js), on the embedded database in `dataDir`. */
function cli(name: string, args: string[], dataDir: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const env = { ...process.env, DATABASE_URL: '', DATA_DIR: dataDir };
    execFile(process.execPath, [join(projectRoot, 'dist', 'scripts', `${name}.js`), ...args], { env, cwd: projectRoot }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

describe('the CLIs', () => {
  let root: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'rpm-cli-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  for (const name of ['token', 'client', 'user']) {
    it(`${name} --help prints its usage and exits 0 without opening the database`, async () => {
      const dataDir = join(root, `help-${name}`);
      const res = await cli(name, ['--help'], dataDir);
      expect(res.code, res.stderr).to.equal(0);
      expect(res.stdout).to.contain(`npm run -s ${name}`);
      expect(existsSync(dataDir)).to.be.false();
    });
  }

  it('a wrong call prints the usage and exits 2', async () => {
    const res = await cli('client', ['frobnicate'], join(root, 'wrong'));
    expect(res.code).to.equal(2);
    expect(res.stderr).to.contain('npm run -s client');
  });

  it('refuse the embedded database while another process holds it, and work once it is released', embeddedPassOnly, async () => {
    const dataDir = await migratedDataDir(join(root, 'held'));
    const server = await openDb('', dataDir); // this process plays the running server
    try {
      for (const [name, args] of [['token', ['--scope', 'system/*.rs']], ['client', ['list']], ['user', ['list']]] as const) {
        const res = await cli(name, [...args], dataDir);
        expect(res.code, `${name}: ${res.stderr}`).to.equal(1);
        expect(res.stderr).to.contain(`in use by process ${process.pid}`);
        expect(res.stderr).to.contain('/auth/register');
        expect(res.stdout).to.equal('');
      }
      // A second opener in any process is refused too: the server cannot start twice on one directory.
      await expect(openDb('', dataDir)).to.reject(/in use by process/);
    } finally {
      await server.close();
    }
    expect(existsSync(`${dataDir}.lock`)).to.be.false();
    const res = await cli('token', ['--scope', 'system/*.rs'], dataDir);
    expect(res.code, res.stderr).to.equal(0);
    expect(res.stdout.trim()).to.match(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    expect(existsSync(`${dataDir}.lock`)).to.be.false();
  });

  it('take over an embedded database\'s lock left by a process that no longer runs', embeddedPassOnly, async () => {
    const dataDir = await migratedDataDir(join(root, 'stale'));
    writeFileSync(`${dataDir}.lock`, JSON.stringify({ pid: 2 ** 22 + 12345, startedAt: '2026-01-01T00:00:00Z', command: 'crashed' }));
    const db = await openDb('', dataDir);
    await db.close();
    expect(existsSync(`${dataDir}.lock`)).to.be.false();
  });
});
