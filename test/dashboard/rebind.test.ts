import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import type { Browser } from 'playwright-core';
import type { AuthState } from '../../src/auth/state';
import { issueAccessToken } from '../../src/auth/tokens';
import { addUser } from '../../src/auth/users';
import { unique } from '../helpers/server';
import { startAuthServer, systemCreator } from '../auth/helpers';
import { launchChromium } from '../helpers/browser';
import { freePort } from '../helpers/port';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

/**
 * A websocket binding ends when the access token that made it expires (src/monitoring/websocket.ts):
 * the dashboard, whose tokens live minutes, binds again at once with a refreshed token and stays
 * live, rather than dropping to "offline" for its 5 s retry. Tokens live 3 s here.
 */
describe('clinician dashboard: the live-alert socket outlives its access tokens', () => {
  let app: Awaited<ReturnType<typeof startAuthServer>>;
  let browser: Browser;
  let state: AuthState;
  const clinician = { username: unique('dr-rebind'), password: 'correct horse battery staple' };
  const system = async () => `Bearer ${(await issueAccessToken(state, { clientId: 'setup', scopes: ['system/*.cruds'] })).accessToken}`;

  before(async () => {
    browser = await launchChromium();
    const port = await freePort();
    app = await startAuthServer({ PORT: String(port), BASE_URL: `http://127.0.0.1:${port}`, ACCESS_TOKEN_LIFETIME: '3' });
    state = (app.server.plugins as unknown as Record<string, { state: AuthState }>)['smart-auth']!.state;
    const practitioner = await (await systemCreator(app))({ resourceType: 'Practitioner', name: [{ family: 'Rebind' }] });
    await addUser(state.db, { ...clinician, fhirUser: `Practitioner/${practitioner}` });
  });

  after(async () => {
    await browser?.close();
    if (app) {
      // The page's Subscription would outlive it on the shared test database.
      const headers = { authorization: await system() };
      const live = (await (await fetch(`${app.origin}/fhir/Subscription?type=websocket&_count=1000`, { headers })).json()) as { entry?: Array<{ resource: { id: string } }> };
      for (const e of live.entry ?? []) await fetch(`${app.origin}/fhir/Subscription/${e.resource.id}`, { method: 'DELETE', headers });
    }
    await app?.stop();
  });

  it('binds again when the server ends the binding, without showing itself offline', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    await page.goto(`${app.origin}/app`);
    await page.getByLabel('Username').waitFor({ timeout: 15_000 });
    await page.getByLabel('Username').fill(clinician.username);
    await page.getByLabel('Password').fill(clinician.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.locator('.live[data-live="live"]').waitFor({ timeout: 15_000 });
    // Every state the indicator takes from now on.
    await page.evaluate(() => {
      const g = globalThis as unknown as { states: string[]; document: { querySelector(s: string): { getAttribute(a: string): string } }; MutationObserver: new (cb: () => void) => { observe(n: unknown, o: unknown): void } };
      g.states = [];
      const live = g.document.querySelector('.live');
      new g.MutationObserver(() => g.states.push(live.getAttribute('data-live'))).observe(live, { attributes: true, attributeFilter: ['data-live'] });
    });
    // Two token lifetimes: the binding made with the first token has ended and been made again.
    await page.waitForTimeout(7_000);
    const states = await page.evaluate(() => (globalThis as unknown as { states: string[] }).states);
    expect(states, states.join(',')).to.include('connecting');
    expect(states, states.join(',')).to.not.include('offline');
    expect(await page.locator('.live').getAttribute('data-live')).to.equal('live');
    await context.close();
  });
});
