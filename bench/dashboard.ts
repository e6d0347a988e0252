import os from 'node:os';
import pino from 'pino';
import type { AuthState } from '../src/auth/state';
import { issueAccessToken } from '../src/auth/tokens';
import { addUser } from '../src/auth/users';
import { loadConfig } from '../src/config';
import { createServer } from '../src/server';
import { launchChromium } from '../test/helpers/browser';
import { freePort } from '../test/helpers/port';
import { examplePlanFor } from '../test/helpers/monitoring-plan';

/**
 * `npm run bench:dashboard [-- --patients 100 --days 365 --runs 15]`
 *
 * The dashboard's ward at scale: PATIENTS patients, each on the example monitoring plan with
 * DAYS days of readings (blood pressure twice a day, SpO2 and weight daily, about 1 in 100
 * outside the limits so every patient has active Flags), written through the device door.
 * Then headless Chromium signs in once and opens the ward RUNS times (a reload with the
 * session's token, assets cached as a clinician's browser has them), and once the patient view
 * of one patient's year. Figures: navigation start to the view on screen with its data
 * (performance mark `ward-ready` / `patient-ready`). DATABASE_URL picks the database
 * (default: embedded, in memory); on PostgreSQL use a database of its own, the rows stay.
 */

const DAY = 86_400_000;

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

/** A deterministic pseudo-random sequence, so runs compare. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

function readings(days: number, now: number, rnd: () => number): unknown[] {
  const out: unknown[] = [];
  const loinc = (code: string) => ({ system: 'http://loinc.org', code });
  const breach = () => rnd() < 0.01;
  for (let d = days; d >= 1; d--) {
    const day = now - d * DAY;
    for (const h of [7, 19]) {
      const time = new Date(day - (day % DAY) + h * 3_600_000).toISOString();
      out.push({
        code: loinc('85354-9'), time,
        components: [
          { code: loinc('8480-6'), value: breach() ? 150 + Math.round(rnd() * 40) : 110 + Math.round(rnd() * 25), unit: 'mm[Hg]' },
          { code: loinc('8462-4'), value: 65 + Math.round(rnd() * 20), unit: 'mm[Hg]' },
        ],
      });
    }
    const time = new Date(day - (day % DAY) + 8 * 3_600_000).toISOString();
    out.push({ code: loinc('59408-5'), value: breach() ? 88 : 94 + Math.round(rnd() * 5), unit: '%', time });
    out.push({ code: loinc('29463-7'), value: 70 + Math.round(rnd() * 40) / 10, unit: 'kg', time });
  }
  return out;
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;

async function main(): Promise<void> {
  const patients = arg('patients', 100);
  const days = arg('days', 365);
  const runs = arg('runs', 15);
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const config = loadConfig({ ...process.env, PORT: String(port), HOST: '127.0.0.1', BASE_URL: origin, LOG_LEVEL: 'silent', DATABASE_URL: process.env.DATABASE_URL ?? 'pglite://memory' });
  const app = await createServer(config, { logger: pino({ level: 'silent' }) });
  await app.server.start();
  const state = (app.server.plugins as unknown as Record<string, { state: AuthState }>)['smart-auth']!.state;
  const token = (await issueAccessToken(state, { clientId: 'bench', scopes: ['system/*.cruds'] })).accessToken;
  const post = async (path: string, body: unknown) => {
    const res = await fetch(`${origin}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' }, body: JSON.stringify(body) });
    if (res.status >= 300) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as { id?: string };
  };

  const now = Date.now();
  const start = new Date(now - days * DAY).toISOString().slice(0, 10);
  const rnd = random(18);
  const t0 = Date.now();
  let observations = 0;
  let firstPatient = '';
  const tag = Date.now().toString(36);
  for (let i = 0; i < patients; i++) {
    const patient = (await post('/fhir/Patient', { resourceType: 'Patient', name: [{ family: `Ward${tag}-${i}`, given: ['Bench'] }], birthDate: '1945-01-01' })).id!;
    firstPatient ||= patient;
    await post('/fhir/CarePlan', examplePlanFor(patient, start));
    const batch = readings(days, now, rnd);
    await post('/ingest/readings', { device: { identifier: { system: 'urn:bench:serial', value: `dev-${tag}-${i}` }, create: true }, patient: { reference: `Patient/${patient}` }, readings: batch });
    observations += batch.length;
    if ((i + 1) % 10 === 0) process.stderr.write(`  ${i + 1}/${patients} patients, ${observations} readings, ${Math.round((Date.now() - t0) / 1000)} s\n`);
  }
  const loadSeconds = (Date.now() - t0) / 1000;

  const user = { username: `bench-${tag}`, password: 'bench password long enough' };
  const practitioner = (await post('/fhir/Practitioner', { resourceType: 'Practitioner', name: [{ family: 'Bench' }] })).id!;
  await addUser(state.db, { ...user, fhirUser: `Practitioner/${practitioner}` });

  const browser = await launchChromium();
  try {
    const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
    await page.goto(`${origin}/app`);
    await page.getByLabel('Username').fill(user.username);
    await page.getByLabel('Password').fill(user.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('button', { name: 'Allow' }).click();
    const mark = async (name: string) => {
      await page.waitForSelector(`body[data-ready="${name.replace('-ready', '')}"]`, { timeout: 60_000 });
      return page.evaluate((n) => performance.getEntriesByName(n)[0]?.startTime ?? Number.NaN, name);
    };
    const firstOpen = await mark('ward-ready');
    const rows = await page.locator('table.ward tbody tr').count();
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      await page.reload();
      times.push(await mark('ward-ready'));
    }
    await page.goto(`${origin}/app#/patient/${firstPatient}`);
    await page.reload();
    const patientOpen = await mark('patient-ready');
    times.sort((a, b) => a - b);
    const cpu = os.cpus();
    console.log(`dashboard ward, ${os.cpus().length} × ${cpu[0]?.model ?? 'cpu'}, Node ${process.version}, database ${app.ctx.db.kind}`);
    console.log(`data: ${patients} patients × ${days} days = ${observations} readings through /ingest/readings in ${loadSeconds.toFixed(0)} s; ward lists ${rows} patients`);
    console.log(`ward open (reload with session, cached assets), ${runs} runs: median ${percentile(times, 50).toFixed(0)} ms, p95 ${percentile(times, 95).toFixed(0)} ms, max ${times[times.length - 1]!.toFixed(0)} ms`);
    console.log(`ward first open (after sign-in: code exchange, cold asset cache): ${firstOpen.toFixed(0)} ms`);
    console.log(`patient view, one patient's year (${Math.round(observations / patients)} readings): ${patientOpen.toFixed(0)} ms`);
  } finally {
    await browser.close();
    await app.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
