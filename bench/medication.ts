import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { type CompiledRequest, compileRequest, dosesBetween } from '../src/medication/timing';
import { type BenchContext, type BenchWorkload, HttpClient, measured, type ResultRow, runLoad } from './harness';
import { benchPatient } from './vitals';

/**
 * Issue 19's workload: due-dose computation for 10,000 patients, each in one of four time zones
 * (two with daylight saving) with two MedicationRequests: twice daily at 08:00/20:00, and every
 * 8 hours from 06:00. Two figures:
 * - `medication-due` over HTTP: MedicationRequest/$due?patient=…&start&end for the next 24 h,
 *   once per patient (the tablet's question: policy, search of the requests and the
 *   administrations, compiled schedules, patient zone, statuses);
 * - `medication-due batch`: one pass computing every patient's doses for the next 24 h from the
 *   compiled schedules (what the reminder and judgement jobs do after loading them), in this
 *   process with the server's own code (src/medication/timing.ts), no database.
 *
 * `--n` counts patients (default 10,000).
 */

const SIZE = 100;
const ZONES = ['Europe/Berlin', 'America/New_York', 'Asia/Tokyo', 'UTC'];
const TIMEZONE_URL = 'http://hl7.org/fhir/StructureDefinition/timezone';
const fmt = (x: number) => Math.round(x).toLocaleString('en-US');

const twiceDaily: fhir4.Timing = { repeat: { frequency: 2, period: 1, periodUnit: 'd', timeOfDay: ['08:00:00', '20:00:00'] } };
const every8h: fhir4.Timing = { repeat: { frequency: 1, period: 8, periodUnit: 'h', timeOfDay: ['06:00:00'] } };

function medicationRequest(patientRef: string, timing: fhir4.Timing, authoredOn: string): fhir4.MedicationRequest {
  return {
    resourceType: 'MedicationRequest', status: 'active', intent: 'order', subject: { reference: patientRef }, authoredOn,
    medicationCodeableConcept: { coding: [{ system: 'http://www.nlm.nih.gov/research/umls/rxnorm', code: '860975', display: 'Metformin 500 MG' }], text: 'Metformin 500 mg' },
    dosageInstruction: [{ text: 'one tablet', timing }],
  };
}

async function transaction(client: HttpClient, entry: fhir4.BundleEntry[]): Promise<string[]> {
  const res = await client.request('POST', '', JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry }));
  if (res.status !== 200) throw new Error(`setup transaction: ${res.status} ${res.body.slice(0, 300)}`);
  return (JSON.parse(res.body) as fhir4.Bundle).entry!.map((e) => e.response!.location!.split('/_history')[0]!);
}

