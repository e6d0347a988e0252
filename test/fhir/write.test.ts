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
});
