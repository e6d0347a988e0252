import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { subscriber, until } from '../helpers/hook';
import { planWithHighSystolic, systolic } from '../helpers/monitoring-plan';
import { startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

describe('rest-hook subscriptions', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer({ SUBSCRIPTION_RETRY_BASE: '100ms', SUBSCRIPTION_ALLOW_PRIVATE_NETWORKS: 'true' });
  });
  after(() => app?.stop());

  const create = async (a: TestServer, resource: any) => {
    const res = await a.request({ method: 'POST', url: `/fhir/${resource.resourceType}`, payload: resource });
    expect(res.statusCode, JSON.stringify(res.json)).to.equal(201);
    return res.json;
  };
  const subscription = (endpoint: string, criteria: string, extra: object = {}) => ({
    resourceType: 'Subscription', status: 'requested', reason: 'test', criteria,
    channel: { type: 'rest-hook', endpoint, payload: 'application/fhir+json', ...extra },
  });

  it('validates endpoints: http(s) only, never this server\'s own FHIR base; loopback on other ports is fine when private networks are allowed', async () => {
    for (const [endpoint, ok] of [
      ['ftp://127.0.0.1/x', false],
      ['mailto:alerts@example.org', false],
      [`${app.ctx.baseUrl}/Flag`, false],
      [`http://127.0.0.1:${app.ctx.config.port}/fhir`, false],
      ['http://127.0.0.1:9/hook', true],
      ['https://example.org/hook', true],
    ] as const) {
      const res = await app.request({ method: 'POST', url: '/fhir/Subscription', payload: subscription(endpoint, 'Flag?status=active', { payload: undefined }) });
      expect(res.statusCode, endpoint).to.equal(ok ? 201 : 422);
      if (!ok) expect(res.json.issue[0].expression).to.equal(['Subscription.channel.endpoint']);
      if (ok) await app.request({ method: 'DELETE', url: `/fhir/Subscription/${res.json.id}` });
    }
    const badCriteria = await app.request({ method: 'POST', url: '/fhir/Subscription', payload: subscription('https://example.org/hook', 'Flag?nonsense=1') });
    expect(badCriteria.statusCode).to.equal(400);
    expect(badCriteria.json.issue[0].expression).to.equal(['Subscription.criteria']);
  });

  it('refuses criteria with parameters that shape a search\'s page (include, summary, count, sort, format), which a notification has none of', async () => {
    const before = (await app.request({ method: 'GET', url: '/fhir/Subscription?_summary=count' })).json.total;
    for (const criteria of ['Flag?status=active&_include=Flag:patient', 'Flag?_revinclude=Provenance:target', 'Flag?_summary=true', 'Flag?_elements=status', 'Flag?_count=1', 'Flag?_sort=date', 'Flag?_total=accurate', 'Flag?_format=json', 'Flag?_include:iterate=Flag:patient']) {
      const res = await app.request({ method: 'POST', url: '/fhir/Subscription', payload: subscription('https://example.org/hook', criteria) });
      expect(res.statusCode, criteria).to.equal(400);
      expect(res.json.resourceType).to.equal('OperationOutcome');
      expect(res.json.issue[0].expression).to.equal(['Subscription.criteria']);
    }
    expect((await app.request({ method: 'GET', url: '/fhir/Subscription?_summary=count' })).json.total).to.equal(before);
  });

  it('refuses channel headers the server sets itself (Host, framing, Idempotency-Key) with 422, and never sends one stored before', async () => {
    for (const line of ['Host: intranet.example', 'Content-Length: 5', 'transfer-encoding: chunked', 'Idempotency-Key: fixed', 'Content-Type: text/html', 'Connection: upgrade']) {
      const res = await app.request({ method: 'POST', url: '/fhir/Subscription', payload: subscription('https://example.org/hook', 'Flag?status=active', { header: ['X-Ok: 1', line] }) });
      expect(res.statusCode, line).to.equal(422);
      expect(res.json.resourceType).to.equal('OperationOutcome');
      expect(res.json.issue[0].expression, line).to.equal(['Subscription.channel.header[1]']);
    }
    // One stored before these were refused: delivery sends its own Host and key, not the line's.
    const hook = await subscriber();
    const patient = (await create(app, { resourceType: 'Patient', name: [{ family: unique('hdr') }] })).id;
    const sub = await create(app, subscription(hook.url, `Observation?patient=Patient/${patient}`, { payload: undefined, header: ['X-Ok: 1'] }));
    try {
      await app.ctx.db.query(
        `INSERT INTO monitoring_subscription_header (subscription_id, position, name, value) VALUES ($1, 1, 'Host', 'intranet.example'), ($1, 2, 'Idempotency-Key', 'fixed')`,
        [sub.id],
      );
      await create(app, systolic(patient, 120));
      await until('the notification', () => hook.received.length >= 1);
      const { headers } = hook.received[0]!;
      expect(headers['x-ok']).to.equal('1');
      expect(headers.host).to.equal(new URL(hook.url).host);
      expect(headers['idempotency-key']).to.match(new RegExp(`^${sub.id}:\\d+$`));
    } finally {
      await app.request({ method: 'DELETE', url: `/fhir/Subscription/${sub.id}` });
      await hook.close();
    }
  });

  it('refuses a rest-hook payload this server cannot send (R4 channel.payload is the MIME type sent): only JSON, parameters allowed', async () => {
    for (const [payload, status] of [['application/fhir+xml', 422], ['text/plain', 422], ['x', 422], ['application/fhir+json; fhirVersion=4.0', 201], ['application/json', 201]] as const) {
      const res = await app.request({ method: 'POST', url: '/fhir/Subscription', payload: subscription('https://example.org/hook', 'Flag?status=active', { payload }) });
      expect(res.statusCode, payload).to.equal(status);
      if (status === 422) expect(res.json.issue[0].expression).to.equal(['Subscription.channel.payload']);
      else await app.request({ method: 'DELETE', url: `/fhir/Subscription/${res.json.id}` });
    }
  });

  it('a subscriber on a local HTTP server receives the Flag, with the configured headers, for matching criteria only', async () => {
    const hook = await subscriber();
    const other = await subscriber();
    const patient = (await create(app, { resourceType: 'Patient', name: [{ family: unique('sub') }] })).id;
    const stranger = (await create(app, { resourceType: 'Patient', name: [{ family: unique('sub') }] })).id;
    const active = await create(app, subscription(hook.url, 'Flag?status=active', { header: ['Authorization: Bearer s3cret', 'X-Trace: 1'] }));
    expect(active.status).to.equal('active');
    const byPatient = await create(app, subscription(other.url, `Flag?patient=Patient/${patient}`, { payload: undefined }));
    try {
      await create(app, planWithHighSystolic(patient));
      await create(app, planWithHighSystolic(stranger));
      const obs = await create(app, systolic(patient, 171));
      await create(app, systolic(stranger, 150));
      await until('two notifications', () => hook.received.length >= 2);
      const flags = hook.received.map((r) => JSON.parse(r.body));
      const mine = flags.find((f) => f.subject.reference === `Patient/${patient}`);
      expect(mine.resourceType).to.equal('Flag');
      expect(mine.extension.some((e: any) => e.valueReference?.reference === `Observation/${obs.id}`)).to.be.true();
      expect(hook.received[0]!.headers.authorization).to.equal('Bearer s3cret');
      expect(hook.received[0]!.headers['x-trace']).to.equal('1');
      // Delivery is at least once across a crash; a repeat carries the same key (decision 019).
      expect(hook.received[0]!.headers['idempotency-key']).to.match(new RegExp(`^${active.id}:\\d+$`));
      expect(hook.received[0]!.headers['content-type']).to.equal('application/fhir+json');
      await until('the patient subscriber', () => other.received.length >= 1);
      await new Promise((r) => setTimeout(r, 300));
      expect(other.received).to.have.length(1);
      expect(other.received[0]!.body).to.equal('');
    } finally {
      await app.request({ method: 'DELETE', url: `/fhir/Subscription/${active.id}` });
      await app.request({ method: 'DELETE', url: `/fhir/Subscription/${byPatient.id}` });
      await hook.close();
      await other.close();
    }
  });

  it('notifies exactly the Subscriptions whose criteria match a written Observation (patient, subject, code, derived and modified parameters), however they are judged', async () => {
    const hook = await subscriber();
    const patient = (await create(app, { resourceType: 'Patient', name: [{ family: unique('sub') }] })).id;
    const stranger = (await create(app, { resourceType: 'Patient', name: [{ family: unique('sub') }] })).id;
    const criteria: Record<string, string> = {
      patient: `Observation?patient=Patient/${patient}`,
      bareSubject: `Observation?subject=${patient}`,
      systemCode: 'Observation?code=http://loinc.org|85354-9',
      componentOr: `Observation?component-code=9279-1,8480-6&patient=${patient}`,
      combo: 'Observation?combo-code=8480-6',
      typed: `Observation?status=final&subject:Patient=${patient}`,
      otherPatient: `Observation?patient=Patient/${stranger}`,
      otherSystem: 'Observation?code=http://snomed.info/sct|85354-9',
      otherStatus: 'Observation?code=85354-9&status=preliminary',
      otherTargetType: `Observation?subject=Group/${patient}`,
      // Value sets (decision 039): 85354-9 is in the vital-sign results.
      inValueSet: `Observation?code:in=http://hl7.org/fhir/ValueSet/observation-vitalsignresult&patient=${patient}`,
      notInValueSet: `Observation?code:not-in=http://hl7.org/fhir/ValueSet/observation-vitalsignresult&patient=${patient}`,
    };
    const ids: string[] = [];
    try {
      for (const [name, c] of Object.entries(criteria)) ids.push((await create(app, subscription(hook.url, c, { payload: undefined, header: [`X-Sub: ${name}`] }))).id);
      await create(app, systolic(patient, 120));
      const expected = ['patient', 'bareSubject', 'systemCode', 'componentOr', 'combo', 'typed', 'inValueSet'];
      await until('the matching subscribers', () => hook.received.length >= expected.length);
      await new Promise((r) => setTimeout(r, 500));
      expect(hook.received.map((r) => r.headers['x-sub']).sort()).to.equal([...expected].sort());
    } finally {
      for (const id of ids) await app.request({ method: 'DELETE', url: `/fhir/Subscription/${id}` });
      await hook.close();
    }
  });

  it('a stored Subscription whose criteria the search no longer accepts is not notified, and never fails a write', async () => {
    const patient = (await create(app, { resourceType: 'Patient', name: [{ family: unique('sub') }] })).id;
    // Criteria the search judges in the database (a quantity), as stored by an earlier version
    // whose parser took a backslash that escapes nothing.
    const sub = await create(app, subscription('https://example.org/hook', `Observation?patient=Patient/${patient}&value-quantity=gt100`));
    await app.ctx.db.query(`UPDATE subscription SET content = jsonb_set(content, '{criteria}', to_jsonb($1::text)) WHERE id = $2`, [`Observation?patient=Patient/${patient}&value-quantity=gt100&code=8867\\x`, sub.id]);
    await new Promise((r) => setTimeout(r, 2100)); // the live Subscriptions are cached for 2 s
    try {
      const obs = await app.request({ method: 'POST', url: '/fhir/Observation', payload: systolic(patient, 171) });
      expect(obs.statusCode, JSON.stringify(obs.json)).to.equal(201);
    } finally {
      await app.request({ method: 'DELETE', url: `/fhir/Subscription/${sub.id}` });
    }
  });

  it('a transaction of more than 100 resources a Subscription may match is written, and every match notified', async () => {
    const hook = await subscriber();
    const patient = (await create(app, { resourceType: 'Patient', name: [{ family: unique('many') }] })).id;
    // A value criterion: judged by a search of the written ids, not in memory.
    const sub = await create(app, subscription(hook.url, `Observation?subject=Patient/${patient}&combo-value-quantity=gt0`, { payload: undefined }));
    try {
      const entry = Array.from({ length: 101 }, (_, i) => ({ request: { method: 'POST', url: 'Observation' }, resource: systolic(patient, 100 + (i % 50)) }));
      const res = await app.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'transaction', entry } });
      expect(res.statusCode, res.payload.slice(0, 300)).to.equal(200);
      await until('101 notifications', () => hook.received.length >= 101 || undefined, 30_000);
    } finally {
      await app.request({ method: 'DELETE', url: `/fhir/Subscription/${sub.id}` });
      await hook.close();
    }
  });

  it('records failures in the Subscription, retries with backoff, and delivers after the server was restarted mid-retry', async () => {
    let failing = true;
    const hook = await subscriber(() => (failing ? 503 : 200));
    const patient = (await create(app, { resourceType: 'Patient', name: [{ family: unique('sub') }] })).id;
    const sub = await create(app, subscription(hook.url, `Flag?patient=Patient/${patient}`));
    let second: TestServer | undefined;
    try {
      await create(app, planWithHighSystolic(patient));
      await create(app, systolic(patient, 188));
      const errored = await until('the failure recorded', async () => {
        const s = (await app.request({ method: 'GET', url: `/fhir/Subscription/${sub.id}` })).json;
        return s.status === 'error' ? s : undefined;
      });
      expect(errored.error).to.contain('HTTP 503');
      const queued = await app.ctx.db.query<{ attempts: number }>('SELECT attempts FROM monitoring_delivery WHERE subscription_id = $1', [sub.id]);
      expect(queued.rows).to.have.length(1);
      expect(queued.rows[0]!.attempts).to.be.at.least(1);

      // Restart: the first server stops mid-retry; a new one on the same database delivers.
      await app.stop();
      failing = false;
      second = await startTestServer({ SUBSCRIPTION_RETRY_BASE: '100ms', SUBSCRIPTION_ALLOW_PRIVATE_NETWORKS: 'true' });
      await until('delivery after restart', () => hook.received.length >= 1);
      const flag = JSON.parse(hook.received[0]!.body);
      expect(flag.subject.reference).to.equal(`Patient/${patient}`);
      const recovered = await until('status back to active', async () => {
        const s = (await second!.request({ method: 'GET', url: `/fhir/Subscription/${sub.id}` })).json;
        return s.status === 'active' ? s : undefined;
      });
      expect(recovered.error).to.not.exist();
      expect((await second.ctx.db.query('SELECT 1 FROM monitoring_delivery WHERE subscription_id = $1', [sub.id])).rows).to.have.length(0);
    } finally {
      const a = second ?? app;
      await a.request({ method: 'DELETE', url: `/fhir/Subscription/${sub.id}` });
      await hook.close();
      if (second) app = second;
    }
  });
});

