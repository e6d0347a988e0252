import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Plugin } from '@hapi/hapi';
import type { Config } from './config';
import { escapeHtml as escape, htmlPage } from './kernel/html';
import { projectRoot } from './kernel/paths';

/**
 * `GET /`: what this server is and where to go next (a person or a tool that opens the base
 * URL got a JSON 404 before), and `GET /docs/…`: the README, the design and the decision
 * records as plain Markdown, from a list made at start (no path from the request touches the disk).
 */
export const landingRoutes: Plugin<{ config: Config }> = {
  name: 'landing',
  register(server, { config }) {
    const docs = documents();
    server.route({
      method: 'GET',
      path: '/',
      options: { auth: false },
      handler: (_request, h) =>
        h.response(landingPage(config, [...docs.keys()])).type('text/html; charset=utf-8')
          .header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    });
    server.route({
      method: 'GET',
      path: '/docs/{path*}',
      options: { auth: false },
      handler: (request, h) => {
        const file = docs.get(String(request.params.path ?? ''));
        if (!file) return h.response({ error: 'not a document of this server; see /' }).code(404);
        return h.response(readFileSync(file, 'utf8')).type('text/markdown; charset=utf-8');
      },
    });
  },
};

/** The served documents: URL path under /docs/ → file. */
function documents(): Map<string, string> {
  const docs = new Map<string, string>([['README.md', join(projectRoot, 'README.md')], ['DESIGN.md', join(projectRoot, 'docs', 'DESIGN.md')]]);
  const decisions = join(projectRoot, 'docs', 'decisions');
  if (existsSync(decisions)) {
    for (const f of readdirSync(decisions).filter((n) => n.endsWith('.md')).sort()) docs.set(`decisions/${f}`, join(decisions, f));
  }
  for (const [key, file] of docs) if (!existsSync(file)) docs.delete(key);
  return docs;
}

function landingPage(config: Config, docs: string[]): string {
  const fhir = `${config.baseUrl}/fhir`;
  const link = (href: string, text: string, note = '') => `<li><a href="${escape(href)}">${escape(text)}</a>${note ? ` <span class="muted">${note}</span>` : ''}</li>`;
  const body = `<p class="lead">A FHIR R4 server for remote patient monitoring: home blood-pressure cuffs, scales,
oximeters and thermometers send readings through gateways; EHRs, SMART apps and dashboards read and
write Patients, Observations, CarePlans, Flags and Devices over the standard FHIR REST API.</p>
<p>FHIR base: <code>${escape(fhir)}</code></p>
<h2>For machines</h2>
<ul class="links">
${link('/fhir/metadata', 'CapabilityStatement', '— what this server supports (public)')}
${config.auth.disabled ? '<li class="muted">Authorization is <strong>off</strong> (AUTH_DISABLED): local experiments only.</li>' : link('/fhir/.well-known/smart-configuration', 'SMART configuration', '— authorization endpoints, scopes, capabilities')}
${config.auth.disabled ? '' : link('/auth/.well-known/openid-configuration', 'OpenID Connect discovery')}
</ul>
<h2>For people</h2>
<ul class="links">
${docs.map((d) => link(`/docs/${d}`, d === 'README.md' ? 'README: run it, use it, for each kind of user' : d === 'DESIGN.md' ? 'Design: data flow, storage, interfaces' : `Decision: ${d.replace(/^decisions\//, '').replace(/\.md$/, '')}`)).join('\n')}
</ul>`;
  return htmlPage('FHIR R4 server', body, { wide: true, footer: 'Every FHIR request needs a Bearer access token except the CapabilityStatement and the SMART configuration.' });
}
