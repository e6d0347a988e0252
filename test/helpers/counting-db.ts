import type { Db, Queryable, Transaction } from '../../src/store/db';

/**
 * A Db that records every statement sent through it (transactions' statements included), so a
 * test can count round trips per interaction as HAPI FHIR's tests do: a regression from one
 * statement to one per entry fails the test.
 */
export interface CountingDb extends Db {
  readonly statements: string[];
  reset(): void;
}

export function countingDb(db: Db, statements: string[] = []): CountingDb {
  const wrap = (q: Queryable): Queryable => ({
    query: (sql, params) => {
      statements.push(sql);
      return q.query(sql, params);
    },
    exec: (sql) => {
      statements.push(sql);
      return q.exec(sql);
    },
  });
  const outer = wrap(db);
  return {
    kind: db.kind,
    statements,
    reset: () => void (statements.length = 0),
    query: outer.query,
    exec: outer.exec,
    transaction: (fn) =>
      db.transaction((tx) =>
        fn({
          ...wrap(tx),
          later: (sql, params, onError) => {
            statements.push(sql);
            tx.later(sql, params, onError);
          },
        } satisfies Transaction),
      ),
    listen: (channel, onPayload) => db.listen(channel, onPayload),
    // A request's statements (bound to its signal) are counted with the rest.
    withSignal: (signal) => countingDb(db.withSignal(signal), statements),
    close: () => db.close(),
  };
}
