import os from 'node:os';
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import type { AuthState } from '../src/auth/state';
import { issueAccessToken } from '../src/auth/tokens';
import { forgetConsents } from '../src/access/consent';
import { loadConfig } from '../src/config';
import { createServer } from '../src/server';
import { actor, consent, observation, VITAL_SIGNS } from '../test/helpers/consent';
import { percentile } from './harness';

/**
 * `npm run bench:consent [-- --patients 50 --per 20 --rounds 400]`
 *
 * What Consents cost a request (decision record 015). PATIENTS patients with PER vital-sign
 * Observations each, a Consent per patient naming someone else, then, interleaved round by
 * round so that machine noise falls on every variant alike, one authenticated read of an
 * Observation (GET Observation/{id}, token check included) as:
 *   - system:    a backend token, no user: the Consent code path is a type check;
 *   - clinician: a Practitioner no Consent names (the common case: one cache lookup);
 *   - uncached:  the same with the cache dropped before each request (one indexed search);
 *   - denied:    a Practitioner a deny names (the exclusion is a condition of the SQL);
 *   - patient-scoped: a patient/ token without a user, for comparison (compartment in the SQL);
 *   - caregiver: a RelatedPerson granted vital signs (compartment + category in the SQL);
 * and a search of the patient's Observations (the hot monitoring shape) for clinician vs denied.
 * In process (server.inject), so the figures are the server's own work without HTTP sockets.
 * DATABASE_URL picks the database (default: embedded, in memory).
 */

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

async function main(): Promise<void> {
  const patients = arg('patients', 50);
  const per = arg('per', 20);
  const rounds = arg('rounds', 400);
  const config = loadConfig({ ...process.env, AUTH_DISABLED: 'false', LOG_LEVEL: 'silent', DATABASE_URL: process.env.DATABASE_URL || 'pglite://memory' });
  const app = await createServer(config, { logger: pino({ level: 'silent' }) });
  const state = (app.server.plugins as unknown as Record<string, { state: AuthState }>)['smart-auth']!.state;
  const bearer = async (grant: Parameters<typeof issueAccessToken>[1]) => ({ authorization: `Bearer ${(await issueAccessToken(state, grant)).accessToken}` });
  const system = await bearer({ clientId: 'bench', scopes: ['system/*.cruds'] });
  const create = async (body: Record<string, unknown>) => {
    const res = await app.server.inject({ method: 'POST', url: `/fhir/${String(body.resourceType)}`, payload: body, headers: system });
    if (res.statusCode !== 201) throw new Error(res.payload);
    return (JSON.parse(res.payload) as { id: string }).id;
  };

  const started = performance.now();
  const patientIds: string[] = [];
  const observationIds: string[] = [];
  for (let p = 0; p < patients; p++) {
    const patient = await create({ resourceType: 'Patient', name: [{ family: `Bench${p}` }] });
    patientIds.push(patient);
    for (let i = 0; i < per; i++) observationIds.push(await create(observation(patient, '8867-4', 'vital-signs')));
    await create(consent(patient, { type: 'deny', actor: [actor(`Practitioner/someone-else-${p}`)], class: [VITAL_SIGNS] }));
  }
  const first = patientIds[0]!;
  const carol = await create({ resourceType: 'RelatedPerson', active: true, patient: { reference: `Patient/${first}` } });
  await create(consent(first, { type: 'permit', actor: [actor(`RelatedPerson/${carol}`)], class: [VITAL_SIGNS] }));
  await create(consent(patientIds[1]!, { type: 'deny', actor: [actor('Practitioner/denied')], class: [VITAL_SIGNS] }));
  console.log(`data: ${patients} patients × ${per} Observations, ${patients + 2} Consents, loaded in ${((performance.now() - started) / 1000).toFixed(1)} s`);

  const clinician = await bearer({ clientId: 'bench', scopes: ['user/*.rs'], fhirUser: 'Practitioner/nobody-names-me' });
  const denied = await bearer({ clientId: 'bench', scopes: ['user/*.rs'], fhirUser: 'Practitioner/denied' });
  const patientScoped = await bearer({ clientId: 'bench', scopes: ['patient/*.rs'], patient: first });
  const caregiver = await bearer({ clientId: 'bench', scopes: ['patient/*.rs'], patient: first, fhirUser: `RelatedPerson/${carol}` });
  const firstsObservations = observationIds.slice(0, per);
  const others = observationIds.slice(2 * per);

  const variants: Array<{ name: string; headers: Record<string, string>; url: (i: number) => string; before?: () => void }> = [
    { name: 'read   system', headers: system, url: (i) => `/fhir/Observation/${observationIds[i % observationIds.length]}` },
    { name: 'read   clinician (no Consent names them)', headers: clinician, url: (i) => `/fhir/Observation/${observationIds[i % observationIds.length]}` },
    { name: 'read   clinician, cache dropped each time', headers: clinician, url: (i) => `/fhir/Observation/${observationIds[i % observationIds.length]}`, before: forgetConsents },
    // Reads of the patients the deny does not cover: the exclusion is still a condition of the SQL.
    { name: 'read   clinician named by a deny', headers: denied, url: (i) => `/fhir/Observation/${others[i % others.length]}` },
    { name: 'read   patient-scoped token (for comparison)', headers: patientScoped, url: (i) => `/fhir/Observation/${firstsObservations[i % per]}` },
    { name: 'read   caregiver granted vital signs', headers: caregiver, url: (i) => `/fhir/Observation/${firstsObservations[i % per]}` },
    { name: 'search clinician (no Consent names them)', headers: clinician, url: (i) => `/fhir/Observation?patient=${patientIds[i % patients]}&code=http://loinc.org|8867-4&_sort=-date&_count=50` },
    { name: 'search clinician named by a deny', headers: denied, url: (i) => `/fhir/Observation?patient=${patientIds[i % patients]}&code=http://loinc.org|8867-4&_sort=-date&_count=50` },
  ];
  const samples = variants.map(() => [] as number[]);
  const warmup = Math.min(50, Math.floor(rounds / 4));
  for (let round = 0; round < rounds + warmup; round++) {
    for (const [v, variant] of variants.entries()) {
      variant.before?.();
      const t = performance.now();
      const res = await app.server.inject({ method: 'GET', url: variant.url(round), headers: variant.headers });
      const ms = performance.now() - t;
      if (res.statusCode !== 200) throw new Error(`${variant.name}: ${res.statusCode} ${res.payload.slice(0, 200)}`);
      if (round >= warmup) samples[v]!.push(ms);
    }
  }

  console.log(`machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}; database: ${config.databaseUrl.startsWith('postgres') ? 'PostgreSQL' : 'PGlite (in memory)'}; ${rounds} rounds`);
  console.log('variant                                      p50 ms   p95 ms   p99 ms');
  for (const [v, variant] of variants.entries()) {
    const sorted = Float64Array.from(samples[v]!).sort();
    console.log(`${variant.name.padEnd(44)} ${percentile(sorted, 0.5).toFixed(2).padStart(7)}  ${percentile(sorted, 0.95).toFixed(2).padStart(7)}  ${percentile(sorted, 0.99).toFixed(2).padStart(7)}`);
  }
  await app.stop();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
