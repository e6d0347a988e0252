import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { planWithHighSystolic } from '../helpers/monitoring-plan';
import type { TestServer } from '../helpers/server';
import { FakeWithings, type MeasureGroup } from './fake-withings';
import { accountState, flagsOf, linkAccount, newPatient, observationsOf, startConnectedServer, synced } from './connector';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/*
 * Withings `attrib` of a measure group (research/withings-connector.md §1.1 and §2, from Withings'
 * OpenAPI `measuregrp_object`): 0 and 8 measured by a device for this user, 1 measured by a device
 * but the user is ambiguous (a shared cuff or scale), 2 and 4 entered by hand, 7 confirmed by the
 * user. An ambiguous group is confirmed in the Withings app; getmeas then answers it again (its
 * `modified` moves, so `lastupdate` finds it) with the new attrib.
 */
const AMBIGUOUS = 1;
const DEVICE = 0;
const MANUAL = 2;

const WITHINGS_ATTRIB = 'https://withings.com/attrib';
const UNCONFIRMED = { system: 'http://rpm.example.org/fhir/CodeSystem/reading-attribution', code: 'unconfirmed-subject' };
const now = () => Math.floor(Date.now() / 1000);
const isPanel = (o: any) => o.code.coding[0].code === '85354-9';
const limitFlags = async (app: TestServer, patient: string) => (await flagsOf(app, patient)).filter((f) => f.code.coding[0].code === 'limit-high');
const details = (flag: any) => flag.extension.filter((e: any) => e.url.endsWith('flag-detail')).map((e: any) => e.valueReference.reference);
const attribOf = (o: any) => o.meta.tag.find((t: any) => t.system === WITHINGS_ATTRIB)?.code;
const tagged = (o: any, tag: { system: string; code: string }) => o.meta.tag.some((t: any) => t.system === tag.system && t.code === tag.code);

