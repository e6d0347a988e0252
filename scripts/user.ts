import { addUser, listUsers, removeUser } from '../src/auth/users';
import { openAuthState, options, usageExit } from './cli';

const USAGE = `npm run -s user -- <command>
  add --username U --password P [--fhir-user Practitioner/ID|Patient/ID|RelatedPerson/ID]
        a local login of the authorization server; a Patient/ID user sees only their own records,
        anyone else signs in as a clinician (and picks patients for launch/patient)
  list                    lists users and their FHIR identities
  remove USERNAME         removes a user, ends their sessions and revokes their tokens (their
                          Subscriptions stop notifying)`;

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  const opts = options(rest);
  usageExit(USAGE, process.argv.slice(2), !command || !['add', 'list', 'remove'].includes(command));
  const { state, db } = await openAuthState();
  try {
    if (command === 'add') {
      const username = opts.get('username')?.[0];
      const password = opts.get('password')?.[0];
      if (!username || !password) throw new Error(`--username and --password are required\n${USAGE}`);
      const fhirUser = opts.get('fhir-user')?.[0];
      await addUser(db, { username, password, ...(fhirUser ? { fhirUser } : {}) });
      console.log(`added ${username}${fhirUser ? ` (${fhirUser})` : ''}`);
    } else if (command === 'list') {
      for (const u of await listUsers(db)) console.log([u.username, u.fhir_user ?? ''].join('\t'));
    } else {
      const name = rest.find((a) => !a.startsWith('--'));
      if (!name || !(await removeUser(state, name))) throw new Error(`no user ${name ?? '(missing username)'}`);
      console.log(`removed ${name}`);
    }
  } finally {
    await db.close();
  }
}

main().catch((err: unknown) => {
  console.error((err as Error).message);
  process.exit(1);
});