export const workloads: BenchWorkload[] = [
  {
    name: 'medication',
    description: 'due doses for the next 24 h of 10,000 patients (4 zones, a twice-daily and an every-8-hours request each): $due over HTTP per patient, and one batch pass',
    async run(ctx: BenchContext) {
      const patients = ctx.n(10_000);
      const authoredOn = new Date(Date.now() - 7 * 86_400_000).toISOString().slice(0, 10);
      const client = new HttpClient(ctx.fhirBase, 2);
      const refs: string[] = [];
      const zones: string[] = [];
      const setupStart = performance.now();
      try {
        ctx.log(`medication: ${fmt(patients)} patients with 2 MedicationRequests each…`);
        for (let b = 0; b * SIZE < patients; b++) {
          const count = Math.min(SIZE, patients - b * SIZE);
          const entry = Array.from({ length: count }, (_, i) => {
            const k = b * SIZE + i;
            const patient = benchPatient(ctx.identifierSystem, 300_000 + k);
            patient.extension = [{ url: TIMEZONE_URL, valueCode: ZONES[k % ZONES.length]! }];
            return { fullUrl: `urn:uuid:${randomUUID()}`, resource: patient, request: { method: 'POST' as const, url: 'Patient' } };
          });
          const made = await transaction(client, entry);
          refs.push(...made);
          zones.push(...made.map((_, i) => ZONES[(b * SIZE + i) % ZONES.length]!));
          // Both requests of 50 patients per bundle: 100 entries.
          for (let h = 0; h < made.length; h += SIZE / 2) {
            await transaction(client, made.slice(h, h + SIZE / 2).flatMap((ref) => [twiceDaily, every8h].map((t) => ({ resource: medicationRequest(ref, t, authoredOn), request: { method: 'POST' as const, url: 'MedicationRequest' } }))));
          }
        }
      } finally {
        client.close();
      }
      ctx.log(`medication: setup ${((performance.now() - setupStart) / 1000).toFixed(1)} s`);

      const start = new Date();
      const end = new Date(start.getTime() + 86_400_000);
      const window = `start=${encodeURIComponent(start.toISOString())}&end=${encodeURIComponent(end.toISOString())}`;
      const rows: ResultRow[] = [];
      for (const concurrency of [2]) {
        const group = `medication-due c=${concurrency}`;
        ctx.log(`${group}: $due for ${fmt(patients)} patients…`);
        const phaseCtx = { ...ctx, warmup: Math.min(ctx.warmup, 50) };
        let doses = 0;
        let answers = 0;
        const client2 = new HttpClient(ctx.fhirBase, concurrency);
        const http = await measured(phaseCtx, 'server', () =>
          runLoad({
            n: patients, concurrency, warmup: phaseCtx.warmup, maxSeconds: ctx.maxSeconds,
            op: async (i) => {
              const res = await client2.request('GET', `MedicationRequest/$due?patient=${refs[i % refs.length]!.split('/')[1]}&${window}`);
              if (res.status !== 200) return { ok: false, detail: `${res.status} ${res.body.slice(0, 200)}` };
              const n = (res.body.match(/"name":"dose"/g) ?? []).length;
              // 2 (twice daily) + 3 (every 8 h) doses in 24 h; one more or less across a clock change.
              if (n < 4 || n > 6) return { ok: false, detail: `${n} doses, expected 5` };
              doses += n;
              answers++;
              return { ok: true };
            },
          }),
        ).finally(() => client2.close());
        const total = http.stats.count / http.stats.perSecond;
        ctx.log(`${group}: ${fmt(http.stats.perSecond)} patients/s, ${fmt(http.stats.count)} patients in ${total.toFixed(1)} s`);
        rows.push({ workload: 'medication', group, target: 'server', concurrency, ...http, note: `$due (24 h) for ${fmt(http.stats.count)} patients: ${total.toFixed(1)} s at ${fmt(http.stats.perSecond)} patients/s, ${(doses / Math.max(answers, 1)).toFixed(2)} doses per patient` });
      }

      // The batch pass: the server's compiled form of the same requests, computed for everyone.
      const compiled: Array<{ zone: string; request: CompiledRequest }> = [];
      for (const [i, ref] of refs.entries()) {
        for (const t of [twiceDaily, every8h]) compiled.push({ zone: zones[i]!, request: compileRequest(medicationRequest(ref, t, authoredOn), Date.now()) });
      }
      let batchDoses = 0;
      const batch = await measured({ ...ctx, warmup: 1 }, 'server', () =>
        runLoad({
          n: 5, concurrency: 1, warmup: 1, maxSeconds: ctx.maxSeconds,
          op: async () => {
            let n = 0;
            for (const c of compiled) n += dosesBetween(c.request, { zone: c.zone }, start.getTime(), end.getTime()).length;
            batchDoses = n;
            return Math.abs(n - 5 * refs.length) <= refs.length ? { ok: true } : { ok: false, detail: `${n} doses, expected about ${5 * refs.length}` };
          },
        }),
      );
      ctx.log(`medication-due batch: ${fmt(refs.length)} patients' doses in ${(batch.stats.p50 / 1000).toFixed(2)} s (median of ${batch.stats.count} passes)`);
      rows.push({
        workload: 'medication', group: 'medication-due batch', target: 'server', concurrency: 1, ...batch,
        note: `one pass over ${fmt(refs.length)} patients (${fmt(compiled.length)} requests, ${fmt(batchDoses)} doses in 24 h): median ${(batch.stats.p50 / 1000).toFixed(2)} s, in-process, no database`,
      });
      return rows;
    },
  },
];
