import { badRequest } from '../kernel/outcome';
import type { Db } from './db';
import { openPostgres } from './postgres';

/**
 * Searches on a streaming replica, with read-your-writes (issue 20, docs/decisions/019-scale-out.md).
 *
 * A write's response carries the primary's WAL position after its commit (`X-Commit-LSN`); a
 * client that sends it back with a search is served by the replica only once the replica has
 * replayed that far (`pg_last_wal_replay_lsn() >= lsn`), else by the primary. A search without
 * it may see the replica's lag (usually milliseconds). A replica that fails, or that is not
 * replaying at all (a NULL replay position: not a standby), leaves the primary to answer.
 */
export interface ReadRouting {
  /** Runs `read` on the replica when it has replayed `minLsn` (or none is asked), else on the primary. */
  read<T>(minLsn: string | undefined, read: (db: Db) => Promise<T>): Promise<T>;
  /** The primary's WAL insert position now: at or after the end of every transaction committed before. */
  commitLsn(): Promise<string>;
  close(): Promise<void>;
}

/** pg_lsn's text form: two hexadecimal halves. */
const LSN = /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/i;

export function openReadRouting(primary: Db, replicaUrl: string, options: { statementTimeoutMs?: number; preparedStatements?: boolean } = {}): ReadRouting {
  const replica = openPostgres(replicaUrl, { ...options, applicationName: 'rpm-fhir-replica-reads' });

  const caughtUp = async (minLsn: string): Promise<boolean> => {
    const { rows } = await replica.query<{ ok: boolean | null }>('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [minLsn]);
    return rows[0]?.ok === true;
  };

  return {
    async read(minLsn, read) {
      if (minLsn !== undefined && !LSN.test(minLsn)) throw badRequest('X-Commit-LSN must be a WAL position as a write returned it, like 0/16B3748');
      let useReplica: boolean;
      try {
        useReplica = minLsn === undefined || (await caughtUp(minLsn));
      } catch {
        useReplica = false;
      }
      if (!useReplica) return read(primary);
      try {
        return await read(replica);
      } catch (err) {
        // A refusal (4xx, 5xx OperationOutcome) is the answer; a connection failure or a query
        // cancelled by a recovery conflict on the standby is retried on the primary.
        if (isDatabaseFailure(err)) return read(primary);
        throw err;
      }
    },
    async commitLsn() {
      const { rows } = await primary.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
      return rows[0]!.lsn;
    },
    close: () => replica.close(),
  };
}

/** An error of the replica itself, not of the request: a Node socket error or a PostgreSQL error with an SQLSTATE of a connection, resource or conflict class. */
function isDatabaseFailure(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string') return false;
  // 08 connection exception, 40001 serialization failure (recovery conflict), 53 insufficient
  // resources, 57P0x admin shutdown / cannot connect now, Node's E… socket codes.
  return code.startsWith('08') || code === '40001' || code.startsWith('53') || code.startsWith('57P') || code.startsWith('E');
}
