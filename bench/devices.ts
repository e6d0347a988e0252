import { type BenchContext, type BenchWorkload, HttpClient, measured, type ResultRow, runHttpLoad } from './harness';

/**
 * Device ingest: normalised readings and BLE GATT payloads in batches of 100 through their
 * doors (/ingest/readings, /ingest/ble), next to plain FHIR transaction ingest of the same
 * Observations (POST /fhir, 100 entries). Figures are requests/s of 100 readings each; the
 * note gives readings/s. Devices carry Device.patient, so every reading resolves its patient
 * through the device lookup and assignment search, as gateways' uploads do.
 */
const BATCH = 100;
const DEVICES = 20;

interface Setup {
  patients: string[];
  devices: Array<{ system: string; value: string }>;
}

async function setup(ctx: BenchContext): Promise<Setup> {
  const client = new HttpClient(ctx.fhirBase, 4);
  try {
    const patients: string[] = [];
    const devices: Setup['devices'] = [];
    for (let i = 0; i < DEVICES; i++) {
      const p = await client.request('POST', 'Patient', JSON.stringify({ resourceType: 'Patient', identifier: [{ system: ctx.identifierSystem, value: `device-patient-${i}` }] }));
      if (p.status !== 201) throw new Error(`creating a Patient: ${p.status}`);
      const pid = JSON.parse(p.body).id as string;
      patients.push(`Patient/${pid}`);
      const identifier = { system: `${ctx.identifierSystem}:device`, value: `dev-${i}` };
      const d = await client.request('POST', 'Device', JSON.stringify({ resourceType: 'Device', identifier: [identifier], patient: { reference: `Patient/${pid}` } }));
      if (d.status !== 201) throw new Error(`creating a Device: ${d.status}`);
      devices.push(identifier);
    }
    return { patients, devices };
  } finally {
    client.close();
  }
}

const minute = (k: number) => new Date(Date.UTC(2025, 0, 1) + k * 60_000).toISOString().replace('.000Z', 'Z');

/** The k-th normalised reading: heart rate, BP panel, weight in turn, values varying with k. */
function reading(k: number): object {
  const time = minute(k);
  switch (k % 3) {
    case 0:
      return { code: { system: 'http://loinc.org', code: '8867-4' }, value: 60 + (k % 40), unit: '/min', time };
    case 1:
      return {
        code: { system: 'http://loinc.org', code: '85354-9' },
        time,
        components: [
          { code: { system: 'http://loinc.org', code: '8480-6' }, value: 110 + (k % 40), unit: 'mm[Hg]' },
          { code: { system: 'http://loinc.org', code: '8462-4' }, value: 70 + (k % 20), unit: 'mm[Hg]' },
        ],
      };
    default:
      return { code: { system: 'http://loinc.org', code: '29463-7' }, value: (60 + (k % 300) / 10).toFixed(1), unit: 'kg', time };
  }
}

/** A GATT payload per reading: PLX spot-check with timestamp (2 Observations each: SpO2 and pulse). */
function blePayload(k: number): object {
  const t = new Date(Date.UTC(2025, 0, 1) + k * 60_000);
  const b = Buffer.alloc(12);
  b.writeUInt8(0x01, 0);
  b.writeUInt16LE(90 + (k % 10), 1);
  b.writeUInt16LE(60 + (k % 40), 3);
  b.writeUInt16LE(t.getUTCFullYear(), 5);
  b.writeUInt8(t.getUTCMonth() + 1, 7);
  b.writeUInt8(t.getUTCDate(), 8);
  b.writeUInt8(t.getUTCHours(), 9);
  b.writeUInt8(t.getUTCMinutes(), 10);
  b.writeUInt8(t.getUTCSeconds(), 11);
  return { characteristic: '2A5E', data: b.toString('hex'), encoding: 'hex', receivedAt: minute(k) };
}

