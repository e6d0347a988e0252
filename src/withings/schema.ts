import type { MigrationSource } from '../store/migrate';

/** The Withings connector's tables (linked accounts and their sync state, link tickets, the request budget): src/withings/migrations. */
export const withingsMigrations: MigrationSource = { owner: 'withings' };
