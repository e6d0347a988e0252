import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const LOINC = 'http://loinc.org';
const MDC = 'urn:iso:std:iso:11073:10101';

/**
 * One mapping stage for every door: the same reading, sent through different doors, is stored
 * as the same Observation apart from id and meta (where a door records its provenance). Doors
 * build their drafts the same way, so their JSON is byte-identical; a REST client's key order is
 * its own, so REST is compared by value.
 */
describe('one mapping for every door', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
  });
  after(() => app.stop());

  const time = '2025-03-01T08:00:00Z';
  const unixTime = Date.parse(time) / 1000;

  async function setup() {
    const patient = (await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient' } })).json.id as string;
    const mac = unique('mac');
    const withingsId = unique('wd');
    // One cuff known by its MAC (Bluetooth, normalised readings) and by its Withings device id.
    const device = (await app.request({
      method: 'POST', url: '/fhir/Device',
      payload: { resourceType: 'Device', identifier: [{ system: 'urn:ietf:rfc:7042', value: mac }, { system: 'https://withings.com/deviceid', value: withingsId }], patient: { reference: `Patient/${patient}` } },
    })).json.id as string;
    return { patient, mac, withingsId, device };
  }

  /** The stored Observation of a door's answer, as JSON text without id, meta and the reading identifier (the id again). */
  async function stored(res: { json: any }, index = 0): Promise<{ text: string; value: any }> {
    const location = res.json.entry[index].response.location as string;
    expect(location, JSON.stringify(res.json.entry[index])).to.exist();
    const read = await app.request({ method: 'GET', url: `/fhir/${location.split('/_history')[0]}` });
    const { id: _id, meta: _meta, identifier: _identifier, ...rest } = JSON.parse(read.payload);
    return { text: JSON.stringify(rest), value: rest };
  }

  const loincPanel = (components: Array<[string, number]>) => ({
    time,
    code: { system: LOINC, code: '85354-9' },
    components: components.map(([code, value]) => ({ code: { system: LOINC, code }, value, unit: 'mm[Hg]' })),
  });

  it('Bluetooth 2A35 and the normalised door store the same blood pressure panel', async () => {
    const { patient, mac } = await setup();
    const ble = await app.request({
      method: 'POST', url: '/ingest/ble',
      // flags 0: mmHg, no time stamp (the time is when it was received), SFLOAT 128 / 84 / 99.
      payload: { device: { identifier: { system: 'urn:ietf:rfc:7042', value: mac } }, readings: [{ characteristic: '2A35', data: '00800054006300', receivedAt: time }] },
    });
    const normalised = await app.request({
      method: 'POST', url: '/ingest/readings',
      payload: { device: { identifier: { system: 'urn:ietf:rfc:7042', value: mac } }, readings: [loincPanel([['8480-6', 128], ['8462-4', 84], ['8478-0', 99]])] },
    });
    const a = await stored(ble);
    const b = await stored(normalised);
    expect(a.value.subject.reference).to.equal(`Patient/${patient}`);
    expect(a.value.code.coding.map((c: any) => c.code)).to.equal(['85354-9']);
    expect(a.text).to.equal(b.text);
  });

  it('a Withings group and the normalised door store the same blood pressure panel', async () => {
    const { patient, mac, withingsId } = await setup();
    const withings = await app.request({
      method: 'POST', url: `/ingest/withings?patient=Patient/${patient}`,
      payload: { status: 0, body: { measuregrps: [{ grpid: 1, attrib: 0, date: unixTime, category: 1, deviceid: withingsId, measures: [{ value: 128, type: 10, unit: 0 }, { value: 84, type: 9, unit: 0 }] }] } },
    });
    const normalised = await app.request({
      method: 'POST', url: '/ingest/readings',
      payload: { device: { identifier: { system: 'urn:ietf:rfc:7042', value: mac } }, patient: { reference: `Patient/${patient}` }, readings: [loincPanel([['8480-6', 128], ['8462-4', 84]])] },
    });
    const a = await stored(withings);
    const b = await stored(normalised);
    expect(a.value.component.map((c: any) => c.valueQuantity)).to.equal([
      { value: 128, unit: 'mmHg', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' },
      { value: 84, unit: 'mmHg', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' },
    ]);
    expect(a.text).to.equal(b.text);
  });

  it('an MDC-coded reading through the normalised door and over REST map alike (LOINC first, MDC kept)', async () => {
    const { patient, mac, device } = await setup();
    const mdc = (code: string, display: string) => ({ system: MDC, code, display });
    const door = await app.request({
      method: 'POST', url: '/ingest/readings',
      payload: {
        device: { identifier: { system: 'urn:ietf:rfc:7042', value: mac } },
        readings: [{ time, code: mdc('150020', 'MDC_PRESS_BLD_NONINV'), components: [
          { code: mdc('150021', 'MDC_PRESS_BLD_NONINV_SYS'), value: 128, unit: '266016' },
          { code: mdc('150022', 'MDC_PRESS_BLD_NONINV_DIA'), value: 84, unit: '266016' },
        ] }],
      },
    });
    const rest = await app.request({
      method: 'POST', url: '/fhir/Observation',
      payload: {
        resourceType: 'Observation', status: 'final',
        code: { coding: [mdc('150020', 'MDC_PRESS_BLD_NONINV')] },
        subject: { reference: `Patient/${patient}` }, effectiveDateTime: time,
        component: [
          { code: { coding: [mdc('150021', 'MDC_PRESS_BLD_NONINV_SYS')] }, valueQuantity: { value: 128, system: MDC, code: '266016' } },
          { code: { coding: [mdc('150022', 'MDC_PRESS_BLD_NONINV_DIA')] }, valueQuantity: { value: 84, system: MDC, code: '266016' } },
        ],
        device: { reference: `Device/${device}` },
      },
    });
    expect(rest.statusCode).to.equal(201);
    const a = await stored(door);
    const { id: _id, meta, ...b } = rest.json;
    expect(a.value.code.coding.map((c: any) => `${c.system}|${c.code}`)).to.equal([`${LOINC}|85354-9`, `${MDC}|150020`]);
    expect(meta.profile).to.equal(['http://hl7.org/fhir/StructureDefinition/bp']);
    expect(a.value).to.equal(b);
  });

  it('refuses an implausible value whichever door it came through', async () => {
    const { patient, mac } = await setup();
    const door = await app.request({
      method: 'POST', url: '/ingest/readings',
      payload: { device: { identifier: { system: 'urn:ietf:rfc:7042', value: mac } }, readings: [loincPanel([['8480-6', 400], ['8462-4', 84]])] },
    });
    expect(door.json.entry[0].response.status).to.equal('422 Unprocessable Entity');
    const rest = await app.request({
      method: 'POST', url: '/fhir/Observation',
      payload: {
        resourceType: 'Observation', status: 'final', code: { coding: [{ system: LOINC, code: '85354-9' }] }, subject: { reference: `Patient/${patient}` }, effectiveDateTime: time,
        component: [
          { code: { coding: [{ system: LOINC, code: '8480-6' }] }, valueQuantity: { value: 400, unit: 'mmHg', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } },
          { code: { coding: [{ system: LOINC, code: '8462-4' }] }, valueQuantity: { value: 84, unit: 'mmHg', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } },
        ],
      },
    });
    expect(rest.statusCode).to.equal(422);
    expect(rest.json.issue[0].expression).to.equal(['Observation.component[0].valueQuantity']);
    expect(rest.json.issue[0].diagnostics).to.contain('physiological range');
  });

  it('stores an implausible value its sender marks wrong (entered-in-error, cancelled): recording that a value is wrong is never refused', async () => {
    const { patient } = await setup();
    for (const status of ['entered-in-error', 'cancelled'] as const) {
      const rest = await app.request({
        method: 'POST', url: '/fhir/Observation',
        payload: {
          resourceType: 'Observation', status, code: { coding: [{ system: LOINC, code: '8867-4' }] }, subject: { reference: `Patient/${patient}` }, effectiveDateTime: time,
          valueQuantity: { value: 400, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
        },
      });
      expect(rest.statusCode, rest.payload).to.equal(201);
      expect(rest.json.valueQuantity.value).to.equal(400);
    }
  });

  describe('MDC 160184 capillary glucose: the LOINC follows the unit of the value (device-facts §3.1, §5)', () => {
    const UCUM = 'http://unitsofmeasure.org';
    const glucose = { system: MDC, code: '160184', display: 'MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD' };

    /** The same reading through the normalised door and over REST; `unit` is an MDC unit code (digits) or UCUM. */
    async function both(value: number, unit: string) {
      const { patient, mac, device } = await setup();
      const door = await app.request({
        method: 'POST', url: '/ingest/readings',
        payload: { device: { identifier: { system: 'urn:ietf:rfc:7042', value: mac } }, readings: [{ time, code: glucose, value, unit }] },
      });
      const rest = await app.request({
        method: 'POST', url: '/fhir/Observation',
        payload: {
          resourceType: 'Observation', status: 'final', code: { coding: [glucose] },
          subject: { reference: `Patient/${patient}` }, effectiveDateTime: time, device: { reference: `Device/${device}` },
          valueQuantity: /^\d+$/.test(unit) ? { value, system: MDC, code: unit } : { value, unit, system: UCUM, code: unit },
        },
      });
      return { door, rest };
    }

    const codes = (o: any) => o.code.coding.map((c: any) => `${c.system}|${c.code}`);

    for (const [label, unit] of [['MDC_DIM_MILLI_MOLE_PER_L 266866', '266866'], ['UCUM mmol/L', 'mmol/L']]) {
      it(`maps a value in ${label} to 14743-9 Glucose [Moles/volume], in mmol/L, through the door and over REST`, async () => {
        const { door, rest } = await both(5.3, unit);
        expect(door.json.entry[0].response.status, JSON.stringify(door.json.entry[0])).to.equal('201 Created');
        expect(rest.statusCode, rest.payload).to.equal(201);
        const a = await stored(door);
        const { id: _id, meta: _meta, ...b } = rest.json;
        for (const o of [a.value, b]) {
          expect(codes(o)).to.equal([`${LOINC}|14743-9`, `${MDC}|160184`]);
          expect(o.code.coding[0].display).to.equal('Glucose [Moles/volume] in Capillary blood by Glucometer');
          expect(o.valueQuantity).to.equal({ value: 5.3, unit: 'mmol/L', system: UCUM, code: 'mmol/L' });
        }
        expect(a.value).to.equal(b);
      });
    }

    it('maps a value in MDC_DIM_MILLI_G_PER_DL 264274 to 41653-7 Glucose [Mass/volume], in mg/dL, through the door and over REST', async () => {
      const { door, rest } = await both(95, '264274');
      expect(door.json.entry[0].response.status, JSON.stringify(door.json.entry[0])).to.equal('201 Created');
      expect(rest.statusCode, rest.payload).to.equal(201);
      const a = await stored(door);
      const { id: _id, meta: _meta, ...b } = rest.json;
      for (const o of [a.value, b]) {
        expect(codes(o)).to.equal([`${LOINC}|41653-7`, `${MDC}|160184`]);
        expect(o.valueQuantity).to.equal({ value: 95, unit: 'mg/dL', system: UCUM, code: 'mg/dL' });
      }
      expect(a.value).to.equal(b);
    });

    it('converts within a dimension (mol/L → mmol/L under 14743-9), never across it', async () => {
      const { door, rest } = await both(0.0053, 'mol/L');
      expect(door.json.entry[0].response.status, JSON.stringify(door.json.entry[0])).to.equal('201 Created');
      const a = await stored(door);
      expect(codes(a.value)).to.equal([`${LOINC}|14743-9`, `${MDC}|160184`]);
      expect(a.value.valueQuantity.value).to.equal(5.3);
      expect(codes(rest.json)[0]).to.equal(`${LOINC}|14743-9`);
    });

    it('refuses a value of neither dimension at the door, and stores it unmapped (no LOINC) over REST', async () => {
      const { door, rest } = await both(120, '266016');
      expect(door.json.entry[0].response.status).to.equal('422 Unprocessable Entity');
      expect(JSON.stringify(door.json.entry[0])).to.contain('depends on the unit');
      expect(rest.statusCode, rest.payload).to.equal(201);
      expect(codes(rest.json)).to.equal([`${MDC}|160184`]);
      expect(rest.json.valueQuantity.code).to.equal('mm[Hg]');
    });
  });
});
