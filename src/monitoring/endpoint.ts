import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';

/**
 * Where the server may send notifications. A Subscription names an address the server will
 * call with patient data, so it is an SSRF door: by default only public addresses, over https
 * outside development. The check runs when the Subscription is written (a clear 422) and again
 * for every address a name resolves to when a notification is sent (DNS can change after the
 * check: rebinding), inside the connection's own lookup.
 */
export interface EndpointPolicy {
  /** https only (NODE_ENV=production, or SUBSCRIPTION_REQUIRE_HTTPS=true). */
  requireHttps: boolean;
  /** Loopback, private, link-local and other non-public addresses allowed (SUBSCRIPTION_ALLOW_PRIVATE_NETWORKS=true). */
  allowPrivateNetworks: boolean;
}

/** Addresses that are not the public internet (RFC 6890 special-purpose registries, the parts that matter here). */
const NOT_PUBLIC = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) NOT_PUBLIC.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['64:ff9b::', 96]] as const) NOT_PUBLIC.addSubnet(net, prefix, 'ipv6');

/** Whether an IP address is on the public internet; IPv4-mapped IPv6 addresses are judged as their IPv4. */
export function isPublicAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  if (mapped) return isPublicAddress(mapped);
  const family = isIP(address);
  if (family === 0) return false;
  return !NOT_PUBLIC.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/** Why `url` may not receive notifications, or undefined when it may (names are resolved too). */
export async function endpointProblem(url: URL, policy: EndpointPolicy): Promise<string | undefined> {
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return `endpoint scheme '${url.protocol}' is not allowed; use https`;
  if (policy.requireHttps && url.protocol !== 'https:') return 'endpoint must be https';
  if (url.username || url.password) return 'endpoint must not carry credentials in the URL; use channel.header';
  if (policy.allowPrivateNetworks) return undefined;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  let addresses: string[];
  if (isIP(host)) addresses = [host];
  else {
    try {
      addresses = (await new Promise<LookupAddress[]>((resolve, reject) => dnsLookup(host, { all: true }, (err, list) => (err ? reject(err) : resolve(list))))).map((a) => a.address);
    } catch {
      // Unresolvable now: the delivery-time check still guards every connection.
      return undefined;
    }
  }
  const blocked = addresses.find((a) => !isPublicAddress(a));
  return blocked ? `endpoint ${host} is not a public address (${blocked}); loopback, private and link-local networks are refused (SUBSCRIPTION_ALLOW_PRIVATE_NETWORKS)` : undefined;
}

/** A DNS lookup that fails for addresses the policy refuses, so the socket never connects to them. */
function guardedLookup(policy: EndpointPolicy): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, list: LookupAddress[]) => {
      if (err) return callback(err, '', 0);
      const allowed = list.filter((a) => policy.allowPrivateNetworks || isPublicAddress(a.address));
      if (allowed.length === 0) return callback(Object.assign(new Error(`${hostname} resolves to no public address`), { code: 'EADDRNOTPUBLIC' }), '', 0);
      if ((options as { all?: boolean }).all) return (callback as unknown as (e: null, l: LookupAddress[]) => void)(null, allowed);
      return callback(null, allowed[0]!.address, allowed[0]!.family);
    });
  };
}

export interface PostResult {
  status: number;
}

/**
 * POSTs `body` to `url` with a timeout, connecting only to addresses the policy allows. An IP
 * literal is checked here, since no lookup runs for it. Redirects are not followed (a 3xx is a
 * failure): a redirect is another address nobody checked.
 */
export function postNotification(url: URL, headers: Record<string, string>, body: string | undefined, policy: EndpointPolicy, timeoutMs: number): Promise<PostResult> {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host) && !policy.allowPrivateNetworks && !isPublicAddress(host)) {
    return Promise.reject(new Error(`${host} is not a public address`));
  }
  if (policy.requireHttps && url.protocol !== 'https:') return Promise.reject(new Error('endpoint must be https'));
  const client = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.request(
      url,
      { method: 'POST', headers: { ...headers, ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : { 'content-length': '0' }) }, lookup: guardedLookup(policy), timeout: timeoutMs },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}
