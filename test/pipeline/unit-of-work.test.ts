import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { OperationOutcomeError } from '../../src/kernel/outcome';
import { type CommittedWrite, executeWrites, PIPELINE, withUnitOfWork } from '../../src/pipeline';
import { countRows, startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

describe('the unit of work', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
  });
  after(() => app.stop());

  const device = (serial: string, extra: Record<string, unknown> = {}) => ({ resourceType: 'Device', serialNumber: serial, ...extra });

  it('writes an idempotent create by deterministic id once and answers 200 on every retry', async () => {
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

  it('runs the stages in the declared order, whatever order they were plugged in', async () => {
    expect(PIPELINE).to.equal(['resolve', 'authorize', 'validate', 'enrich', 'judge', 'conform', 'write', 'rules', 'commit', 'after-commit']);
    const seen: string[] = [];
    const unplug = [
      app.ctx.stages.use('after-commit', 'test.after', async () => void seen.push('after-commit')),
      app.ctx.stages.use('rules', 'test.rules', async () => void seen.push('rules')),
      app.ctx.stages.use('judge', 'test.judge', async () => void seen.push('judge')),
      app.ctx.stages.use('enrich', 'test.enrich', async () => void seen.push('enrich')),
      app.ctx.stages.use('validate', 'test.validate', async () => void seen.push('validate')),
    ];
    try {
      await executeWrites(app.ctx, [{ kind: 'create', type: 'Device', resource: device(unique('order')) }]);
      expect(seen).to.equal(['validate', 'enrich', 'judge', 'rules', 'after-commit']);
      expect(() => app.ctx.stages.use('rules', 'test.rules', async () => undefined)).to.throw(/already/);
    } finally {
      unplug.forEach((u) => u());
    }
  });

  it('gives a stage every write of the unit at once and checks again what a stage changed', async () => {
    const calls: number[] = [];
    const unplug = app.ctx.stages.use('enrich', 'test.enrich', async (_uow, writes) => {
      calls.push(writes.length);
      for (const w of writes) {
        const r = w.resource as any;
        if (r?.resourceType === 'Device') {
          r.note = [{ text: 'enriched' }];
          w.changed = true;
        }
        if (r?.resourceType === 'Flag' && r.code.text === 'break me') {
          r.status = 'not-a-status';
          w.changed = true;
        }
      }
    });
    try {
      const res = await app.request({
        method: 'POST', url: '/fhir', headers: { prefer: 'return=representation' },
        payload: { resourceType: 'Bundle', type: 'transaction', entry: [
          { resource: device('E-1'), request: { method: 'POST', url: 'Device' } },
          { resource: device('E-2'), request: { method: 'POST', url: 'Device' } },
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
      unplug();
    }
  });

  it('lets nested writes of a rule join the unit, so the after-commit stage sees them too', async () => {
    const committed: CommittedWrite[][] = [];
    const serial = unique('nested');
    const unplugRule = app.ctx.stages.use('rules', 'test.nested', async (uow, writes) => {
      const parent = writes.find((w) => w.type === 'Device' && (w.resource as fhir4.Device | undefined)?.serialNumber === serial);
      if (parent) await uow.apply([{ kind: 'create', type: 'Device', resource: device(`${serial}-child`, { parent: { reference: `Device/${parent.id}` } }) }]);
    });
    const unplugAfter = app.ctx.stages.use('after-commit', 'test.after', async (writes) => void committed.push([...writes]));
    try {
      await executeWrites(app.ctx, [{ kind: 'create', type: 'Device', resource: device(serial) }]);
      expect(committed).to.have.length(1);
      expect(committed[0]!.map((w) => (w.resource as fhir4.Device).serialNumber)).to.equal([serial, `${serial}-child`]);
    } finally {
      unplugRule();
      unplugAfter();
    }
  });

  it('rolls a nested write back with the unit when a later rule refuses it', async () => {
    const serial = unique('rollback');
    const unplugA = app.ctx.stages.use('rules', 'test.a', async (uow, writes) => {
      if (writes.some((w) => (w.resource as fhir4.Device | undefined)?.serialNumber === serial)) await uow.apply([{ kind: 'create', type: 'Device', resource: device(`${serial}-child`) }]);
    });
    const unplugB = app.ctx.stages.use('rules', 'test.b', async (_uow, writes) => {
      if (writes.some((w) => (w.resource as fhir4.Device | undefined)?.serialNumber === serial)) throw new OperationOutcomeError(409, { code: 'conflict', diagnostics: 'refused by a rule' });
    });
    const before = await countRows(app, 'Device');
    try {
      const error = await executeWrites(app.ctx, [{ kind: 'create', type: 'Device', resource: device(serial) }]).catch((e: unknown) => e);
      expect(error).to.be.instanceOf(OperationOutcomeError);
      expect(await countRows(app, 'Device')).to.equal(before);
    } finally {
      unplugA();
      unplugB();
    }
  });

  it('per entry: refuses bad entries alone, set-based when it can, under savepoints when it must', async () => {
    const serial = unique('each');
    const before = await countRows(app, 'Device');
    const results = await executeWrites(app.ctx, [
      { kind: 'create', type: 'Device', resource: device(`${serial}-1`) },
      { kind: 'create', type: 'Device', resource: { resourceType: 'Device', status: 'not-a-status' } },
      { kind: 'create', type: 'Device', resource: device(`${serial}-3`) },
    ], { mode: 'per-entry' });
    expect(results.map((r) => (r instanceof OperationOutcomeError ? r.status : r.status))).to.equal([201, 400, 201]);
    expect((await countRows(app, 'Device')).current - before.current).to.equal(2);

    // A rule that throws for one entry fails the set; the replay under savepoints isolates it.
    const unplug = app.ctx.stages.use('rules', 'test.refuse', async (_uow, writes) => {
      if (writes.some((w) => (w.resource as fhir4.Device | undefined)?.serialNumber === `${serial}-bad`)) throw new OperationOutcomeError(409, { code: 'conflict', diagnostics: 'no' });
    });
    try {
      const mixed = await executeWrites(app.ctx, [
        { kind: 'create', type: 'Device', resource: device(`${serial}-4`) },
        { kind: 'create', type: 'Device', resource: device(`${serial}-bad`) },
        { kind: 'create', type: 'Device', resource: device(`${serial}-5`) },
      ], { mode: 'per-entry' });
      expect(mixed.map((r) => r.status)).to.equal([201, 409, 201]);
      expect((await countRows(app, 'Device')).current - before.current).to.equal(4);
    } finally {
      unplug();
    }
  });

  it('per entry: two writes of one resource run one after the other, as separate requests would', async () => {
    const id = unique('twice');
    const results = await executeWrites(app.ctx, [
      { kind: 'update', type: 'Device', id, resource: device('A', { id }) },
      { kind: 'update', type: 'Device', id, resource: device('B', { id }) },
    ], { mode: 'per-entry' });
    expect(results.map((r) => [r.status, (r as { versionId?: number }).versionId])).to.equal([[201, 1], [200, 2]]);
  });

  it('runs an operation that reads and writes as one unit with its after-commit stage', async () => {
    let seen = 0;
    const unplug = app.ctx.stages.use('after-commit', 'test.after', async (writes) => void (seen += writes.length));
    try {
      const ids = await withUnitOfWork(app.ctx, async (uow) => {
        const out = await uow.apply([{ kind: 'create', type: 'Device', resource: device(unique('op')) }]);
        const again = await uow.apply([{ kind: 'create', type: 'Device', resource: device(unique('op')) }]);
        return [...out, ...again].map((o) => o.id);
      });
      expect(ids).to.have.length(2);
      expect(seen).to.equal(2);
    } finally {
      unplug();
    }
  });
});
