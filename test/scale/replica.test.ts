import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import pino from 'pino';
import { loadConfig } from '../../src/config';
import { createServer, type App } from '../../src/server';
import { type Db, openDb } from '../../src/store/db';
import { startReplicatedCluster, type ReplicatedCluster } from '../helpers/postgres-cluster';
import { unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * Searches on a real streaming replica (DATABASE_REPLICA_URL), with read-your-writes through
 * X-Commit-LSN. Replay on the replica is paused to make its lag visible: a search without the
 * header is answered by the replica (and misses the newest write), one with the LSN of that write
 * by the primary, and by the replica again once it has replayed that far.
 */
const POSTGRES = (process.env.DATABASE_URL ?? '').startsWith('postgres');

const TITLE = POSTGRES
  ? 'searches on a streaming replica'
  : 'searches on a streaming replica — run in the PostgreSQL pass only (DATABASE_URL=postgres://…): it starts PostgreSQL clusters of its own, which PGlite has no use for';

describe(TITLE, { skip: !POSTGRES }, () => {
  let cluster: ReplicatedCluster;
  let app: App;
  let replica: Db;

  before({ timeout: 240_000 }, async () => {
    cluster = await startReplicatedCluster();
    replica = await openDb(cluster.replicaUrl, '');
    const config = loadConfig({
      PORT: '8080', HOST: '127.0.0.1', LOG_LEVEL: 'silent', AUTH_DISABLED: 'true',
      DATABASE_URL: cluster.primaryUrl, DATABASE_REPLICA_URL: cluster.replicaUrl,
    });
    app = await createServer(config, { logger: pino({ level: 'silent' }) });
  });
  after(async () => {
    await app?.stop();
    await replica?.close();
    await cluster?.close();
  });

  const request = async (method: string, url: string, payload?: object, headers: Record<string, string> = {}) => {
    const res = await app.server.inject({ method, url, headers: { 'content-type': 'application/fhir+json', ...headers }, ...(payload ? { payload: JSON.stringify(payload) } : {}) });
    return Object.assign(res, { json: res.payload ? JSON.parse(res.payload) : undefined });
  };
  const named = (family: string) => request('GET', `/fhir/Patient?family=${family}`);
  const replayed = async (lsn: string) => (await replica.query<{ ok: boolean }>('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [lsn])).rows[0]!.ok;

  it('answers searches from the replica, and from the primary while the replica has not replayed the client\'s last write', { timeout: 60_000 }, async () => {
    const family = unique('replica');
    const first = await request('POST', '/fhir/Patient', { resourceType: 'Patient', name: [{ family }] });
    expect(first.statusCode).to.equal(201);
    const firstLsn = first.headers['x-commit-lsn'] as string;
    expect(firstLsn).to.match(/^[0-9A-F]+\/[0-9A-F]+$/);
    for (let i = 0; i < 100 && !(await replayed(firstLsn)); i++) await new Promise((r) => setTimeout(r, 50));

    await replica.query('SELECT pg_wal_replay_pause()');
    const second = await request('POST', '/fhir/Patient', { resourceType: 'Patient', name: [{ family }] });
    const secondLsn = second.headers['x-commit-lsn'] as string;
    expect(await replayed(secondLsn)).to.be.false();

    // No LSN: the replica answers, without the write it has not replayed.
    expect((await named(family)).json.entry).to.have.length(1);
    // The LSN of the first write, which the replica has: still the replica.
    expect((await request('GET', `/fhir/Patient?family=${family}`, undefined, { 'x-commit-lsn': firstLsn })).json.entry).to.have.length(1);
    // The LSN of the second: the primary answers, with both (read-your-writes).
    const own = await request('GET', `/fhir/Patient?family=${family}`, undefined, { 'x-commit-lsn': secondLsn });
    expect(own.statusCode).to.equal(200);
    expect(own.json.entry).to.have.length(2);
    // POST _search and compartment searches are routed the same way.
    const form = await app.server.inject({ method: 'POST', url: '/fhir/Patient/_search', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-commit-lsn': secondLsn }, payload: `family=${family}` });
    expect(JSON.parse(form.payload).entry).to.have.length(2);
    // A POST search writes nothing: it answers no position (learning one costs a query on the primary).
    expect(form.headers['x-commit-lsn']).to.not.exist();
    // Reads by id are never routed: the primary has it.
    expect((await request('GET', `/fhir/Patient/${second.json.id}`)).statusCode).to.equal(200);

    await replica.query('SELECT pg_wal_replay_resume()');
    for (let i = 0; i < 100 && !(await replayed(secondLsn)); i++) await new Promise((r) => setTimeout(r, 50));
    expect((await named(family)).json.entry).to.have.length(2);
  });

  it('refuses a malformed X-Commit-LSN with 400, and answers from the primary when the replica is down', { timeout: 60_000 }, async () => {
    const bad = await request('GET', '/fhir/Patient?family=x', undefined, { 'x-commit-lsn': "0/1'; DROP TABLE patient" });
    expect(bad.statusCode).to.equal(400);
    expect(bad.json.resourceType).to.equal('OperationOutcome');
    expect(bad.json.issue[0].diagnostics).to.contain('X-Commit-LSN');

    const family = unique('failover');
    const created = await request('POST', '/fhir/Patient', { resourceType: 'Patient', name: [{ family }] });
    await cluster.stopReplica();
    const res = await request('GET', `/fhir/Patient?family=${family}`, undefined, { 'x-commit-lsn': created.headers['x-commit-lsn'] as string });
    expect(res.statusCode).to.equal(200);
    expect(res.json.entry).to.have.length(1);
    const without = await named(family);
    expect(without.statusCode).to.equal(200);
    expect(without.json.entry).to.have.length(1);
  });
});

describe('DATABASE_REPLICA_URL', () => {
  it('is refused beside the embedded database, and when it is not a postgres:// URL', () => {
    expect(() => loadConfig({ DATABASE_REPLICA_URL: 'postgres://127.0.0.1/r' })).to.throw(/beside a postgres:\/\/ DATABASE_URL/);
    expect(() => loadConfig({ DATABASE_URL: 'postgres://127.0.0.1/p', DATABASE_REPLICA_URL: 'pglite://memory' })).to.throw(/must be a postgres:\/\/ URL/);
    expect(loadConfig({ DATABASE_URL: 'postgres://127.0.0.1/p', DATABASE_REPLICA_URL: 'postgres://127.0.0.1:5433/p' }).databaseReplicaUrl).to.equal('postgres://127.0.0.1:5433/p');
    expect(loadConfig({}).databaseReplicaUrl).to.equal('');
  });
});
