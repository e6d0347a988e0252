import { createHash, createHmac } from 'node:crypto';
import { uuidShaped } from '../kernel/id';
import type { Queryable } from '../store/db';
import { DatabaseKey } from '../store/database-key';
import { CLOCK_SKEW_MS } from './draft';

/**
 * The deterministic ids of readings and dose reports: UUID-shaped HMAC-SHA256 over device, code
 * (or medication), time and source key (and, for a patient's app, the patient), so that a gateway's retry names the same resource and
 * the same reading through two doors is stored once (FHIR id syntax, 36 characters).
 *
 * Keyed, not a plain hash, because whoever can compute a reading's id before it is stored can
 * take it: a patient's app (or any writer of ids over REST) that knew another patient's cuff
 * serial stored its own reading under the id of that patient's next one, which the gateway then
 * got 409 for (no reading, no Flag); and a 403 against a 201 told it whether the other patient's
 * cuff had reported at a given time. The key is one random key per database
 * (device_reading_key, made by its migration), shared by every node.
 *
 * Readings taken before the key was made may be stored under the unkeyed SHA-256 id of earlier
 * versions: for those, `legacyOf` names the id to look for (stored before the key, ./ingest.ts),
 * so a gateway's backlog or a Withings re-sync after the upgrade matches what is stored instead
 * of storing it twice.
 */
export class ReadingIdentity {
  private readonly legacy = new Map<string, string>();

  constructor(
    private readonly key: string,
    private readonly since: number,
  ) {}

  /** When the key was made: only what was stored before may carry an unkeyed id of a door's. */
  get keyMade(): Date {
    return new Date(this.since);
  }

  /**
   * `patient`: set when the writer may file readings only for that patient (a patient's app).
   * Its readings then have ids of their own, which no other writer's reading can have: the door
   * computes the id from the serial the app claims, so without it the app could still take the
   * id of the same device's reading for another patient. Such readings have no unkeyed past.
   */
  id(device: fhir4.Identifier, code: string, time: string, sourceKey: string, patient?: string): string {
    const input = `${device.system ?? ''}|${device.value ?? ''}\n${code}\n${new Date(time).toISOString()}\n${sourceKey}`;
    const id = uuidShaped(createHmac('sha256', this.key).update(patient === undefined ? input : `${input}\n${patient}`).digest('hex'));
    if (patient === undefined && Date.parse(time) <= this.since + CLOCK_SKEW_MS) this.legacy.set(id, uuidShaped(createHash('sha256').update(input).digest('hex')));
    return id;
  }

  /** The unkeyed id a reading taken before the key may be stored under. */
  legacyOf(id: string): string | undefined {
    return this.legacy.get(id);
  }
}

/** A payload's identity, with the database's key (read once per node; it never changes once made). */
export async function readingIdentity(db: Queryable): Promise<ReadingIdentity> {
  let key = keys.get(db);
  if (!key) keys.set(db, (key = new DatabaseKey('device_reading_key', 'devices 041')));
  const { key: secret, since } = await key.read(db);
  // `since` is NOT NULL in that table (its migration's default: when the key was made).
  return new ReadingIdentity(secret, since!.getTime());
}

const keys = new WeakMap<Queryable, DatabaseKey>();
