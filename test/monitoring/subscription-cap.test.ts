import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { countRows, startTestServer, unique } from '../helpers/server';
import { type SecuredServer, startSecuredServer } from '../security/helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const CAP = 3;

/**
 * MAX_SUBSCRIPTIONS_PER_CLIENT (src/monitoring/subscription-cap.ts): a subscriber holds at most
 * that many Subscriptions that are not off; more is a 422 OperationOutcome and nothing is
 * written, through every door (create, update, patch, transaction and batch entries). Every
 * Subscription here is a websocket one whose criteria name a code of its own, so that it matches
 * no other suite's writes, and each is deleted at the end.
 */
describe('Subscriptions per subscriber are capped (MAX_SUBSCRIPTIONS_PER_CLIENT)', () => {
  let app: SecuredServer;
  const created: string[] = [];
  const code = unique('cap');
  const subscription = (extra: Record<string, unknown> = {}) => ({
    resourceType: 'Subscription',
    status: 'requested',
    reason: 'cap test',
    criteria: `Observation?code=http://example.org/cap|${code}`,
    channel: { type: 'websocket' },
    ...extra,
  });
  /** A token of its own client for each subscriber. */
  const clientToken = (clientId: string) => app.as('system/Subscription.cruds system/Observation.rs system/Patient.cruds', { clientId });
  let a: Record<string, string>;
  let b: Record<string, string>;

  const post = async (headers: Record<string, string>, body = subscription()) => {
    const res = await app.request({ method: 'POST', url: '/fhir/Subscription', payload: body, headers });
    if (res.statusCode === 201) created.push(res.json.id);
    return res;
  };
  const ownerRows = async () => Number((await app.ctx.db.query<{ n: string }>('SELECT count(*) AS n FROM subscription_owner')).rows[0]!.n);
  const expectRefused = (res: { statusCode: number; json: any }) => {
    expect(res.statusCode, JSON.stringify(res.json)).to.equal(422);
    expect(res.json.resourceType).to.equal('OperationOutcome');
    expect(res.json.issue[0].code).to.equal('business-rule');
    expect(res.json.issue[0].diagnostics).to.contain('MAX_SUBSCRIPTIONS_PER_CLIENT');
  };

  before(async () => {
    app = await startSecuredServer({ MAX_SUBSCRIPTIONS_PER_CLIENT: String(CAP) });
    a = await clientToken(unique('cap-a'));
    b = await clientToken(unique('cap-b'));
  });
  after(async () => {
    if (!app) return;
    for (const id of created) await app.request({ method: 'DELETE', url: `/fhir/Subscription/${id}`, headers: app.system });
    await app.stop();
  });

  it('accepts creates up to the cap, refuses the next with 422 and stores nothing; another client is unaffected; a delete frees a slot', async () => {
    const mine: string[] = [];
    for (let i = 0; i < CAP; i++) {
      const res = await post(a);
      expect(res.statusCode, res.payload).to.equal(201);
      mine.push(res.json.id);
    }
    const rows = await countRows(app, 'Subscription');
    const owners = await ownerRows();
    expectRefused(await post(a));
    expect(await countRows(app, 'Subscription')).to.equal(rows);
    expect(await ownerRows()).to.equal(owners);

    // Another client has a cap of its own.
    const other = await post(b);
    expect(other.statusCode, other.payload).to.equal(201);

    // A deleted Subscription no longer counts.
    const del = await app.request({ method: 'DELETE', url: `/fhir/Subscription/${mine[0]}`, headers: a });
    expect(del.statusCode).to.be.within(200, 204);
    const again = await post(a);
    expect(again.statusCode, again.payload).to.equal(201);
    mine[0] = again.json.id;
    expectRefused(await post(a));

    // Off ones do not count either; turning one back on (PUT or PATCH) is an addition.
    const off = await app.request({ method: 'PUT', url: `/fhir/Subscription/${mine[1]}`, payload: { ...subscription({ status: 'off' }), id: mine[1] }, headers: a });
    expect(off.statusCode, off.payload).to.equal(200);
    const third = await post(a);
    expect(third.statusCode, third.payload).to.equal(201);
    const before = await countRows(app, 'Subscription');
    expectRefused(await app.request({ method: 'PUT', url: `/fhir/Subscription/${mine[1]}`, payload: { ...subscription(), id: mine[1] }, headers: a }));
    expectRefused(await app.request({
      method: 'PATCH', url: `/fhir/Subscription/${mine[1]}`, headers: { ...a, 'content-type': 'application/json-patch+json' },
      payload: JSON.stringify([{ op: 'replace', path: '/status', value: 'requested' }]),
    }));
    expect(await countRows(app, 'Subscription')).to.equal(before);
    // An update of one already counted is no addition: it is accepted at the cap.
    const renamed = await app.request({ method: 'PUT', url: `/fhir/Subscription/${mine[2]}`, payload: { ...subscription({ reason: 'renamed' }), id: mine[2] }, headers: a });
    expect(renamed.statusCode, renamed.payload).to.equal(200);
  });

  it('rolls back a whole transaction Bundle whose Subscription passes the cap, and refuses only that entry of a batch', async () => {
    const c = await clientToken(unique('cap-c'));
    for (let i = 0; i < CAP - 1; i++) expect((await post(c)).statusCode).to.equal(201);
    const family = unique('cap-family');
    const bundle = (type: 'transaction' | 'batch') => ({
      resourceType: 'Bundle',
      type,
      entry: [
        { fullUrl: 'urn:uuid:7f1c2a4e-0000-4000-8000-000000000001', resource: { resourceType: 'Patient', name: [{ family }] }, request: { method: 'POST', url: 'Patient' } },
        { resource: subscription(), request: { method: 'POST', url: 'Subscription' } },
        { resource: subscription(), request: { method: 'POST', url: 'Subscription' } },
      ],
    });
    const subs = await countRows(app, 'Subscription');
    const patients = await countRows(app, 'Patient');
    const tx = await app.request({ method: 'POST', url: '/fhir', payload: bundle('transaction'), headers: c });
    expectRefused(tx);
    expect(await countRows(app, 'Subscription')).to.equal(subs);
    expect(await countRows(app, 'Patient')).to.equal(patients);

    const batch = await app.request({ method: 'POST', url: '/fhir', payload: bundle('batch'), headers: c });
    expect(batch.statusCode, batch.payload).to.equal(200);
    expect(batch.json.entry.map((e: any) => String(e.response.status).slice(0, 3))).to.equal(['201', '201', '422']);
    expect(batch.json.entry[2].response.outcome.issue[0].diagnostics).to.contain('MAX_SUBSCRIPTIONS_PER_CLIENT');
    created.push(batch.json.entry[1].response.location.split('/')[1]);
    await app.request({ method: 'DELETE', url: `/fhir/${batch.json.entry[0].response.location.split('/_history')[0]}`, headers: app.system });
    expect(await countRows(app, 'Subscription')).to.equal({ current: subs.current + 1, history: subs.history + 1 });
  });

  it('lets one of several concurrent creates at cap - 1 through', async () => {
    const d = await clientToken(unique('cap-d'));
    for (let i = 0; i < CAP - 1; i++) expect((await post(d)).statusCode).to.equal(201);
    const results = await Promise.all(Array.from({ length: 6 }, () => post(d)));
    expect(results.filter((r) => r.statusCode === 201)).to.have.length(1);
    for (const r of results.filter((x) => x.statusCode !== 201)) expectRefused(r);
  });

  it('counts every Subscription against one subscriber when auth is off', async () => {
    const held = Number((await app.ctx.db.query<{ n: string }>(
      `SELECT count(*) AS n FROM subscription_owner WHERE client_id = 'internal' AND subject IS NULL AND active`,
    )).rows[0]!.n);
    const open = await startTestServer({ MAX_SUBSCRIPTIONS_PER_CLIENT: String(held + 1) });
    try {
      const first = await open.request({ method: 'POST', url: '/fhir/Subscription', payload: subscription() });
      expect(first.statusCode, first.payload).to.equal(201);
      created.push(first.json.id);
      expectRefused(await open.request({ method: 'POST', url: '/fhir/Subscription', payload: subscription() }));
    } finally {
      await open.stop();
    }
  });
});
