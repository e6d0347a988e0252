/**
 * Which database this run of the suite is on. CI runs `npm test` twice: once on the embedded
 * database (no DATABASE_URL) and once on PostgreSQL (DATABASE_URL=postgres://…).
 */
export const onPostgres = /^postgres(ql)?:\/\//.test(process.env.DATABASE_URL ?? '');

/**
 * For tests that open an embedded database of their own, whatever the run's database (CLIs and
 * servers spawned on a data folder, restore drills of one): the PostgreSQL pass would run them
 * again unchanged, at a minute and a half of CI, and show nothing the embedded pass did not. They
 * run in the embedded pass; lab counts them as skipped in the other, and their titles name the
 * embedded database.
 */
export const embeddedPassOnly = { skip: onPostgres };
