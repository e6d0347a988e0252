import { readFileSync } from 'node:fs';
import { type ClientMetadata, RegistrationError, listClients, registerClient, removeClient } from '../src/auth/clients';
import { rotateSigningKey } from '../src/auth/keys';
import { openAuthState, options, usageExit } from './cli';

const USAGE = `npm run -s client -- <command>
  add --scope "system/*.rs ..." [--name NAME] [--auth private_key_jwt|client_secret_basic|none]
      [--jwks-uri URL | --jwks-file FILE] [--grant-type client_credentials]... [--redirect-uri URL]...
      [--introspect] [--initiate-login-uri URL]
        registers a client as RFC 7591 registration does; prints the registration response
        (client_id, and client_secret for client_secret_basic: shown once)
  list                    lists registered clients
  remove CLIENT_ID        removes a client and revokes its tokens (its Subscriptions stop notifying)
  rotate-key              new signing key; old ones keep verifying live tokens`;

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  const opts = options(rest);
  usageExit(USAGE, process.argv.slice(2), !command || !['add', 'list', 'remove', 'rotate-key'].includes(command));
  const { state, db } = await openAuthState();
  try {
    if (command === 'add') {
      const auth = opts.get('auth')?.[0] ?? (opts.has('jwks-uri') || opts.has('jwks-file') ? 'private_key_jwt' : 'client_secret_basic');
      const metadata: ClientMetadata = {
        ...(opts.has('name') ? { client_name: opts.get('name')![0] } : {}),
        token_endpoint_auth_method: auth,
        grant_types: opts.get('grant-type') ?? (opts.has('redirect-uri') ? ['authorization_code'] : ['client_credentials']),
        ...(opts.has('redirect-uri') ? { redirect_uris: opts.get('redirect-uri') } : {}),
        ...(opts.has('jwks-uri') ? { jwks_uri: opts.get('jwks-uri')![0] } : {}),
        ...(opts.has('jwks-file') ? { jwks: JSON.parse(readFileSync(opts.get('jwks-file')![0]!, 'utf8')) as unknown } : {}),
        scope: opts.get('scope')?.[0],
        ...(opts.has('introspect') ? { can_introspect: true } : {}),
        ...(opts.has('initiate-login-uri') ? { initiate_login_uri: opts.get('initiate-login-uri')![0] } : {}),
      };
      const { client, clientSecret } = await registerClient(db, metadata);
      console.log(JSON.stringify({
        client_id: client.clientId,
        ...(clientSecret ? { client_secret: clientSecret } : {}),
        token_endpoint_auth_method: client.authMethod,
        grant_types: client.grantTypes,
        scope: client.scope.join(' '),
      }, null, 2));
    } else if (command === 'list') {
      for (const c of await listClients(db)) {
        console.log([c.client_id, c.auth_method, JSON.stringify(c.client_name ?? ''), c.scope].join('\t'));
      }
    } else if (command === 'remove') {
      const id = rest.find((a) => !a.startsWith('--'));
      if (!id || !(await removeClient(state, id))) throw new Error(`no client ${id ?? '(missing id)'}`);
      console.log(`removed ${id}`);
    } else {
      console.log(`new signing key ${await rotateSigningKey(db)}; running servers sign with it within a minute`);
    }
  } finally {
    await db.close();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof RegistrationError ? `${err.error}: ${err.message}` : (err as Error).message);
  process.exit(1);
});
