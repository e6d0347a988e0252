import { randomBytes, createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { launchChromium } from '../test/helpers/browser';
import { freePort } from '../test/helpers/port';
import pino from 'pino';
import type { AuthState } from '../src/auth/state';
import { issueAccessToken } from '../src/auth/tokens';
import { addUser } from '../src/auth/users';
import { loadConfig } from '../src/config';
import { projectRoot } from '../src/kernel/paths';
import { createServer } from '../src/server';

const USAGE = `npm run screenshots [-- --out DIR]
Renders the landing page and the sign-in pages (login, patient picker, consent, error) in headless
Chromium at 390 px (phone) and 1280 px (desktop), saves PNGs (default .screenshots/) and checks
the layout: nothing wider than the screen, fields and buttons clear of the edges, touch targets
at least 44 px, inputs at 16 px or more (no zoom on phones), the patient named, not numbered.
Uses Debian's Chromium (/usr/bin/chromium; CHROMIUM_PATH to override): apt-get install -y chromium.
Exits 1 when a check fails.`;

const VIEWPORTS = [{ name: 'phone', width: 390, height: 844 }, { name: 'desktop', width: 1280, height: 800 }] as const;
const EDGE = 12; // px a control must keep from the screen's edges

/**
 * Layout problems of the page as rendered, in words. Runs in the browser; kept as source text
 * because this project compiles without the DOM's types.
 */
const LAYOUT_PROBLEMS = `(() => {
  const edge = ${EDGE};
  const problems = [];
  const width = window.innerWidth;
  if (document.documentElement.scrollWidth > width) problems.push('page is ' + document.documentElement.scrollWidth + 'px wide on a ' + width + 'px screen');
  for (const el of document.querySelectorAll('input:not([type=hidden]):not([type=radio]):not([type=checkbox]), button, .choice, .link-button')) {
    const r = el.getBoundingClientRect();
    const name = el.tagName.toLowerCase() + ' "' + (el.getAttribute('name') || el.textContent || '').trim().slice(0, 30) + '"';
    if (r.left < edge || r.right > width - edge) problems.push(name + ' touches the edge (' + Math.round(r.left) + '-' + Math.round(r.right) + ' of ' + width + ')');
    if (r.height < 44) problems.push(name + ' is ' + Math.round(r.height) + 'px tall (touch targets need 44)');
    if (el.tagName === 'INPUT' && parseFloat(getComputedStyle(el).fontSize) < 16) problems.push(name + ' text under 16px (phones zoom in)');
  }
  return problems;
})()`;

async function layoutProblems(page: Page): Promise<string[]> {
  return page.evaluate(LAYOUT_PROBLEMS) as Promise<string[]>;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(USAGE);
    return;
  }
  const outAt = argv.indexOf('--out');
  const out = outAt >= 0 && argv[outAt + 1] ? argv[outAt + 1]! : join(projectRoot, '.screenshots');
  mkdirSync(out, { recursive: true });

  const port = await freePort();
  const registrationToken = randomBytes(16).toString('hex');
  const config = loadConfig({ DATABASE_URL: 'pglite://memory', PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'silent', REGISTRATION_TOKEN: registrationToken, ADHERENCE_CHECK_INTERVAL: '0', BASE_URL: `http://127.0.0.1:${port}` });
  const app = await createServer(config, { logger: pino({ level: 'silent' }) });
  await app.server.start();
  const origin = `http://127.0.0.1:${port}`;
  const browser = await launchChromium();
  const failures: string[] = [];
  try {
    // A patient, a clinician login and a SMART app, as an operator would set them up.
    const state = (app.server.plugins as unknown as Record<string, { state: AuthState }>)['smart-auth']!.state;
    const token = (await issueAccessToken(state, { clientId: 'screenshots', scopes: ['system/*.cruds'] })).accessToken;
    const created = await fetch(`${origin}/fhir/Patient`, {
      method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
      body: JSON.stringify({ resourceType: 'Patient', name: [{ given: ['Anne'], family: 'Moreau' }], birthDate: '1941-03-09' }),
    });
    const patientId = ((await created.json()) as { id: string }).id;
    const clinician = { username: 'dr.martin', password: randomBytes(12).toString('base64url') };
    await addUser(state.db, clinician);
    const registered = await fetch(`${origin}/auth/register`, {
      method: 'POST', headers: { authorization: `Bearer ${registrationToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ client_name: 'Blood Pressure Diary', token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], redirect_uris: ['http://localhost:3000/callback'], scope: 'launch/patient openid fhirUser offline_access patient/*.rs' }),
    });
    const clientId = ((await registered.json()) as { client_id: string }).client_id;
    const challenge = createHash('sha256').update(randomBytes(32).toString('base64url')).digest('base64url');
    const authorize = `${origin}/auth/authorize?${new URLSearchParams({
      response_type: 'code', client_id: clientId, redirect_uri: 'http://localhost:3000/callback', scope: 'launch/patient openid fhirUser offline_access patient/*.rs',
      state: 'shots', aud: `${origin}/fhir`, code_challenge: challenge, code_challenge_method: 'S256',
    })}`;

    for (const vp of VIEWPORTS) {
      const context = await browser.newContext({ viewport: { width: vp.width, height: vp.height }, deviceScaleFactor: 1 });
      const page = await context.newPage();
      const shoot = async (name: string, extra: (text: string) => string[] = () => []) => {
        const file = join(out, `${name}-${vp.width}.png`);
        await page.screenshot({ path: file, fullPage: true });
        const problems = [...(await layoutProblems(page)), ...extra(await page.innerText('body'))];
        for (const p of problems) failures.push(`${name} at ${vp.width}px: ${p}`);
        console.log(`${problems.length ? 'FAIL' : 'ok  '} ${file}${problems.length ? `\n       ${problems.join('\n       ')}` : ''}`);
      };
      await page.goto(`${origin}/`);
      await shoot('landing');
      await page.goto(authorize);
      await shoot('login');
      await page.fill('input[name=username]', clinician.username);
      await page.fill('input[name=password]', clinician.password);
      await Promise.all([page.waitForURL(/\/patient|\/interaction/), page.click('button[type=submit]')]);
      await shoot('picker', (text) => (text.includes('Anne Moreau') ? [] : ['the patient is not listed by name']));
      await page.check(`input[name=patient][value="${patientId}"]`);
      await Promise.all([page.waitForLoadState('load'), page.click('button[type=submit]')]);
      await page.waitForSelector('input[name=scope]');
      await shoot('consent', (text) => [
        ...(text.includes('Anne Moreau') ? [] : ['the patient is not named']),
        ...(text.includes(patientId) ? ['the patient id is shown'] : []),
      ]);
      await page.goto(`${origin}/auth/interaction/expired-or-unknown`);
      await shoot('error');
      await context.close();
    }
  } finally {
    await browser.close();
    await app.stop();
  }
  if (failures.length > 0) {
    console.error(`${failures.length} layout check(s) failed`);
    process.exit(1);
  }
  console.log(`all pages pass at ${VIEWPORTS.map((v) => `${v.width}px`).join(' and ')}; screenshots in ${out}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