/** The Observation the readings door makes of reading k, as an integrator would send it in a transaction. */
function observation(k: number, patient: string): object {
  const r = reading(k) as { code: { code: string }; value?: number | string; unit?: string; time: string; components?: Array<{ code: { code: string }; value: number }> };
  const profile = { '8867-4': 'heartrate', '85354-9': 'bp', '29463-7': 'bodyweight' }[r.code.code]!;
  return {
    resourceType: 'Observation',
    meta: { profile: [`http://hl7.org/fhir/StructureDefinition/${profile}`] },
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
    code: { coding: [{ system: 'http://loinc.org', code: r.code.code }] },
    subject: { reference: patient },
    effectiveDateTime: r.time,
    ...(r.components
      ? { component: r.components.map((c) => ({ code: { coding: [{ system: 'http://loinc.org', code: c.code.code }] }, valueQuantity: { value: c.value, unit: 'mmHg', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } })) }
      : { valueQuantity: { value: Number(r.value), unit: r.unit, system: 'http://unitsofmeasure.org', code: r.unit } }),
  };
}

async function phase(ctx: BenchContext, name: string, perRequest: number, concurrency: number, n: number, send: (client: HttpClient, doors: HttpClient, i: number) => Promise<{ status: number; body: string; headers: Record<string, unknown> }>, note: string): Promise<ResultRow> {
  const doors = new HttpClient(ctx.fhirBase.replace(/\/fhir$/, '/'), concurrency);
  try {
    const { stats, cpu } = await measured(ctx, 'server', () => runHttpLoad(ctx, n, concurrency, (client, i) => send(client, doors, i) as never));
    const readingsPerSecond = Math.round(stats.perSecond * perRequest);
    ctx.log(`${name}: ${readingsPerSecond} readings/s`);
    return { workload: 'devices', group: name, target: 'server', concurrency, stats, cpu, note: `${note}: ${readingsPerSecond} readings/s` };
  } finally {
    doors.close();
  }
}

function entriesAreOk(body: string): boolean {
  const bundle = JSON.parse(body) as { entry?: Array<{ response: { status: string } }> };
  return (bundle.entry ?? []).every((e) => /^20[01]/.test(e.response.status));
}

export const deviceWorkloads: BenchWorkload[] = [
  {
    name: 'devices',
    description: `normalised readings and BLE payloads in batches of ${BATCH} through /ingest/readings and /ingest/ble, beside FHIR transaction ingest of the same Observations`,
    async run(ctx) {
      const { patients, devices } = await setup(ctx);
      const n = ctx.n(200);
      const concurrency = 4;
      const rows: ResultRow[] = [];
      const total = ctx.warmup + n;
      const check = async (res: { status: number; body: string; headers: Record<string, unknown> }) => (res.status === 200 && !entriesAreOk(res.body) ? { ...res, status: 599 } : res);
      const readingBodies = Array.from({ length: total }, (_, i) =>
        JSON.stringify({ device: { identifier: devices[i % DEVICES] }, readings: Array.from({ length: BATCH }, (_, k) => reading(i * BATCH + k)) }),
      );
      rows.push(await phase(ctx, `ingest readings x${BATCH}`, BATCH, concurrency, n, async (_c, doors, i) => check(await doors.request('POST', 'ingest/readings', readingBodies[i]) as never), `POST /ingest/readings, ${BATCH} readings per request`));
      const bleBodies = Array.from({ length: total }, (_, i) =>
        JSON.stringify({ device: { identifier: devices[(i + 7) % DEVICES] }, readings: Array.from({ length: BATCH / 2 }, (_, k) => blePayload(i * BATCH + k)) }),
      );
      rows.push(await phase(ctx, `ingest ble x${BATCH / 2}`, BATCH, concurrency, n, async (_c, doors, i) => check(await doors.request('POST', 'ingest/ble', bleBodies[i]) as never), `POST /ingest/ble, ${BATCH / 2} PLX payloads = ${BATCH} Observations per request`));
      const offset = 10_000_000;
      const bundles = Array.from({ length: total }, (_, i) =>
        JSON.stringify({
          resourceType: 'Bundle',
          type: 'transaction',
          entry: Array.from({ length: BATCH }, (_, k) => ({ fullUrl: `urn:uuid:${crypto.randomUUID()}`, request: { method: 'POST', url: 'Observation' }, resource: observation(offset + i * BATCH + k, patients[i % DEVICES]!) })),
        }),
      );
      rows.push(await phase(ctx, `transaction x${BATCH}`, BATCH, concurrency, n, async (client, _d, i) => (await client.request('POST', '', bundles[i])) as never, `POST /fhir transaction of the same ${BATCH} Observations`));
      return rows;
    },
  },
];
