import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { subscriber, until } from '../helpers/hook';
import { startTestServer, type TestServer } from '../helpers/server';
import { create, patient, request } from './helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const DOSE_DUE = 'http://rpm.example.org/fhir/StructureDefinition/reminder-dose-due';

describe('medication reminders', () => {
  let app: TestServer;
  before(async () => {
    // The reminder job every 200 ms, reminding 10 minutes ahead; the subscriber is on loopback.
    app = await startTestServer({ MEDICATION_REMINDER_INTERVAL: '200ms', MEDICATION_REMINDER_LEAD: '10m', SUBSCRIPTION_ALLOW_PRIVATE_NETWORKS: 'true', SUBSCRIPTION_RETRY_BASE: '100ms' });
  });
  after(() => app?.stop());

  it('a reminder reaches the patient\'s subscriber before the dose is due, once per dose', async () => {
    const hook = await subscriber();
    const p = (await create(app, patient('UTC'))).id;
    const sub = await create(app, {
      resourceType: 'Subscription', status: 'requested', reason: 'home tablet reminders', criteria: `Communication?category=reminder&patient=Patient/${p}`,
      channel: { type: 'rest-hook', endpoint: hook.url, payload: 'application/fhir+json' },
    });
    try {
      // Due five whole minutes from now (UTC wall clock: the patient's zone).
      const dueAt = new Date(Math.ceil((Date.now() + 5 * 60_000) / 60_000) * 60_000);
      const time = dueAt.toISOString().slice(11, 19);
      const rx = (await create(app, request(p, { repeat: { frequency: 1, period: 1, periodUnit: 'd', timeOfDay: [time] } }))).id;
      const received = await until('the reminder', () => hook.received[0]);
      const arrived = Date.now();
      const reminder = JSON.parse(received.body);
      expect(reminder.resourceType).to.equal('Communication');
      expect(reminder.subject.reference).to.equal(`Patient/${p}`);
      expect(reminder.about[0].reference).to.equal(`MedicationRequest/${rx}`);
      expect(reminder.category[0].coding[0].code).to.equal('reminder');
      const due = reminder.extension.find((e: any) => e.url === DOSE_DUE).valueDateTime;
      expect(Date.parse(due)).to.equal(dueAt.getTime());
      expect(arrived).to.be.below(dueAt.getTime());
      expect(reminder.payload[0].contentString).to.contain('Metformin 500 mg');
      // Several job runs later, still one reminder for that dose.
      await new Promise((r) => setTimeout(r, 1000));
      expect(hook.received).to.have.length(1);
      const stored = await app.request({ method: 'GET', url: `/fhir/Communication?patient=Patient/${p}` });
      expect(stored.json.entry).to.have.length(1);
    } finally {
      await app.request({ method: 'DELETE', url: `/fhir/Subscription/${sub.id}` });
      await hook.close();
    }
  });
});
