import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { migratedDataDir } from '../helpers/data-dir';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/paths';
import { freePort } from '../helpers/port';
import { embeddedPassOnly } from '../helpers/pass';

export const lab = Lab.script();
const { describe, it } = lab;

/**
 * The README's walk-throughs, run as written: each shell block marked
 * `<!-- walkthrough: NAME -->` (or `<!-- walkthrough: NAME, server stopped -->`, run before the
 * server starts) runs in bash with `set -euo pipefail` against a fresh server process
 * (`node dist/src/main.js`, the embedded database in a temporary folder) on a free port, which
 * replaces `localhost:8080`. A block that fails, or a curl -f that meets an HTTP error, fails here.
 */
interface Walkthrough {
  before: string[];
  running: string[];
}

function walkthroughs(): Map<string, Walkthrough> {
  const readme = readFileSync(join(projectRoot, 'README.md'), 'utf8');
  const found = new Map<string, Walkthrough>();
  for (const m of readme.matchAll(/<!-- walkthrough: ([a-z-]+)(, server stopped)? -->\n```sh\n([\s\S]*?)```/g)) {
    const w = found.get(m[1]!) ?? { before: [], running: [] };
    (m[2] ? w.before : w.running).push(m[3]!);
    found.set(m[1]!, w);
  }
  return found;
}

function bash(script: string, cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('bash', ['-c', `set -euo pipefail\n${script}`], { cwd, env, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

async function startServer(env: NodeJS.ProcessEnv, base: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [join(projectRoot, 'dist', 'src', 'main.js')], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  // Generous: a cold embedded database on a busy machine.
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null) throw new Error(`server exited ${child.exitCode}: ${stderr}`);
    try {
      if ((await fetch(`${base}/fhir/metadata`)).status === 200) return child;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  child.kill('SIGTERM');
  throw new Error(`server did not answer /fhir/metadata: ${stderr}`);
}

/**
 * What each walk-through prints besides JSON bodies, line by line: the README's comments promise
 * these answers, so a walk-through that runs but answers wrongly fails too.
 */
const PRINTS: Record<string, RegExp[]> = {
  operator: [/^4\.0\.1$/, /^http:\/\/localhost:\d+\/auth\/token$/, /^refused while the server runs$/],
  ehr: [/^Moreau$/, /^2$/, /^3$/, /^201 Created$/, /^1$/, /^1$/, /^2$/, /^1$/, /^1$/, /^3$/, /^error$/],
  smart: [/^launch-ehr .*permission-v2$/, /^http:\/\/localhost:\d+\/auth\/authorize\?/, /^[A-Za-z0-9.-]+$/, /^Moreau$/, /^300$/],
  gateway: [/^(201 Created ?)+$/, /^(200 OK ?)+$/, /^\d+$/, /^[1-9]\d*$/],
};

// Each walk-through is a reader's first start: `npm start` on the embedded database, as the README
// says. The PostgreSQL pass would repeat them unchanged (helpers/pass.ts).
describe('the README walk-throughs, executed as written on the embedded database', () => {
  const all = walkthroughs();

  it('has one for each reader', () => {
    expect([...all.keys()].sort()).to.equal(['ehr', 'gateway', 'operator', 'smart']);
  });

  for (const [name, walkthrough] of all) {
    it(`${name}`, { ...embeddedPassOnly, timeout: 240_000 }, async () => {
      const port = await freePort();
      const work = mkdtempSync(join(tmpdir(), `readme-${name}-`));
      // The reader runs from a clone: the same files, but generated ones (keys, cookie jars) land here.
      for (const entry of ['package.json', 'node_modules', 'dist', 'scripts', 'src', 'test', 'bench', 'fixtures', 'tsconfig.json', 'package-lock.json']) {
        symlinkSync(join(projectRoot, entry), join(work, entry));
      }
      // A migrated empty database, as `npm start` leaves it on its first start (tested on its own).
      await migratedDataDir(join(work, '.data'));
      const env: NodeJS.ProcessEnv = {
        ...process.env, DATABASE_URL: '', DATA_DIR: join(work, '.data'), PORT: String(port), HOST: '127.0.0.1', BASE_URL: `http://localhost:${port}`,
        REGISTRATION_TOKEN: 'secret-admin-token', LOG_LEVEL: 'warn', ADHERENCE_CHECK_INTERVAL: '0', npm_config_loglevel: 'error',
      };
      const localise = (script: string) => script.replaceAll('localhost:8080', `localhost:${port}`).replaceAll('localhost%3A8080', `localhost%3A${port}`);
      let server: ChildProcess | undefined;
      try {
        for (const block of walkthrough.before) {
          const res = await bash(localise(block), work, env);
          expect(res.code, `${name} (server stopped) failed:\n${block}\nstdout: ${res.stdout}\nstderr: ${res.stderr}`).to.equal(0);
        }
        server = await startServer(env, `http://127.0.0.1:${port}`);
        let printed: string[] = [];
        for (const block of walkthrough.running) {
          const res = await bash(localise(block), work, env);
          expect(res.code, `${name} failed:\nstdout: ${res.stdout}\nstderr: ${res.stderr}`).to.equal(0);
          printed = printed.concat(res.stdout.split('\n').filter((line) => line.trim() !== '' && !/^\s*[{}[\]"]/.test(line)));
        }
        const expected = PRINTS[name]!;
        expect(printed.length, printed.join('\n')).to.equal(expected.length);
        expected.forEach((re, i) => expect(printed[i], `${name} line ${i + 1}`).to.match(re));
      } finally {
        if (server && server.exitCode === null) {
          const exited = new Promise((r) => server!.once('exit', r));
          server.kill('SIGTERM');
          await exited;
        }
        rmSync(work, { recursive: true, force: true });
      }
    });
  }
});
