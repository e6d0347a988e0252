/**
 * The authorization server's HTML: plain server-rendered pages that work without JavaScript,
 * one form per page. Field names are an interface (scripts and tests drive them): login posts
 * `username` and `password`; the picker posts `patient`; consent posts each kept scope as a
 * checkbox `scope` and a submit `decision` = allow | deny. Every form carries `csrf`.
 */
const escape = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

export interface Page {
  status: number;
  html: string;
}

function layout(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;line-height:1.5}
label{display:block;margin:.5rem 0}input[type=text],input[type=password]{width:100%;padding:.4rem}
button{padding:.5rem 1rem;margin:.5rem .5rem 0 0}.error{color:#a00}.muted{color:#555;font-size:.9rem}</style>
</head><body><h1>${escape(title)}</h1>
${body}
</body></html>`;
}

const hidden = (name: string, value: string) => `<input type="hidden" name="${escape(name)}" value="${escape(value)}">`;

export function errorPage(status: number, message: string): Page {
  return { status, html: layout('Authorization failed', `<p class="error">${escape(message)}</p><p class="muted">You can close this window and start again from the app.</p>`) };
}

export function loginPage(action: string, csrf: string, clientName: string, options: { error?: string; status?: number; oidcUrl?: string; oidcName?: string } = {}): Page {
  const body = `<p>Sign in to let <strong>${escape(clientName)}</strong> use your health records.</p>
${options.error ? `<p class="error" role="alert">${escape(options.error)}</p>` : ''}
<form method="post" action="${escape(action)}">
${hidden('csrf', csrf)}
<label>Username <input type="text" name="username" autocomplete="username" required autofocus></label>
<label>Password <input type="password" name="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form>
${options.oidcUrl ? `<p>Clinicians: <a href="${escape(options.oidcUrl)}">sign in with ${escape(options.oidcName ?? 'your organisation')}</a></p>` : ''}`;
  return { status: options.status ?? 200, html: layout('Sign in', body) };
}

export function pickerPage(action: string, csrf: string, patients: Array<{ id: string; label: string }>, error?: string): Page {
  const items = patients.length === 0
    ? '<p>No patients are on record.</p>'
    : patients.map((p, i) => `<label><input type="radio" name="patient" value="${escape(p.id)}"${i === 0 ? ' required' : ''}> ${escape(p.label)}</label>`).join('\n');
  const body = `<p>Choose the patient whose records the app may use.</p>
${error ? `<p class="error" role="alert">${escape(error)}</p>` : ''}
<form method="post" action="${escape(action)}">
${hidden('csrf', csrf)}
${items}
<button type="submit">Continue</button>
</form>
<p class="muted">Showing the most recently updated patients; add <code>?name=…</code> to this page's address to filter.</p>`;
  return { status: error ? 400 : 200, html: layout('Choose a patient', body) };
}

export function consentPage(action: string, csrf: string, clientName: string, scopes: Array<{ scope: string; label: string }>, context: { user: string; patient?: string }): Page {
  const items = scopes.map((s) => `<label><input type="checkbox" name="scope" value="${escape(s.scope)}" checked> ${escape(s.label)} <code>${escape(s.scope)}</code></label>`).join('\n');
  const body = `<p><strong>${escape(clientName)}</strong> asks for access as <strong>${escape(context.user)}</strong>${context.patient ? ` to the records of <strong>${escape(context.patient)}</strong>` : ''}.
Untick anything you do not want to allow.</p>
<form method="post" action="${escape(action)}">
${hidden('csrf', csrf)}
${items}
<div><button type="submit" name="decision" value="allow">Allow</button><button type="submit" name="decision" value="deny">Deny</button></div>
</form>`;
  return { status: 200, html: layout('Allow access?', body) };
}
