import { readLimits } from '../access/enforce';
import type { AccessPolicy } from '../access/policy';
import type { FhirContext } from '../fhir/context';
import { badRequest, OperationOutcomeError, unprocessable } from '../kernel/outcome';
import { isSupportedType } from '../kernel/resource-types';
import { findMatchingIds, shapesResult } from '../search';
import type { Queryable } from '../store/db';
import { endpointProblem, type EndpointPolicy } from './endpoint';

/**
 * Checks a Subscription before it is stored (R4 subscription.html) and accepts it (`requested`
 * becomes `active`): the channel (rest-hook: an endpoint the server may call, ./endpoint.ts;
 * its headers are ./header-secrets.ts's; email: a mailto: in an allowed domain; websocket: nothing to call), and criteria that
 * are a valid search the writer may run itself.
 */

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]', '0.0.0.0']);

export function parseCriteria(criteria: string | undefined): { type: string; params: URLSearchParams } | undefined {
  if (!criteria) return undefined;
  const [type, query = ''] = criteria.split('?', 2) as [string, string | undefined];
  return { type, params: new URLSearchParams(query) };
}

/** True when `endpoint` is this server's own FHIR base: a notification there would loop. */
function isOwnBase(ctx: FhirContext, endpoint: URL, port: number | undefined): boolean {
  const normalized = `${endpoint.origin}${endpoint.pathname}`.replace(/\/+$/, '');
  if (normalized === ctx.baseUrl || normalized.startsWith(`${ctx.baseUrl}/`)) return true;
  const ownPort = String(port ?? ctx.config.port);
  const endpointPort = endpoint.port || (endpoint.protocol === 'https:' ? '443' : '80');
  const ownHost = LOOPBACK.has(endpoint.hostname) || endpoint.hostname === ctx.config.host || endpoint.hostname === new URL(ctx.baseUrl).hostname;
  return ownHost && endpointPort === ownPort && (endpoint.pathname === '/fhir' || endpoint.pathname.startsWith('/fhir/'));
}

export function endpointPolicy(ctx: FhirContext): EndpointPolicy {
  return { requireHttps: ctx.config.subscriptionRequireHttps, allowPrivateNetworks: ctx.config.subscriptionAllowPrivateNetworks };
}

async function acceptRestHook(ctx: FhirContext, sub: fhir4.Subscription, previous: fhir4.Subscription | undefined, listeningPort: number | undefined): Promise<void> {
  let endpoint: URL;
  try {
    endpoint = new URL(sub.channel.endpoint ?? '');
  } catch {
    throw unprocessable('a rest-hook Subscription needs an absolute https endpoint', ['Subscription.channel.endpoint']);
  }
  if (isOwnBase(ctx, endpoint, listeningPort)) {
    throw unprocessable('the endpoint is this server\'s own FHIR base; notifications would loop', ['Subscription.channel.endpoint']);
  }
  // A new or changed endpoint is checked against the network policy (status updates keep theirs);
  // so is one turned on again, as an `off` Subscription's endpoint was never judged (../index.ts).
  if (!previous || previous.status === 'off' || previous.channel.endpoint !== sub.channel.endpoint) {
    const problem = await endpointProblem(endpoint, endpointPolicy(ctx));
    if (problem) throw unprocessable(problem, ['Subscription.channel.endpoint']);
  }
  // The MIME type the notification is sent as (R4 Subscription.channel.payload): delivery sends
  // the stored JSON, so any other type would go out as JSON under a label that says otherwise.
  // Judged when set, as the endpoint is: one stored before keeps its status updates.
  const payload = sub.channel.payload;
  if (payload !== undefined && (!previous || previous.status === 'off' || previous.channel.payload !== payload) && !JSON_PAYLOADS.has(payload.split(';')[0]!.trim().toLowerCase())) {
    throw unprocessable(`payload '${payload.slice(0, 80)}' cannot be sent: this server sends the resource as application/fhir+json (or application/json); leave payload out for notifications without the resource`, ['Subscription.channel.payload']);
  }
  // Headers are checked, and hidden, by ./header-secrets.ts.
}

const JSON_PAYLOADS = new Set(['application/fhir+json', 'application/json']);

