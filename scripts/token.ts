import { isKnownScope, splitScope } from '../src/access/scopes';
import { issueAccessToken } from '../src/auth/tokens';
import { openAuthState, options, usageExit } from './cli';

const USAGE = `npm run -s token -- --scope "system/*.cruds" [--patient ID] [--client-id local-cli]
Prints a short-lived (ACCESS_TOKEN_LIFETIME, at most 300 s) access token for local use, signed
with the server's key and recorded like any other. Same BASE_URL/PORT and database as the server.`;

async function main(): Promise<void> {
  const opts = options(process.argv.slice(2));
  const scopes = splitScope(opts.get('scope')?.[0]);
  usageExit(USAGE, process.argv.slice(2), scopes.length === 0);
  const unknown = scopes.filter((s) => !isKnownScope(s));
  if (unknown.length > 0) throw new Error(`unknown scopes: ${unknown.join(' ')}`);
  const patient = opts.get('patient')?.[0];
  const clientId = opts.get('client-id')?.[0] ?? 'local-cli';
  const { state, db } = await openAuthState();
  try {
    const issued = await issueAccessToken(state, { clientId, scopes, ...(patient ? { patient } : {}) });
    process.stdout.write(`${issued.accessToken}\n`);
  } finally {
    await db.close();
  }
}

main().catch((err: unknown) => {
  console.error((err as Error).message);
  process.exit(1);
});
