import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { randomUUID } from 'node:crypto';
import { type SecuredServer, startSecuredServer } from '../security/helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * A patient-scoped token sending a bundle with one entry it may not write (R4 http.html#trules,
 * #brules; SMART patient scopes): a transaction is refused whole, naming nothing of the other
 * patient's data, a batch fails that entry alone; every refusal is in the audit trail.
 */
describe('bundles under a patient-scoped token', () => {
  let app: SecuredServer;
  let auditor: Record<string, string>;
  let token: Record<string, string>;
  const id: Record<string, string> = {};
  const observation = (patient: string, extra: Record<string, unknown> = {}) => ({
    resourceType: 'Observation', status: 'final', code: { text: 'weight' }, subject: { reference: `Patient/${patient}` }, ...extra,
  });
  const tagged = (tag: string) => observation(id.alice!, { identifier: [{ system: 'urn:bundle-access', value: tag }] });
  const countTagged = async (tag: string) => {
    const res = await app.request({ method: 'GET', url: `/fhir/Observation?identifier=urn:bundle-access|${tag}&_summary=count`, headers: app.system });
    return res.json.total as number;
  };
  const events = async (res: { headers: Record<string, unknown> }) => {
    await app.audit.flush();
    const found = await app.request({ method: 'GET', url: `/fhir/AuditEvent?outcome=4&_count=100`, headers: auditor });
    return ((found.json as fhir4.Bundle).entry ?? []).map((e) => e.resource as fhir4.AuditEvent)
      .filter((e) => e.entity?.some((x) => x.type?.code === 'XrequestId' && x.what?.identifier?.value === res.headers['x-request-id']));
  };

  before(async () => {
    app = await startSecuredServer();
    auditor = await app.as('system/AuditEvent.rs', { clientId: 'bundle-auditor' });
    id.alice = await app.create({ resourceType: 'Patient', name: [{ family: 'Accessalice' }] });
    id.bob = await app.create({ resourceType: 'Patient', name: [{ family: 'Accessbob' }] });
    id.bobObs = await app.create(observation(id.bob));
    token = await app.as('patient/Observation.cruds patient/Patient.rs', { patient: id.alice });
  });
  after(() => app.stop());

  const others = () => [
    ['a create for another patient', { resource: observation(id.bob!), request: { method: 'POST', url: 'Observation' } }],
    ['an update of another patient\'s reading', { resource: { ...observation(id.bob!), id: id.bobObs, status: 'amended' }, request: { method: 'PUT', url: `Observation/${id.bobObs}` } }],
    ['a delete of another patient\'s reading', { request: { method: 'DELETE', url: `Observation/${id.bobObs}` } }],
  ] as const;

  it('refuses a transaction whole when one entry writes for another patient: nothing written, nothing of the other patient disclosed, the refusal audited', async () => {
    for (const [what, entry] of others()) {
      const tag = randomUUID();
      const res = await app.request({
        method: 'POST', url: '/fhir', headers: token,
        payload: { resourceType: 'Bundle', type: 'transaction', entry: [{ resource: tagged(tag), request: { method: 'POST', url: 'Observation' } }, entry] },
      });
      expect(res.statusCode, what).to.equal(403);
      expect(res.json.resourceType).to.equal('OperationOutcome');
      expect(res.json.issue[0].expression).to.equal(['Bundle.entry[1]']);
      expect(res.payload, what).to.not.include('amended').and.to.not.include('weight');
      expect(await countTagged(tag), what).to.equal(0);
      const [refusal] = await events(res);
      expect(refusal!.outcomeDesc, what).to.include('HTTP 403');
    }
    const stored = await app.request({ method: 'GET', url: `/fhir/Observation/${id.bobObs}`, headers: app.system });
    expect(stored.json.status).to.equal('final');
  });

  it('fails only that entry of a batch, with its 403 OperationOutcome, commits the rest, and audits each refused entry', async () => {
    for (const [what, entry] of others()) {
      const tag = randomUUID();
      const res = await app.request({
        method: 'POST', url: '/fhir', headers: token,
        payload: { resourceType: 'Bundle', type: 'batch', entry: [{ resource: tagged(tag), request: { method: 'POST', url: 'Observation' } }, entry] },
      });
      expect(res.statusCode, what).to.equal(200);
      expect(res.json.entry[0].response.status).to.equal('201 Created');
      expect(res.json.entry[1].response.status, what).to.equal('403 Forbidden');
      expect(res.json.entry[1].response.outcome.resourceType).to.equal('OperationOutcome');
      expect(await countTagged(tag), what).to.equal(1);
      // The batch answered 200; the refused entry is audited as the refusal it is.
      const refusals = await events(res);
      expect(refusals, what).to.have.length(1);
      expect(refusals[0]!.outcomeDesc).to.include('HTTP 403').and.to.include('Bundle.entry[1]');
      expect(refusals[0]!.subtype?.[0]?.code, what).to.equal(entry.request.method === 'POST' ? 'create' : entry.request.method === 'PUT' ? 'update' : 'delete');
    }
    const stored = await app.request({ method: 'GET', url: `/fhir/Observation/${id.bobObs}`, headers: app.system });
    expect(stored.json.status).to.equal('final');
  });

  it('refuses a transaction whole when a read entry is refused, its writes rolled back, and audits the refusal', async () => {
    const tag = randomUUID();
    const res = await app.request({
      method: 'POST', url: '/fhir', headers: token,
      payload: { resourceType: 'Bundle', type: 'transaction', entry: [
        { resource: tagged(tag), request: { method: 'POST', url: 'Observation' } },
        { request: { method: 'GET', url: 'Condition?subject=Patient/' + id.alice } },
      ] },
    });
    expect(res.statusCode, res.payload).to.equal(403);
    expect(res.json.issue[0].expression).to.equal(['Bundle.entry[1].request.url']);
    expect(await countTagged(tag)).to.equal(0);
    const [refusal, ...more] = await events(res);
    expect(more).to.have.length(0);
    expect(refusal!.outcomeDesc).to.include('HTTP 403');
  });
});
