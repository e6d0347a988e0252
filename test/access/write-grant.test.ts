import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { observation } from '../helpers/consent';
import { planWithHighSystolic, systolic } from '../helpers/monitoring-plan';
import { unique } from '../helpers/server';
import { type SecuredServer, startSecuredServer } from '../security/helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const VITALS = 'http://terminology.hl7.org/CodeSystem/observation-category|vital-signs';

/**
 * Writes act only on what the caller may read and only for whom it may write: a patient token
 * never writes into another patient's record through a second compartment link (performer,
 * asserter), an update, patch or delete never acts on (or answers with) a resource outside the
 * caller's read limits, a deleted id is recreated only by who could have written it, and an
 * operation that judges readings judges only those the caller may read.
 */
describe('writes stay inside what the token may read and write', () => {
  let app: SecuredServer;
  let system: Record<string, string>;
  const ids: Record<string, string> = {};
  const as = (scopes: string, patient?: string) => app.as(scopes, patient ? { patient } : {});
  const create = (body: object) => app.create(body as Record<string, unknown>);
  const versionOf = async (type: string, id: string) => (await app.request({ method: 'GET', url: `/fhir/${type}/${id}`, headers: system })).json.meta?.versionId;
  /** No part of the hidden resource, its version or its existence beyond the status. */
  const expectNothingOf = (res: { payload: string; headers: Record<string, unknown> }, secret: string) => {
    expect(res.payload).to.not.include(secret);
    expect(res.headers.etag).to.not.exist();
    expect(res.headers['last-modified']).to.not.exist();
  };

  before(async () => {
    app = await startSecuredServer();
    system = app.system;
    ids.alice = await create({ resourceType: 'Patient', name: [{ family: `Alice${unique()}` }] });
    ids.bob = await create({ resourceType: 'Patient', name: [{ family: `Bob${unique()}` }] });
    ids.aliceLab = await create({ ...observation(ids.alice, '2339-0', 'laboratory'), note: [{ text: 'secret-alice-lab' }] });
    ids.aliceHr = await create(observation(ids.alice, '8867-4', 'vital-signs'));
    // Bob's reading that Alice performed (a clinician may record that): in both compartments.
    ids.bobByAlice = await create({ ...observation(ids.bob, '8867-4', 'vital-signs'), performer: [{ reference: `Patient/${ids.alice}` }], note: [{ text: 'secret-bob' }] });
  });
  after(() => app.stop());

  describe('a patient token', () => {
    let alice: Record<string, string>;
    before(async () => {
      alice = await as('patient/*.cruds', ids.alice);
    });

    it("writes nothing that names another patient through the compartment (performer, asserter), on create, update and in a transaction", async () => {
      const before = await versionOf('Observation', ids.bobByAlice);
      const cases: Array<[string, string, object]> = [
        ['POST', '/fhir/Observation', { ...observation(ids.bob, '8867-4', 'vital-signs'), performer: [{ reference: `Patient/${ids.alice}` }] }],
        ['POST', '/fhir/Condition', { resourceType: 'Condition', subject: { reference: `Patient/${ids.bob}` }, asserter: { reference: `Patient/${ids.alice}` }, code: { text: 'x' } }],
        ['PUT', `/fhir/Observation/${ids.bobByAlice}`, { ...observation(ids.bob, '8867-4', 'vital-signs'), id: ids.bobByAlice, status: 'entered-in-error', performer: [{ reference: `Patient/${ids.alice}` }] }],
        ['POST', '/fhir', { resourceType: 'Bundle', type: 'transaction', entry: [{ request: { method: 'POST', url: 'Observation' }, resource: { ...observation(ids.bob, '8867-4', 'vital-signs'), performer: [{ reference: `Patient/${ids.alice}` }] } }] }],
      ];
      for (const [method, url, payload] of cases) {
        const res = await app.request({ method, url, payload, headers: alice });
        expect(res.statusCode, `${method} ${url}`).to.equal(403);
        expect(res.json.resourceType).to.equal('OperationOutcome');
        expectNothingOf(res, 'secret-bob');
      }
      expect(await versionOf('Observation', ids.bobByAlice)).to.equal(before);
      const written = await app.request({ method: 'GET', url: `/fhir/Observation?subject=Patient/${ids.bob}&performer=Patient/${ids.alice}`, headers: system });
      expect(written.json.total ?? written.json.entry?.length ?? 0).to.equal(1);
      // Its own patient's resources it still writes.
      const own = await app.request({ method: 'POST', url: '/fhir/Observation', payload: { ...observation(ids.alice, '8867-4', 'vital-signs'), performer: [{ reference: `Patient/${ids.alice}` }] }, headers: alice });
      expect(own.statusCode).to.equal(201);
    });

    it("recreates a deleted id only if it was its own patient's: another patient's is 403 and its history keeps no trace", async () => {
      const bobs = await create({ resourceType: 'Condition', subject: { reference: `Patient/${ids.bob}` }, code: { text: 'secret-bob-condition' } });
      const alices = await create({ resourceType: 'Condition', subject: { reference: `Patient/${ids.alice}` }, code: { text: 'mine' } });
      for (const id of [bobs, alices]) expect((await app.request({ method: 'DELETE', url: `/fhir/Condition/${id}`, headers: system })).statusCode).to.equal(204);
      const taken = await app.request({ method: 'PUT', url: `/fhir/Condition/${bobs}`, payload: { resourceType: 'Condition', id: bobs, subject: { reference: `Patient/${ids.alice}` }, code: { text: 'hijacked' } }, headers: alice });
      expect(taken.statusCode).to.equal(403);
      expectNothingOf(taken, 'secret-bob-condition');
      const history = await app.request({ method: 'GET', url: `/fhir/Condition/${bobs}/_history`, headers: system });
      expect(history.json.total).to.equal(2);
      const patched = await app.request({ method: 'PATCH', url: `/fhir/Condition/${bobs}`, payload: [{ op: 'add', path: '/note', value: [{ text: 'x' }] }], headers: { ...alice, 'content-type': 'application/json-patch+json' } });
      // Unknown to her, as any id she may not read is to a PATCH (decision 031): not 403, not 410.
      expect(patched.statusCode).to.equal(404);
      expectNothingOf(patched, 'secret-bob-condition');
      const mine = await app.request({ method: 'PUT', url: `/fhir/Condition/${alices}`, payload: { resourceType: 'Condition', id: alices, subject: { reference: `Patient/${ids.alice}` }, code: { text: 'mine again' } }, headers: alice });
      expect(mine.statusCode).to.equal(201);
      expect(mine.headers.etag).to.equal('W/"3"');
    });

    it("judges with CarePlan/$evaluate only the readings it may read, though it reads the plan through its activity's performer", async () => {
      const plan = planWithHighSystolic(ids.bob) as fhir4.CarePlan;
      plan.activity = [{ detail: { status: 'scheduled', code: { coding: [{ system: 'http://loinc.org', code: '8480-6' }] }, performer: [{ reference: `Patient/${ids.alice}` }], goal: [{ reference: '#g' }] } }];
      const planId = await create(plan);
      await create(systolic(ids.bob, 190));
      const start = new Date(Date.now() - 3_600_000).toISOString();
      const end = new Date(Date.now() + 60_000).toISOString();
      const url = `/fhir/CarePlan/${planId}/$evaluate?start=${encodeURIComponent(start)}&end=${encodeURIComponent(end)}`;
      expect((await app.request({ method: 'GET', url: `/fhir/CarePlan/${planId}`, headers: alice })).statusCode).to.equal(200);
      const asAlice = await app.request({ method: 'POST', url, payload: { resourceType: 'Parameters' }, headers: alice });
      expect(asAlice.statusCode, asAlice.payload).to.equal(200);
      const value = (res: typeof asAlice, name: string) => res.json.parameter.find((p: { name: string }) => p.name === name).valueInteger;
      expect(value(asAlice, 'judged')).to.equal(0);
      expect(value(asAlice, 'breaches')).to.equal(0);
      const asSystem = await app.request({ method: 'POST', url, payload: { resourceType: 'Parameters' }, headers: system });
      expect(value(asSystem, 'judged')).to.equal(1);
      expect(value(asSystem, 'breaches')).to.equal(1);
      // The limit relaxed: what it takes back is bounded by the same reads. Alice's evaluation
      // leaves Bob's breach on its Flag; the system's takes it back.
      const stored = (await app.request({ method: 'GET', url: `/fhir/CarePlan/${planId}`, headers: system })).json;
      stored.contained[0].target[0].detailRange.high.value = 200;
      expect((await app.request({ method: 'PUT', url: `/fhir/CarePlan/${planId}`, payload: stored, headers: system })).statusCode).to.equal(200);
      const bobsFlag = async () => ((await app.request({ method: 'GET', url: `/fhir/Flag?patient=Patient/${ids.bob}&status=active`, headers: system })).json.entry ?? []).map((e: { resource: fhir4.Flag }) => e.resource).filter((f: fhir4.Flag) => f.code.coding?.some((c) => c.code === 'limit-high'));
      expect(await bobsFlag()).to.have.length(1);
      const relaxedAsAlice = await app.request({ method: 'POST', url, payload: { resourceType: 'Parameters' }, headers: alice });
      expect(relaxedAsAlice.statusCode, relaxedAsAlice.payload).to.equal(200);
      expect(value(relaxedAsAlice, 'retracted')).to.equal(0);
      expect(await bobsFlag()).to.have.length(1);
      const relaxedAsSystem = await app.request({ method: 'POST', url, payload: { resourceType: 'Parameters' }, headers: system });
      expect(value(relaxedAsSystem, 'retracted')).to.equal(1);
      expect(await bobsFlag()).to.have.length(0);
    });

    it("is told by CarePlan/$check-adherence only of the Flags it may read: no count of another patient's missed windows", async () => {
      // Bob's heart rate every second; Alice reads the plan through its activity's performer.
      const planId = await create({
        resourceType: 'CarePlan', status: 'active', intent: 'plan', subject: { reference: `Patient/${ids.bob}` }, period: { start: new Date().toISOString() },
        activity: [{ detail: { status: 'in-progress', code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] }, performer: [{ reference: `Patient/${ids.alice}` }], scheduledTiming: { repeat: { frequency: 1, period: 1, periodUnit: 's' } } } }],
      });
      expect((await app.request({ method: 'GET', url: `/fhir/CarePlan/${planId}`, headers: alice })).statusCode).to.equal(200);
      const check = (headers: Record<string, string>) =>
        app.request({ method: 'POST', url: `/fhir/CarePlan/${planId}/$check-adherence`, payload: { resourceType: 'Parameters' }, headers });
      const parameters = (res: Awaited<ReturnType<typeof check>>) => res.json.parameter as Array<{ name: string; valueInteger?: number; valueReference?: { reference: string } }>;
      // R4 Flag has no code search parameter: Bob's Flags, then their code.
      const missedFlagsOfBob = async () =>
        ((await app.request({ method: 'GET', url: `/fhir/Flag?patient=Patient/${ids.bob}`, headers: system })).json.entry ?? [])
          .filter((e: { resource: fhir4.Flag }) => e.resource.code.coding?.some((c) => c.code === 'missed-measurement')).length;
      await new Promise((r) => setTimeout(r, 2500));
      const asAlice = await check(alice);
      expect(asAlice.statusCode, asAlice.payload).to.equal(200);
      expect(parameters(asAlice).find((p) => p.name === 'missed')!.valueInteger).to.equal(0);
      expect(parameters(asAlice).filter((p) => p.name === 'flag')).to.equal([]);
      // The check did judge Bob's windows (they are judged once, for everyone): its Flag exists.
      expect(await missedFlagsOfBob()).to.equal(1);
      await new Promise((r) => setTimeout(r, 1500));
      const asSystem = await check(system);
      expect(parameters(asSystem).find((p) => p.name === 'missed')!.valueInteger!).to.be.above(0);
      expect(parameters(asSystem).filter((p) => p.name === 'flag')).to.have.length(1);
      // A caller that may not search Flags is shown none, not refused after the check ran.
      await new Promise((r) => setTimeout(r, 1500));
      const noFlags = await check(await app.as('system/CarePlan.rus'));
      expect(noFlags.statusCode, noFlags.payload).to.equal(200);
      expect(parameters(noFlags).find((p) => p.name === 'missed')!.valueInteger).to.equal(0);
    });
  });

  describe('a token that may write Observations but read only vital signs', () => {
    let granular: Record<string, string>;
    before(async () => {
      granular = await as(`system/Observation.rs?category=${VITALS} system/Observation.cud`);
    });

    it('cannot patch a laboratory result (404, nothing answered, nothing written), replace or delete it (403)', async () => {
      const before = await versionOf('Observation', ids.aliceLab);
      const patch = await app.request({ method: 'PATCH', url: `/fhir/Observation/${ids.aliceLab}`, payload: [{ op: 'test', path: '/resourceType', value: 'Observation' }], headers: { ...granular, 'content-type': 'application/json-patch+json' } });
      expect(patch.statusCode).to.equal(404);
      expectNothingOf(patch, 'secret-alice-lab');
      const put = await app.request({ method: 'PUT', url: `/fhir/Observation/${ids.aliceLab}`, payload: { ...observation(ids.alice, '2339-0', 'laboratory'), id: ids.aliceLab }, headers: granular });
      expect(put.statusCode).to.equal(403);
      expectNothingOf(put, 'secret-alice-lab');
      const del = await app.request({ method: 'DELETE', url: `/fhir/Observation/${ids.aliceLab}`, headers: granular });
      expect(del.statusCode).to.equal(403);
      expect(await versionOf('Observation', ids.aliceLab)).to.equal(before);
      // What it may read, it patches.
      const ok = await app.request({ method: 'PATCH', url: `/fhir/Observation/${ids.aliceHr}`, payload: [{ op: 'replace', path: '/status', value: 'amended' }], headers: { ...granular, 'content-type': 'application/json-patch+json' } });
      expect(ok.statusCode).to.equal(200);
    });
  });
});
