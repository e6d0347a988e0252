import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { projectRoot } from '../../src/kernel/paths';
import { profileIssues } from '../../src/validation/profile';
import { countRows, startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const fixture = (name: string) => JSON.parse(readFileSync(join(projectRoot, 'fixtures', 'devices', name), 'utf8'));
const LOINC = 'http://loinc.org';
const SD = 'http://hl7.org/fhir/StructureDefinition/';

describe('device ingest', () => {
  let app: TestServer;
  /** Every Observation a door produced, for the $validate sweep at the end. */
  const produced: string[] = [];

  before(async () => {
    app = await startTestServer();
  });
  after(() => app.stop());

  const newPatient = async () => (await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family: unique('p') }] } })).json.id as string;
  const newDevice = async (identifier: { system: string; value: string }, extra: object = {}) =>
    (await app.request({ method: 'POST', url: '/fhir/Device', payload: { resourceType: 'Device', identifier: [identifier], ...extra } })).json.id as string;

  async function observations(bundle: any): Promise<any[]> {
    const out = [];
    for (const e of bundle.entry) {
      if (!e.response.location) {
        out.push(undefined);
        continue;
      }
      const ref = e.response.location.split('/_history')[0];
      produced.push(ref);
      out.push((await app.request({ method: 'GET', url: `/fhir/${ref}` })).json);
    }
    return out;
  }

  const loincOf = (o: any) => o.code.coding.find((c: any) => c.system === LOINC)?.code;
  const status = (bundle: any) => bundle.entry.map((e: any) => Number(e.response.status.split(' ')[0]));

  it('decodes the worked BLE examples of device-facts.md into profiled Observations', async () => {
    const pid = await newPatient();
    const body = fixture('ble-worked-examples.json');
    body.device.identifier.value = unique('mac');
    body.patient.reference = `Patient/${pid}`;
    const res = await app.request({ method: 'POST', url: '/ingest/ble', payload: body });
    expect(res.statusCode).to.equal(200);
    expect(res.json.type).to.equal('batch-response');
    expect(status(res.json).every((s: number) => s === 201)).to.be.true();
    const obs = await observations(res.json);
    const deviceRef = obs[0].device.reference;
    for (const o of obs) {
      expect(o.subject.reference).to.equal(`Patient/${pid}`);
      expect(o.device.reference).to.equal(deviceRef);
      expect(o.identifier[0].value).to.equal(o.id);
    }
    const brief = obs.map((o: any) => [loincOf(o), o.valueQuantity?.value, o.valueQuantity?.code, o.effectiveDateTime, o.meta?.profile?.[0]?.replace(SD, '')]);
    expect(brief).to.equal([
      ['85354-9', undefined, undefined, '2024-03-15T08:30:00Z', 'bp'],
      ['8867-4', 72, '/min', '2024-03-15T08:30:00Z', 'heartrate'],
      ['85354-9', undefined, undefined, '2024-03-15T08:31:01Z', 'bp'],
      ['8867-4', 72, '/min', '2024-03-15T08:31:02Z', 'heartrate'],
      ['8867-4', 72, '/min', '2024-03-15T08:31:03Z', 'heartrate'],
      ['8310-5', 36.7, 'Cel', '2024-03-15T07:00:00Z', 'bodytemp'],
      ['8310-5', 98.6, '[degF]', '2024-03-15T08:31:05Z', 'bodytemp'],
      ['29463-7', 70.5, 'kg', '2024-03-15T08:31:06Z', 'bodyweight'],
      ['39156-5', 23, 'kg/m2', '2024-03-15T08:31:06Z', 'bmi'],
      ['8302-2', 175.1, 'cm', '2024-03-15T08:31:06Z', 'bodyheight'],
      ['29463-7', 155.4, '[lb_av]', '2024-03-15T08:31:07Z', 'bodyweight'],
      ['39156-5', 23, 'kg/m2', '2024-03-15T08:31:07Z', 'bmi'],
      ['8302-2', 68.9, '[in_i]', '2024-03-15T08:31:07Z', 'bodyheight'],
      ['41653-7', 95, 'mg/dL', '2024-03-15T07:45:00Z', undefined],
      ['14743-9', 5.2, 'mmol/L', '2024-03-15T12:00:00Z', undefined],
      ['2708-6', 97, '%', '2024-03-15T08:31:00Z', 'oxygensat'],
      ['8867-4', 68, '/min', '2024-03-15T08:31:00Z', 'heartrate'],
      ['2708-6', undefined, undefined, '2024-03-15T08:31:01Z', 'oxygensat'],
      ['8867-4', undefined, undefined, '2024-03-15T08:31:01Z', 'heartrate'],
      ['2708-6', 98, '%', '2024-03-15T08:31:02Z', 'oxygensat'],
      ['8867-4', 70, '/min', '2024-03-15T08:31:02Z', 'heartrate'],
    ]);
    const components = (o: any) => o.component.map((c: any) => [loincOf(c), c.valueQuantity.value, c.valueQuantity.code]);
    expect(components(obs[0])).to.equal([['8480-6', 120, 'mm[Hg]'], ['8462-4', 80, 'mm[Hg]'], ['8478-0', 93.3, 'mm[Hg]']]);
    // kPa → mm[Hg] with UCUM's 133.322 Pa: 16.0 → 120.0, 10.7 → 80.3, 12.4 → 93.0.
    expect(components(obs[2])).to.equal([['8480-6', 120, 'mm[Hg]'], ['8462-4', 80.3, 'mm[Hg]'], ['8478-0', 93, 'mm[Hg]']]);
    expect(obs[5].bodySite.coding[0].code).to.equal('123851003');
    expect(obs[15].code.coding.map((c: any) => c.code)).to.include(['2708-6', '59408-5']);
    expect(obs[17].dataAbsentReason.coding[0].code).to.equal('not-a-number');
    expect(obs[18].dataAbsentReason.coding[0].code).to.equal('not-a-number');
    const rr = obs[4].extension.filter((e: any) => e.url.endsWith('/rr-interval')).map((e: any) => e.valueQuantity.value);
    expect(rr).to.equal([812.5, 799.8047]);
  });

  it('turns every special SFLOAT and FLOAT value into dataAbsentReason, never a number', async () => {
    const pid = await newPatient();
    const specials: Array<[string, string]> = [['ff07', 'not-a-number'], ['0008', 'error'], ['fe07', 'positive-infinity'], ['0208', 'negative-infinity'], ['0108', 'error']];
    const readings = specials.map(([bytes], i) => ({ characteristic: '2A5E', data: `00${bytes}4400`, receivedAt: `2025-01-01T00:00:0${i}Z` }));
    const floats: Array<[string, string]> = [['ffff7f00', 'not-a-number'], ['00008000', 'error'], ['feff7f00', 'positive-infinity'], ['02008000', 'negative-infinity']];
    readings.push(...floats.map(([bytes], i) => ({ characteristic: '2A1C', data: `00${bytes}`, receivedAt: `2025-01-01T00:01:0${i}Z` })));
    const res = await app.request({ method: 'POST', url: '/ingest/ble', payload: { device: { identifier: { system: 'urn:ietf:rfc:7042', value: unique('mac') }, create: true }, patient: { reference: `Patient/${pid}` }, readings } });
    expect(status(res.json).every((s: number) => s === 201)).to.be.true();
    const obs = await observations(res.json);
    const spo2 = obs.filter((o: any) => loincOf(o) === '2708-6');
    expect(spo2.map((o: any) => o.dataAbsentReason.coding[0].code)).to.equal(specials.map(([, r]) => r));
    expect(spo2.every((o: any) => o.valueQuantity === undefined)).to.be.true();
    const temps = obs.filter((o: any) => loincOf(o) === '8310-5');
    expect(temps.map((o: any) => o.dataAbsentReason.coding[0].code)).to.equal(floats.map(([, r]) => r));
  });

  it('keeps BP measurement status bits on the Observation', async () => {
    const pid = await newPatient();
    // flags 0x10 (status present), 120/80/93, status 0x0007: body movement, cuff loose, irregular pulse.
    const res = await app.request({ method: 'POST', url: '/ingest/ble', payload: { device: { identifier: { system: 'urn:ietf:rfc:7042', value: unique('mac') }, create: true }, patient: { reference: `Patient/${pid}` }, readings: [{ characteristic: '2A35', data: Buffer.from('10780050005d000700', 'hex').toString('base64'), encoding: 'base64', receivedAt: '2025-02-01T10:00:00Z' }] } });
    const [o] = await observations(res.json);
    expect(o.extension.map((e: any) => e.valueCoding.code)).to.equal(['body-movement', 'cuff-too-loose', 'irregular-pulse']);
  });

  it('decodes a characteristic named by its 128-bit Bluetooth Base UUID, and refuses an unsupported one by name', async () => {
    const pid = await newPatient();
    const readings = [
      { characteristic: '00002a35-0000-1000-8000-00805f9b34fb', data: '00780050005d00', receivedAt: '2025-02-01T10:00:00Z' },
      { characteristic: '0x2A5E', data: '0061004400', receivedAt: '2025-02-01T10:01:00Z' },
      { characteristic: '00002a2b-0000-1000-8000-00805f9b34fb', data: '0001', receivedAt: '2025-02-01T10:02:00Z' },
    ];
    const res = await app.request({ method: 'POST', url: '/ingest/ble', payload: { device: { identifier: { system: 'urn:ietf:rfc:7042', value: unique('mac') }, create: true }, patient: { reference: `Patient/${pid}` }, readings } });
    expect(res.statusCode, res.payload).to.equal(200);
    expect(status(res.json)).to.equal([201, 201, 201, 422]);
    expect(res.json.entry[3].response.outcome.issue[0].diagnostics).to.contain('characteristic 00002a2b-0000-1000-8000-00805f9b34fb is not one this server decodes');
    const [bp] = await observations(res.json);
    expect(loincOf(bp)).to.equal('85354-9');
    expect(bp.component.map((c: any) => c.valueQuantity.value)).to.equal([120, 80, 93]);
  });

  it('maps a Withings Getmeas response: exact decimals, one BP panel plus pulse per group, m to cm, objectives skipped, manual entries marked', async () => {
    const pid = await newPatient();
    const body = fixture('withings-getmeas.json');
    const res = await app.request({ method: 'POST', url: `/ingest/withings?patient=Patient/${pid}`, payload: body });
    expect(res.statusCode).to.equal(200);
    expect(status(res.json)).to.equal([201, 201, 201, 201, 201, 201, 201]);
    const obs = await observations(res.json);
    const brief = obs.map((o: any) => [loincOf(o), o.valueQuantity?.value, o.valueQuantity?.code, o.effectiveDateTime]);
    expect(brief).to.equal([
      ['85354-9', undefined, undefined, '2024-11-17T08:00:00Z'],
      ['8867-4', 67, '/min', '2024-11-17T08:00:00Z'],
      ['29463-7', 65.75, 'kg', '2024-11-17T09:00:00Z'],
      ['41982-0', 22.1, '%', '2024-11-17T09:00:00Z'],
      ['73708-0', 14.53, 'kg', '2024-11-17T09:00:00Z'],
      ['8302-2', 175, 'cm', '2024-11-17T09:00:00Z'],
      ['8310-5', 36.9, 'Cel', '2024-11-17T10:00:00Z'],
    ]);
    expect(obs[0].component.map((c: any) => [loincOf(c), c.valueQuantity.value])).to.equal([['8480-6', 128], ['8462-4', 84]]);
    expect(obs[0].meta.profile).to.equal([`${SD}bp`]);
    expect(obs[6].performer).to.equal([{ reference: `Patient/${pid}` }]);
    // How a value was taken (attrib 2: entered by hand) and the vendor's field code are provenance: meta.tag.
    expect(obs[6].meta.tag).to.include({ system: 'https://withings.com/attrib', code: '2' });
    expect(obs[2].code.coding.map((c: any) => c.system)).to.equal([LOINC]);
    expect(obs[2].meta.tag).to.include({ system: 'https://withings.com/meastype', code: '1' });
    expect(obs[2].meta.source).to.equal('urn:rpm:ingest:withings');
  });

  it('stores each value with the precision its device gave it, whichever door it came through', async () => {
    const pid = await newPatient();
    /** The stored JSON text of each reading of a door's answer, as a client reads it. */
    const storedTexts = async (res: { statusCode: number; payload: string; json: any }) => {
      expect(res.statusCode, res.payload).to.equal(200);
      const texts: string[] = [];
      for (const e of res.json.entry) texts.push((await app.request({ method: 'GET', url: `/fhir/${e.response.location.split('/_history')[0]}` })).payload);
      return texts;
    };

    // Withings: value × 10^unit, as many decimals as the unit says (65750, -3 is 65.750 kg).
    // Groups of their own: the same groups for another patient are other readings under the
    // same identity as the mapping test's, refused with 409.
    const getmeas = fixture('withings-getmeas.json');
    for (const g of getmeas.body.measuregrps) g.grpid = unique(String(g.grpid));
    const withings = await storedTexts(await app.request({ method: 'POST', url: `/ingest/withings?patient=Patient/${pid}`, payload: getmeas }));
    const valueOf = (text: string) => /"valueQuantity":\s*\{[^}]*"value":\s*([-0-9.eE+]+)/.exec(text)?.[1];
    expect(withings.map(valueOf)).to.equal(['128', '67', '65.750', '22.10', '14.53', '175', '36.90']);

    // Bluetooth 2A1C: an IEEE 11073 FLOAT of mantissa 3670 and exponent -2 is 36.70 °C.
    const ble = await storedTexts(await app.request({
      method: 'POST', url: '/ingest/ble',
      payload: { device: { identifier: { system: 'urn:ietf:rfc:7042', value: unique('mac') }, create: true }, patient: { reference: `Patient/${pid}` },
        readings: [{ characteristic: '2A1C', data: '00560e00fe', encoding: 'hex', receivedAt: '2026-11-03T08:00:00Z' }] },
    }));
    expect(ble.map(valueOf)).to.equal(['36.70']);

    // The normalised door: a number as the gateway wrote it, and a decimal string.
    const readings = await storedTexts(await app.request({
      method: 'POST', url: '/ingest/readings', headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ device: { identifier: { system: 'urn:test:serial', value: unique('sn') }, create: true }, patient: { reference: `Patient/${pid}` },
        readings: [
          { code: { system: LOINC, code: '8310-5' }, value: 36.6, unit: 'Cel', time: '2026-11-03T08:00:00Z' },
          { code: { system: LOINC, code: '29463-7' }, value: '70.500', unit: 'kg', time: '2026-11-03T08:00:00Z' },
        ] }).replace('"value":36.6', '"value":36.60'),
    }));
    expect(readings.map(valueOf)).to.equal(['36.60', '70.500']);
  });

  it('creates nothing when a payload is sent again: every reading answers 200 with the same resource', async () => {
    const pid = await newPatient();
    const body = fixture('readings.json');
    body.device.identifier.value = unique('sn');
    body.patient.reference = `Patient/${pid}`;
    const first = await app.request({ method: 'POST', url: '/ingest/readings', payload: body });
    expect(status(first.json)).to.equal([201, 201, 201, 201]);
    await observations(first.json);
    const rows = await countRows(app, 'Observation');
    const again = await app.request({ method: 'POST', url: '/ingest/readings', payload: body });
    expect(status(again.json)).to.equal([200, 200, 200, 200]);
    expect(again.json.entry.map((e: any) => e.fullUrl)).to.equal(first.json.entry.map((e: any) => e.fullUrl));
    expect(await countRows(app, 'Observation')).to.equal(rows);
    const ble = fixture('ble-worked-examples.json');
    ble.device.identifier.value = unique('mac');
    ble.patient.reference = `Patient/${pid}`;
    await app.request({ method: 'POST', url: '/ingest/ble', payload: ble });
    const bleRows = await countRows(app, 'Observation');
    const bleAgain = await app.request({ method: 'POST', url: '/ingest/ble', payload: ble });
    expect(status(bleAgain.json).every((s: number) => s === 200)).to.be.true();
    expect(await countRows(app, 'Observation')).to.equal(bleRows);
  });

  it('stores the good readings of a mixed payload and says what is wrong with each bad one', async () => {
    const pid = await newPatient();
    const future = new Date(Date.now() + 86_400_000).toISOString();
    const res = await app.request({
      method: 'POST',
      url: '/ingest/readings',
      payload: {
        device: { identifier: { system: 'urn:test:serial', value: unique('sn') }, create: true },
        patient: { reference: `Patient/${pid}` },
        readings: [
          { code: { system: LOINC, code: '8867-4' }, value: 61, unit: '/min', time: '2026-01-02T08:00:00Z' },
          { code: { system: LOINC, code: '2708-6' }, value: 140, unit: '%', time: '2026-01-02T08:00:00Z' },
          { code: { system: LOINC, code: '8867-4' }, value: 62, unit: '/min', time: future },
          { code: { system: LOINC, code: '8867-4' }, value: 63, unit: '/min', time: '1899-12-31T23:00:00Z' },
          { code: { system: LOINC, code: '29463-7' }, value: 70, unit: 'mm[Hg]', time: '2026-01-02T08:00:00Z' },
          { code: { system: LOINC, code: '29463-7' }, value: 'heavy', unit: 'kg', time: '2026-01-02T08:00:00Z' },
          { code: { system: 'urn:iso:std:iso:11073:10101', code: '150456' }, value: 96, unit: '262688', time: '2026-01-02T08:00:00Z' },
        ],
      },
    });
    expect(status(res.json)).to.equal([201, 422, 422, 422, 422, 400, 201]);
    const diagnostics = res.json.entry.map((e: any) => e.response.outcome?.issue[0].diagnostics ?? '');
    expect(diagnostics[1]).to.contain('physiological range');
    expect(diagnostics[2]).to.contain('future');
    expect(diagnostics[3]).to.contain('before 1900');
    expect(diagnostics[4]).to.contain('cannot be converted');
    const ble = await app.request({
      method: 'POST',
      url: '/ingest/ble',
      payload: {
        device: { identifier: { system: 'urn:ietf:rfc:7042', value: unique('mac') }, create: true },
        patient: { reference: `Patient/${pid}` },
        readings: [
          { characteristic: '2A35', data: '0678', receivedAt: '2026-01-02T08:00:00Z' },
          { characteristic: '2A5E', data: '008c004400', receivedAt: '2026-01-02T08:00:00Z' },
          { characteristic: '2A18', data: '02030 0e807030f072d005fb0aa'.replace(/ /g, ''), receivedAt: '2026-01-02T08:00:00Z' },
          { characteristic: '2A5E', data: 'zz', receivedAt: '2026-01-02T08:00:00Z' },
          { characteristic: '2A37', data: '0048', receivedAt: '2026-01-02T08:00:00Z' },
        ],
      },
    });
    // Truncated BPM, SpO2 140 %, control-solution glucose, bad hex, then a good HRM.
    expect(status(ble.json)).to.equal([400, 422, 201, 422, 400, 201]);
    expect(ble.json.entry[3].response.outcome.issue[0].diagnostics).to.contain('control-solution');
    await observations(ble.json);
    const withings = await app.request({ method: 'POST', url: `/ingest/withings?patient=Patient/${pid}`, payload: { status: 0, body: { measuregrps: [{ grpid: 1, date: 1735800000, category: 1, measures: [{ value: 1, type: 9999, unit: 0 }, { value: 72, type: 11, unit: 0 }] }] } } });
    expect(status(withings.json)).to.equal([422, 201]);
    expect(withings.json.entry[0].response.outcome.issue[0].diagnostics).to.contain('9999');
    await observations(withings.json);
  });

  it('answers 400 for a body that is not the format at all', async () => {
    for (const [url, payload] of [
      ['/ingest/readings', { readings: [] }],
      ['/ingest/readings', [1, 2]],
      ['/ingest/ble', { device: { identifier: { system: 's', value: 'v' } } }],
      ['/ingest/withings', { status: 0, body: {} }],
      ['/ingest/withings', { status: 401, body: { measuregrps: [] } }],
    ] as const) {
      const res = await app.request({ method: 'POST', url, payload });
      expect(res.statusCode, url).to.equal(400);
      expect(res.json.resourceType).to.equal('OperationOutcome');
    }
    expect((await app.request({ method: 'POST', url: '/ingest/ble', payload: '{not json' })).statusCode).to.equal(400);
  });

  it('refuses readings for a patient that does not exist or was deleted, and stores nothing', async () => {
    const gone = await newPatient();
    await app.request({ method: 'DELETE', url: `/fhir/Patient/${gone}` });
    const before = await countRows(app, 'Observation');
    for (const patient of [`Patient/${gone}`, `Patient/${unique('never')}`]) {
      const res = await app.request({
        method: 'POST', url: '/ingest/readings',
        payload: { device: { identifier: { system: 'urn:test:serial', value: unique('sn') } }, patient: { reference: patient }, readings: [{ code: { system: LOINC, code: '8867-4' }, value: 72, unit: '/min', time: '2026-11-02T08:00:00Z' }] },
      });
      expect(res.statusCode).to.equal(200);
      expect(status(res.json)).to.equal([422]);
      expect(res.json.entry[0].response.outcome.issue[0].diagnostics).to.contain(patient);
    }
    expect(await countRows(app, 'Observation')).to.equal(before);
  });

  it('files a reading with the patient who had the device at that time, and refuses one nobody had', async () => {
    const [alice, bob, carol] = [await newPatient(), await newPatient(), await newPatient()];
    const identifier = { system: 'urn:test:serial', value: unique('cuff') };
    const deviceId = await newDevice(identifier);
    const use = (patient: string, start: string, end?: string) =>
      app.request({ method: 'POST', url: '/fhir/DeviceUseStatement', payload: { resourceType: 'DeviceUseStatement', status: 'active', subject: { reference: `Patient/${patient}` }, device: { reference: `Device/${deviceId}` }, timingPeriod: { start, ...(end ? { end } : {}) } } });
    expect((await use(alice, '2025-01-01T00:00:00Z', '2025-06-30T23:59:59Z')).statusCode).to.equal(201);
    expect((await use(bob, '2025-07-01T00:00:00Z')).statusCode).to.equal(201);
    const reading = (time: string, value: number) => ({ code: { system: LOINC, code: '8867-4' }, value, unit: '/min', time });
    const res = await app.request({ method: 'POST', url: '/ingest/readings', payload: { device: { identifier }, readings: [reading('2025-03-01T08:00:00Z', 70), reading('2025-08-01T08:00:00Z', 71), reading('2024-12-01T08:00:00Z', 72)] } });
    expect(status(res.json)).to.equal([201, 201, 422]);
    expect(res.json.entry[2].response.outcome.issue[0].diagnostics).to.contain('no patient');
    const [a, b] = await observations(res.json);
    expect(a.subject.reference).to.equal(`Patient/${alice}`);
    expect(b.subject.reference).to.equal(`Patient/${bob}`);
    expect(a.device.reference).to.equal(`Device/${deviceId}`);
    // Device.patient is the fallback when no assignment covers the time.
    await app.request({ method: 'PUT', url: `/fhir/Device/${deviceId}`, payload: { resourceType: 'Device', id: deviceId, identifier: [identifier], patient: { reference: `Patient/${carol}` } } });
    const late = await app.request({ method: 'POST', url: '/ingest/readings', payload: { device: { identifier }, readings: [reading('2024-12-01T08:00:00Z', 72)] } });
    const [c] = await observations(late.json);
    expect(c.subject.reference).to.equal(`Patient/${carol}`);
    // An unknown device with no patient named is refused, not guessed.
    const unknown = await app.request({ method: 'POST', url: '/ingest/readings', payload: { device: { identifier: { system: 'urn:test:serial', value: unique('ghost') } }, readings: [reading('2025-03-01T08:00:00Z', 70)] } });
    expect(status(unknown.json)).to.equal([422]);
  });

  it('files a shared cuff\'s readings by the user index the cuff sends, and refuses a user no assignment names', async () => {
    const [alice, bob, carol] = [await newPatient(), await newPatient(), await newPatient()];
    const identifier = { system: 'urn:test:serial', value: unique('shared-cuff') };
    const deviceId = await newDevice(identifier);
    const use = (patient: string, user?: number) =>
      app.request({
        method: 'POST', url: '/fhir/DeviceUseStatement',
        payload: {
          resourceType: 'DeviceUseStatement', status: 'active', subject: { reference: `Patient/${patient}` }, device: { reference: `Device/${deviceId}` }, timingPeriod: { start: '2025-01-01' },
          ...(user === undefined ? {} : { extension: [{ url: 'http://rpm.example.org/fhir/StructureDefinition/device-user-index', valueInteger: user }] }),
        },
      });
    expect((await use(alice, 1)).statusCode).to.equal(201);
    expect((await use(bob, 2)).statusCode).to.equal(201);
    // GATT 2A35: flags 0x0A (time stamp, user ID), 120/80 mmHg, MAP 93, 2025-03-01 08:00:ss, then the user.
    const byte = (n: number) => n.toString(16).padStart(2, '0');
    const cuff = (second: number, user: number) => ({ characteristic: '2A35', data: `0a 7800 5000 5d00 e907 03 01 08 00 ${byte(second)} ${byte(user)}`, receivedAt: '2025-03-01T08:05:00Z' });
    const ble = await app.request({ method: 'POST', url: '/ingest/ble', payload: { device: { identifier }, readings: [cuff(1, 1), cuff(2, 2), cuff(3, 255), cuff(4, 3)] } });
    expect(ble.statusCode, ble.payload).to.equal(200);
    expect(status(ble.json)).to.equal([201, 201, 422, 422]);
    expect(ble.json.entry[2].response.outcome.issue[0].diagnostics).to.contain('unknown user (255)');
    expect(ble.json.entry[3].response.outcome.issue[0].diagnostics).to.contain('assign users 1, 2, and the reading is of user 3');
    const [a, b] = await observations(ble.json);
    expect(a.subject.reference).to.equal(`Patient/${alice}`);
    expect(b.subject.reference).to.equal(`Patient/${bob}`);
    expect(b.extension).to.include({ url: 'http://rpm.example.org/fhir/StructureDefinition/device-user-index', valueInteger: 2 });
    // The normalised door names the user the same way; a reading without one is not guessed.
    const reading = (minute: number, user?: unknown) => ({ code: { system: LOINC, code: '8867-4' }, value: 60 + minute, unit: '/min', time: `2025-03-02T08:${String(minute).padStart(2, '0')}:00Z`, ...(user === undefined ? {} : { user }) });
    const gateway = await app.request({ method: 'POST', url: '/ingest/readings', payload: { device: { identifier }, readings: [reading(1, 2), reading(2), reading(3, 'two'), reading(4, 256)] } });
    expect(status(gateway.json)).to.equal([201, 422, 400, 400]);
    expect(gateway.json.entry[1].response.outcome.issue[0].diagnostics).to.contain('names no user');
    const [hr] = await observations(gateway.json);
    expect(hr.subject.reference).to.equal(`Patient/${bob}`);
    // An assignment that names no user takes the readings of every user the others do not name.
    expect((await use(carol)).statusCode).to.equal(201);
    const later = await app.request({ method: 'POST', url: '/ingest/ble', payload: { device: { identifier }, readings: [cuff(4, 3), cuff(5, 1)] } });
    expect(status(later.json)).to.equal([201, 201]);
    const [c, a2] = await observations(later.json);
    expect(c.subject.reference).to.equal(`Patient/${carol}`);
    expect(a2.subject.reference).to.equal(`Patient/${alice}`);
  });

  it('looks up a Withings group\'s deviceid as a Device identifier when no patient is given', async () => {
    const pid = await newPatient();
    const deviceid = unique('wdev');
    await newDevice({ system: 'https://withings.com/deviceid', value: deviceid }, { patient: { reference: `Patient/${pid}` } });
    const res = await app.request({ method: 'POST', url: '/ingest/withings', payload: { status: 0, body: { measuregrps: [{ grpid: 9, attrib: 0, date: 1735800000, category: 1, deviceid, measures: [{ value: 7050, type: 1, unit: -2 }] }] } } });
    const [o] = await observations(res.json);
    expect(o.subject.reference).to.equal(`Patient/${pid}`);
    expect(o.valueQuantity.value).to.equal(70.5);
  });

  it('adds LOINC, category, UCUM units and the profile to an MDC-only Observation written over REST', async () => {
    const pid = await newPatient();
    const body = fixture('mdc-only-observation.json');
    body.subject.reference = `Patient/${pid}`;
    const res = await app.request({ method: 'POST', url: '/fhir/Observation', payload: body });
    expect(res.statusCode).to.equal(201);
    produced.push(`Observation/${res.json.id}`);
    const o = res.json;
    expect(loincOf(o)).to.equal('85354-9');
    expect(o.meta.profile).to.equal([`${SD}bp`]);
    expect(o.category[0].coding[0].code).to.equal('vital-signs');
    expect(o.component.map((c: any) => [loincOf(c), c.valueQuantity.value, c.valueQuantity.system, c.valueQuantity.code])).to.equal([
      ['8480-6', 120, 'http://unitsofmeasure.org', 'mm[Hg]'],
      ['8462-4', 82, 'http://unitsofmeasure.org', 'mm[Hg]'],
      ['8478-0', 95, 'http://unitsofmeasure.org', 'mm[Hg]'],
    ]);
    // Through a transaction bundle too.
    const tx = await app.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'transaction', entry: [{ request: { method: 'POST', url: 'Observation' }, resource: { ...fixture('mdc-only-observation.json'), subject: { reference: `Patient/${pid}` } } }] } });
    expect(tx.statusCode).to.equal(200);
    const [t] = await observations(tx.json);
    expect(t.meta.profile).to.equal([`${SD}bp`]);
  });

  it("a glucose meter's HI or LO is stored as beyond its value (comparator) and judged so: > 600 breaks a high limit of 600", async () => {
    const pid = await newPatient();
    const UCUM = 'http://unitsofmeasure.org';
    const plan = await app.request({
      method: 'POST', url: '/fhir/CarePlan', payload: {
        resourceType: 'CarePlan', status: 'active', intent: 'plan', subject: { reference: `Patient/${pid}` },
        contained: [{
          resourceType: 'Goal', id: 'g', lifecycleStatus: 'active', description: { text: 'glucose' }, subject: { reference: `Patient/${pid}` },
          target: [{ measure: { coding: [{ system: LOINC, code: '41653-7' }] }, detailRange: { low: { value: 20, unit: 'mg/dL', system: UCUM, code: 'mg/dL' }, high: { value: 600, unit: 'mg/dL', system: UCUM, code: 'mg/dL' } } }],
        }],
        goal: [{ reference: '#g' }],
      },
    });
    expect(plan.statusCode, plan.payload).to.equal(201);
    // flags 0x0A: concentration (kg/L) and sensor status present; capillary blood, finger.
    // 600 mg/dL = 600e-5 kg/L (SFLOAT 0xB258) with status bit 5 (above the device's range);
    // 20 mg/dL (0xB014) with bit 6 (below it).
    const ble = await app.request({
      method: 'POST', url: '/ingest/ble', payload: {
        device: { identifier: { system: 'urn:ietf:rfc:7042', value: unique('meter') }, create: true },
        patient: { reference: `Patient/${pid}` },
        readings: [
          { characteristic: '2A18', data: '0a0100e807030f072d0058b2112000', receivedAt: '2024-03-15T07:50:00Z' },
          { characteristic: '2A18', data: '0a0200e807030f08000014b0114000', receivedAt: '2024-03-15T08:05:00Z' },
        ],
      },
    });
    expect(ble.json.entry.map((e: any) => e.response.status), ble.payload).to.equal(['201 Created', '201 Created']);
    const [hi, lo] = await observations(ble.json);
    expect(hi.valueQuantity).to.include({ value: 600, comparator: '>', code: 'mg/dL' });
    expect(lo.valueQuantity).to.include({ value: 20, comparator: '<', code: 'mg/dL' });
    const flags = (await app.request({ method: 'GET', url: `/fhir/Flag?patient=Patient/${pid}` })).json.entry.map((e: any) => e.resource.code.text).sort();
    const glucose = 'Glucose [Mass/volume] in Capillary blood by Glucometer';
    expect(flags).to.equal([`${glucose} < 20 mg/dL below limit 20 mg/dL`, `${glucose} > 600 mg/dL above limit 600 mg/dL`]);
  });

  it('refuses on write a resource that does not conform to the profile it declares', async () => {
    const pid = await newPatient();
    const res = await app.request({
      method: 'POST',
      url: '/fhir/Observation',
      payload: { resourceType: 'Observation', meta: { profile: [`${SD}heartrate`] }, status: 'final', category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }], code: { coding: [{ system: LOINC, code: '8867-4' }] }, subject: { reference: `Patient/${pid}` }, effectiveDateTime: '2025-01-01T00:00:00Z', valueQuantity: { value: 72, unit: 'kg', system: 'http://unitsofmeasure.org', code: 'kg' } },
    });
    expect(res.statusCode).to.equal(422);
    expect(res.json.issue[0].diagnostics).to.contain('/min');
  });

  it('translates device codes with $translate over the server\'s own ConceptMaps', async () => {
    const tr = await app.request({ method: 'GET', url: '/fhir/ConceptMap/$translate?system=https://withings.com/meastype&code=1' });
    expect(tr.json.parameter[0]).to.equal({ name: 'result', valueBoolean: true });
    expect(tr.json.parameter[1].part[1].valueCoding).to.include({ system: LOINC, code: '29463-7' });
    const none = await app.request({ method: 'POST', url: '/fhir/ConceptMap/withings-meastype-to-loinc/$translate', payload: { resourceType: 'Parameters', parameter: [{ name: 'system', valueUri: 'https://withings.com/meastype' }, { name: 'code', valueCode: '88' }] } });
    expect(none.json.parameter[0].valueBoolean).to.be.false();
    expect((await app.request({ method: 'GET', url: '/fhir/ConceptMap/nope/$translate?system=https://withings.com/meastype&code=1' })).statusCode).to.equal(404);
  });

  it('validates every Observation the doors produced against its declared profile ($validate)', async () => {
    expect(produced.length).to.be.above(40);
    for (const ref of produced) {
      const o = (await app.request({ method: 'GET', url: `/fhir/${ref}` })).json;
      expect(profileIssues(o), ref).to.equal([]);
      const res = await app.request({ method: 'POST', url: '/fhir/Observation/$validate', payload: o });
      expect(res.statusCode).to.equal(200);
      expect(res.json.issue.map((i: any) => i.severity), `${ref}: ${JSON.stringify(res.json.issue)}`).to.equal(['information']);
    }
    // $validate does see profile errors.
    const bad = (await app.request({ method: 'GET', url: `/fhir/${produced[0]}` })).json;
    bad.component = bad.component?.slice(0, 1);
    const res = await app.request({ method: 'POST', url: '/fhir/Observation/$validate', payload: bad });
    expect(res.json.issue.some((i: any) => i.severity === 'error')).to.be.true();
  });
});
