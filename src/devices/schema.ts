import type { MigrationSource } from '../store/migrate';

/** The device capability's tables (the identifiers each Device holds): src/devices/migrations. */
export const devicesMigrations: MigrationSource = { owner: 'devices' };
