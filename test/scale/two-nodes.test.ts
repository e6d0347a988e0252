import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import WebSocket from 'ws';
import { migrateAll } from '../../src/schema';
import { notificationsArrive } from '../../src/store/listen-check';
import { openPostgres } from '../../src/store/postgres';
import { tableOf } from '../../src/store/tables';
import { startHaproxy } from '../helpers/haproxy';
import { startPgbouncer } from '../helpers/pgbouncer';
import { subscriber, until } from '../helpers/hook';
import { planWithHighSystolic, systolic } from '../helpers/monitoring-plan';
import { freePort } from '../helpers/port';
import { exited, killStarted, type ServerProcess, startProcess } from '../helpers/process';
import { testDatabaseUrl, testDb } from '../helpers/server';

export const lab = Lab.script();
const { describe, it } = lab;

/**
 * Issue 20: two stateless server nodes behind HAProxy, through PgBouncer (transaction pooling) on
 * one PostgreSQL, one killed with SIGKILL
 * mid-ingest. Every write a client got a 2xx for is there afterwards; one breach key never has
 * two active Flags; every notification arrives, and a repeat only with its Idempotency-Key; and the throughput of one node and of two
 * is printed (measured, not asserted: a timed assertion on a shared 2-core machine would be
 * flaky; `npm run bench` is where performance is judged).
 */
const POSTGRES = (process.env.DATABASE_URL ?? '').startsWith('postgres');
const PATIENTS = 20;
const CONCURRENCY = 12;
const PHASE_MS = 3000;
/**
 * How long after a SIGKILL a request may still fail: the process's teardown, then the proxy's
 * two failed health checks 250 ms apart. Twice that, for a loaded machine.
 */
const KILL_WINDOW_MS = 1000;
/** One round of readings (one per patient) in this many breaches the plans' 140 mm[Hg] limit. */
const BREACH_EVERY = 4;

interface Tally {
  acked: Array<{ id: string; patient: string; breach: boolean; sentAt: number }>;
  failed: number;
  statuses: Map<number, number>;
  /** When each failed request was sent (ms since the epoch). */
  failedSentAt: number[];
}

/** CONCURRENCY clients POSTing Observations to `base` for `ms`; `during` runs meanwhile (the kill). */
async function ingest(base: string, patients: readonly string[], ms: number, during?: () => Promise<void>): Promise<Tally & { perSecond: number }> {
  const tally: Tally = { acked: [], failed: 0, statuses: new Map(), failedSentAt: [] };
  const end = Date.now() + ms;
  let n = 0;
  const started = Date.now();
  const client = async () => {
    while (Date.now() < end) {
      const i = n++;
      const patient = patients[i % patients.length]!;
      const breach = Math.floor(i / patients.length) % BREACH_EVERY === 0;
      let status = 0;
      const sentAt = Date.now();
      try {
        const res = await fetch(`${base}/Observation`, {
          method: 'POST',
          headers: { 'content-type': 'application/fhir+json', prefer: 'return=minimal' },
          body: JSON.stringify(systolic(patient, breach ? 171 : 120)),
        });
        status = res.status;
        const location = res.headers.get('location');
        await res.arrayBuffer();
        if (status === 201 && location) {
          tally.acked.push({ id: /Observation\/([^/]+)/.exec(location)![1]!, patient, breach, sentAt });
          continue;
        }
      } catch {
        status = -1; // the connection itself failed
      }
      tally.failed++;
      tally.failedSentAt.push(sentAt);
      tally.statuses.set(status, (tally.statuses.get(status) ?? 0) + 1);
    }
  };
  await Promise.all([...Array.from({ length: CONCURRENCY }, client), during?.()]);
  return { ...tally, perSecond: tally.acked.length / ((Date.now() - started) / 1000) };
}

/** The span of `times` relative to `origin`, as "from … to … ms". */
function sentWindow(times: readonly number[], origin: number): string {
  if (times.length === 0) return 'none';
  return `${Math.min(...times) - origin} to ${Math.max(...times) - origin} ms after the kill`;
}

async function json(res: Response): Promise<any> {
  const text = await res.text();
  if (!res.ok) throw new Error(`${res.status}: ${text.slice(0, 500)}`);
  return JSON.parse(text);
}

