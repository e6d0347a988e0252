import { createHmac } from 'node:crypto';
import { unprocessable } from '../kernel/outcome';
import type { CommittedWrite, PendingWrite } from '../pipeline';
import { actsForSubscriber, readdressed } from './notify';
import type { Queryable, Transaction } from '../store/db';
import { DatabaseKey } from '../store/database-key';

/**
 * Subscription.channel.header lines are write-only secrets (docs/decisions/033): they are the
 * subscriber's credentials for its own endpoint, and anyone who may read the Subscription (every
 * clinician of the dashboard may) must not learn them. Masking them where they are written, in the
 * validate stage every door goes through, keeps every read path (read, vread, search, _history,
 * includes, bulk export) without them by construction; only delivery reads the values back.
 *
 * A stored line keeps its name and gets `<hidden; fingerprint …>` for its value: the fingerprint
 * names no part of the secret but changes with it, so that rotating only a secret is a change
 * (decision 029 writes nothing for an update that changes nothing), and a client that sends back
 * what it read (read-modify-write) sends the same mask and keeps the secret.
 *
 * The fingerprint is an HMAC, not a plain hash: a bearer token chosen by a person can be short
 * enough to guess from an unkeyed hash. Its key is one random key per database
 * (monitoring_header_key, made by the migration), not a server secret from the environment: the
 * server has no symmetric key that is always set (PSEUDONYM_KEY is optional and means pseudonyms;
 * the auth signing keys are asymmetric), and whoever can read the key's table can read the
 * secrets beside it, so keeping the key elsewhere would protect nothing more. The Subscription's
 * id is part of what is fingerprinted: two Subscriptions with one secret show different masks,
 * and a mask copied from another Subscription matches nothing.
 */

const HEADER = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):\s?([^\r\n]*)$/;
const MASK = /^<hidden; fingerprint ([0-9a-f]{16})>$/;
const MASK_START = '<hidden';

/**
 * Header names the server sets on each notification, or that frame the HTTP message: a line
 * naming one would send the request to another virtual host than the endpoint whose address was
 * checked (Host: an SSRF past the endpoint policy), break its framing (Content-Length,
 * Transfer-Encoding: a request nobody can read, retried to the end), or replace the key a
 * subscriber discards repeats by (Idempotency-Key: every notification would look like the
 * first's repeat). RFC 9110 §7.6.1 (connection options), RFC 9112 §6 (framing).
 */
const SERVER_HEADERS = new Set([
  'host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'proxy-connection', 'upgrade', 'te', 'trailer',
  'expect', 'content-type', 'content-encoding', 'idempotency-key',
]);

/** Whether delivery sets header `name` itself (a Subscription's line of that name is never sent). */
export function isServerHeader(name: string): boolean {
  return SERVER_HEADERS.has(name.toLowerCase());
}

export interface HeaderLine {
  name: string;
  value: string;
}

/** The real lines of each Subscription being written, from the validate stage to the rules stage of its unit. */
const realLines = new WeakMap<object, HeaderLine[]>();

export class HeaderSecrets {
  private readonly key = new DatabaseKey('monitoring_header_key', 'monitoring 016');

  /**
   * validate stage, after the Subscription is accepted: each line's value is replaced by its mask;
   * a masked value stands for the secret of that name stored for this Subscription, which it
   * keeps (only for its subscriber at its endpoint: `assertMayKeep`). Returns whether the
   * resource changed. Throws a 422 naming the line that is not `Name: value` or whose mask is of
   * no stored secret.
   */
  async hide(tx: Queryable, w: PendingWrite): Promise<boolean> {
    const { id } = w;
    const sub = w.resource as fhir4.Subscription;
    const header = sub.channel.header ?? [];
    const previousLines = (w.previous as fhir4.Subscription | undefined)?.channel.header ?? [];
    const lines = header.map((text, i) => {
      const m = HEADER.exec(text);
      if (!m) throw unprocessable(`header '${text.slice(0, 80)}' is not 'Name: value'`, [`Subscription.channel.header[${i}]`]);
      // A line the previous version already had stays (the server's own status updates send
      // back what is stored); delivery leaves it out.
      if (isServerHeader(m[1]!) && !previousLines.includes(text)) {
        throw unprocessable(`header '${m[1]}' is set by the server on each notification; a Subscription may not set it`, [`Subscription.channel.header[${i}]`]);
      }
      return { name: m[1]!, value: m[2]!.trim() };
    });
    realLines.set(sub, lines);
    if (lines.length === 0) return false;
    const key = await this.keyOf(tx);
    const masked = lines.some((l) => l.value.startsWith(MASK_START));
    const stored = masked ? await storedLines(tx, id) : [];
    for (const [i, line] of lines.entries()) {
      if (!line.value.startsWith(MASK_START)) continue;
      const fingerprint = MASK.exec(line.value)?.[1];
      const kept = stored.find((s) => s.name.toLowerCase() === line.name.toLowerCase() && fingerprintOf(key, id, s) === fingerprint);
      if (!kept) {
        throw unprocessable(`header '${line.name}' carries a mask that is not the fingerprint of a value stored for this Subscription; send the value itself`, [`Subscription.channel.header[${i}]`]);
      }
      line.value = kept.value;
    }
    if (masked) await assertMayKeep(tx, w);
    sub.channel.header = lines.map((l) => `${l.name}: <hidden; fingerprint ${fingerprintOf(key, id, l)}>`);
    return sub.channel.header.some((text, i) => text !== header[i]);
  }

