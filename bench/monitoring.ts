import { randomUUID } from 'node:crypto';
import { type BenchContext, type BenchWorkload, HttpClient, measured, type ResultRow, runHttpLoad } from './harness';
import { benchPatient, vitalSignObservation } from './vitals';

/**
 * Issue 6's workload: what the monitoring rules cost on ingest. Observations arrive in
 * 100-entry transaction Bundles for 1,000 patients who each have an active CarePlan of 5 limits
 * (systolic, diastolic, heart rate, weight, SpO2), 10% of the readings breaking one (so Flags are
 * opened, then updated: the no-storm path), beside the same ingest for 1,000 patients without
 * plans. Same bodies but for the subject and the breaching values; both through the server, so
 * the ratio is the rules' share: the enrich lookup of the batch's plans (one query), judging,
 * interpretation/referenceRange (re-validated), and the Flag writes in the same transaction.
 * Target: the rules cost under 15% of throughput.
 *
 * `--n` counts Observations per phase.
 */

const PATIENTS = 1000;
const SIZE = 100;
const TARGET_COST = 0.15;
const UCUM = 'http://unitsofmeasure.org';

const fmt = (x: number) => Math.round(x).toLocaleString('en-US');

async function transaction(client: HttpClient, entry: fhir4.BundleEntry[]): Promise<string[]> {
  const res = await client.request('POST', '', JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry }));
  if (res.status !== 200) throw new Error(`setup transaction: ${res.status} ${res.body.slice(0, 300)}`);
  const bundle = JSON.parse(res.body) as fhir4.Bundle;
  return bundle.entry!.map((e) => e.response!.location!.split('/_history')[0]!);
}

async function createPatients(ctx: BenchContext, client: HttpClient, offset: number): Promise<string[]> {
  const refs: string[] = [];
  for (let b = 0; b < PATIENTS / SIZE; b++) {
    const entry = Array.from({ length: SIZE }, (_, i) => ({
      fullUrl: `urn:uuid:${randomUUID()}`,
      resource: benchPatient(ctx.identifierSystem, offset + b * SIZE + i),
      request: { method: 'POST' as const, url: 'Patient' },
    }));
    refs.push(...(await transaction(client, entry)));
  }
  return refs;
}

const limit = (code: string, unit: string, low: number | undefined, high: number | undefined): fhir4.GoalTarget => ({
  measure: { coding: [{ system: 'http://loinc.org', code }] },
  detailRange: {
    ...(low !== undefined ? { low: { value: low, unit, system: UCUM, code: unit } } : {}),
    ...(high !== undefined ? { high: { value: high, unit, system: UCUM, code: unit } } : {}),
  },
});

/** A monitoring plan of 5 limits, wide enough that the bench vitals stay inside unless forced out. */
function carePlan(patientRef: string): fhir4.CarePlan {
  return {
    resourceType: 'CarePlan',
    status: 'active',
    intent: 'plan',
    subject: { reference: patientRef },
    contained: [{
      resourceType: 'Goal' as const, id: 'limits', lifecycleStatus: 'active', description: { text: 'Home monitoring limits' }, subject: { reference: patientRef },
      target: [limit('8480-6', 'mm[Hg]', 90, 160), limit('8462-4', 'mm[Hg]', 50, 100), limit('8867-4', '/min', 40, 110), limit('29463-7', 'kg', 40, 120), limit('59408-5', '%', 90, undefined)],
    } satisfies fhir4.Goal as fhir4.FhirResource],
    goal: [{ reference: '#limits' }],
  };
}

/** The k-th reading for `refs`: the bench vitals, with 1 in 10 pushed over a limit (weight or systolic). */
function reading(ctx: BenchContext, refs: string[], k: number, base: number): fhir4.Observation {
  const obs = vitalSignObservation({ patientRef: refs[k % refs.length]!, identifierSystem: ctx.identifierSystem, index: k, effective: new Date(base + k * 1000) });
  obs.identifier = [{ system: ctx.identifierSystem, value: `monitoring-${k}` }];
  if (k % 20 === 7 && obs.valueQuantity) obs.valueQuantity.value = 150; // index % 5 = 2: a weight, above 120 kg
  if (k % 20 === 15 && obs.component) obs.component[0]!.valueQuantity!.value = 175; // index % 5 = 0: a BP panel, systolic above 160
  return obs;
}

