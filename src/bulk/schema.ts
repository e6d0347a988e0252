import type { MigrationSource } from '../store/migrate';

/** The bulk export's jobs and output chunks: src/bulk/migrations. */
export const bulkMigrations: MigrationSource = { owner: 'bulk' };
