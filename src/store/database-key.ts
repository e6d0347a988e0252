import type { Queryable } from './db';

/** A key a migration made, and when it made it (the row's `since`, if its table keeps one). */
export interface StoredKey {
  key: string;
  since?: Date;
}

/**
 * A random key of one database, made by a capability's migration as the one row (`id = 1`) of a
 * table of its own (monitoring_header_key, device_reading_key). Made in the database rather than
 * taken from the environment so that every node of the database shares it from the start; it
 * never changes once made, so a node reads it once. A failed read (a statement cancelled with its
 * unit) is tried again by the next caller.
 */
export class DatabaseKey {
  private stored: Promise<StoredKey> | undefined;

  /** `table` is a constant of the capability's code, never a request's text. */
  constructor(
    private readonly table: string,
    private readonly migration: string,
  ) {}

  /** Read through `q` (a unit's transaction, where PGlite runs one statement at a time, or the pool). */
  read(q: Queryable): Promise<StoredKey> {
    if (!this.stored) {
      const stored = q.query<{ key: string; since?: Date | string }>(`SELECT * FROM ${this.table} WHERE id = 1`).then(({ rows }) => {
        const row = rows[0];
        if (!row) throw new Error(`${this.table} is empty; the ${this.migration} migration makes it`);
        return row.since === undefined ? { key: row.key } : { key: row.key, since: new Date(row.since) };
      });
      this.stored = stored;
      stored.catch(() => {
        if (this.stored === stored) this.stored = undefined;
      });
    }
    return this.stored;
  }
}
