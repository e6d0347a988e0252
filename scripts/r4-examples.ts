import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { loadConfig } from '../src/config';
import { officialDefinitionsDir } from '../src/kernel/paths';
import { isSupportedType } from '../src/kernel/resource-types';
import { createServer } from '../src/server';

const USAGE = `npm run -s r4-examples [-- --verbose]
Stores every example of the official R4 package (hl7.fhir.r4.examples, ~5,300 files) with PUT at
its own id on a server of its own (embedded database in memory, no tokens), then prints how many
were accepted and why each reject was refused. Exits 1 below 99 % accepted. Takes minutes.`;

/** One PUT per example, in file order, through server.inject: the REST door, in process. */
async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.includes('--help')) {
    console.log(USAGE);
    return;
  }
  const config = loadConfig({ ...process.env, DATABASE_URL: 'pglite://memory', AUTH_DISABLED: 'true', NODE_ENV: 'development' });
  const app = await createServer(config, { logger: pino({ level: 'silent' }) });
  const dir = officialDefinitionsDir();
  const files = readdirSync(dir).filter((f) => f.endsWith('.json') && f !== 'package.json').sort();
  const started = Date.now();
  let accepted = 0;
  let notStored = 0;
  const rejects: string[] = [];
  for (const file of files) {
    const text = readFileSync(join(dir, file), 'utf8');
    const { resourceType, id } = JSON.parse(text) as { resourceType: string; id?: string };
    if (!isSupportedType(resourceType)) {
      notStored++;
      continue;
    }
    const res = await app.server.inject({ method: 'PUT', url: `/fhir/${resourceType}/${encodeURIComponent(id ?? '')}`, payload: text, headers: { 'content-type': 'application/fhir+json' } });
    if (res.statusCode < 300) accepted++;
    else rejects.push(`${file} (${text.length} B): ${res.statusCode} ${(JSON.parse(res.payload) as { issue: Array<{ diagnostics: string }> }).issue[0]!.diagnostics.slice(0, 200)}`);
    if (args.includes('--verbose') && (accepted + rejects.length) % 500 === 0) console.error(`${accepted + rejects.length} stored or refused`);
  }
  const tried = accepted + rejects.length;
  console.log(`${accepted} of ${tried} examples accepted (${((100 * accepted) / tried).toFixed(2)} %), ${notStored} of types not stored (Parameters, OperationOutcome, AuditEvent, OperationDefinition, SearchParameter), ${((Date.now() - started) / 1000).toFixed(0)} s`);
  for (const r of rejects) console.log(`  refused ${r}`);
  await app.stop();
  process.exitCode = accepted / tried >= 0.99 ? 0 : 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