describe('a notification given up on', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer({ SUBSCRIPTION_RETRY_BASE: '100ms', SUBSCRIPTION_MAX_ATTEMPTS: '2', SUBSCRIPTION_ALLOW_PRIVATE_NETWORKS: 'true' });
  });
  after(() => app?.stop());

  it('is recorded in the Subscription\'s error (once), which the next delivery clears; the history keeps it', async () => {
    let failing = true;
    const hook = await subscriber(() => (failing ? 503 : 200));
    const post = async (resource: any) => {
      const res = await app.request({ method: 'POST', url: `/fhir/${resource.resourceType}`, payload: resource });
      expect(res.statusCode, JSON.stringify(res.json)).to.equal(201);
      return res.json;
    };
    const patient = (await post({ resourceType: 'Patient', name: [{ family: unique('lost') }] })).id;
    const sub = await post({ resourceType: 'Subscription', status: 'requested', reason: 'lost', criteria: `Observation?patient=${patient}`, channel: { type: 'rest-hook', endpoint: hook.url } });
    try {
      const lost = await post(systolic(patient, 120));
      const abandoned = await until('the abandonment recorded', async () => {
        const s = (await app.request({ method: 'GET', url: `/fhir/Subscription/${sub.id}` })).json;
        return s.error?.startsWith('notifications abandoned') ? s : undefined;
      });
      expect(abandoned.status).to.equal('error');
      expect(abandoned.error).to.contain(`Observation/${lost.id}/_history/1 after 2 attempts (HTTP 503)`);
      expect(hook.attempts).to.equal(2);
      expect((await app.ctx.db.query('SELECT 1 FROM monitoring_delivery WHERE subscription_id = $1', [sub.id])).rows).to.have.length(0);

      failing = false;
      await post(systolic(patient, 121));
      await until('the next one delivered', () => hook.received.length >= 1);
      const recovered = await until('status back to active', async () => {
        const s = (await app.request({ method: 'GET', url: `/fhir/Subscription/${sub.id}` })).json;
        return s.status === 'active' ? s : undefined;
      });
      expect(recovered.error).to.not.exist();
      const history = (await app.request({ method: 'GET', url: `/fhir/Subscription/${sub.id}/_history` })).json;
      expect(history.entry.map((e: any) => `${e.resource.status}:${String(e.resource.error ?? '').split(':')[0]}`)).to.equal([
        'active:', 'error:notifications abandoned', 'error:notification of Observation/' + lost.id + '/_history/1 failed', 'active:',
      ]);
    } finally {
      await app.request({ method: 'DELETE', url: `/fhir/Subscription/${sub.id}` });
      await hook.close();
    }
  });
});

