import type { MigrationSource } from '../store/migrate';

/** The medication schedules' tables (compiled requests, judged doses, reminders): src/medication/migrations. */
export const medicationMigrations: MigrationSource = { owner: 'medication' };
