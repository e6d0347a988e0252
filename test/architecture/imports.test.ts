import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import Code from '@hapi/code';
import Lab from '@hapi/lab';
import { projectRoot } from '../../src/kernel/paths';

const { expect } = Code;
export const lab = Lab.script();
const { describe, it } = lab;

/**
 * The folders of src/ in layers, lowest first (docs/DESIGN.md "Layout"). A module may import
 * from its own folder and from lower layers only; folders in one layer never import each other.
 * Type-only imports count too: they are the same coupling for the next reader.
 */
export const LAYERS: ReadonlyArray<readonly string[]> = [
  ['kernel'],
  // Above the kernel: its defaults (input limits) are the kernel's, configuration only overrides them.
  ['config'],
  ['store'],
  ['terminology'],
  ['validation'],
  ['search'],
  ['access'],
  ['pipeline'],
  ['fhir'],
  // Below auth: the token and login endpoints note who claims to ask, for the audit trail.
  ['audit'],
  // landing: GET / and /docs, a page beside the capabilities (reads only config and kernel).
  // gdpr: erasure and pseudonymised copies, operations on the pipeline and $everything.
  // bulk: Bulk Data export, reading through search and access like every other read path.
  ['auth', 'devices', 'monitoring', 'landing', 'bulk', 'backup', 'gdpr'],
  // Medication schedules raise their Flags and reminders through monitoring's (flags, notify).
  // The Withings connector feeds the device door's ingest (devices) from the Withings cloud.
  ['medication', 'withings'],
  // Apps served beside the API, clients of it (the dashboard registers itself with auth).
  ['dashboard'],
  ['schema'],
  ['server'],
  ['main'],
];

const layerOf = new Map(LAYERS.flatMap((folders, layer) => folders.map((f) => [f, layer] as const)));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** `src/search/sql.ts` → `search`; `src/server.ts` → `server`. */
const folderOf = (file: string) => relative(join(projectRoot, 'src'), file).split('/')[0]!.replace(/\.ts$/, '');

function importEdges(): Array<{ file: string; from: string; to: string }> {
  const edges: Array<{ file: string; from: string; to: string }> = [];
  for (const file of sourceFiles(join(projectRoot, 'src'))) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*|require\(\s*)'(\.{1,2}\/[^']+)'/g)) {
      const target = normalize(join(dirname(file), m[1]!));
      const from = folderOf(file);
      const to = folderOf(target);
      if (from !== to) edges.push({ file: relative(projectRoot, file), from, to });
    }
  }
  return edges;
}

describe('module layers', () => {
  it('puts every folder of src/ in a layer', () => {
    const folders = new Set(sourceFiles(join(projectRoot, 'src')).map(folderOf));
    expect([...folders].filter((f) => !layerOf.has(f))).to.equal([]);
  });

  it('imports only downwards, so no folder is in a cycle', () => {
    const upward = importEdges()
      .filter((e) => layerOf.get(e.to)! >= layerOf.get(e.from)!)
      .map((e) => `${e.file} imports ${e.to} (layer ${layerOf.get(e.to)} ≥ ${layerOf.get(e.from)})`);
    expect(upward).to.equal([]);
  });
});
