import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import type { Browser, Page } from 'playwright-core';
import type { AuthState } from '../../src/auth/state';
import { issueAccessToken } from '../../src/auth/tokens';
import { addUser } from '../../src/auth/users';
import { DASHBOARD_CLIENT_ID } from '../../src/dashboard';
import { projectRoot } from '../../src/kernel/paths';
import { unique } from '../helpers/server';
import { startAuthServer, systemCreator } from '../auth/helpers';
import { launchChromium } from '../helpers/browser';
import { freePort } from '../helpers/port';
import { examplePlanFor } from '../helpers/monitoring-plan';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

type AuthServer = Awaited<ReturnType<typeof startAuthServer>>;

/** Screenshots for people to look at (gitignored). */
const SCREENSHOTS = join(projectRoot, 'screenshots');

describe('clinician dashboard in headless Chromium', () => {
  let app: AuthServer;
  let browser: Browser;
  let system: string;
  const ids: Record<string, string> = {};
  const clinician = { username: unique('dr'), password: 'correct horse battery staple' };
  const family = `Dashboard${unique().replace(/-/g, '')}`;

  const fhir = async (path: string, init: { method?: string; body?: unknown } = {}) => {
    const res = await fetch(`${app.origin}${path}`, {
      method: init.method ?? 'GET',
      headers: { authorization: `Bearer ${system}`, 'content-type': 'application/json' },
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
    });
    return { status: res.status, body: (await res.json()) as any };
  };

  /** A blood-pressure reading through the device door, as a home gateway sends it. */
  const ingestBloodPressure = (systolic: number, diastolic: number, time: Date) =>
    fhir('/ingest/readings', {
      method: 'POST',
      body: {
        device: { identifier: { system: 'urn:test:serial', value: `cuff-${ids.patient}` }, create: true },
        patient: { reference: `Patient/${ids.patient}` },
        readings: [{
          code: { system: 'http://loinc.org', code: '85354-9' },
          time: time.toISOString(),
          components: [
            { code: { system: 'http://loinc.org', code: '8480-6' }, value: systolic, unit: 'mm[Hg]' },
            { code: { system: 'http://loinc.org', code: '8462-4' }, value: diastolic, unit: 'mm[Hg]' },
          ],
        }],
      },
    });

  /** Sign-in and consent pages of the server, as a clinician fills them in. */
  async function signIn(page: Page): Promise<void> {
    // Where the browser is, when the sign-in page does not come: the failure says why.
    await page.getByLabel('Username').waitFor({ timeout: 15_000 }).catch(async (err: Error) => {
      throw new Error(`${err.message}\nat ${page.url()}:\n${(await page.content()).slice(0, 2000)}`);
    });
    await page.getByLabel('Username').fill(clinician.username);
    await page.getByLabel('Password').fill(clinician.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('button', { name: 'Allow' }).click();
  }

  /** The ward's rows by their newest alert, newest first (the shared test database may hold other suites' Flags). */
  async function expectNewestFirst(page: Page): Promise<void> {
    const times = await page.locator('table.ward tbody tr time').evaluateAll((els) => els.map((e) => Date.parse(e.getAttribute('datetime')!)));
    expect(times.length).to.be.at.least(1);
    expect(times).to.equal([...times].sort((a, b) => b - a));
  }

  before(async () => {
    // Chromium first: without it this suite fails here, loudly, instead of skipping.
    mkdirSync(SCREENSHOTS, { recursive: true });
    browser = await launchChromium();
    const port = await freePort();
    app = await startAuthServer({ PORT: String(port), BASE_URL: `http://127.0.0.1:${port}` });
    const state = (app.server.plugins as unknown as Record<string, { state: AuthState }>)['smart-auth']!.state;
    system = (await issueAccessToken(state, { clientId: 'setup', scopes: ['system/*.cruds'] })).accessToken;
    const create = await systemCreator(app);
    ids.practitioner = await create({ resourceType: 'Practitioner', name: [{ family: 'Quinn', given: ['Michaela'] }] });
    ids.patient = await create({ resourceType: 'Patient', name: [{ family, given: ['Ada'] }], gender: 'female', birthDate: '1944-05-17', identifier: [{ system: 'urn:example:mrn', value: 'MRN-4711' }] });
    await create(examplePlanFor(ids.patient, new Date(Date.now() - 10 * 86_400_000).toISOString().slice(0, 10)) as unknown as Record<string, unknown>);
    await addUser(state.db, { ...clinician, fhirUser: `Practitioner/${ids.practitioner}` });
    // A week of readings within the limits, twice a day.
    for (let d = 7; d >= 1; d--) {
      for (const h of [8, 20]) {
        const t = new Date(Date.now() - d * 86_400_000);
        t.setUTCHours(h, 0, 0, 0);
        const res = await ingestBloodPressure(118 + ((d * 7 + h) % 15), 72 + (d % 6), t);
        expect(res.status).to.equal(200);
      }
    }
  });

  after(async () => {
    await browser?.close();
    // The pages' live-alert Subscriptions would outlive them by hours on the shared test database.
    if (app) {
      const live = await fhir('/fhir/Subscription?type=websocket&_count=1000');
      for (const e of live.body.entry ?? []) {
        await fetch(`${app.origin}/fhir/Subscription/${e.resource.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${system}` } });
      }
    }
    await app?.stop();
  });

  it('EHR launch opens the patient; an ingested breach appears as an alert and a chart marker; acknowledging closes the Flag', async () => {
    const ehr = await issueAccessToken((app.server.plugins as any)['smart-auth'].state, { clientId: 'ehr', scopes: ['system/Patient.rs'] });
    const launch = await fetch(`${app.origin}/auth/launch`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ehr.accessToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ client_id: DASHBOARD_CLIENT_ID, patient: `Patient/${ids.patient}` }),
    });
    expect(launch.status).to.equal(200);
    const { url } = (await launch.json()) as { url: string };
    expect(url.startsWith(`${app.origin}/app?`)).to.be.true();

    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    await signIn(page);
    await page.waitForSelector('body[data-ready="patient"]');
    // fhirclient's state in the tab: the launch patient, the granted scopes, and a refresh token for the session.
    const token = await page.evaluate(() => {
      const storage = (globalThis as unknown as { sessionStorage: { getItem(k: string): string | null } }).sessionStorage;
      return JSON.parse(storage.getItem(JSON.parse(storage.getItem('SMART_KEY')!))!).tokenResponse as Record<string, string>;
    });
    expect(token.patient).to.equal(ids.patient);
    expect(token.scope!.split(' ')).to.include(['launch', 'online_access', 'user/Flag.rus', 'user/Observation.rs', 'user/Subscription.cr']);
    expect(token.refresh_token).to.be.a.string();

    // Banner and a calm chart: no alerts yet.
    const banner = page.getByRole('region', { name: 'Patient' });
    expect(await banner.getByRole('heading').textContent()).to.equal(`Ada ${family}`);
    expect(await banner.textContent()).to.contain('MRN-4711');
    expect(await page.getByText('No active alerts.').count()).to.equal(1);
    const systolic = page.locator('figure.chart[data-code="8480-6"]');
    expect(await systolic.locator('rect.band').count()).to.equal(1);
    expect(await systolic.locator('path.breach').count()).to.equal(0);
    expect(await systolic.getByRole('img').getAttribute('aria-labelledby')).to.exist();

    // A critical reading arrives through the device door: the server raises a Flag in the same
    // transaction, and pings the page's live-alert socket: the alert appears without a reload or
    // a click, well before the 30 s refresh.
    await page.locator('.live[data-live="live"]').waitFor({ timeout: 10_000 });
    const res = await ingestBloodPressure(192, 101, new Date(Date.now() - 60_000));
    expect(res.status).to.equal(200);
    const alert = page.locator('li.flag');
    await alert.first().waitFor({ timeout: 5000 });
    expect(await page.getByRole('status').filter({ hasText: 'New alert' }).count()).to.equal(1);
    expect(await alert.count()).to.be.at.least(1);
    expect(await page.locator('li.flag .critical-badge').count()).to.be.at.least(1);
    expect(await systolic.locator('path.breach').count()).to.equal(1);
    expect(await systolic.locator('path.critical-breach').count()).to.equal(1);
    expect(await page.getByRole('heading', { name: /Active alerts \(\d+\)/ }).textContent()).to.not.contain('(0)');

    await page.screenshot({ path: join(SCREENSHOTS, 'patient-desktop-1280x800.png'), fullPage: true });
    await page.setViewportSize({ width: 768, height: 1024 });
    await page.screenshot({ path: join(SCREENSHOTS, 'patient-tablet-768x1024.png'), fullPage: true });

    // The ward lists the patient, newest breach first.
    await page.getByRole('link', { name: 'Ward' }).click();
    await page.waitForSelector('body[data-ready="ward"]');
    await expectNewestFirst(page);
    const first = page.locator(`table.ward tbody tr[data-patient="${ids.patient}"]`);
    expect(await first.count()).to.equal(1);
    await page.screenshot({ path: join(SCREENSHOTS, 'ward-tablet-768x1024.png'), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.screenshot({ path: join(SCREENSHOTS, 'ward-desktop-1280x800.png'), fullPage: true });

    // Back to the patient by keyboard, and acknowledge every alert.
    await first.getByRole('link').focus();
    await page.keyboard.press('Enter');
    await page.waitForSelector('body[data-ready="patient"]');
    const flagIds = await page.locator('li.flag').evaluateAll((els) => els.map((e) => e.getAttribute('data-flag')!));
    expect(flagIds.length).to.be.at.least(1);
    for (let i = 0; i < flagIds.length; i++) {
      await page.getByRole('button', { name: /^Acknowledge: / }).first().click();
      // (Locators, not waitForFunction: the app's CSP forbids evaluating strings, as it should.)
      await page.locator('li.flag').nth(flagIds.length - i - 1).waitFor({ state: 'detached' });
    }
    await page.getByText('No active alerts.').waitFor();
    expect(await page.getByRole('status').filter({ hasText: 'Acknowledged:' }).count()).to.equal(1);
    for (const id of flagIds) {
      const flag = await fhir(`/fhir/Flag/${id}`);
      expect(flag.body.status).to.equal('inactive');
      expect(flag.body.period.end).to.be.a.string();
    }
    // The link of an alert e-mail (src/monitoring/email.ts) opens the Flag's patient.
    await page.goto(`${app.origin}/app#/flag/${flagIds[0]}`);
    await page.waitForSelector('body[data-ready="patient"]');
    expect(await page.getByRole('region', { name: 'Patient' }).getByRole('heading').textContent()).to.equal(`Ada ${family}`);
    expect(errors).to.equal([]);
    await context.close();
    // One live-alert Subscription for the tab's session, however often the view reloaded.
    expect((await fhir('/fhir/Subscription?type=websocket')).body.entry).to.have.length(1);
  });

  it('standalone launch opens the ward of patients with active alerts; a patient with none is not listed', async () => {
    await ingestBloodPressure(70, 45, new Date(Date.now() - 30_000));
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
    const page = await context.newPage();
    await page.goto(`${app.origin}/app`);
    await signIn(page);
    await page.waitForSelector('body[data-ready="ward"]');
    await expectNewestFirst(page);
    const row = page.locator(`table.ward tbody tr[data-patient="${ids.patient}"]`);
    expect(await row.textContent()).to.contain('Low');
    await page.screenshot({ path: join(SCREENSHOTS, 'ward-phone-390x844.png'), fullPage: true });
    // The patient on a phone: the alert, and charts that fit the width.
    await row.getByRole('link').click();
    await page.waitForSelector('body[data-ready="patient"]');
    expect(await page.locator('li.flag').count()).to.be.at.least(1);
    const overflow = await page.evaluate(() => {
      const root = (globalThis as unknown as { document: { documentElement: { scrollWidth: number; clientWidth: number } } }).document.documentElement;
      return root.scrollWidth - root.clientWidth;
    });
    expect(overflow).to.equal(0);
    await page.screenshot({ path: join(SCREENSHOTS, 'patient-phone-390x844.png'), fullPage: true });
    await context.close();
  });
});