/**
 * A dashboard's websocket Subscription created on node A, B's cache of live Subscriptions warm
 * (a reading just taken there): a breach posted to B pings the socket on A. Both halves cross
 * nodes through NOTIFY: B forgets its cache at A's commit (else it matches without the new
 * Subscription for up to 2 s, and that breach is never announced), and B's ping reaches A.
 */
async function crossNodePing(nodeA: string, nodeB: string, patient: string): Promise<void> {
  const send = async (base: string, method: string, path: string, body?: object) =>
    json(await fetch(`${base}/${path}`, { method, headers: { 'content-type': 'application/fhir+json' }, body: body && JSON.stringify(body) }));
  await send(nodeB, 'POST', 'Observation', systolic(patient, 118));
  const sub = await send(nodeA, 'POST', 'Subscription', {
    resourceType: 'Subscription', status: 'requested', reason: 'dashboard on node A', criteria: 'Flag?status=active',
    channel: { type: 'websocket' }, end: new Date(Date.now() + 600_000).toISOString(),
  });
  const binding = await send(nodeA, 'GET', `Subscription/${sub.id}/$get-ws-binding-token`);
  const param = (name: string) => binding.parameter.find((p: { name: string }) => p.name === name);
  const ws = new WebSocket(`${nodeA.replace(/\/fhir$/, '').replace('http', 'ws')}/websocket`);
  const messages: string[] = [];
  ws.on('message', (m) => messages.push(String(m)));
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  try {
    ws.send(`bind-with-token ${param('token').valueString}`);
    await until('bound on node A', () => messages.includes(`bound ${sub.id}`));
    await send(nodeB, 'POST', 'Observation', systolic(patient, 171));
    await until('the ping on node A of a breach written on node B', () => messages.includes(`ping ${sub.id}`), 5000);
  } finally {
    ws.close();
    await fetch(`${nodeA}/Subscription/${sub.id}`, { method: 'DELETE' });
  }
}

