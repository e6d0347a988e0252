import type { MigrationSource } from '../store/migrate';

/** The monitoring rules' tables (compiled plans, raised Flags, judged breaches, adherence, deliveries): src/monitoring/migrations. */
export const monitoringMigrations: MigrationSource = { owner: 'monitoring' };