  private async keyOf(tx: Queryable): Promise<string> {
    // Read through the unit's transaction (PGlite runs one at a time).
    return (await this.key.read(tx)).key;
  }

}

/**
 * A hidden value was given by the Subscription's subscriber for its endpoint: only that subscriber
 * (same client, same user) or an administrator, whose update keeps that subscriber (the server's
 * own status updates, the operator's backend service; decision 032), may keep it, and only at
 * that endpoint. Anyone else who may update Subscriptions could otherwise send the mask back with
 * their own endpoint, or make themselves the subscriber, and have delivery send them the owner's
 * credential. They must send a value of their own, or none.
 */
async function assertMayKeep(tx: Queryable, w: PendingWrite): Promise<void> {
  const previous = w.previous as fhir4.Subscription | undefined;
  if (previous && !readdressed(previous, w.resource as fhir4.Subscription) && (await actsForSubscriber(tx, w.id, w.policy))) return;
  throw unprocessable(
    'a hidden header value can be kept only by the Subscription\'s subscriber at the same endpoint; send the header value again or drop the header',
    ['Subscription.channel.header'],
  );
}

function fingerprintOf(key: string, subscriptionId: string, line: HeaderLine): string {
  return createHmac('sha256', key).update(`${subscriptionId}\n${line.name.toLowerCase()}\n${line.value}`).digest('hex').slice(0, 16);
}

function storedLines(db: Queryable, subscriptionId: string): Promise<HeaderLine[]> {
  return db.query<HeaderLine>('SELECT name, value FROM monitoring_subscription_header WHERE subscription_id = $1 ORDER BY position', [subscriptionId]).then((r) => r.rows);
}

/**
 * rules stage: the stored lines follow the Subscription versions written (a delete removes
 * them), in the same transaction. An update that changed nothing wrote no version and comes
 * nowhere near here: its masks were of the stored lines, which stay.
 */
export function storeHeaderSecrets(tx: Transaction, committed: readonly CommittedWrite[]): void {
  const subs = committed.filter((w) => w.type === 'Subscription' && (!w.resource || realLines.has(w.resource)));
  if (subs.length === 0) return;
  tx.later('DELETE FROM monitoring_subscription_header WHERE subscription_id = ANY($1::text[])', [subs.map((w) => w.id)]);
  const rows = subs.flatMap((w) => (w.resource ? realLines.get(w.resource)!.map((l, position) => ({ id: w.id, position, ...l })) : []));
  if (rows.length === 0) return;
  tx.later(
    `INSERT INTO monitoring_subscription_header (subscription_id, position, name, value)
     SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[])`,
    [rows.map((r) => r.id), rows.map((r) => r.position), rows.map((r) => r.name), rows.map((r) => r.value)],
  );
}

/**
 * The headers delivery sends: the stored values; for a Subscription written before decision 033
 * (no stored lines, its values still in its content until its next write masks them), the content's.
 */
export async function deliveredHeaders(db: Queryable, sub: fhir4.Subscription & { id: string }): Promise<HeaderLine[]> {
  const stored = await storedLines(db, sub.id);
  if (stored.length) return stored;
  return (sub.channel.header ?? []).flatMap((text) => {
    const m = HEADER.exec(text);
    return m ? [{ name: m[1]!, value: m[2]!.trim() }] : [];
  });
}
