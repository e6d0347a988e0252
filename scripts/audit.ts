import { createReadStream, createWriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { verifyChain } from '../src/audit';
import { exportChain, verifyExport } from '../src/audit/export';
import type { VerifyResult } from '../src/audit/chain';
import { loadConfig } from '../src/config';
import { migrateAll } from '../src/schema';
import { type Db, openDb } from '../src/store/db';

const USAGE = `npm run -s audit -- <command>
  verify                 walks the audit chain in the database: every changed, removed or
                         re-ordered row, and a head that is not the last row (exit 1 if any)
  verify --file F        the same for an export file
  export [--out F]       the chain as NDJSON (stdout or F), for an off-site copy`;

/** The command, on an open database; answers the exit code. Tests call it in-process. */
export async function runAudit(db: Db | undefined, argv: string[], out: (text: string) => void): Promise<number> {
  const [command, ...rest] = argv;
  const flag = (name: string) => {
    const at = rest.indexOf(`--${name}`);
    return at >= 0 ? rest[at + 1] : undefined;
  };
  if (command === 'verify') {
    const file = flag('file');
    let result: VerifyResult;
    if (file) {
      const lines: string[] = [];
      for await (const line of createInterface({ input: createReadStream(file) })) lines.push(line);
      result = verifyExport(lines);
    } else {
      result = await verifyChain(db!);
    }
    for (const p of result.problems) out(`row ${p.seq}: ${p.problem}: ${p.detail}\n`);
    if (result.staged) out(`${result.staged} staged rows not chained yet (a running server chains them within about a second)\n`);
    out(`${result.rows} rows, head ${result.head.seq} ${result.head.hash}: ${result.problems.length === 0 ? 'intact' : `${result.problems.length} problem(s)`}\n`);
    return result.problems.length === 0 ? 0 : 1;
  }
  if (command === 'export') {
    const file = flag('out');
    const sink = file ? createWriteStream(file) : undefined;
    for await (const line of exportChain(db!)) {
      if (sink) sink.write(line);
      else out(line);
    }
    if (sink) await new Promise<void>((resolve, reject) => sink.end((err?: Error | null) => (err ? reject(err) : resolve())));
    return 0;
  }
  out(`${USAGE}\n`);
  return 2;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const needsDb = !(argv[0] === 'verify' && argv.includes('--file'));
  const config = loadConfig();
  const db = needsDb ? await openDb(config.databaseUrl, config.dataDir) : undefined;
  try {
    if (db) await migrateAll(db);
    process.exitCode = await runAudit(db, argv, (text) => process.stdout.write(text));
  } finally {
    await db?.close();
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error((err as Error).message);
    process.exit(2);
  });
}
