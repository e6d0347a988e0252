// SMART's own JavaScript client (fhirclient, already the project's test client): it does the
// launch (EHR or standalone), PKCE, the code exchange and token refresh, and signs requests.
// Its pure build adds about 20 kB gzipped; a hand-written launch would save that and own the
// security-sensitive state handling instead of a library that the SMART project maintains.
import FHIR from 'fhirclient/lib/entry/browser';
import type Client from 'fhirclient/lib/Client';

export type { Client };

interface AppConfig {
  clientId: string;
  fhirBase: string;
  scope: string;
}

/**
 * Returns a ready client, or undefined when the browser was sent away to authorize (the page
 * comes back to /app with a code). An EHR launch (iss + launch) asks for `launch` to receive
 * the EHR's patient; a standalone launch opens the ward without a patient context.
 */
export async function connect(): Promise<Client | undefined> {
  const params = new URLSearchParams(location.search);
  const config = (await (await fetch('/app/config.json')).json()) as AppConfig;
  const wanted = config.scope.split(' ').filter((s) => s !== 'launch' && s !== 'launch/patient');
  if (params.has('code') || params.has('error') || (!params.has('launch') && hasSession())) {
    return FHIR.oauth2.ready();
  }
  const scope = [...(params.has('launch') ? ['launch'] : []), ...wanted].join(' ');
  await FHIR.oauth2.authorize({
    clientId: config.clientId,
    scope,
    iss: params.get('iss') ?? config.fhirBase,
    redirectUri: '/app',
    pkceMode: 'required',
  });
  return undefined;
}

/** fhirclient keeps its state key in sessionStorage: a reload reuses the token. */
function hasSession(): boolean {
  return sessionStorage.getItem('SMART_KEY') !== null;
}

/** Every page of a search, as one list (the dashboard's searches are bounded by patient or status). */
export async function searchAll<T extends fhir4.FhirResource>(client: Client, url: string): Promise<{ matches: T[]; included: fhir4.FhirResource[] }> {
  const matches: T[] = [];
  const included: fhir4.FhirResource[] = [];
  let next: string | undefined = url;
  while (next) {
    const bundle: fhir4.Bundle = await client.request<fhir4.Bundle>(next);
    for (const e of bundle.entry ?? []) {
      if (!e.resource) continue;
      if (e.search?.mode === 'include') included.push(e.resource as fhir4.FhirResource);
      else matches.push(e.resource as unknown as T);
    }
    next = bundle.link?.find((l) => l.relation === 'next')?.url;
  }
  return { matches, included };
}
