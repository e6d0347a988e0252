import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { subscriber, until } from '../helpers/hook';
import { type SecuredServer, startSecuredServer } from '../security/helpers';
import { tagSubscriptionsStoredUntagged } from '../../src/monitoring/subscriber-backfill';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';
const SUBSCRIBER = 'http://rpm.example.org/fhir/CodeSystem/subscriber';

/**
 * Decision 032, "Only the subscriber reads a Subscription": who reads, who changes, and under whose
 * grant an administrator's update leaves it; and notifications of criteria wider than a granular
 * grant. All over HTTP, with real rest-hook receivers.
 */
describe('a Subscription is its subscriber\'s (and the operator\'s) to read and change', () => {
  let app: SecuredServer;
  let clinician: Record<string, string>;
  let colleague: Record<string, string>;
  let operations: Record<string, string>;
  let patient: string;

  before(async () => {
    app = await startSecuredServer({ SUBSCRIPTION_RETRY_BASE: '100ms', SUBSCRIPTION_ALLOW_PRIVATE_NETWORKS: 'true' });
    // Reads vital signs only (SMART v2 granular scope).
    clinician = await app.as(`user/Subscription.cruds user/Observation.rs?category=${CATEGORY}|vital-signs`, { fhirUser: 'Practitioner/sa-drx', clientId: 'dashboard' });
    // Another user of the same app, who may read every Observation and every Subscription the policy lets them.
    colleague = await app.as('user/Subscription.cruds user/Observation.rs user/Basic.cruds', { fhirUser: 'Practitioner/sa-dry', clientId: 'dashboard' });
    // The operator's backend service: administers Subscriptions, reads every Observation.
    operations = await app.as('system/Subscription.cruds system/Observation.rs', { clientId: 'sa-ops-backend' });
    patient = await app.create({ resourceType: 'Patient', name: [{ family: 'SubscriptionAccess' }] });
  });
  after(() => app.stop());

  const subscribe = async (headers: Record<string, string>, endpoint: string, criteria = `Observation?patient=Patient/${patient}`, extra: Record<string, unknown> = {}) => {
    const res = await app.request({
      method: 'POST', url: '/fhir/Subscription', headers,
      payload: { resourceType: 'Subscription', status: 'requested', reason: 'alerts', criteria, channel: { type: 'rest-hook', endpoint, payload: 'application/fhir+json' }, ...extra },
    });
    expect(res.statusCode, res.payload).to.equal(201);
    return res.json.id as string;
  };
  const get = (url: string, headers: Record<string, string>) => app.request({ method: 'GET', url, headers });
  const reading = (category: string, value: number) => app.create({
    resourceType: 'Observation', status: 'final', category: [{ coding: [{ system: CATEGORY, code: category }] }],
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] }, subject: { reference: `Patient/${patient}` },
    effectiveDateTime: new Date().toISOString(), valueQuantity: { value, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
  });
  const ids = (hook: { received: Array<{ body: string }> }) => hook.received.map((r) => JSON.parse(r.body).id as string);
  const entryIds = (bundle: any) => (bundle.entry ?? []).map((e: any) => e.resource?.id as string);
  const owner = async (id: string) => (await app.ctx.db.query<{ client_id: string; subject: string | null }>('SELECT client_id, subject FROM subscription_owner WHERE subscription_id = $1', [id])).rows[0];

  it("a colleague finds another user's Subscription at no read door: the 404 of an unknown id, empty searches and history; its subscriber and the operator read it", async () => {
    const hook = await subscriber();
    try {
      const id = await subscribe(clinician, hook.url);
      const unknown = '0196a0a0-0000-7000-8000-00000000dead';
      const notFound = async (url: string) => {
        const res = await get(url, colleague);
        expect(res.statusCode, `${url}: ${res.payload}`).to.equal(404);
        // Word for word the answer for an id never used.
        const never = await get(url.replace(id, unknown), colleague);
        expect(res.json.issue[0].diagnostics.replace(id, unknown), url).to.equal(never.json.issue[0].diagnostics);
      };
      await notFound(`/fhir/Subscription/${id}`);
      await notFound(`/fhir/Subscription/${id}/_history/1`);
      await notFound(`/fhir/Subscription/${id}/_history`);
      // The history of every Subscription is not the history of one's own: refused whatever exists, as to a granular token.
      expect((await get('/fhir/Subscription/_history', colleague)).statusCode).to.equal(403);
      for (const url of [`/fhir/Subscription?_id=${id}`, '/fhir/Subscription', `/fhir?_type=Subscription&_id=${id}`]) {
        const res = await get(url, colleague);
        expect(res.statusCode, `${url}: ${res.payload}`).to.equal(200);
        expect(entryIds(res.json), url).to.not.include(id);
      }
      // Reached from another resource: an include, a chain (which would otherwise be an oracle of its content).
      const note = await app.request({ method: 'POST', url: '/fhir/Basic', headers: colleague, payload: { resourceType: 'Basic', code: { text: 'pointer' }, subject: { reference: `Subscription/${id}` } } });
      expect(note.statusCode, note.payload).to.equal(201);
      const included = await get(`/fhir/Basic?_id=${note.json.id}&_include=Basic:subject`, colleague);
      expect([included.statusCode, entryIds(included.json)]).to.equal([200, [note.json.id]]);
      const chained = await get(`/fhir/Basic?_id=${note.json.id}&subject:Subscription.status=active`, colleague);
      expect([chained.statusCode, entryIds(chained.json)]).to.equal([200, []]);
      const batch = await app.request({
        method: 'POST', url: '/fhir', headers: colleague,
        payload: { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: `Subscription/${id}` } }, { request: { method: 'GET', url: `Subscription?_id=${id}` } }] },
      });
      expect(batch.statusCode, batch.payload).to.equal(200);
      expect(batch.json.entry[0].response.status).to.match(/^404/);
      expect(entryIds(batch.json.entry[1].resource)).to.equal([]);
      // Nor by binding to it, patching it (404, decision 031) or replacing it (403 without reading it).
      expect((await get(`/fhir/Subscription/${id}/$get-ws-binding-token`, colleague)).statusCode).to.equal(404);
      const patched = await app.request({ method: 'PATCH', url: `/fhir/Subscription/${id}`, headers: { ...colleague, 'content-type': 'application/json-patch+json' }, payload: [{ op: 'replace', path: '/status', value: 'off' }] });
      expect(patched.statusCode, patched.payload).to.equal(404);

      for (const who of [clinician, operations]) {
        const read = await get(`/fhir/Subscription/${id}`, who);
        expect(read.statusCode, read.payload).to.equal(200);
        expect(read.json.meta.tag).to.equal([{ system: SUBSCRIBER, code: 'dashboard practitioner-sa-drx', display: 'subscriber (client and user) of this Subscription' }]);
        expect(entryIds((await get(`/fhir/Subscription?_id=${id}`, who)).json)).to.equal([id]);
        expect(entryIds((await get(`/fhir/Subscription/${id}/_history`, who)).json)).to.equal([id]);
      }
    } finally {
      await hook.close();
    }
  });

  it("a tag naming another subscriber, sent by the writer, is replaced by the writer's own: it reaches no one else's reads", async () => {
    const hook = await subscriber();
    try {
      const id = await subscribe(colleague, hook.url, undefined, { meta: { tag: [{ system: SUBSCRIBER, code: 'dashboard practitioner-sa-drx' }, { system: 'urn:other', code: 'kept' }] } });
      const read = await get(`/fhir/Subscription/${id}`, colleague);
      expect(read.json.meta.tag).to.equal([{ system: 'urn:other', code: 'kept' }, { system: SUBSCRIBER, code: 'dashboard practitioner-sa-dry', display: 'subscriber (client and user) of this Subscription' }]);
      expect((await get(`/fhir/Subscription/${id}`, clinician)).statusCode).to.equal(404);
      expect((await app.request({ method: 'DELETE', url: `/fhir/Subscription/${id}`, headers: colleague })).statusCode).to.equal(204);
    } finally {
      await hook.close();
    }
  });

  it("the operator's update keeps the clinician as subscriber: notified under the clinician's grant (no laboratory result), still the clinician's to read and delete", async () => {
    const hook = await subscriber();
    try {
      const id = await subscribe(clinician, hook.url);
      const stored = (await get(`/fhir/Subscription/${id}`, operations)).json;
      const updated = await app.request({ method: 'PUT', url: `/fhir/Subscription/${id}`, headers: operations, payload: { ...stored, reason: 'corrected by the operator' } });
      expect(updated.statusCode, updated.payload).to.equal(200);
      expect(updated.json.meta.tag).to.equal(stored.meta.tag);
      expect(await owner(id)).to.equal({ client_id: 'dashboard', subject: 'practitioner-sa-drx' });

      const labResult = await reading('laboratory', 50);
      const vital = await reading('vital-signs', 51);
      await until('the vital sign at the clinician\'s hook', () => ids(hook).includes(vital));
      expect(ids(hook)).to.not.include(labResult);

      const read = await get(`/fhir/Subscription/${id}`, clinician);
      expect([read.statusCode, read.json.reason]).to.equal([200, 'corrected by the operator']);
      expect((await app.request({ method: 'DELETE', url: `/fhir/Subscription/${id}`, headers: clinician })).statusCode).to.equal(204);
    } finally {
      await hook.close();
    }
  });

  it("one stored before the subscriber tag is the operator's to read; the operator's update stamps the recorded subscriber's tag, and it is the clinician's again", async () => {
    const hook = await subscriber();
    try {
      const id = await subscribe(clinician, hook.url);
      // As stored before this release: no tag in any version, no index row for it.
      await app.ctx.db.query(`UPDATE subscription SET content = content #- '{meta,tag}' WHERE id = $1`, [id]);
      await app.ctx.db.query(`UPDATE subscription_history SET content = content #- '{meta,tag}' WHERE id = $1`, [id]);
      await app.ctx.db.query(`DELETE FROM subscription_token WHERE id = $1 AND param = '_tag'`, [id]);
      expect((await get(`/fhir/Subscription/${id}`, clinician)).statusCode).to.equal(404);

      const stored = (await get(`/fhir/Subscription/${id}`, operations)).json;
      expect(stored.meta.tag).to.not.exist();
      const updated = await app.request({ method: 'PUT', url: `/fhir/Subscription/${id}`, headers: operations, payload: { ...stored, reason: 'tagged by the operator' } });
      expect(updated.statusCode, updated.payload).to.equal(200);
      expect(updated.json.meta.tag[0].code).to.equal('dashboard practitioner-sa-drx');
      expect(await owner(id)).to.equal({ client_id: 'dashboard', subject: 'practitioner-sa-drx' });
      expect((await get(`/fhir/Subscription/${id}`, clinician)).statusCode).to.equal(200);
      expect((await get(`/fhir/Subscription/${id}`, colleague)).statusCode).to.equal(404);
      expect((await app.request({ method: 'DELETE', url: `/fhir/Subscription/${id}`, headers: clinician })).statusCode).to.equal(204);
    } finally {
      await hook.close();
    }
  });

  it('the periodic upkeep tags the Subscriptions stored before the tag with their recorded subscriber, once', async () => {
    const hook = await subscriber();
    try {
      const id = await subscribe(clinician, hook.url);
      await app.ctx.db.query(`UPDATE subscription SET content = content #- '{meta,tag}' WHERE id = $1`, [id]);
      await app.ctx.db.query(`DELETE FROM subscription_token WHERE id = $1 AND param = '_tag'`, [id]);
      expect((await get(`/fhir/Subscription/${id}`, clinician)).statusCode).to.equal(404);

      expect(await tagSubscriptionsStoredUntagged(app.ctx)).to.be.at.least(1);
      const read = await get(`/fhir/Subscription/${id}`, clinician);
      expect(read.statusCode).to.equal(200);
      expect(read.json.meta.tag).to.equal([{ system: SUBSCRIBER, code: 'dashboard practitioner-sa-drx', display: 'subscriber (client and user) of this Subscription' }]);
      expect(read.json.meta.versionId).to.equal('2');
      expect(await owner(id)).to.equal({ client_id: 'dashboard', subject: 'practitioner-sa-drx' });
      // Tagged, it is not asked again: no version per run.
      await tagSubscriptionsStoredUntagged(app.ctx);
      expect((await get(`/fhir/Subscription/${id}`, clinician)).json.meta.versionId).to.equal('2');
    } finally {
      await hook.close();
    }
  });

  it('criteria wider than a granular grant are accepted as a search would be, and notify only what the grant reads', async () => {
    const labHook = await subscriber();
    const allHook = await subscriber();
    try {
      // Laboratory results the clinician's vital-signs grant can never read.
      const labs = await subscribe(clinician, labHook.url, `Observation?patient=Patient/${patient}&category=${CATEGORY}|laboratory`);
      const all = await subscribe(clinician, allHook.url);
      const search = await get(`/fhir/Observation?patient=Patient/${patient}&category=${CATEGORY}|laboratory`, clinician);
      expect([search.statusCode, entryIds(search.json)]).to.equal([200, []]);

      const labResult = await reading('laboratory', 60);
      const vital = await reading('vital-signs', 61);
      await until('the vital sign', () => ids(allHook).includes(vital));
      // Nothing was queued for the laboratory criteria: the queue row would be written with the reading.
      const queuedForLabs = await app.ctx.db.query('SELECT 1 FROM monitoring_delivery WHERE subscription_id = $1', [labs]);
      expect(queuedForLabs.rows).to.have.length(0);
      expect(labHook.attempts).to.equal(0);
      expect(ids(allHook)).to.equal([vital]);
      // The full resource went along: the clinician may read it.
      expect(JSON.parse(allHook.received[0]!.body).resourceType).to.equal('Observation');
      expect(labResult).to.exist();
      for (const id of [labs, all]) await app.request({ method: 'DELETE', url: `/fhir/Subscription/${id}`, headers: clinician });
    } finally {
      await labHook.close();
      await allHook.close();
    }
  });
});
