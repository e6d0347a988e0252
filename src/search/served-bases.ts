/**
 * The FHIR base URLs this process serves: an absolute reference on one of them names a resource
 * here, one on any other base names a resource there, whatever its type and id (R4
 * references.html; docs/decisions/034-external-references.md).
 *
 * A process-level registry rather than a parameter, because the rule must be one rule wherever a
 * reference is judged: the index writer (whose rows the SQL search, chains, `_revinclude`,
 * `$everything` and the patient compartment read), the Subscription criteria matcher, the limits
 * and compartment judgements of one version, the patients the audit, bulk export and `_summary`
 * name. Those run from a dozen places in ten modules, several holding no context (the unit of
 * work's index writes, the audit of a response body, subsetting); a base threaded through each
 * would be missed by the next caller, and an in-memory judgement would then disagree with the
 * search. The base is configuration, fixed at start: src/server.ts registers it.
 *
 * Bases are only added. A process serves one database; tests run many servers (ports) in one
 * process on one shared database, and every base each of them served names that database's
 * resources, so all of them are local there.
 */
const served = new Set<string>();

export function serveBase(baseUrl: string): void {
  const key = baseKey(baseUrl);
  if (key === undefined) throw new Error(`not an http(s) base URL: ${baseUrl}`);
  served.add(key);
}

/** Whether `base` (an absolute URL up to, not including, the `Type/id` of a reference) is served here. */
export function isServedBase(base: string): boolean {
  const key = baseKey(base);
  return key !== undefined && served.has(key);
}

/**
 * The comparable form of a base: host (lower case, without its scheme's default port) and path
 * (without trailing slashes). Not the scheme: http and https on one host and path are this
 * server before and behind a TLS-terminating proxy (TLS_PROXY), and a client that wrote the other
 * one still means it.
 */
function baseKey(base: string): string | undefined {
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    return undefined;
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.search || url.hash || url.username || url.password) return undefined;
  return `${url.host}${url.pathname.replace(/\/+$/, '')}`;
}
