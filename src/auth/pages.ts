import { escapeHtml as escape, htmlPage } from '../kernel/html';

/**
 * The authorization server's HTML: plain server-rendered pages that work without JavaScript,
 * one form per page. Field names are an interface (scripts and tests drive them): login posts
 * `username` and `password`; the picker posts `patient`; consent posts each kept scope as a
 * checkbox `scope` and a submit `decision` = allow | deny. Every form carries `csrf`.
 * `npm run screenshots` renders them at phone and desktop width (scripts/screenshots.ts).
 */
export interface Page {
  status: number;
  html: string;
}

/** Who a page is about, as a person reads it: a name and birth date, never a resource id. */
export interface PatientLabel {
  name: string;
  birthDate?: string;
}

const FOOTER = 'Your sign-in stays on this server: the app never sees your password. You can withdraw an app’s access at any time.';

const hidden = (name: string, value: string) => `<input type="hidden" name="${escape(name)}" value="${escape(value)}">`;
const alert = (message: string | undefined) => (message ? `<p class="alert" role="alert">${escape(message)}</p>` : '');
const capitalised = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);
const initials = (name: string) => name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0]!.toUpperCase()).join('') || '?';

export function errorPage(status: number, message: string): Page {
  return { status, html: htmlPage('Sign-in could not continue', `${alert(message)}<p class="muted">You can close this window and start again from the app.</p>`) };
}

export function loginPage(action: string, csrf: string, clientName: string, options: { error?: string; status?: number; oidcUrl?: string; oidcName?: string } = {}): Page {
  const body = `<p class="lead">to let <strong>${escape(clientName)}</strong> use your health records.</p>
${alert(options.error)}
<form method="post" action="${escape(action)}">
${hidden('csrf', csrf)}
<label class="field">Username <input type="text" name="username" autocomplete="username" autocapitalize="none" spellcheck="false" required autofocus></label>
<label class="field">Password <input type="password" name="password" autocomplete="current-password" required></label>
<div class="actions"><button class="primary" type="submit">Sign in</button></div>
</form>
${options.oidcUrl ? `<p class="divider">Clinicians</p><a class="link-button" href="${escape(options.oidcUrl)}">Sign in with ${escape(options.oidcName ?? 'your organisation')}</a>` : ''}`;
  return { status: options.status ?? 200, html: htmlPage('Sign in', body, { footer: FOOTER }) };
}

export function pickerPage(action: string, csrf: string, patients: Array<{ id: string; label: PatientLabel }>, error?: string): Page {
  const items = patients.length === 0
    ? '<p>No patients are on record.</p>'
    : patients
        .map((p, i) => `<label class="choice"><input type="radio" name="patient" value="${escape(p.id)}"${i === 0 ? ' required' : ''}><span>${escape(p.label.name)}${p.label.birthDate ? `<small>born ${escape(p.label.birthDate)}</small>` : ''}</span></label>`)
        .join('\n');
  const body = `<p class="lead">Whose records may the app use?</p>
${alert(error)}
<form method="post" action="${escape(action)}">
${hidden('csrf', csrf)}
<fieldset class="choices"><legend class="muted">Most recently updated patients</legend>
${items}
</fieldset>
<div class="actions"><button class="primary" type="submit">Continue</button></div>
</form>
<p class="muted">Not listed? Add <code>?name=…</code> to this page’s address to search by name.</p>`;
  return { status: error ? 400 : 200, html: htmlPage('Choose a patient', body, { footer: FOOTER }) };
}

export function consentPage(action: string, csrf: string, clientName: string, scopes: Array<{ scope: string; label: string }>, context: { user: string; patient?: PatientLabel }): Page {
  const items = scopes
    .map((s) => `<label class="choice"><input type="checkbox" name="scope" value="${escape(s.scope)}" checked><span>${escape(capitalised(s.label))}<small>${escape(s.scope)}</small></span></label>`)
    .join('\n');
  const who = context.patient
    ? `<div class="who"><span class="avatar" aria-hidden="true">${escape(initials(context.patient.name))}</span><span><strong>${escape(context.patient.name)}</strong>${context.patient.birthDate ? `<span class="muted">born ${escape(context.patient.birthDate)}</span>` : ''}</span></div>`
    : '';
  const body = `<p class="lead"><strong>${escape(clientName)}</strong> asks for access${context.patient ? ' to the health records of' : ''}:</p>
${who}
<p class="muted">Signed in as ${escape(context.user)}. Untick anything you do not want to allow.</p>
<form method="post" action="${escape(action)}">
${hidden('csrf', csrf)}
<fieldset class="choices"><legend class="muted">The app may</legend>
${items}
</fieldset>
<div class="actions"><button class="primary" type="submit" name="decision" value="allow">Allow</button><button class="secondary" type="submit" name="decision" value="deny">Deny</button></div>
</form>`;
  return { status: 200, html: htmlPage('Allow access?', body, { footer: FOOTER }) };
}
