import { setTimeout as sleep } from 'node:timers/promises';
import { type BenchContext, type BenchWorkload, type CpuPerRequest, type HttpClient, type LoadStats, measured, runHttpLoad } from './harness';
import { idFromLocation, patients } from './crud';
import { vitalSignObservation } from './vitals';

/**
 * Issue 14's figure: what the audit trail costs, measured as an A/B inside one run. A second
 * server process with AUDIT=false serves the same database beside the bench's own server
 * (audit on), and each phase runs in alternating rounds, off then on, then on then off (ABBA),
 * so that drift in the machine's load (other processes, autovacuum, the page cache) falls on
 * both sides alike. Separate `npm run bench` runs with and without AUDIT moved by ±30 %
 * between runs of the same code on the shared 2-core machine; rounds a second apart do not.
 *
 * Each side's round is followed by a pause inside its measurement, so that the audit's work
 * after the response (the read recorder's batch, the chainer's move of staged rows) is charged
 * to the round that caused it, not to the next side's.
 *
 * Prints, per phase, the median of the rounds' req/s and p95 of each side, the cost
 * (1 − on ÷ off) and the CPU per request of the server and of PostgreSQL.
 * AUDIT_COST_ROUNDS (default 6) sets the number of rounds per side; AUDIT_COST_PHASES (`read,hot`)
 * runs only the phases whose names start so (create c=16 always runs: read reads what it made).
 */

/** Long enough for the recorder's flush and the chainer's kick and poll (1 s) to run inside the round. */
const SETTLE_MS = 1_200;
const WARMUP = 100;

interface Side {
  name: 'off' | 'on';
  ctx: BenchContext;
}

interface Round {
  stats: LoadStats;
  cpu: CpuPerRequest;
}

interface Phase {
  group: string;
  concurrency: number;
  n: number;
  request(client: HttpClient, i: number): ReturnType<HttpClient['request']>;
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

function rounds(): number {
  return Math.max(2, Number(process.env.AUDIT_COST_ROUNDS ?? 6));
}

function phases(refs: string[], created: string[], scale: (n: number) => number): Phase[] {
  let index = 0;
  const base = Date.now() - 30 * 86_400_000;
  const create = (client: HttpClient) => {
    const k = index++;
    const body = vitalSignObservation({ patientRef: refs[k % refs.length]!, identifierSystem: 'urn:bench:audit-cost', index: k, effective: new Date(base + k * 60_000) });
    return client.request('POST', 'Observation', JSON.stringify(body)).then((res) => {
      if (res.status === 201) created.push(idFromLocation(res.headers.location));
      return res;
    });
  };
  const since = new Date(Date.now() - 90 * 86_400_000).toISOString().slice(0, 10);
  return [
    { group: 'create c=1', concurrency: 1, n: scale(400), request: create },
    { group: 'create c=16', concurrency: 16, n: scale(1_500), request: create },
    { group: 'read c=16', concurrency: 16, n: scale(5_000), request: (client, i) => client.request('GET', `Observation/${created[(i * 7919) % created.length]}`) },
    {
      group: 'hot search c=8, no _sort',
      concurrency: 8,
      n: scale(1_500),
      request: (client, i) => client.request('GET', `Observation?subject=${refs[i % refs.length]}&code=http://loinc.org|8867-4&date=ge${since}&_count=50`),
    },
  ];
}

async function measureRound(side: Side, phase: Phase): Promise<Round> {
  const ctx = { ...side.ctx, warmup: WARMUP };
  let stats: LoadStats | undefined;
  const { cpu } = await measured(ctx, 'server', async () => {
    stats = await runHttpLoad(ctx, phase.n, phase.concurrency, phase.request);
    await sleep(SETTLE_MS);
    return stats;
  });
  return { stats: stats!, cpu };
}

function summary(phase: Phase, results: Record<Side['name'], Round[]>): string {
  const of = (name: Side['name'], pick: (r: Round) => number | undefined) => median(results[name].map(pick).filter((v): v is number => v !== undefined));
  const rate = { off: of('off', (r) => r.stats.perSecond), on: of('on', (r) => r.stats.perSecond) };
  const p95 = { off: of('off', (r) => r.stats.p95), on: of('on', (r) => r.stats.p95) };
  const cpu = (name: Side['name']) => `${of(name, (r) => r.cpu.server).toFixed(3)} + ${of(name, (r) => r.cpu.postgres).toFixed(3)}`;
  const errors = [...results.off, ...results.on].reduce((sum, r) => sum + r.stats.errors, 0);
  const cost = (1 - rate.on / rate.off) * 100;
  // Each round's own cost (its on side against its off side, run back to back): how far one
  // round's figure strays from the medians, so that a reader sees the noise the 15 % sits in.
  const perRound = results.on.map((on, i) => (1 - on.stats.perSecond / results.off[i]!.stats.perSecond) * 100).sort((a, b) => a - b);
  const spread = perRound.length ? `, rounds ${perRound[0]!.toFixed(0)} to ${perRound[perRound.length - 1]!.toFixed(0)} %` : '';
  return (
    `audit cost, ${phase.group}: off ${rate.off.toFixed(0)} req/s p95 ${p95.off.toFixed(1)} ms, on ${rate.on.toFixed(0)} req/s p95 ${p95.on.toFixed(1)} ms ` +
    `→ ${cost.toFixed(1)} % (target < 15 %${spread}); CPU ms/req server + PostgreSQL: off ${cpu('off')}, on ${cpu('on')}; ` +
    `medians of ${results.on.length} ABBA rounds of ${phase.n} requests${errors ? `; ${errors} ERRORS` : ''}`
  );
}

export const workloads: BenchWorkload[] = [
  {
    name: 'audit-cost',
    description: 'the audit trail on against off: a second server with AUDIT=false on the same database, create/read/hot search in alternating rounds',
    async run(ctx) {
      if (process.env.AUDIT === 'false') {
        ctx.figure('audit cost: not measured (the bench server runs with AUDIT=false; the second server is the one without audit)');
        return [];
      }
      if (!ctx.startServer) throw new Error('audit-cost needs a second server process (BenchContext.startServer)');
      // The same public URL as the server measured, as two nodes behind one address have: an access
      // token's audience is that URL, so with BENCH_AUTH=on both sides accept the same tokens.
      const sibling = await ctx.startServer({ AUDIT: 'false', BASE_URL: ctx.fhirBase.replace(/\/fhir$/, '') });
      try {
        const sides: Side[] = [
          { name: 'off', ctx: { ...ctx, fhirBase: sibling.fhirBase, serverPid: sibling.pid } },
          { name: 'on', ctx },
        ];
        const refs = await patients(ctx);
        const created: string[] = [];
        const count = rounds();
        const only = process.env.AUDIT_COST_PHASES?.split(',');
        for (const phase of phases(refs, created, (n) => ctx.n(n))) {
          // create c=16 stays: read needs the ids it made.
          if (only && !only.some((name) => phase.group.startsWith(name)) && phase.group !== 'create c=16') continue;
          ctx.log(`audit cost: ${phase.group}, ${count} rounds of ${phase.n} per side…`);
          const results: Record<Side['name'], Round[]> = { off: [], on: [] };
          for (let r = 0; r < count; r++) {
            for (const side of r % 2 === 0 ? sides : [...sides].reverse()) results[side.name].push(await measureRound(side, phase));
          }
          ctx.figure(summary(phase, results));
        }
      } finally {
        await sibling.stop();
      }
      return [];
    },
  },
];
