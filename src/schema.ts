import { auditMigrations } from './audit/schema';
import { authMigrations } from './auth/schema';
import { bulkMigrations } from './bulk/schema';
import { devicesMigrations } from './devices/schema';
import { medicationMigrations } from './medication/schema';
import { monitoringMigrations } from './monitoring/schema';
import { withingsMigrations } from './withings/schema';
import type { Db } from './store/db';
import { migrate, type MigrationSource, storeMigrations } from './store/migrate';

/**
 * The database schema of the whole server: each capability's own migrations
 * (`src/<capability>/migrations/`), the store's first. The server, the CLIs, the bench and the
 * tests migrate through here, so none of them can miss a capability's tables.
 */
export const SCHEMA: readonly MigrationSource[] = [storeMigrations, authMigrations, monitoringMigrations, devicesMigrations, medicationMigrations, auditMigrations, bulkMigrations, withingsMigrations];

export function migrateAll(db: Db): Promise<string[]> {
  return migrate(db, SCHEMA);
}
