/**
 * Wall time of `_sort` on an index-table parameter across patients (the robustness probe's
 * shapes), page 1 and page 2, on ~20k Observations of the test database: PGlite in memory, or a
 * fresh schema of DATABASE_URL's PostgreSQL. Run after a build:
 *   node dist/bench/sort-cost.js [count]
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test node dist/bench/sort-cost.js [count]
 */
import { startTestServer, testDb } from '../test/helpers/server';

const CODES = ['8867-4', '9279-1', '8310-5', '29463-7', '8302-2', '59408-5', '85354-9', '2708-6', '39156-5', '8480-6'];
const SHAPES = process.env.SORT_COST_SHAPES?.split(' ') ?? ['_sort=code', '_sort=date', '_sort=-date', '_sort=value-quantity', '_sort=-value-quantity', '_sort=-code'];

async function main(): Promise<void> {
  const total = Number(process.argv[2] ?? 20_000);
  const app = await startTestServer({ STATEMENT_TIMEOUT: '0' });
  const patients: string[] = [];
  for (let p = 0; p < 50; p++) {
    const res = await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family: `Sort${p}` }] } });
    patients.push(res.json.id);
  }
  const started = Date.now();
  for (let n = 0; n < total; n += 100) {
    const entry = Array.from({ length: Math.min(100, total - n) }, (_, k) => {
      const i = n + k;
      const resource: Record<string, unknown> = {
        resourceType: 'Observation',
        status: 'final',
        category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
        code: { coding: [{ system: 'http://loinc.org', code: CODES[(i * 7) % CODES.length] }] },
        subject: { reference: `Patient/${patients[i % patients.length]}` },
      };
      // Every 50th undated and without a value: they sort last.
      if (i % 50 !== 7) {
        resource.effectiveDateTime = new Date(Date.UTC(2026, 0, 1) + ((i * 7919) % 300) * 86_400_000 + (i % 86_400) * 1000).toISOString();
        resource.valueQuantity = { value: ((i * 31) % 2000) / 10, unit: 'mm[Hg]', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' };
      }
      return { resource, request: { method: 'POST', url: 'Observation' } };
    });
    const res = await app.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'batch', entry } });
    if (res.statusCode !== 200) throw new Error(`load: ${res.statusCode} ${res.payload.slice(0, 300)}`);
  }
  console.log(`loaded ${total} Observations in ${((Date.now() - started) / 1000).toFixed(1)} s (${process.env.DATABASE_URL ? 'PostgreSQL' : 'PGlite'})`);
  if (process.env.SORT_COST_ANALYZE) await (await testDb()).query('ANALYZE');

  for (const round of [1, 2]) {
    for (const shape of SHAPES) {
      const t0 = process.hrtime.bigint();
      const first = await app.request({ method: 'GET', url: `/fhir/Observation?${shape}` });
      const t1 = process.hrtime.bigint();
      if (first.statusCode !== 200) throw new Error(`${shape}: ${first.statusCode} ${first.payload.slice(0, 300)}`);
      const next = (first.json.link as Array<{ relation: string; url: string }>).find((l) => l.relation === 'next')?.url;
      const t2 = process.hrtime.bigint();
      const second = next ? await app.request({ method: 'GET', url: next.slice(next.indexOf('/fhir/')) }) : undefined;
      const t3 = process.hrtime.bigint();
      const ms = (a: bigint, b: bigint) => (Number(b - a) / 1e6).toFixed(1);
      const ids = [...(first.json.entry ?? []), ...(second?.json.entry ?? [])].map((e: { resource: { id: string } }) => e.resource.id);
      console.log(`round ${round} ${shape.padEnd(24)} page 1 ${ms(t0, t1).padStart(8)} ms, page 2 ${ms(t2, t3).padStart(8)} ms  (${ids.length} entries, ${new Set(ids).size} distinct)`);
    }
  }
  await app.stop();
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