describe('Withings connector: readings of an ambiguous user (attrib 1)', () => {
  let fake: FakeWithings;
  let app: TestServer & { origin: string };

  before(async () => {
    fake = await new FakeWithings().start();
    app = await startConnectedServer(fake);
  });
  after(async () => {
    await app.stop();
    await fake.stop();
  });

  /** A patient with a systolic limit of 140 mm[Hg], linked to Withings user `userid`, synced once. */
  async function monitoredPatient(userid: number): Promise<{ patient: string; account: string }> {
    const patient = await newPatient(app);
    expect((await app.request({ method: 'POST', url: '/fhir/CarePlan', payload: planWithHighSystolic(patient) })).statusCode).to.equal(201);
    const account = await linkAccount(app, fake, patient, userid);
    await synced(app, account, 0);
    return { patient, account };
  }

  /** The operator asks for a sync now; answers the account's state once it is done. */
  async function syncNow(account: string): Promise<any> {
    const asked = Date.now();
    expect((await app.request({ method: 'POST', url: `/withings/accounts/${account}/sync` })).statusCode).to.equal(202);
    return synced(app, account, asked);
  }

  /** What Withings does when the user says in its app whose the group is. */
  function confirm(group: MeasureGroup, attrib: number): void {
    group.attrib = attrib;
    group.modified = now();
  }

  it('stores a shared cuff\'s reading of an ambiguous user as preliminary and raises no Flag; confirmed, it becomes final (version 2) and raises the Flag', async () => {
    const userid = 7301;
    const { patient, account } = await monitoredPatient(userid);
    const group = fake.bloodPressure(userid, 180, 95, 70, now() - 120);
    group.attrib = AMBIGUOUS;
    let state = await syncNow(account);
    expect(state.lastError).to.not.exist();

    const readings = await observationsOf(app, patient);
    expect(readings.length).to.equal(2); // the panel and the pulse: kept, visible on the patient's chart
    for (const o of readings) {
      expect(o.status).to.equal('preliminary');
      expect(attribOf(o)).to.equal('1');
      expect(tagged(o, UNCONFIRMED)).to.be.true();
    }
    const preliminary = readings.find(isPanel);
    expect(preliminary.component[0].valueQuantity.value).to.equal(180);
    expect(preliminary.component[0].interpretation).to.not.exist(); // not judged against the plan's limits
    expect(await limitFlags(app, patient)).to.equal([]);

    // The user confirms the reading as theirs: the next sync completes the stored one.
    confirm(group, DEVICE);
    state = await syncNow(account);
    expect(state.lastError).to.not.exist();
    expect(state.readingsRefused).to.equal(0);
    const confirmed = await observationsOf(app, patient);
    expect(confirmed.length).to.equal(2); // the same readings, not new ones
    const panel = confirmed.find(isPanel);
    expect(panel.id).to.equal(preliminary.id);
    expect(panel.status).to.equal('final');
    expect(panel.meta.versionId).to.equal('2');
    expect(attribOf(panel)).to.equal('0');
    expect(tagged(panel, UNCONFIRMED)).to.be.false();
    expect(panel.component[0].interpretation[0].coding[0].code).to.equal('H'); // judged now
    const history = await app.request({ method: 'GET', url: `/fhir/Observation/${panel.id}/_history` });
    expect(history.json.entry.map((e: any) => [e.resource.meta.versionId, e.resource.status])).to.equal([['2', 'final'], ['1', 'preliminary']]);
    expect(history.json.entry[0].request.method).to.equal('PUT');
    const flags = await limitFlags(app, patient);
    expect(flags.length).to.equal(1);
    expect(flags[0].status).to.equal('active');
    expect(details(flags[0])).to.equal([`Observation/${panel.id}`]);

    // Answered again later, even as ambiguous once more: the confirmed reading stands, nothing doubles.
    confirm(group, AMBIGUOUS);
    state = await syncNow(account);
    expect(state.readingsRefused).to.equal(0);
    const after = (await observationsOf(app, patient)).find(isPanel);
    expect([after.status, after.meta.versionId]).to.equal(['final', '2']);
    expect((await limitFlags(app, patient)).map((f) => f.extension.find((e: any) => e.url.endsWith('flag-event-count')).valueInteger)).to.equal([1]);
  });

  it('judges a manual entry (attrib 2) at once, as before, beside an ambiguous reading that raises nothing', async () => {
    const userid = 7302;
    const { patient, account } = await monitoredPatient(userid);
    const manual = fake.bloodPressure(userid, 170, 92, undefined, now() - 300);
    manual.attrib = MANUAL;
    const ambiguous = fake.bloodPressure(userid, 185, 96, undefined, now() - 200);
    ambiguous.attrib = AMBIGUOUS;
    await syncNow(account);

    const panels = (await observationsOf(app, patient)).filter(isPanel);
    const entered = panels.find((o) => o.component[0].valueQuantity.value === 170);
    expect(entered.status).to.equal('final');
    expect(attribOf(entered)).to.equal('2');
    expect(entered.performer).to.equal([{ reference: `Patient/${patient}` }]); // entered by the patient
    expect(entered.component[0].interpretation[0].coding[0].code).to.equal('H');
    expect(panels.find((o) => o.component[0].valueQuantity.value === 185).status).to.equal('preliminary');
    const flags = await limitFlags(app, patient);
    expect(flags.length).to.equal(1);
    expect(details(flags[0])).to.equal([`Observation/${entered.id}`]); // the ambiguous 185 is no evidence of the patient's
  });

  it('answers each re-sent group at the Withings door: the same 200, completed 200 as version 2, changed 409', async () => {
    const patient = await newPatient(app);
    expect((await app.request({ method: 'POST', url: '/fhir/CarePlan', payload: planWithHighSystolic(patient) })).statusCode).to.equal(201);
    const date = now() - 600;
    const send = async (attrib: number, systolic = 178) => {
      const group = { grpid: 5150, attrib, date, created: date, modified: now(), category: 1, deviceid: `shared-cuff-${patient}`, measures: [{ value: systolic, type: 10, unit: 0 }, { value: 91, type: 9, unit: 0 }] };
      const res = await app.request({ method: 'POST', url: `/ingest/withings?patient=Patient/${patient}`, payload: { status: 0, body: { measuregrps: [group] } } });
      expect(res.statusCode).to.equal(200);
      const { status, location } = res.json.entry[0].response;
      return `${status} ${location?.split('/_history/')[1] ?? ''}`.trim();
    };
    expect(await send(AMBIGUOUS)).to.equal('201 Created 1');
    expect(await send(AMBIGUOUS)).to.equal('200 OK 1');
    expect(await limitFlags(app, patient)).to.equal([]);
    expect(await send(DEVICE, 179)).to.equal('409 Conflict'); // confirmed, but not the stored reading
    expect(await send(DEVICE)).to.equal('200 OK 2');
    expect((await limitFlags(app, patient)).length).to.equal(1);
    expect(await send(DEVICE)).to.equal('200 OK 2');
    expect(await send(AMBIGUOUS)).to.equal('200 OK 2');
    expect(await send(7, 179)).to.equal('409 Conflict');
    expect((await observationsOf(app, patient)).map((o) => [o.status, o.meta.versionId])).to.equal([['final', '2']]);
  });

  it('refuses a confirmed group whose values changed (409) and leaves the preliminary reading; a group given to another user stops arriving and stays preliminary', async () => {
    const userid = 7303;
    const { patient, account } = await monitoredPatient(userid);
    const changed = fake.bloodPressure(userid, 182, 94, undefined, now() - 400);
    changed.attrib = AMBIGUOUS;
    const elsewhere = fake.bloodPressure(userid, 190, 99, undefined, now() - 300);
    elsewhere.attrib = AMBIGUOUS;
    await syncNow(account);
    expect((await observationsOf(app, patient)).map((o) => o.status)).to.equal(['preliminary', 'preliminary']);

    // Confirmed with another value: not the stored reading completed, another reading under its identity.
    confirm(changed, 7);
    changed.measures[0]!.value = 183;
    // Given to another Withings user: that user's getmeas answers it, this one's no longer does.
    confirm(elsewhere, DEVICE);
    fake.groups.set(userid, fake.groups.get(userid)!.filter((g) => g !== elsewhere));
    fake.groups.set(7399, [elsewhere]);
    const state = await syncNow(account);
    expect(state.readingsRefused).to.equal(1); // the changed one (409: a different reading is stored)
    // The run ended well, and its refusal stays for the operator to read.
    expect(state.lastError).to.be.a.string();
    expect(state.lastError.startsWith('a reading was refused (409'), state.lastError).to.be.true();

    const panels = await observationsOf(app, patient);
    expect(panels.map((o) => [o.status, o.meta.versionId, o.component[0].valueQuantity.value]).sort()).to.equal([['preliminary', '1', 182], ['preliminary', '1', 190]]);
    expect(await limitFlags(app, patient)).to.equal([]);
  });
});
