import type { MigrationSource } from '../store/migrate';

/** The authorization server's tables (clients, keys, tokens, users, sessions, launches): src/auth/migrations. */
export const authMigrations: MigrationSource = { owner: 'auth' };
