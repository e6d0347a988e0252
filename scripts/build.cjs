#!/usr/bin/env node
// Compiles the TypeScript once into dist/. `node scripts/build.cjs` always builds from clean;
// `--if-stale` builds only when a source file is newer than the last build or the set of source
// files changed (so `npm start` and the CLIs start in a second instead of compiling every time).
// Everything goes to stderr: `TOKEN=$(npm run -s token …)` must capture the token alone.
'use strict';
const { spawnSync } = require('node:child_process');
const { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } = require('node:fs');
const { join, relative } = require('node:path');

const root = join(__dirname, '..');
const stampFile = join(root, 'dist', '.build-stamp.json');
const sourceDirs = ['src', 'test', 'bench', 'scripts', 'app'];
// JSON too: modules import data files (the OperationDefinitions beside the operations), which tsc copies.
const sourceFile = /\.(ts|tsx|mts|css|html|json)$/;
const configFiles = ['tsconfig.json', 'package-lock.json'];

function sources() {
  const out = [];
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (sourceFile.test(entry.name)) out.push(path);
    }
  };
  for (const dir of sourceDirs) if (existsSync(join(root, dir))) walk(join(root, dir));
  return out.sort();
}

function stale(files) {
  if (!existsSync(stampFile)) return 'no build yet';
  const stamp = JSON.parse(readFileSync(stampFile, 'utf8'));
  const builtAt = statSync(stampFile).mtimeMs;
  const names = files.map((f) => relative(root, f));
  if (JSON.stringify(stamp.files) !== JSON.stringify(names)) return 'source files added or removed';
  const newer = [...files, ...configFiles.map((f) => join(root, f)).filter(existsSync)].find((f) => statSync(f).mtimeMs > builtAt);
  return newer ? `${relative(root, newer)} changed` : undefined;
}

const files = sources();
if (process.argv.includes('--if-stale')) {
  const why = stale(files);
  if (!why) process.exit(0);
  process.stderr.write(`building dist/ (${why}) …\n`);
}
let tscPath;
try {
  tscPath = require.resolve('typescript/bin/tsc');
} catch {
  // A production install (--omit=dev) has no compiler: it runs a dist/ built beforehand.
  process.stderr.write('typescript is not installed (npm install --omit=dev?): build dist/ where it is, then copy it\n');
  process.exit(existsSync(join(root, 'dist', 'src', 'main.js')) ? 0 : 1);
}
rmSync(join(root, 'dist'), { recursive: true, force: true });
const tsc = spawnSync(process.execPath, [tscPath, '-p', root], { cwd: root, stdio: ['ignore', 2, 2] });
if (tsc.status !== 0) process.exit(tsc.status ?? 1);
// The clinician dashboard (app/): type-checked on its own (browser lib, Preact JSX), bundled by
// Vite into dist/dashboard, which the server serves at /app.
const appCheck = spawnSync(process.execPath, [tscPath, '-p', join(root, 'app')], { cwd: root, stdio: ['ignore', 2, 2] });
if (appCheck.status !== 0) process.exit(appCheck.status ?? 1);
const vite = spawnSync(process.execPath, [join(root, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', 'app', '--logLevel', 'warn'], { cwd: root, stdio: ['ignore', 2, 2] });
if (vite.status !== 0) process.exit(vite.status ?? 1);
writeFileSync(stampFile, JSON.stringify({ files: files.map((f) => relative(root, f)) }));
