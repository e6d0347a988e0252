import { createHash, randomBytes } from 'node:crypto';

/**
 * A browser without JavaScript: fetch with a cookie jar, following redirects on the
 * authorization server's origin by hand and stopping at the first redirect elsewhere (the app).
 * Forms are read from the HTML by their field names, the interface the pages promise.
 */
export class Browser {
  readonly cookies = new Map<string, string>();
  readonly setCookieHeaders: string[] = [];

  /** `appPath`: a path of the server's origin where an app lives (the dashboard's /app): a redirect there leaves the server, too. */
  constructor(
    readonly origin: string,
    readonly appPath?: string,
  ) {}

  async request(url: string, init: { method?: string; form?: URLSearchParams | Record<string, string | string[]> } = {}): Promise<{ status: number; headers: Headers; text: string; url: string }> {
    const headers: Record<string, string> = {};
    if (this.cookies.size > 0) headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    let body: string | undefined;
    if (init.form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      const params = new URLSearchParams();
      const entries = init.form instanceof URLSearchParams ? [...init.form] : Object.entries(init.form).flatMap(([k, v]) => (Array.isArray(v) ? v.map((x) => [k, x]) : [[k, v]]));
      for (const [k, v] of entries) params.append(k!, v!);
      body = params.toString();
    }
    const absolute = new URL(url, this.origin).toString();
    const res = await fetch(absolute, { method: init.method ?? (body ? 'POST' : 'GET'), headers, body, redirect: 'manual' });
    for (const c of res.headers.getSetCookie()) {
      this.setCookieHeaders.push(c);
      const [pair] = c.split(';');
      const [name, ...rest] = pair!.split('=');
      const value = rest.join('=');
      if (value === '' || /max-age=0|expires=thu, 01 jan 1970/i.test(c)) this.cookies.delete(name!.trim());
      else this.cookies.set(name!.trim(), value);
    }
    return { status: res.status, headers: res.headers, text: await res.text(), url: absolute };
  }

  /** Requests, then follows redirects while they stay on the server's origin. */
  async visit(url: string, init: { form?: URLSearchParams | Record<string, string | string[]> } = {}): Promise<Visit> {
    let res = await this.request(url, init);
    for (let i = 0; i < 10; i++) {
      const location = res.headers.get('location');
      if (!location || res.status < 300 || res.status > 399) break;
      const next = new URL(location, res.url);
      if (next.origin !== this.origin || (this.appPath !== undefined && next.pathname.startsWith(this.appPath))) return { ...res, redirect: next };
      res = await this.request(next.toString());
    }
    return res;
  }
}

export interface Visit {
  status: number;
  headers: Headers;
  text: string;
  url: string;
  /** Set when the server sent the browser away to the app. */
  redirect?: URL;
}

/** The one form of a page: action, hidden fields, checkbox and radio values by name. */
export function readForm(html: string): { action: string; hidden: Record<string, string>; checkboxes: Record<string, string[]>; radios: Record<string, string[]>; fields: string[]; buttons: Array<{ name: string; value: string }> } {
  const forms = html.match(/<form\b/g) ?? [];
  if (forms.length !== 1) throw new Error(`expected exactly one form, found ${forms.length}:\n${html}`);
  const decode = (s: string) => s.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
  const action = decode(/<form[^>]*action="([^"]*)"/.exec(html)![1]!);
  const hidden: Record<string, string> = {};
  const checkboxes: Record<string, string[]> = {};
  const radios: Record<string, string[]> = {};
  const fields: string[] = [];
  for (const m of html.matchAll(/<input\b([^>]*)>/g)) {
    const attr = (name: string) => {
      const v = new RegExp(`\\b${name}="([^"]*)"`).exec(m[1]!)?.[1];
      return v === undefined ? undefined : decode(v);
    };
    const type = attr('type') ?? 'text';
    const name = attr('name');
    if (!name) continue;
    fields.push(name);
    if (type === 'hidden') hidden[name] = attr('value') ?? '';
    if (type === 'checkbox') (checkboxes[name] ??= []).push(attr('value') ?? '');
    if (type === 'radio') (radios[name] ??= []).push(attr('value') ?? '');
  }
  const buttons = [...html.matchAll(/<button\b[^>]*name="([^"]*)"[^>]*value="([^"]*)"/g)].map((m) => ({ name: m[1]!, value: m[2]! }));
  return { action, hidden, checkboxes, radios, fields, buttons };
}

export function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(48).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

/**
 * Drives a visit through login, the patient picker and consent as a user would: logs in when
 * asked, picks `patient` when asked, keeps the consent's scopes except `deselect`, then
 * answers `decision`. Returns where the server sent the browser (the app's redirect URI).
 */
export async function consentFlow(
  browser: Browser,
  first: Visit,
  user: { username: string; password: string },
  options: { patient?: string; deselect?: string[]; decision?: 'allow' | 'deny'; onConsent?: (scopes: string[]) => void } = {},
): Promise<URL> {
  let page = first;
  for (let i = 0; i < 5; i++) {
    if (page.redirect) return page.redirect;
    if (page.status !== 200) throw new Error(`unexpected page ${page.status}: ${page.text}`);
    const form = readForm(page.text);
    if (form.fields.includes('password')) {
      page = await browser.visit(form.action, { form: { ...form.hidden, username: user.username, password: user.password } });
    } else if (form.radios.patient) {
      page = await browser.visit(form.action, { form: { ...form.hidden, patient: options.patient ?? form.radios.patient[0]! } });
    } else if (form.checkboxes.scope) {
      options.onConsent?.(form.checkboxes.scope);
      const kept = form.checkboxes.scope.filter((s) => !(options.deselect ?? []).includes(s));
      page = await browser.visit(form.action, { form: { ...form.hidden, scope: kept, decision: options.decision ?? 'allow' } });
    } else {
      throw new Error(`unknown page: ${page.text}`);
    }
  }
  throw new Error('too many pages');
}