/** One plain address (no display name, no second recipient, no query: a mailto can carry cc= and body=). */
const MAILTO = /^mailto:([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64})@([A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+)$/;

/** The address of an `email` channel, or undefined when it is not one plain mailto: address. */
export function mailtoAddress(endpoint: string | undefined): { address: string; domain: string } | undefined {
  const m = MAILTO.exec(endpoint ?? '');
  return m ? { address: `${m[1]}@${m[2]}`, domain: m[2]!.toLowerCase() } : undefined;
}

/**
 * An alert e-mail leaves the server's control, so the recipient's domain must be one the
 * operator listed (ALERT_EMAIL_DOMAINS): a Subscription writer cannot mail a stranger.
 */
function acceptEmail(ctx: FhirContext, sub: fhir4.Subscription): void {
  const { smtpUrl, emailDomains } = ctx.config.alerts;
  if (!smtpUrl) throw unprocessable('e-mail alerts are not configured on this server (SMTP_URL)', ['Subscription.channel.type']);
  const to = mailtoAddress(sub.channel.endpoint);
  if (!to) throw unprocessable('an email Subscription needs one mailto:name@domain endpoint', ['Subscription.channel.endpoint']);
  if (!emailDomains.includes(to.domain)) {
    throw unprocessable(`e-mail alerts may go to ${emailDomains.length ? emailDomains.join(', ') : 'no domain'} only (ALERT_EMAIL_DOMAINS)`, ['Subscription.channel.endpoint']);
  }
  if (sub.channel.header?.length) throw unprocessable('an email Subscription takes no headers', ['Subscription.channel.header']);
  if (sub.channel.payload && sub.channel.payload !== 'text/plain') {
    throw unprocessable('an email Subscription\'s payload is text/plain (a summary within ALERT_EMAIL_PHI) or absent (no content)', ['Subscription.channel.payload']);
  }
}

/** Returns whether the resource changed (accepted). */
export async function acceptSubscription(
  ctx: FhirContext,
  tx: Queryable,
  sub: fhir4.Subscription,
  previous: fhir4.Subscription | undefined,
  listeningPort: number | undefined,
  policy: AccessPolicy,
): Promise<boolean> {
  switch (sub.channel.type) {
    case 'rest-hook':
      await acceptRestHook(ctx, sub, previous, listeningPort);
      break;
    case 'email':
      acceptEmail(ctx, sub);
      break;
    case 'websocket':
      // The client binds to it on the server's socket (./websocket.ts); there is nothing to call.
      if (sub.channel.endpoint) throw unprocessable('a websocket Subscription has no endpoint: the client connects to the server', ['Subscription.channel.endpoint']);
      break;
    default:
      throw unprocessable(`channel type '${sub.channel.type}' is not supported; this server delivers rest-hook, email and websocket`, ['Subscription.channel.type']);
  }
  const criteria = parseCriteria(sub.criteria);
  if (!criteria || !isSupportedType(criteria.type)) {
    throw unprocessable(`criteria '${String(sub.criteria).slice(0, 200)}' must be a search on a supported type, e.g. Flag?status=active`, ['Subscription.criteria']);
  }
  // A subscription is a standing search: its writer must be allowed to run it (403 otherwise),
  // and notifications will be matched under the writer's grant (./notify.ts).
  readLimits(policy, criteria.type, 's');
  // Criteria select the resources notified of, one at a time: a parameter that shapes a search's
  // page (_include, _summary, _elements, _count, _sort, …) would be accepted and do nothing, so a
  // subscriber asking for included resources or a summary would silently get neither. Judged when
  // the criteria are set, so that a stored one keeps its status updates.
  const shaping = [...criteria.params.keys()].filter(shapesResult);
  if (shaping.length && (!previous || previous.status === 'off' || previous.criteria !== sub.criteria)) {
    throw badRequest(`Subscription.criteria: ${[...new Set(shaping)].join(', ')} shape a search's results, not which resources are notified of; leave them out`, ['Subscription.criteria']);
  }
  try {
    // Parses and plans the search; no row has this id.
    await findMatchingIds(tx, criteria.type, new URLSearchParams([...criteria.params, ['_id', '-']]), 1);
  } catch (err) {
    if (err instanceof OperationOutcomeError && err.status < 500) throw badRequest(`Subscription.criteria: ${err.message}`, ['Subscription.criteria']);
    throw err;
  }
  if (sub.status === 'requested') {
    sub.status = 'active';
    return true;
  }
  return false;
}
