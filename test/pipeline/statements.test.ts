import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { type CountingDb, countingDb } from '../helpers/counting-db';
import { startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * Round trips per interaction, counted as HAPI FHIR counts them: set-based writes keep a whole
 * transaction to a handful of statements, and the hot search to one. A change that turns one
 * statement into one per entry (or per row) fails here, whatever the machine's speed.
 */
describe('statements per interaction', () => {
  let app: TestServer;
  let db: CountingDb;
  let patient: string;
  before(async () => {
    app = await startTestServer({}, { db: (shared) => (db = countingDb(shared)) });
    patient = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient' } })).json.id;
    // Warm what is cached across requests (the live Subscriptions).
    await app.request({ method: 'POST', url: '/fhir/Observation', payload: heartRate(patient, 70) });
  });
  after(() => app.stop());

  const heartRate = (subject: string, value: number, minute = 0) => ({
    resourceType: 'Observation',
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
    subject: { reference: `Patient/${subject}` },
    effectiveDateTime: `2026-01-01T10:${String(minute % 60).padStart(2, '0')}:00Z`,
    valueQuantity: { value, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
  });

  /**
   * The statements of the request itself. Background work runs on its own clock and may fall into
   * any count: the audit chainer (src/audit/chainer.ts: its look for staged rows, the statements
   * on the chain head, the move out of audit_pending, its asynchronous commit) and the
   * notification worker's poll of the outbox (src/monitoring/delivery.ts; seen on PostgreSQL
   * inside a count), and the start-up check that NOTIFYs come back (src/store/listen-check.ts; seen
   * on PostgreSQL inside the first count of a loaded fresh-clone run).
   */
  const background = /AS listen_check|audit_chain_head|SET LOCAL synchronous_commit TO off|DELETE FROM audit_pending|SELECT queued(?:::text AS queued, coalesce\(record, json\) AS text)? FROM audit_pending|UPDATE monitoring_delivery SET next_attempt/;
  const counted = async (fn: () => Promise<{ statusCode: number }>) => {
    await app.audit.flush();
    db.reset();
    const res = await fn();
    return { status: res.statusCode, statements: db.statements.filter((s) => !background.test(s)) };
  };

  // The audit trail adds one per unit of work, whatever its size (src/audit/chain.ts): every
  // AuditEvent row staged in one statement, chained after commit.
  // The patient's plans come from the server's cache (warmed by the create in `before`), checked
  // by a statement that travels with the write (src/monitoring/plan-cache.ts).
  it('a single create: the plans check, one statement for the version and its index rows, one for the audit', async () => {
    const { status, statements } = await counted(() => app.request({ method: 'POST', url: '/fhir/Observation', payload: heartRate(patient, 71) }));
    expect(status).to.equal(201);
    expect(statements, statements.join('\n---\n')).to.have.length(3);
    const write = statements.find((s) => s.includes('INSERT INTO observation ('));
    expect(write).to.include('INSERT INTO observation_token');
    expect(statements.some((s) => s.includes('monitoring_plans_unchanged'))).to.be.true();
  });

  it('a 100-entry transaction: the same statements as one create, not one per entry', async () => {
    const entry = Array.from({ length: 100 }, (_, i) => ({ fullUrl: `urn:uuid:${unique('e')}`, resource: heartRate(patient, 60 + (i % 30), i), request: { method: 'POST', url: 'Observation' } }));
    const { status, statements } = await counted(() => app.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'transaction', entry } }));
    expect(status).to.equal(200);
    expect(statements, statements.join('\n---\n')).to.have.length(3);
  });

  /**
   * The statements of one create while `criteria` are live Subscriptions on `channel`: one create
   * first loads them into the cache, then the next is counted while they are cached.
   */
  const createBeside = async (criteria: string[], channel: object, value: number) => {
    const ids: string[] = [];
    try {
      for (const c of criteria) {
        const res = await app.request({ method: 'POST', url: '/fhir/Subscription', payload: { resourceType: 'Subscription', status: 'requested', reason: 'statements', criteria: c, channel } });
        expect(res.statusCode, c).to.equal(201);
        ids.push(res.json.id);
      }
      await app.request({ method: 'POST', url: '/fhir/Observation', payload: heartRate(patient, value) });
      return await counted(() => app.request({ method: 'POST', url: '/fhir/Observation', payload: heartRate(patient, value + 1) }));
    } finally {
      for (const id of ids) await app.request({ method: 'DELETE', url: `/fhir/Subscription/${id}` });
    }
  };

  it('a create beside live Subscriptions whose criteria name other patients or codes: still three statements, no search per Subscription', async () => {
    const other = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient' } })).json.id;
    const { status, statements } = await createBeside([
      ...Array.from({ length: 10 }, () => `Observation?patient=Patient/${other}`),
      `Observation?subject=Patient/${other}&code=http://loinc.org|8867-4`,
      `Observation?patient=${patient}&code=http://loinc.org|8480-6`,
      `Observation?code=9279-1`,
      `Observation?status=cancelled`,
      `Observation?category=laboratory&patient=Patient/${patient}`,
    ], { type: 'rest-hook', endpoint: 'https://example.org/hook' }, 72);
    expect(status).to.equal(201);
    expect(statements, statements.join('\n---\n')).to.have.length(3);
  });

  it('a create that ten live Subscriptions match: their criteria and grants judged in memory, one NOTIFY for all', async () => {
    const { status, statements } = await createBeside([
      ...Array.from({ length: 8 }, () => `Observation?patient=Patient/${patient}`),
      'Observation?code=http://loinc.org|8867-4',
      `Observation?status=final&subject=${patient}`,
    ], { type: 'websocket' }, 74);
    expect(status).to.equal(201);
    expect(statements, statements.join('\n---\n')).to.have.length(4);
    expect(statements.filter((s) => s.includes('pg_notify'))).to.have.length(1);
  });

  it('a batch of 30 conditional creates, one of them sent twice: set-based in two waves, not entry by entry', async () => {
    const system = `urn:example:${unique('gw')}`;
    const reading = (i: number) => ({ ...heartRate(patient, 60 + i, i), identifier: [{ system, value: String(i) }] });
    const entries = Array.from({ length: 30 }, (_, i) => i);
    entries.push(7); // the gateway sent reading 7 again in the same payload
    const entry = entries.map((i) => ({ resource: reading(i), request: { method: 'POST', url: 'Observation', ifNoneExist: `identifier=${system}|${i}` } }));
    let answer: any;
    const { status, statements } = await counted(async () => {
      const res = await app.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'batch', entry } });
      answer = res.json;
      return res;
    });
    expect(status).to.equal(200);
    const statuses = answer.entry.map((e: any) => e.response.status);
    expect(statuses.slice(0, 30).every((s: string) => s === '201 Created'), statuses.join()).to.be.true();
    expect(statuses[30]).to.equal('200 OK');
    expect(answer.entry[30].response.location).to.equal(answer.entry[7].response.location);
    // Entry by entry, every op took a SAVEPOINT and wrote its version in a statement of its own
    // (each conditional create still searches for its match: a statement per entry either way).
    expect(statements.filter((s) => s.startsWith('SAVEPOINT')), statements.join('\n---\n')).to.have.length(2);
    expect(statements.filter((s) => s.includes('INSERT INTO observation ('))).to.have.length(1);
    const stored = await app.request({ method: 'GET', url: `/fhir/Observation?identifier=${system}|7` });
    expect(stored.json.total ?? stored.json.entry.length).to.equal(1);
  });

  it('the hot search: one statement', async () => {
    const { status, statements } = await counted(() =>
      app.request({ method: 'GET', url: `/fhir/Observation?subject=Patient/${patient}&code=http://loinc.org|8867-4&date=ge2026-01-01` }),
    );
    expect(status).to.equal(200);
    expect(statements).to.have.length(1);
  });
});