let next = 0;
function bodies(ctx: BenchContext, refs: string[], count: number): string[] {
  const first = next;
  next += count * SIZE;
  const base = Date.now() - 86_400_000;
  return Array.from({ length: count }, (_, b) => {
    const entry = Array.from({ length: SIZE }, (_, e) => ({
      fullUrl: `urn:uuid:${randomUUID()}`,
      resource: reading(ctx, refs, first + b * SIZE + e, base),
      request: { method: 'POST' as const, url: 'Observation' },
    }));
    return JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry });
  });
}

const CREATED = /"status":"201 Created"/g;

async function phase(ctx: BenchContext, refs: string[], bundles: number, concurrency: number) {
  const phaseCtx: BenchContext = { ...ctx, warmup: Math.min(ctx.warmup, 10) };
  const all = bodies(ctx, refs, phaseCtx.warmup + bundles);
  return measured(phaseCtx, 'server', () =>
    runHttpLoad(phaseCtx, bundles, concurrency, async (client, i) => {
      const res = await client.request('POST', '', all[i]);
      if (res.status !== 200) return res;
      const created = res.body.match(CREATED)?.length ?? 0;
      return created === SIZE ? res : { ...res, status: 590, body: `${created} of ${SIZE} entries created: ${res.body.slice(0, 200)}` };
    }),
  );
}

export const workloads: BenchWorkload[] = [
  {
    name: 'monitoring',
    description: `transactions of ${SIZE} Observations for ${PATIENTS} patients with an active CarePlan of 5 limits (10% breaching) vs. ${PATIENTS} patients without plans`,
    async run(ctx) {
      const client = new HttpClient(ctx.fhirBase, 2);
      let planned: string[];
      let unplanned: string[];
      try {
        ctx.log(`monitoring: ${2 * PATIENTS} patients and ${PATIENTS} CarePlans…`);
        planned = await createPatients(ctx, client, 100_000);
        unplanned = await createPatients(ctx, client, 200_000);
        for (let b = 0; b < PATIENTS / SIZE; b++) {
          await transaction(client, planned.slice(b * SIZE, (b + 1) * SIZE).map((ref) => ({ resource: carePlan(ref), request: { method: 'POST' as const, url: 'CarePlan' } })));
        }
      } finally {
        client.close();
      }
      const bundles = Math.max(1, Math.ceil(ctx.n(5000) / SIZE));
      const rows: ResultRow[] = [];
      for (const concurrency of [1, 2]) {
        const group = `monitoring c=${concurrency}`;
        ctx.log(`${group}: ${bundles} bundles without plans…`);
        const without = await phase(ctx, unplanned, bundles, concurrency);
        ctx.log(`${group}: ${bundles} bundles with plans…`);
        const withPlans = await phase(ctx, planned, bundles, concurrency);
        const a = without.stats.perSecond * SIZE;
        const b = withPlans.stats.perSecond * SIZE;
        const cost = 1 - b / a;
        // CPU per Observation (server + PostgreSQL) is steadier than throughput on a shared machine.
        const cpu = (p: typeof without) => (p.cpu.server ?? 0) + (p.cpu.postgres ?? 0);
        const cpuCost = cpu(without) > 0 ? cpu(withPlans) / cpu(without) - 1 : NaN;
        const verdict = `rules cost ${(cost * 100).toFixed(1)}% of throughput, ${(cpuCost * 100).toFixed(1)}% more CPU (server + postgres) per Observation; target <${TARGET_COST * 100}% ${cost < TARGET_COST ? 'MET' : 'NOT MET'}`;
        ctx.log(`${group}: without plans ${fmt(a)} Obs/s, with plans ${fmt(b)} Obs/s; ${verdict}`);
        const perObs = (ms: number | undefined) => (ms === undefined ? '–' : `${((ms / SIZE) * 1000).toFixed(0)} µs`);
        rows.push(
          { workload: 'monitoring', group: `${group} no plans`, target: 'server', concurrency, ...without, note: `${fmt(a)} Observations/s for patients without plans (server CPU ${perObs(without.cpu.server)}, postgres ${perObs(without.cpu.postgres)} per Observation)` },
          { workload: 'monitoring', group: `${group} plans`, target: 'server', concurrency, ...withPlans, note: `${fmt(b)} Observations/s for patients with 5-limit plans, 10% breaching (server CPU ${perObs(withPlans.cpu.server)}, postgres ${perObs(withPlans.cpu.postgres)} per Observation); ${verdict}` },
        );
      }
      return rows;
    },
  },
];
