import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { executeWrites } from '../../src/fhir/write';
import { countRows, startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

describe('the write pipeline', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
  });
  after(() => app.stop());

  it('an idempotent create by deterministic id writes once and answers 200 on every retry', async () => {
    const id = unique('reading');
    const op = () => ({ kind: 'create' as const, type: 'Observation', id, onExistingId: 'match' as const, resource: { resourceType: 'Observation', status: 'final', code: { text: 'pulse' } } });
    const [first] = await executeWrites(app.ctx, [op()]);
    expect(first!.status).to.equal(201);
    expect(first!.id).to.equal(id);
    const before = await countRows(app, 'Observation');
    const [again, other] = await executeWrites(app.ctx, [op(), { ...op(), id: `${id}-b` }]);
    expect(again!.status).to.equal(200);
    expect(again!.id).to.equal(id);
    expect(again!.versionId).to.equal(1);
    expect(other!.status).to.equal(201);
    const after = await countRows(app, 'Observation');
    expect(after.history - before.history).to.equal(1);
  });

  it('calls enrich hooks once per transaction with every write, and validates what they changed', async () => {
    const calls: number[] = [];
    const hook = async (_ctx: unknown, _tx: unknown, writes: Array<{ type: string; resource?: any; changed?: boolean }>) => {
      calls.push(writes.length);
      for (const w of writes) {
        if (w.resource?.resourceType === 'Device') {
          w.resource.note = [{ text: 'enriched' }];
          w.changed = true;
        }
        if (w.resource?.resourceType === 'Flag' && w.resource.code.text === 'break me') {
          w.resource.status = 'not-a-status';
          w.changed = true;
        }
      }
    };
    app.ctx.writeHooks.enrich.push(hook);
    try {
      const res = await app.request({
        method: 'POST', url: '/fhir', headers: { prefer: 'return=representation' },
        payload: { resourceType: 'Bundle', type: 'transaction', entry: [
          { resource: { resourceType: 'Device', serialNumber: 'E-1' }, request: { method: 'POST', url: 'Device' } },
          { resource: { resourceType: 'Device', serialNumber: 'E-2' }, request: { method: 'POST', url: 'Device' } },
        ] },
      });
      expect(res.statusCode).to.equal(200);
      expect(calls).to.equal([2]);
      expect(res.json.entry[1].resource.note).to.equal([{ text: 'enriched' }]);
      expect(res.json.entry[1].resource.meta.versionId).to.equal('1');

      const before = await countRows(app, 'Flag');
      const bad = await app.request({ method: 'POST', url: '/fhir/Flag', payload: { resourceType: 'Flag', status: 'active', code: { text: 'break me' }, subject: { reference: 'Patient/x' } } });
      expect(bad.statusCode).to.equal(400);
      expect(bad.json.issue[0].expression).to.equal(['Flag.status']);
      expect(await countRows(app, 'Flag')).to.equal(before);
    } finally {
      app.ctx.writeHooks.enrich.splice(app.ctx.writeHooks.enrich.indexOf(hook), 1);
    }
  });
});