describe('two server nodes behind HAProxy', () => {
  it(
    POSTGRES
      ? 'survive a SIGKILL of one node mid-ingest: every acknowledged write present, one Flag per breach, every notification delivered and none under two keys'
      : 'survive a SIGKILL of one node mid-ingest — declared for PostgreSQL only: PGlite is an embedded database inside one process, two nodes cannot share it (run with DATABASE_URL=postgres://…)',
    { skip: !POSTGRES, timeout: 240_000 },
    async () => {
      // This test process's database, migrated here (once per process: 15-60 s for every type's
      // tables on a loaded machine) rather than by a node under a start-up deadline.
      const db = await testDb();
      await migrateAll(db);
      const url = await testDatabaseUrl();
      const hook = await subscriber();
      const [portA, portB, onePort, twoPort, bouncerPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
      // The nodes reach PostgreSQL through PgBouncer in transaction pooling mode (decision 019).
      const bouncer = await startPgbouncer(url, bouncerPort);
      const env = {
        DATABASE_URL: bouncer.url,
        STATEMENT_TIMEOUT: '0',
        // Debian's PgBouncer (1.18) does not follow prepared statements across the backends a
        // transaction-mode pool hands out (src/store/prepared.ts).
        DATABASE_PREPARED_STATEMENTS: 'false',
        LOG_LEVEL: 'warn',
        DATABASE_POOL_SIZE: '8',
        SUBSCRIPTION_ALLOW_PRIVATE_NETWORKS: 'true',
        SUBSCRIPTION_RETRY_BASE: '100ms',
        SUBSCRIPTION_DELIVERY_LEASE: '3s',
        // LISTEN beside PgBouncer, straight to PostgreSQL: through it, a LISTEN hears nothing.
        DATABASE_LISTEN_URL: url,
      };
      let proxy: Awaited<ReturnType<typeof startHaproxy>> | undefined;
      let a: ServerProcess | undefined;
      let b: ServerProcess | undefined;
      try {
        a = await startProcess({ ...env, PORT: String(portA), BASE_URL: `http://127.0.0.1:${twoPort}/fhir` });
        b = await startProcess({ ...env, PORT: String(portB), BASE_URL: `http://127.0.0.1:${twoPort}/fhir` });
        proxy = await startHaproxy([
          { port: onePort, nodes: [portA] },
          { port: twoPort, nodes: [portA, portB] },
        ]);
        const one = `http://127.0.0.1:${onePort}/fhir`;
        const two = `http://127.0.0.1:${twoPort}/fhir`;
        const post = async (resource: object) =>
          json(await fetch(`${two}/${(resource as { resourceType: string }).resourceType}`, { method: 'POST', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify(resource) }));

        const subscription = await post({
          resourceType: 'Subscription', status: 'requested', reason: 'scale test', criteria: 'Flag?status=active',
          channel: { type: 'rest-hook', endpoint: hook.url, payload: 'application/fhir+json' },
        });
        const patients: string[] = [];
        for (let i = 0; i < PATIENTS; i++) {
          const p = await post({ resourceType: 'Patient', name: [{ family: `Scale${i}` }] });
          await post(planWithHighSystolic(p.id));
          patients.push(p.id);
        }

        // Through PgBouncer a LISTEN hears nothing; on the direct connection it does.
        const throughBouncer = openPostgres(bouncer.url, { preparedStatements: false, statementTimeoutMs: 0 });
        const besideBouncer = openPostgres(bouncer.url, { preparedStatements: false, statementTimeoutMs: 0, listenUrl: url });
        try {
          expect(await notificationsArrive(throughBouncer, 1000), 'LISTEN through PgBouncer').to.be.false();
          expect(await notificationsArrive(besideBouncer, 5000), 'LISTEN on DATABASE_LISTEN_URL').to.be.true();
        } finally {
          await throughBouncer.close();
          await besideBouncer.close();
        }
        await crossNodePing(`http://127.0.0.1:${portA}/fhir`, `http://127.0.0.1:${portB}/fhir`, patients[0]!);
        for (const node of [a, b]) expect(node.output(), 'the start-up check heard its notification').to.not.contain('no notification sent through the database came back');

        const single = await ingest(one, patients, PHASE_MS);
        const pair = await ingest(two, patients, PHASE_MS);
        let killedAt = 0;
        const fault = await ingest(two, patients, PHASE_MS, async () => {
          await new Promise((r) => setTimeout(r, PHASE_MS / 4));
          killedAt = Date.now();
          b!.child.kill('SIGKILL');
          await exited(b!.child);
        });
        expect(killedAt).to.be.above(0);
        const failures = Object.fromEntries(fault.statuses);
        console.log(
          `\n  scale: ${PATIENTS} patients, ${CONCURRENCY} concurrent clients, ${PHASE_MS / 1000} s per phase, POST Observation (1 in ${BREACH_EVERY} breaches a limit)\n` +
            `  one node:  ${single.perSecond.toFixed(0)} writes/s (${single.acked.length} acknowledged, ${single.failed} failed)\n` +
            `  two nodes: ${pair.perSecond.toFixed(0)} writes/s (${pair.acked.length} acknowledged, ${pair.failed} failed)\n` +
            `  two nodes, one SIGKILLed after ${PHASE_MS / 4000} s: ${fault.perSecond.toFixed(0)} writes/s (${fault.acked.length} acknowledged, ${fault.failed} failed: ${JSON.stringify(failures)}, sent ${sentWindow(fault.failedSentAt, killedAt)})`,
        );
        expect(single.failed).to.equal(0);
        expect(pair.failed).to.equal(0);
        // Only requests that meet the killed node may fail, never with a 500: those in flight on
        // it, and those the proxy sent it before the process was gone and the health check took
        // it out of rotation (HAProxy: 250 ms, fall 2). Measured over 14 runs: every failure was
        // a request sent between 161 ms before and 101 ms after the kill, failing 43-222 ms after
        // it ("other side closed" or a 502). How many fall in that window depends on the rate,
        // so the window is asserted, not a count; after it, every request must succeed.
        expect(fault.statuses.has(500)).to.be.false();
        const lateFailures = fault.failedSentAt.filter((t) => t > killedAt + KILL_WINDOW_MS);
        expect(lateFailures.length, `failures of requests sent ${KILL_WINDOW_MS} ms or more after the kill`).to.equal(0);
        // And the survivor did serve after the window: the assertion above is not vacuous.
        expect(fault.acked.filter((w) => w.sentAt > killedAt + KILL_WINDOW_MS).length).to.be.above(CONCURRENCY);

        // Every acknowledged write is there, read back through the proxy (the surviving node).
        const acked = [...single.acked, ...pair.acked, ...fault.acked];
        const found = new Set<string>();
        for (let i = 0; i < acked.length; i += 100) {
          const ids = acked.slice(i, i + 100).map((w) => w.id);
          const page = await json(await fetch(`${two}/Observation?_id=${ids.join(',')}&_count=100&_elements=id`));
          for (const e of page.entry ?? []) found.add(e.resource.id);
        }
        expect(acked.filter((w) => !found.has(w.id))).to.equal([]);

        // One active Flag per patient (one plan, one measure, one direction), and it counts at
        // least every acknowledged breach (a write killed after its commit may add one more).
        const subjects = patients.map((p) => `Patient/${p}`);
        const flags = (await json(await fetch(`${two}/Flag?subject=${subjects.join(',')}&_count=1000`))).entry.map((e: any) => e.resource as fhir4.Flag);
        const bySubject = new Map<string, fhir4.Flag[]>();
        for (const f of flags.filter((f: fhir4.Flag) => f.status === 'active')) bySubject.set(f.subject.reference!, [...(bySubject.get(f.subject.reference!) ?? []), f]);
        expect(flags.length).to.equal(PATIENTS);
        for (const patient of patients) {
          const mine = bySubject.get(`Patient/${patient}`) ?? [];
          expect(mine, patient).to.have.length(1);
          const count = mine[0]!.extension!.find((x) => x.url.endsWith('flag-event-count'))!.valueInteger!;
          expect(count).to.be.at.least(acked.filter((w) => w.patient === patient && w.breach).length);
        }

        // Every Flag version queued one notification, and every one arrives. Delivery is at least
        // once: the killed node may have been between a subscriber's 2xx and its DELETE of the
        // row, which another node sends again after the lease (3 s here) — with the same
        // Idempotency-Key, so the subscriber sees each notification once (decision 019).
        const table = tableOf('Flag');
        const versions = Number(
          (
            await db.query<{ n: string }>(
              `SELECT (SELECT count(*) FROM ${table} WHERE content->'subject'->>'reference' = ANY($1)) + (SELECT count(*) FROM ${table}_history WHERE content->'subject'->>'reference' = ANY($1)) AS n`,
              [subjects],
            )
          ).rows[0]!.n,
        );
        await until('the delivery queue drained', async () => {
          const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM monitoring_delivery WHERE subscription_id = $1', [subscription.id]);
          return Number(rows[0]!.n) === 0;
        }, 30_000);
        const versionOfKey = new Map<string, string>();
        for (const r of hook.received) {
          const flag = JSON.parse(r.body) as fhir4.Flag;
          const version = `${flag.id}/${flag.meta!.versionId}`;
          const key = String(r.headers['idempotency-key']);
          expect(versionOfKey.get(key) ?? version, 'one key, one Flag version').to.equal(version);
          versionOfKey.set(key, version);
        }
        const notified = new Set(versionOfKey.values());
        expect(notified.size, 'every Flag version notified').to.equal(versions);
        expect(versionOfKey.size, 'no Flag version queued twice').to.equal(versions);
        const repeats = hook.received.length - versionOfKey.size;
        // At most the one batch of claims (20) the killed node held.
        expect(repeats).to.be.at.most(20);
        console.log(`  ${flags.length} Flags in ${versions} versions; ${versions} notifications, each delivered; ${repeats} sent again after the killed node's lease, with the same Idempotency-Key`);
        expect(a.child.exitCode).to.equal(null);
      } catch (err) {
        for (const node of [a, b]) if (node) console.error(node.output().slice(-3000));
        throw err;
      } finally {
        await proxy?.close();
        await killStarted();
        await bouncer.close();
        await hook.close();
      }
    },
  );
});
