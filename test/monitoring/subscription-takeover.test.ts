import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { subscriber, until } from '../helpers/hook';
import { type SecuredServer, startSecuredServer } from '../security/helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const SECRET = 'EHR-WEBHOOK-SECRET-42';
const CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';
/** Long enough for a notification that was going to come to have come (retries every 100 ms and up, polls every second). */
const QUIET_MS = 1500;
const HIDDEN_KEPT_ONLY = /kept only by the Subscription's subscriber at the same endpoint/;

/**
 * Decision 033: a hidden header value stays with whom it was given by, where it was given for. A
 * probe took over an EHR's rest-hook Subscription as a clinician allowed to update Subscriptions:
 * it sent the masked header back with its own endpoint, and received the EHR's webhook secret and
 * the notifications queued under the EHR's grant. All over HTTP.
 */
describe('a Subscription taken over keeps neither its secret nor its queue', () => {
  let app: SecuredServer;
  let ehr: Record<string, string>;
  let clinician: Record<string, string>;
  let colleague: Record<string, string>;
  let operations: Record<string, string>;
  let patient: string;

  before(async () => {
    app = await startSecuredServer({ SUBSCRIPTION_RETRY_BASE: '100ms', SUBSCRIPTION_ALLOW_PRIVATE_NETWORKS: 'true' });
    ehr = await app.as('system/Subscription.cruds system/Observation.rs', { clientId: 'ehr-backend' });
    // May update any Subscription, and read only vital signs: its rights differ from the EHR's.
    clinician = await app.as(`user/Subscription.cruds user/Observation.rs?category=${CATEGORY}|vital-signs`, { fhirUser: 'Practitioner/drx', clientId: 'dashboard' });
    // Another user of the same app.
    colleague = await app.as('user/Subscription.cruds user/Observation.rs', { fhirUser: 'Practitioner/dry', clientId: 'dashboard' });
    // A backend service of the operator, which administers Subscriptions: vital signs only, as the clinician.
    operations = await app.as(`system/Subscription.cruds system/Observation.rs?category=${CATEGORY}|vital-signs`, { clientId: 'ops-backend' });
    patient = await app.create({ resourceType: 'Patient', name: [{ family: 'Takeover' }] });
  });
  after(() => app.stop());

  const subscribe = async (endpoint: string): Promise<string> => {
    const res = await app.request({
      method: 'POST', url: '/fhir/Subscription', headers: ehr,
      payload: {
        resourceType: 'Subscription', status: 'requested', reason: 'EHR inbound', criteria: `Observation?patient=Patient/${patient}`,
        channel: { type: 'rest-hook', endpoint, payload: 'application/fhir+json', header: [`Authorization: Bearer ${SECRET}`] },
      },
    });
    expect(res.statusCode, res.payload).to.equal(201);
    return res.json.id as string;
  };
  const read = async (id: string) => (await app.request({ method: 'GET', url: `/fhir/Subscription/${id}`, headers: ehr })).json;
  const put = (id: string, headers: Record<string, string>, payload: Record<string, unknown>) => app.request({ method: 'PUT', url: `/fhir/Subscription/${id}`, headers, payload });
  /** The resource sent back with its channel changed as `channel` says (read-modify-write). */
  const withChannel = (sub: Record<string, any>, channel: Record<string, unknown>) => ({ ...sub, channel: { ...sub.channel, ...channel } });
  const reading = (category: string, value: number) => app.create({
    resourceType: 'Observation', status: 'final', category: [{ coding: [{ system: CATEGORY, code: category }] }],
    code: { coding: [{ system: 'http://loinc.org', code: '9279-1' }] }, subject: { reference: `Patient/${patient}` },
    effectiveDateTime: new Date().toISOString(), valueQuantity: { value, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
  });
  const queued = async (id: string) => (await app.ctx.db.query('SELECT 1 FROM monitoring_delivery WHERE subscription_id = $1', [id])).rows.length;
  const ids = (hook: { received: Array<{ body: string }> }) => hook.received.map((r) => JSON.parse(r.body).id as string);
  const quiet = () => new Promise((r) => setTimeout(r, QUIET_MS));
  const refused = (res: { statusCode: number; payload: string; json: any }, what: string) => {
    expect(res.statusCode, `${what}: ${res.payload}`).to.equal(422);
    expect(res.json.resourceType).to.equal('OperationOutcome');
    expect(res.json.issue[0].expression, what).to.equal(['Subscription.channel.header']);
    expect(res.json.issue[0].diagnostics, what).to.match(HIDDEN_KEPT_ONLY);
  };

  it('another user may not change it at all (403), with their endpoint or the same one; nothing reaches them and the stored version stays', async () => {
    const owners = await subscriber();
    const theirs = await subscriber();
    const id = await subscribe(owners.url);
    try {
      const stored = await read(id);
      for (const [what, res] of [
        ['their endpoint', await put(id, clinician, withChannel(stored, { endpoint: theirs.url }))],
        // At the same endpoint they would become the subscriber of the EHR's secret.
        ['the same endpoint', await put(id, clinician, { ...stored, reason: 'mine now' })],
      ] as const) {
        // Refused before anything else is judged: another subscriber's Subscription is not theirs to read (decisions 031, 032).
        expect(res.statusCode, `${what}: ${res.payload}`).to.equal(403);
        expect(res.json.issue[0].diagnostics).to.contain(`may not read Subscription/${id}`);
      }
      expect(await read(id)).to.equal(stored);

      const obs = await reading('vital-signs', 20);
      await until('the notification at the EHR', () => ids(owners).includes(obs));
      expect(owners.received[0]!.headers.authorization).to.equal(`Bearer ${SECRET}`);
      await quiet();
      expect(theirs.attempts).to.equal(0);
    } finally {
      await app.request({ method: 'DELETE', url: `/fhir/Subscription/${id}`, headers: ehr });
      await owners.close();
      await theirs.close();
    }
  });

  it('the subscriber itself moving to another endpoint sends the value again; the mask alone is refused', async () => {
    const old = await subscriber();
    const moved = await subscriber();
    const id = await subscribe(old.url);
    try {
      const stored = await read(id);
      refused(await put(id, ehr, withChannel(stored, { endpoint: moved.url })), 'the mask at another endpoint');
      expect(await read(id)).to.equal(stored);

      const resent = await put(id, ehr, withChannel(stored, { endpoint: moved.url, header: [`Authorization: Bearer ${SECRET}`] }));
      expect(resent.statusCode, resent.payload).to.equal(200);
      expect(resent.json.meta.versionId).to.equal('2');
      const obs = await reading('laboratory', 21);
      await until('the notification at the new endpoint', () => ids(moved).includes(obs));
      expect(moved.received[0]!.headers.authorization).to.equal(`Bearer ${SECRET}`);
      expect(old.attempts).to.equal(0);
    } finally {
      await app.request({ method: 'DELETE', url: `/fhir/Subscription/${id}`, headers: ehr });
      await old.close();
      await moved.close();
    }
  });

  /**
   * A notification queued for the EHR (its endpoint answering 503, so it waits for a retry), then
   * `change` made: the queue is empty in the same write, and once the endpoints answer, none of the
   * queued notifications arrives anywhere; new readings do, under the rights of the one `subscribed`.
   */
  async function queueDroppedBy(change: (id: string, stored: Record<string, any>, moved: string) => Promise<void>, subscribed: 'the EHR' | 'the clinician') {
    let failing = true;
    const old = await subscriber(() => (failing ? 503 : 200));
    const moved = await subscriber();
    const id = await subscribe(old.url);
    try {
      const waiting = await reading('vital-signs', 30);
      await until('a failed attempt', () => old.attempts >= 1);
      expect(await queued(id)).to.equal(1);
      await change(id, await read(id), moved.url);
      expect(await queued(id)).to.equal(0);
      failing = false;

      const lab = await reading('laboratory', 31);
      const vital = await reading('vital-signs', 32);
      await until('a notification after the change', () => ids(old).includes(vital) || ids(moved).includes(vital));
      await quiet();
      const delivered = [...ids(old), ...ids(moved)];
      expect(delivered).to.not.include(waiting);
      // The clinician reads vital signs only; the EHR every category.
      expect(delivered.includes(lab)).to.equal(subscribed === 'the EHR');
      return { old, moved };
    } finally {
      await app.request({ method: 'DELETE', url: `/fhir/Subscription/${id}`, headers: ehr });
      await old.close();
      await moved.close();
    }
  }

  it("the operator's backend service rotating the header keeps the EHR as subscriber: the queued notification and new readings reach the EHR's endpoint under the EHR's rights, with the new value", async () => {
    let failing = true;
    const hook = await subscriber(() => (failing ? 503 : 200));
    const id = await subscribe(hook.url);
    try {
      const waiting = await reading('vital-signs', 35);
      await until('a failed attempt', () => hook.attempts >= 1);
      const res = await put(id, operations, withChannel(await read(id), { header: ['Authorization: Bearer OPERATIONS-OWN'] }));
      expect(res.statusCode, res.payload).to.equal(200);
      // Same subscriber, same address: nothing queued is dropped (decision 033).
      expect(await queued(id)).to.equal(1);
      failing = false;
      // The operator reads vital signs only; the EHR, still the subscriber, every category.
      const labResult = await reading('laboratory', 36);
      await until('both notifications', () => ids(hook).includes(waiting) && ids(hook).includes(labResult));
      expect(hook.received.map((r) => r.headers.authorization)).to.equal(['Bearer OPERATIONS-OWN', 'Bearer OPERATIONS-OWN']);
    } finally {
      await app.request({ method: 'DELETE', url: `/fhir/Subscription/${id}`, headers: ehr });
      await hook.close();
    }
  });

  it("a colleague may neither delete nor turn off nor take over a clinician's Subscription (403, or 404 to a PATCH; nothing written); its subscriber and the operator's backend service may", async () => {
    const hook = await subscriber();
    try {
      const created = await app.request({
        method: 'POST', url: '/fhir/Subscription', headers: clinician,
        payload: { resourceType: 'Subscription', status: 'requested', reason: 'my alerts', criteria: `Observation?patient=Patient/${patient}`, channel: { type: 'rest-hook', endpoint: hook.url, payload: 'application/fhir+json' } },
      });
      expect(created.statusCode, created.payload).to.equal(201);
      const id = created.json.id as string;
      const stored = (await app.request({ method: 'GET', url: `/fhir/Subscription/${id}`, headers: clinician })).json;
      const attempts = [
        await app.request({ method: 'DELETE', url: `/fhir/Subscription/${id}`, headers: colleague }),
        await put(id, colleague, { ...stored, status: 'off' }),
        await put(id, colleague, { ...stored, reason: 'mine now' }),
        await app.request({ method: 'PATCH', url: `/fhir/Subscription/${id}`, headers: { ...colleague, 'content-type': 'application/json-patch+json' }, payload: [{ op: 'replace', path: '/status', value: 'off' }] }),
      ];
      // Not theirs to read (decision 032): a PATCH is the 404 of an unknown id, a blind PUT or DELETE 403 (decision 031).
      expect(attempts.map((r) => r.statusCode)).to.equal([403, 403, 403, 404]);
      expect((await app.request({ method: 'GET', url: `/fhir/Subscription/${id}`, headers: colleague })).statusCode).to.equal(404);
      const after = await app.request({ method: 'GET', url: `/fhir/Subscription/${id}`, headers: clinician });
      expect([after.json.meta.versionId, after.json.status]).to.equal([stored.meta.versionId, 'active']);
      // Its alerts still go out.
      const obs = await reading('vital-signs', 40);
      await until('the clinician\'s notification', () => ids(hook).includes(obs));

      expect((await put(id, operations, { ...stored, status: 'off' })).statusCode).to.equal(200);
      // The operator's update kept the clinician as subscriber (decision 032): still the clinician's to delete.
      expect((await app.request({ method: 'DELETE', url: `/fhir/Subscription/${id}`, headers: clinician })).statusCode).to.equal(204);

      const own = await app.request({
        method: 'POST', url: '/fhir/Subscription', headers: clinician,
        payload: { resourceType: 'Subscription', status: 'requested', reason: 'mine', criteria: `Observation?patient=Patient/${patient}`, channel: { type: 'rest-hook', endpoint: hook.url, payload: 'application/fhir+json' } },
      });
      expect((await app.request({ method: 'DELETE', url: `/fhir/Subscription/${own.json.id}`, headers: clinician })).statusCode).to.equal(204);
    } finally {
      await hook.close();
    }
  });

  it('notifications queued for the old endpoint are not delivered to the new one', async () => {
    const { old, moved } = await queueDroppedBy(async (id, stored, endpoint) => {
      const res = await put(id, ehr, withChannel(stored, { endpoint, header: [`Authorization: Bearer ${SECRET}`] }));
      expect(res.statusCode, res.payload).to.equal(200);
    }, 'the EHR');
    expect(old.received).to.have.length(0);
    expect(moved.received.map((r) => r.headers.authorization)).to.equal([`Bearer ${SECRET}`, `Bearer ${SECRET}`]);
  });
});