describe('Subscription.end', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer({ SUBSCRIPTION_END_CHECK_INTERVAL: '200ms', SUBSCRIPTION_ALLOW_PRIVATE_NETWORKS: 'true' });
  });
  after(() => app?.stop());

  it('the server turns a Subscription off once its end has passed (a new version, in its history), and notifies it no more; one without an end stays active', async () => {
    const hook = await subscriber();
    const post = async (resource: any) => {
      const res = await app.request({ method: 'POST', url: `/fhir/${resource.resourceType}`, payload: resource });
      expect(res.statusCode, JSON.stringify(res.json)).to.equal(201);
      return res.json;
    };
    const patient = (await post({ resourceType: 'Patient', name: [{ family: unique('end') }] })).id;
    const sub = (criteria: string, extra: object) => ({ resourceType: 'Subscription', status: 'requested', reason: 'end', criteria, channel: { type: 'rest-hook', endpoint: hook.url }, ...extra });
    const ending = await post(sub(`Observation?patient=${patient}`, { end: new Date(Date.now() + 2_000).toISOString(), channel: { type: 'rest-hook', endpoint: hook.url, header: ['X-Sub: ending'] } }));
    const lasting = await post(sub(`Observation?patient=${patient}`, { channel: { type: 'rest-hook', endpoint: hook.url, header: ['X-Sub: lasting'] } }));
    try {
      expect(ending.status).to.equal('active');
      await post(systolic(patient, 120));
      await until('both notified before the end', () => hook.received.length >= 2);

      const off = await until('the ended Subscription turned off', async () => {
        const s = (await app.request({ method: 'GET', url: `/fhir/Subscription/${ending.id}` })).json;
        return s.status === 'off' ? s : undefined;
      });
      expect(off.meta.versionId).to.equal('2');
      expect(off.end).to.equal(ending.end);
      const history = (await app.request({ method: 'GET', url: `/fhir/Subscription/${ending.id}/_history` })).json;
      expect(history.entry.map((e: any) => e.resource.status)).to.equal(['off', 'active']);
      expect((await app.request({ method: 'GET', url: `/fhir/Subscription/${lasting.id}` })).json.status).to.equal('active');

      hook.received.length = 0;
      await post(systolic(patient, 121));
      await until('the lasting one notified', () => hook.received.length >= 1);
      await new Promise((r) => setTimeout(r, 500));
      expect(hook.received.map((r) => r.headers['x-sub'])).to.equal(['lasting']);
    } finally {
      for (const id of [ending.id, lasting.id]) await app.request({ method: 'DELETE', url: `/fhir/Subscription/${id}` });
      await hook.close();
    }
  });
});
