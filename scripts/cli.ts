import pino from 'pino';
import { noDirectory } from '../src/auth/directory';
import { KeyStore } from '../src/auth/keys';
import { RemoteJwksCache } from '../src/auth/remote-jwks';
import { type AuthState, authUrls } from '../src/auth/state';
import { VerifiedTokens } from '../src/auth/token-cache';
import { loadConfig } from '../src/config';
import { type Db, openDb } from '../src/store/db';
import { migrateAll } from '../src/schema';

/**
 * The auth state for an offline CLI: same configuration and database as the server. The
 * embedded database is single-process: while a server holds it, opening it is refused
 * (src/store/data-dir-lock.ts) rather than writing to a copy the server never sees.
 */
export async function openAuthState(): Promise<{ state: AuthState; db: Db }> {
  const config = loadConfig();
  const db = await openDb(config.databaseUrl, config.dataDir);
  await migrateAll(db);
  const keys = new KeyStore(db);
  await keys.init(config.auth.signingKey);
  const state: AuthState = {
    db, keys, remoteJwks: new RemoteJwksCache(), verifiedTokens: new VerifiedTokens(), config: config.auth, log: pino({ level: 'silent' }), directory: noDirectory,
    urls: () => authUrls(`${config.baseUrl}/fhir`),
  };
  return { state, db };
}

/** `--help`/`-h` anywhere prints the usage to stdout and exits 0; a wrong call prints it to stderr and exits 2. */
export function usageExit(usage: string, argv: string[], wrongCall: boolean): void {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(usage);
    process.exit(0);
  }
  if (wrongCall) {
    console.error(usage);
    process.exit(2);
  }
}

/** `--name value` options; repeated ones collect. */
export function options(argv: string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) continue;
    const [name, inline] = a.slice(2).split(/=(.*)/s);
    const value = inline ?? (argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--') ? argv[++i]! : 'true');
    out.set(name!, [...(out.get(name!) ?? []), value]);
  }
  return out;
}
