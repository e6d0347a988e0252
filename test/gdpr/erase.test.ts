import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { verifyChain } from '../../src/audit';
import { pseudonym } from '../../src/kernel/pseudonym';
import { supportedTypes } from '../../src/kernel/resource-types';
import { canBeInPatientCompartment, indexTablesOf } from '../../src/search';
import { historyTableOf, tableOf } from '../../src/store/tables';
import { examplePlanFor } from '../helpers/monitoring-plan';
import { request as medicationRequest } from '../medication/helpers';
import { type SecuredServer, startSecuredServer } from '../security/helpers';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const KEY = 'erase-suite-pseudonym-key-0123456789abcdef';

/**
 * GDPR Art. 17 over HTTP: `POST Patient/{id}/$erase` removes the patient's whole compartment —
 * every version, every index row, and what each capability keeps about it (plans, schedules,
 * device identities, tokens) — in one transaction, leaves another patient untouched, and leaves
 * an audit record that names the patient only by a keyed pseudonym.
 */
describe('Patient/$erase', () => {
  let app: SecuredServer;
  let eraser: Record<string, string>;
  /** Every resource of each patient, as `Type/id`. */
  const records: Record<'alice' | 'bob', string[]> = { alice: [], bob: [] };
  const id: Record<string, string> = {};
  let aliceToken: Record<string, string>;

  const observation = (patient: string, value: number) => ({
    resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
    subject: { reference: `Patient/${patient}` }, effectiveDateTime: '2026-11-02T08:00:00Z',
    valueQuantity: { value, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
  });

  /** A patient with a record that reaches every capability: versions, a deleted reading, a plan, a Flag, a schedule, a device. */
  const recordOf = async (who: 'alice' | 'bob', family: string) => {
    const patient = await app.create({ resourceType: 'Patient', name: [{ family }], identifier: [{ system: 'urn:mrn', value: `${family}-mrn` }] });
    const add = (type: string, rid: string) => records[who].push(`${type}/${rid}`);
    add('Patient', patient);
    const updated = await app.create(observation(patient, 70));
    const put = await app.request({ method: 'PUT', url: `/fhir/Observation/${updated}`, payload: { ...observation(patient, 71), id: updated }, headers: app.system });
    expect(put.statusCode, put.payload).to.equal(200);
    add('Observation', updated);
    const deleted = await app.create(observation(patient, 72));
    expect([200, 204]).to.include((await app.request({ method: 'DELETE', url: `/fhir/Observation/${deleted}`, headers: app.system })).statusCode);
    add('Observation', deleted);
    id[`${who}Deleted`] = deleted;
    add('CarePlan', await app.create(examplePlanFor(patient, '2026-11-01T00:00:00Z') as unknown as Record<string, unknown>));
    add('Flag', await app.create({ resourceType: 'Flag', status: 'active', code: { text: 'call back' }, subject: { reference: `Patient/${patient}` } }));
    add('MedicationRequest', await app.create(medicationRequest(patient, { repeat: { frequency: 1, period: 1, periodUnit: 'd', timeOfDay: ['08:00:00'] } })));
    add('Device', await app.create({ resourceType: 'Device', status: 'active', identifier: [{ system: 'urn:serial', value: `${family}-cuff` }], patient: { reference: `Patient/${patient}` } }));
    return patient;
  };

  /** POST …/$erase with an empty Parameters body (an operation's POST carries one, R4 operations.html#request). */
  const erase = (url: string, headers: Record<string, string>) => app.request({ method: 'POST', url, headers, payload: { resourceType: 'Parameters' } });
  const idsOf = (who: 'alice' | 'bob', type: string) => records[who].filter((r) => r.startsWith(`${type}/`)).map((r) => r.split('/')[1]!);
  const count = async (sql: string, params: unknown[]) => Number((await app.ctx.db.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${sql}`, params)).rows[0]!.n);

  /**
   * The rows of a patient's resources in every table of every type that can be in a compartment:
   * current, history, and each index table as the search module lists them (by resource id, and
   * by the compartment key every index row carries).
   */
  const allRowsOf = async (who: 'alice' | 'bob') => {
    // Ids are UUIDs, unique across types: one list serves every table, and one statement per type counts its tables.
    const ids = records[who].map((r) => r.split('/')[1]!);
    const rows: Array<{ t: string; n: number }> = [];
    for (const type of supportedTypes.filter(canBeInPatientCompartment)) {
      const counts = [tableOf(type), historyTableOf(type)].map((table) => `SELECT '${table}' AS t, count(*)::int AS n FROM ${table} WHERE id = ANY($1::text[]) AND $2::text IS NOT NULL`);
      for (const table of indexTablesOf(type)) counts.push(`SELECT '${table}' AS t, count(*)::int AS n FROM ${table} WHERE id = ANY($1::text[]) OR patient = $2`);
      rows.push(...(await app.ctx.db.query<{ t: string; n: number }>(counts.join(' UNION ALL '), [ids, id[who]])).rows);
    }
    return { total: rows.reduce((sum, r) => sum + r.n, 0), nonZero: rows.filter((r) => r.n > 0).map((r) => `${r.t}: ${r.n}`) };
  };

  /** What the other capabilities keep about a patient, in their own tables. */
  const capabilityRows = async (who: 'alice' | 'bob') => ({
    plans: await count('monitoring_plan WHERE patient = $1', [id[who]]),
    schedules: await count('medication_schedule WHERE patient = $1', [id[who]]),
    tokens: await count('auth_token WHERE patient = $1', [id[who]]),
    devices: await count('device_identity WHERE device_id = ANY($1::text[])', [idsOf(who, 'Device')]),
    withings: await count('withings_account WHERE patient_id = $1', [id[who]]),
    exports: await count('bulk_export_job WHERE id = $1', [`export-of-${who}`]),
  });

  /**
   * A Withings link and a finished export of the patient, as the connector and the export worker
   * leave them (their own suites make them over HTTP; here only their erasure is at stake).
   */
  const linkAndExport = async (who: 'alice' | 'bob') => {
    await app.ctx.db.query(
      // Not due (relink-needed): no sync worker of another suite on this database claims it.
      `INSERT INTO withings_account (id, patient_id, withings_userid, status, access_token, refresh_token, access_expires_at)
       VALUES ($1, $2, $3, 'relink-needed', 'ciphertext', 'ciphertext', now())`,
      [`account-of-${who}`, id[who], String(Date.now() % 1e9) + (who === 'alice' ? '1' : '2')],
    );
    await app.ctx.db.query(
      `INSERT INTO bulk_export_job (id, client_id, status, request, spec, grant_scopes, grant_context, transaction_time)
       VALUES ($1, 'ehr', 'completed', 'x', '{}', '{}', '{}', now())`,
      [`export-of-${who}`],
    );
    const line = JSON.stringify({ resourceType: 'Observation', id: 'o', subject: { reference: `Patient/${id[who]}` } });
    await app.ctx.db.query(`INSERT INTO bulk_export_chunk (job_id, file, seq, count, ndjson) VALUES ($1, 'Observation', 0, 1, $2)`, [`export-of-${who}`, `${line}\n`]);
  };

  before(async () => {
    app = await startSecuredServer({ PSEUDONYM_KEY: KEY });
    eraser = await app.as('system/Patient.d', { clientId: 'dpo-console' });
    id.alice = await recordOf('alice', 'Erasealice');
    id.bob = await recordOf('bob', 'Erasebob');
    await linkAndExport('alice');
    await linkAndExport('bob');
    aliceToken = await app.as('patient/*.rs', { patient: id.alice });
    expect((await app.request({ method: 'GET', url: `/fhir/Patient/${id.alice}`, headers: aliceToken })).statusCode).to.equal(200);
    // Searches that find each patient by what identifies them: their requests go into the trail.
    for (const family of ['Erasealice', 'Erasebob']) {
      for (const url of [`/fhir/Patient?name=${family}`, `/fhir/Patient?identifier=urn:mrn|${family}-mrn`]) {
        const res = await app.request({ method: 'GET', url, headers: app.system });
        expect(res.json.entry, url).to.have.length(1);
      }
    }
    await app.audit.flush();
  });

  after(async () => {
    // Suites share the database: the stand-in link and export must not reach the connector's or the export's own tests.
    await app.ctx.db.query(`DELETE FROM withings_account WHERE id LIKE 'account-of-%'`);
    await app.ctx.db.query(`DELETE FROM bulk_export_job WHERE id LIKE 'export-of-%'`);
    await app.stop();
  });

  it('refuses a token without an erasure scope (403), wildcards and patient scopes included, and erases nothing', async () => {
    for (const scopes of ['system/*.cruds', 'user/Patient.cruds', 'system/Patient.rs']) {
      const res = await erase(`/fhir/Patient/${id.alice}/$erase`, await app.as(scopes));
      expect(res.statusCode, scopes).to.equal(403);
      expect(res.json.resourceType).to.equal('OperationOutcome');
    }
    const own = await erase(`/fhir/Patient/${id.alice}/$erase`, aliceToken);
    expect(own.statusCode).to.equal(403);
    expect((await allRowsOf('alice')).total).to.be.above(records.alice.length);
  });

  it('answers 404 for a patient never stored, and 405 to GET', async () => {
    const res = await erase('/fhir/Patient/no-such-patient/$erase', eraser);
    expect(res.statusCode).to.equal(404);
    expect(res.json.resourceType).to.equal('OperationOutcome');
    expect((await app.request({ method: 'GET', url: `/fhir/Patient/${id.alice}/$erase`, headers: eraser })).statusCode).to.equal(405);
  });

  it('is atomic: a capability failing midway leaves every row where it was', async () => {
    const before = { rows: await allRowsOf('alice'), capabilities: await capabilityRows('alice') };
    const unplug = app.ctx.stages.use('erase', 'test.failing', async () => {
      throw new Error('disk full');
    });
    try {
      const res = await erase(`/fhir/Patient/${id.alice}/$erase`, eraser);
      expect(res.statusCode).to.equal(500);
      expect(res.json.resourceType).to.equal('OperationOutcome');
    } finally {
      unplug();
    }
    expect(await allRowsOf('alice')).to.equal(before.rows);
    expect(await capabilityRows('alice')).to.equal(before.capabilities);
    expect((await app.request({ method: 'GET', url: `/fhir/Patient/${id.alice}`, headers: aliceToken })).statusCode).to.equal(200);
  });

  it('erases every version, index row and capability row of the compartment, and nothing of another patient', async () => {
    const bobBefore = { rows: await allRowsOf('bob'), capabilities: await capabilityRows('bob') };
    expect(bobBefore.capabilities.plans + bobBefore.capabilities.schedules + bobBefore.capabilities.devices).to.be.at.least(3);
    const aliceCapabilities = await capabilityRows('alice');
    expect(aliceCapabilities.plans * aliceCapabilities.schedules * aliceCapabilities.tokens * aliceCapabilities.devices * aliceCapabilities.withings * aliceCapabilities.exports).to.be.above(0);

    const res = await erase(`/fhir/Patient/${id.alice}/$erase`, eraser);
    expect(res.statusCode, res.payload).to.equal(200);
    expect(res.json.resourceType).to.equal('OperationOutcome');
    expect(res.json.issue[0].diagnostics).to.include('Observation 2');
    expect(res.payload).to.not.include('Erasealice');

    const after = await allRowsOf('alice');
    expect(after.nonZero).to.equal([]);
    expect(await capabilityRows('alice')).to.equal({ plans: 0, schedules: 0, tokens: 0, devices: 0, withings: 0, exports: 0 });
    expect(await allRowsOf('bob')).to.equal(bobBefore.rows);
    expect(await capabilityRows('bob')).to.equal(bobBefore.capabilities);
    // The patient's own token was bound to the compartment: it is refused now.
    expect((await app.request({ method: 'GET', url: '/fhir/Observation', headers: aliceToken })).statusCode).to.equal(401);
    // A second erasure finds nothing to erase.
    expect((await erase(`/fhir/Patient/${id.alice}/$erase`, eraser)).statusCode).to.equal(404);
  });

  it('leaves nothing of the patient to read, vread, search, include, history or $everything', async () => {
    const get = (url: string) => app.request({ method: 'GET', url, headers: app.system });
    const refs = (bundle: fhir4.Bundle) => (bundle.entry ?? []).map((e) => `${e.resource!.resourceType}/${e.resource!.id}`);
    const mentions = (payload: string) => records.alice.some((ref) => payload.includes(ref.split('/')[1]!)) || payload.includes('Erasealice');
    for (const ref of records.alice) {
      expect((await get(`/fhir/${ref}`)).statusCode, ref).to.equal(404);
      expect((await get(`/fhir/${ref}/_history/1`)).statusCode, ref).to.equal(404);
      const history = await get(`/fhir/${ref}/_history`);
      expect(history.statusCode === 404 || refs(history.json).length === 0, ref).to.be.true();
    }
    const searches = [
      `/fhir/Observation?subject=Patient/${id.alice}`,
      `/fhir/Observation?patient=${id.alice}`,
      '/fhir/Patient?name=Erasealice',
      '/fhir/Patient?identifier=urn:mrn|Erasealice-mrn',
      `/fhir/Patient?_id=${id.alice}&_revinclude=*`,
      '/fhir/Observation?_include=Observation:subject&_count=1000',
      '/fhir/Patient?_revinclude=Observation:subject&_count=1000',
      '/fhir/Device?identifier=urn:serial|Erasealice-cuff',
      '/fhir/Observation/_history?_count=1000',
      '/fhir/_history?_count=1000',
      `/fhir/Patient/${id.alice}/Observation`,
      `/fhir/Patient/${id.alice}/$everything`,
    ];
    for (const url of searches) {
      const res = await get(url);
      expect([200, 404], url).to.include(res.statusCode);
      // The answer's resources, not its self link (which repeats the query).
      const found = ((res.json as fhir4.Bundle).entry ?? []).filter((e) => e.resource?.resourceType !== 'OperationOutcome');
      expect(mentions(JSON.stringify(found)), url).to.be.false();
    }
    // Bob's record answers as before.
    for (const ref of records.bob) {
      expect((await get(`/fhir/${ref}`)).statusCode, ref).to.equal(ref === `Observation/${id.bobDeleted}` ? 410 : 200);
    }
    expect(refs((await get(`/fhir/Patient/${id.bob}/$everything`)).json).length).to.be.at.least(6);
  });

  it('records the erasure in the audit trail by a keyed pseudonym, without the name or id, and the chain stays intact', async () => {
    await app.audit.flush();
    const auditor = await app.as('system/AuditEvent.rs');
    const value = pseudonym(KEY, `Patient/${id.alice}`);
    const res = await app.request({ method: 'GET', url: `/fhir/AuditEvent?entity=urn:rpm-fhir-server:erased-patient|${value}`, headers: auditor });
    expect(res.statusCode, res.payload).to.equal(200);
    const events = (res.json as fhir4.Bundle).entry!.map((e) => e.resource as fhir4.AuditEvent);
    expect(events).to.have.length(1);
    const text = JSON.stringify(events[0]);
    expect(text).to.not.include(id.alice);
    expect(text).to.not.include('Erasealice');
    expect(events[0]!.action).to.equal('D');
    expect(events[0]!.outcomeDesc).to.include('Observation 2');
    expect(events[0]!.agent.some((a) => a.who?.identifier?.value === 'dpo-console')).to.be.true();
    // No other event of the erasing request names the patient: one would link the pseudonym,
    // through the shared X-Request-Id, back to the id. (Refused attempts to erase her, and the
    // second erasure that found nothing, are requests of their own, linked to her id.)
    const requestOf = (e: fhir4.AuditEvent) => e.entity?.find((x) => x.type?.code === 'XrequestId')?.what?.identifier?.value;
    const erasing = requestOf(events[0]!);
    expect(erasing).to.exist();
    const named = await app.request({ method: 'GET', url: `/fhir/AuditEvent?patient=${id.alice}&_count=1000`, headers: auditor });
    expect(named.statusCode).to.equal(200);
    const alices = ((named.json as fhir4.Bundle).entry ?? []).map((e) => e.resource as fhir4.AuditEvent);
    expect(alices.some((e) => (e.entity ?? []).some((x) => x.query && Buffer.from(x.query, 'base64').toString('utf8').includes('$erase')))).to.be.true();
    expect(alices.filter((e) => requestOf(e) === erasing)).to.equal([]);
    expect((await verifyChain(app.ctx.db)).problems).to.equal([]);
  });

  it('leaves no readable request in the trail that found the erased patient: sealed under a key the erasure erased', async () => {
    await app.audit.flush();
    const auditor = await app.as('system/AuditEvent.rs');
    const searchEvents = async (patient: string) => {
      const res = await app.request({ method: 'GET', url: `/fhir/AuditEvent?patient=${patient}&subtype=search-type&_count=1000`, headers: auditor });
      expect(res.statusCode, res.payload).to.equal(200);
      return ((res.json as fhir4.Bundle).entry ?? []).map((e) => e.resource as fhir4.AuditEvent);
    };
    const queryEntities = (events: fhir4.AuditEvent[]) => events.flatMap((e) => (e.entity ?? []).filter((x) => x.role?.code === '24'));
    // Stored: no event about either patient holds the words of its request in the clear.
    for (const [who, family] of [['alice', 'Erasealice'], ['bob', 'Erasebob']] as const) {
      expect(await count(`audit_event WHERE patient = $1 AND coalesce(record, json) LIKE $2`, [id[who], `%${family}%`]), who).to.equal(0);
    }
    // Bob's requests open for an auditor, as written.
    const bobs = queryEntities(await searchEvents(id.bob!)).map((x) => Buffer.from(x.query ?? '', 'base64').toString('utf8'));
    expect(bobs.filter((q) => q.includes('name=Erasebob'))).to.have.length(1);
    expect(bobs.filter((q) => q.includes('identifier=urn:mrn|Erasebob-mrn'))).to.have.length(1);
    // Alice's events stay (who searched, when), their requests unreadable — but for a request
    // whose path names her and nothing else (her compartment, asked for after the erasure), which
    // holds only the id its event holds anyway, as a read by id does (decision 036).
    const alices = queryEntities(await searchEvents(id.alice!));
    const pathOnly = alices.filter((x) => x.query !== undefined);
    expect(alices.length - pathOnly.length).to.be.at.least(2);
    for (const x of alices) {
      if (x.query !== undefined) expect(Buffer.from(x.query, 'base64').toString('utf8')).to.match(new RegExp(`^GET http://[^?\n]+/fhir/Patient/${id.alice}/Observation$`));
      else expect(x.description).to.include('sealed');
    }
    expect(await count('audit_patient_key WHERE patient = $1 AND key IS NULL', [id.alice])).to.equal(1);
    expect(await count('audit_patient_key WHERE patient = $1 AND key IS NOT NULL', [id.bob])).to.equal(1);
    expect((await verifyChain(app.ctx.db)).problems).to.equal([]);
  });

  it('lists $erase, $anonymize and the AuditEvent read and search in the CapabilityStatement', async () => {
    const res = await app.request({ method: 'GET', url: '/fhir/metadata' });
    expect(res.statusCode).to.equal(200);
    const resources = (res.json as fhir4.CapabilityStatement).rest![0]!.resource!;
    const patient = resources.find((r) => r.type === 'Patient')!;
    expect(patient.operation!.map((o) => o.name)).to.include(['everything', 'erase', 'anonymize']);
    const audit = resources.filter((r) => r.type === 'AuditEvent');
    expect(audit).to.have.length(1);
    expect(audit[0]!.interaction!.map((i) => i.code)).to.equal(['read', 'search-type']);
    expect(audit[0]!.searchParam!.map((p) => p.name)).to.include(['patient', 'agent', 'entity', 'date', 'action']);
  });
});
