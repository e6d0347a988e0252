import type { MigrationSource } from '../store/migrate';

/** The audit trail's tables (append-only AuditEvents and their chain head): src/audit/migrations. */
export const auditMigrations: MigrationSource = { owner: 'audit' };
