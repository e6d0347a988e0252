import { randomUUID } from 'node:crypto';
import { type BenchWorkload, HttpClient, type ResultRow } from './harness';
import { patients, rawCreates, serverCreate } from './crud';
import { benchPatient } from './vitals';

/**
 * What live Subscriptions cost a write: creates at c=16 with none, then beside SUBSCRIPTIONS
 * Subscriptions whose criteria name other patients' Observations (a clinician's per-patient
 * subscription, the common shape in remote monitoring), then beside MATCHING that match every
 * heart rate (two readings in five), beside the raw create. A write used to run one search per
 * live Subscription of its type (src/monitoring/notify.ts); plain criteria and grants are now
 * judged in memory (src/search/criteria-match.ts), so the server figures should be alike. The
 * Subscriptions are deleted afterwards.
 */

const SUBSCRIPTIONS = 200;
/** Type-wide Subscriptions every heart rate matches (websocket, as the dashboard's: a NOTIFY, no delivery to wait for). */
const MATCHING = 50;
const SIZE = 100;

/** Runs a transaction; the references of what it created (none for deletes). */
async function transaction(client: HttpClient, entry: fhir4.BundleEntry[]): Promise<string[]> {
  const res = await client.request('POST', '', JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry }));
  if (res.status !== 200) throw new Error(`subscriptions setup: ${res.status} ${res.body.slice(0, 300)}`);
  return (JSON.parse(res.body) as fhir4.Bundle).entry!.flatMap((e) => (e.response?.location ? [e.response.location.split('/_history')[0]!] : []));
}

export const workloads: BenchWorkload[] = [
  {
    name: 'subscriptions',
    description: `create c=16 with no live Subscriptions, then beside ${SUBSCRIPTIONS} on other patients' Observations, vs. the raw create`,
    async run(ctx) {
      const refs = await patients(ctx);
      const n = ctx.n(3000);
      const rows: ResultRow[] = [];
      ctx.log(`subscriptions: create c=16, ${n} with no live Subscriptions…`);
      const none = await serverCreate(ctx, refs, n, 16);
      rows.push({ ...none.row, workload: 'subscriptions', group: 'create c=16, 0 subs' });

      const client = new HttpClient(ctx.fhirBase, 2);
      let subscriptions: string[] = [];
      try {
        const others: string[] = [];
        for (let b = 0; b < SUBSCRIPTIONS / SIZE; b++) {
          others.push(...(await transaction(client, Array.from({ length: SIZE }, (_, i) => ({
            fullUrl: `urn:uuid:${randomUUID()}`, resource: benchPatient(ctx.identifierSystem, 300_000 + b * SIZE + i), request: { method: 'POST' as const, url: 'Patient' },
          })))));
        }
        for (let b = 0; b < SUBSCRIPTIONS / SIZE; b++) {
          subscriptions.push(...(await transaction(client, others.slice(b * SIZE, (b + 1) * SIZE).map((ref) => ({
            resource: { resourceType: 'Subscription', status: 'requested', reason: 'bench', criteria: `Observation?patient=${ref}`, channel: { type: 'rest-hook', endpoint: 'https://example.org/hook' } } as fhir4.Subscription,
            request: { method: 'POST' as const, url: 'Subscription' },
          })))));
        }
        ctx.log(`subscriptions: create c=16, ${n} beside ${subscriptions.length} live Subscriptions…`);
        const beside = await serverCreate(ctx, refs, n, 16);
        rows.push({ ...beside.row, workload: 'subscriptions', group: `create c=16, ${subscriptions.length} subs`, note: `POST /Observation beside ${subscriptions.length} live Subscriptions on other patients' Observations` });

        subscriptions.push(...(await transaction(client, Array.from({ length: MATCHING }, () => ({
          resource: { resourceType: 'Subscription', status: 'requested', reason: 'bench', criteria: 'Observation?code=http://loinc.org|8867-4', channel: { type: 'websocket' } } as fhir4.Subscription,
          request: { method: 'POST' as const, url: 'Subscription' },
        })))));
        ctx.log(`subscriptions: create c=16, ${n} beside ${MATCHING} more that match every heart rate…`);
        const matching = await serverCreate(ctx, refs, n, 16);
        rows.push({ ...matching.row, workload: 'subscriptions', group: `create c=16, +${MATCHING} matching`, note: `POST /Observation beside those and ${MATCHING} websocket Subscriptions every heart rate matches (2 readings in 5)` });
      } finally {
        for (let b = 0; b < subscriptions.length; b += SIZE) {
          await transaction(client, subscriptions.slice(b, b + SIZE).map((ref) => ({ request: { method: 'DELETE' as const, url: ref } })));
        }
        subscriptions = [];
        client.close();
      }
      ctx.log('subscriptions: the raw create…');
      const raw = await rawCreates(ctx, refs, n, 16);
      rows.push({ ...raw.row, workload: 'subscriptions', group: 'create c=16, raw' });
      return rows;
    },
  },
];
